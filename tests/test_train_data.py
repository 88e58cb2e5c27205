"""train.data and fastfill.masks: real image files in tmp folders, determinism, mask statistics."""

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from fastfill.errors import InputError  # noqa: E402
from train.data import DataError, ImageFolder, photo_files, split_files  # noqa: E402
from fastfill.masks import (center_mask, freeform_mask, hole_centers, make_mask_generator, object_mask,  # noqa: E402
                         rect_mask)
from train.models import CE_HOLE_BOX  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _gradient(h, w, seed=0):
    """Left half dark, right half bright, with some noise: flips and crops are visible."""
    rng = np.random.default_rng(seed)
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w)[None, :].astype(np.uint8)
    a[..., 1] = np.linspace(0, 255, h)[:, None].astype(np.uint8)
    a[..., 2] = rng.integers(0, 256, (h, w))
    return a


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(_gradient(60, 80)).save(tmp_path / "one.png")
    Image.fromarray(_gradient(70, 50, 1)).save(tmp_path / "a" / "two.JPG", quality=95)
    Image.fromarray(_gradient(90, 90, 2)).save(tmp_path / "a" / "b" / "three.webp")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    return tmp_path


def _good(folder):
    return [p for p in photo_files(folder) if p.stem in ("one", "two", "three")]


def test_photo_files_recursive(folder):
    names = sorted(p.name for p in photo_files(folder))
    assert names == ["broken.jpg", "empty.png", "one.png", "three.webp", "two.JPG"]


def test_unreadable_files_skipped_with_warning(folder):
    with pytest.warns(UserWarning, match="skipping unreadable image") as rec:
        ds = ImageFolder(folder, crop=32, mask="rect")
    assert len(ds) == 3 and len(ds.skipped) == 2 and len(rec) == 2


def test_bad_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolder(tmp_path / "nope")
    with pytest.raises(InputError, match="no readable images"):
        ImageFolder(tmp_path)
    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(DataError):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="unknown mask kind"):
        ImageFolder(tmp_path, mask="triangle")


def test_samples_deterministic_and_augmented(folder):
    kw = dict(crop=32, scale=(1.0, 2.0), mask="rect", files=_good(folder))
    a, b, c = ImageFolder(folder, seed=3, **kw), ImageFolder(folder, seed=3, **kw), ImageFolder(folder, seed=4, **kw)
    for pos in range(6):
        (xa, ma), (xb, mb) = a[pos], b[pos]
        assert xa.shape == (3, 32, 32) and ma.shape == (1, 32, 32)
        assert 0 <= float(xa.min()) and float(xa.max()) <= 1
        assert torch_equal(xa, xb) and torch_equal(ma, mb)
    assert any(not torch_equal(a[p][0], c[p][0]) for p in range(6))
    # flips: the red ramp runs either way; scales: the visible share of the ramp varies
    slopes, spans = [], []
    for pos in range(40):
        img, _ = a.sample(pos)
        r = img[..., 0].astype(float).mean(0)
        slopes.append(np.sign(r[-1] - r[0]))
        spans.append(abs(r[-1] - r[0]))
    assert -1 in slopes and 1 in slopes
    assert max(spans) > 1.5 * min(spans)


def torch_equal(a, b):
    return bool((a == b).all())


def test_every_image_once_per_epoch(folder):
    ds = ImageFolder(folder, crop=32, files=_good(folder))
    assert sorted(ds.index_at(p) for p in range(3)) == [0, 1, 2]
    assert sorted(ds.index_at(p) for p in range(3, 6)) == [0, 1, 2]


def test_mean_color(tmp_path):
    Image.fromarray(np.full((10, 10, 3), (255, 0, 0), np.uint8)).save(tmp_path / "r.png")
    Image.fromarray(np.full((10, 30, 3), (0, 0, 255), np.uint8)).save(tmp_path / "b.png")
    ds = ImageFolder(tmp_path, crop=8, scale=(1, 1))
    np.testing.assert_allclose(ds.mean_color(), [0.25, 0.0, 0.75], atol=1e-6)


def test_split_is_deterministic(tmp_path):
    files = [tmp_path / f"{i}.png" for i in range(400)]
    tr, va = split_files(files, tmp_path, 0.1)
    assert (tr, va) == split_files(files, tmp_path, 0.1)
    assert 20 <= len(va) <= 60 and len(tr) + len(va) == 400
    assert split_files(files, tmp_path, 0.0)[1] == []
    with pytest.raises(DataError):
        split_files(files, tmp_path, 1.0)


def test_rect_masks_have_paper_sizes():
    sides = []
    for i in range(300):
        m = rect_mask(np.random.default_rng(i), 256, 256)
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert m.sum() == h * w  # one solid rectangle, inside the image by construction
        sides += [h, w]
    assert min(sides) == 96 and max(sides) == 128
    # scaled with the crop
    m = rect_mask(np.random.default_rng(0), 64, 64)
    assert 24 <= np.sqrt(m.sum()) <= 32


def test_center_mask_is_the_ce_hole():
    m = center_mask(None, 128, 128)
    t, l, h, w = CE_HOLE_BOX
    assert m.sum() == h * w and m[t:t + h, l:l + w].all()


def test_freeform_masks():
    cov = []
    for i in range(100):
        m = freeform_mask(np.random.default_rng(i), 256, 256)
        assert m.shape == (256, 256) and m.dtype == bool and m.any()
        cov.append(m.mean())
    assert np.array_equal(freeform_mask(np.random.default_rng(5), 96, 128), freeform_mask(np.random.default_rng(5), 96, 128))
    assert 0.03 < np.mean(cov) < 0.4 and max(cov) < 0.8
    assert len({round(c, 3) for c in cov}) > 50  # varied


def test_object_masks():
    """One blob of 6-20 % of the crop (a few long ones shrunk to fit), inside a margin, varied."""
    ndimage = pytest.importorskip("scipy.ndimage")
    cov = []
    for i in range(200):
        m = object_mask(np.random.default_rng(i), 256, 256)
        assert m.shape == (256, 256) and m.dtype == bool
        rows, cols = np.nonzero(m)
        assert min(rows.min(), cols.min(), 255 - rows.max(), 255 - cols.max()) >= 8  # margin 10, rounding
        cov.append(m.mean())
        if i < 20:
            assert ndimage.label(m)[1] == 1 and ndimage.binary_fill_holes(m).sum() == m.sum()  # one solid piece
    cov = np.array(cov)
    assert 0.05 < cov.min() and cov.max() < 0.22 and 0.10 < cov.mean() < 0.17
    assert len({round(c, 4) for c in cov}) > 150
    assert np.array_equal(object_mask(np.random.default_rng(3), 96, 128), object_mask(np.random.default_rng(3), 96, 128))
    for h, w in ((1, 1), (3, 5), (16, 200)):  # tiny and thin crops: still a hole
        assert object_mask(np.random.default_rng(0), h, w).any()


def test_mask_factory_and_centres():
    for kind in ("center", "rect", "freeform", "object", "mixed"):
        m = make_mask_generator(kind)(np.random.default_rng(0), 64, 48)
        assert m.shape == (64, 48) and m.any()
    with pytest.raises(ValueError):
        make_mask_generator("nope")
    m = np.zeros((2, 20, 20), bool)
    m[0, 2:6, 10:14] = True
    assert hole_centers(m).tolist() == [[4, 12], [10, 10]]
