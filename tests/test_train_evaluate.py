"""train.evaluate: metrics against known values, baselines, the table and grid, the CLI command."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from click.testing import CliRunner  # noqa: E402

from fastfill.cli import cli  # noqa: E402
from train.checkpoint import save_checkpoint  # noqa: E402
from train.config import DataError  # noqa: E402
from train.evaluate import evaluate, format_table, metrics, ssim_map, texture_distance  # noqa: E402
from train.models import CompletionNet, ContextEncoder  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_metrics_known_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:16] = True
    same = metrics(a, a, mask)
    assert same["psnr_hole"] >= 99 and same["ssim_hole"] == pytest.approx(1.0) and same["l1_hole"] == 0
    b = a.copy()
    b[mask] = np.clip(a[mask].astype(int) + 10, 0, 255).astype(np.uint8)
    m = metrics(b, a, mask)
    d = (b.astype(float) - a)[mask] / 255
    assert m["psnr_hole"] == pytest.approx(10 * np.log10(1 / np.mean(d ** 2)))
    assert m["l1_hole"] == pytest.approx(np.abs(d).mean())
    assert m["l1"] == pytest.approx(np.abs(d).sum() / (32 * 32 * 3))
    assert m["psnr"] > m["psnr_hole"] and m["ssim_hole"] < 1


def test_ssim_matches_skimage():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.random((48, 40, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ref = skm.structural_similarity(a, b, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    assert ssim_map(a, b)[5:-5, 5:-5].mean() == pytest.approx(ref, abs=2e-3)  # skimage crops the border


def _texture(h, w, seed=0):
    """A stationary random texture: noise smoothed over ~2 px, strong contrast."""
    import cv2
    rng = np.random.default_rng(seed)
    n = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)), (0, 0), 1.2)
    return np.clip(128 + 60 * n / n.std(), 0, 255).astype(np.uint8)


def _hole(h, w, t, l, side):
    m = np.zeros((h, w), bool)
    m[t:t + side, l:l + side] = True
    return m


def _reference_texture_distance(pred, truth, mask, patch, directions, seed):
    """The definition, written out: loops over the centres, scipy's 1-D Wasserstein distance."""
    wasserstein = pytest.importorskip("scipy.stats").wasserstein_distance
    r = patch // 2
    h, w = mask.shape
    a, b = [], []
    for y in range(h):
        for x in range(w):
            if mask[y, x] and r <= y < h - r and r <= x < w - r:
                for im, out in ((pred, a), (truth, b)):
                    p = im[y - r:y + r + 1, x - r:x + r + 1].astype(float)
                    out.append((p - p.mean((0, 1))).ravel())
    if not a:
        return 0.0
    d = np.random.default_rng(seed).standard_normal((directions, patch * patch * 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return float(np.mean([wasserstein(np.array(a) @ v, np.array(b) @ v) for v in d]))


def test_texture_distance_matches_its_definition():
    rng = np.random.default_rng(3)
    truth = _texture(24, 30, 1)
    pred = rng.integers(0, 256, truth.shape, dtype=np.uint8)
    mask = rng.random((24, 30)) < 0.3
    mask[:, :2] = True  # centres too near the border are left out
    for patch, directions, seed in ((7, 16, 0), (3, 5, 7), (5, 64, 2)):
        got = texture_distance(pred, truth, mask, patch=patch, directions=directions, seed=seed)
        assert got == pytest.approx(_reference_texture_distance(pred, truth, mask, patch, directions, seed),
                                    rel=1e-9)
    assert "texture" in metrics(pred, truth, mask)
    assert metrics(pred, truth, mask)["texture"] == pytest.approx(texture_distance(pred, truth, mask))
    # no centre whose patch fits: 0; subsampled centres (max_centers) stay deterministic
    edge = np.zeros((24, 30), bool)
    edge[:3] = True
    assert texture_distance(pred, truth, edge) == 0.0
    assert texture_distance(pred[:5, :5], truth[:5, :5], mask[:5, :5]) == 0.0
    full = np.ones((24, 30), bool)
    sub = texture_distance(pred, truth, full, max_centers=50)
    assert sub == texture_distance(pred, truth, full, max_centers=50) > 0


def test_texture_distance_orders_fills():
    truth = _texture(128, 128)
    mask = _hole(128, 128, 40, 40, 48)
    assert texture_distance(truth, truth, mask) == 0.0
    # a periodic texture (period 8) and a copy shifted by (3, 5): the same patches, another phase
    tile = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    periodic = np.tile(tile, (16, 16, 1))
    shifted = np.roll(periodic, (3, 5), (0, 1))
    assert texture_distance(shifted, periodic, mask) == pytest.approx(0, abs=1e-9)
    pasted = periodic.copy()
    pasted[mask] = shifted[mask]  # seams at the hole's edge only
    blurred_periodic = periodic.copy()
    blurred_periodic[mask] = cv2.GaussianBlur(periodic, (0, 0), 3)[mask]
    assert texture_distance(pasted, periodic, mask) < 0.3 * texture_distance(blurred_periodic, periodic, mask)
    # a blurred fill versus a fill copied from elsewhere in the same (stationary) texture
    blurred = truth.copy()
    blurred[mask] = cv2.GaussianBlur(truth, (0, 0), 3)[mask]
    copied = truth.copy()
    copied[40:88, 40:88] = truth[0:48, 80:128]
    t_blur, t_copy = texture_distance(blurred, truth, mask), texture_distance(copied, truth, mask)
    assert t_blur > 3 * t_copy
    # metrics agree with the eye where PSNR does not: the copy has the worse PSNR
    assert metrics(copied, truth, mask)["psnr_hole"] < metrics(blurred, truth, mask)["psnr_hole"]
    # added noise scores too, more with more noise; on a smooth image far more than a blur
    rng = np.random.default_rng(2)
    noisy = [np.clip(truth + rng.normal(0, s, truth.shape), 0, 255).astype(np.uint8) for s in (4, 16)]
    t4, t16 = (texture_distance(n, truth, mask) for n in noisy)
    assert 0 < t4 < t16
    yy, xx = np.mgrid[0:128, 0:128]
    smooth = np.clip(np.stack([128 + 60 * np.sin(xx / 15), 128 + 50 * np.cos(yy / 11), 100 + xx / 2], -1),
                     0, 255).astype(np.uint8)
    noisy = np.clip(smooth + rng.normal(0, 16, smooth.shape), 0, 255).astype(np.uint8)
    blurred = smooth.copy()
    blurred[mask] = cv2.GaussianBlur(smooth, (0, 0), 3)[mask]
    assert texture_distance(noisy, smooth, mask) > 20 * texture_distance(blurred, smooth, mask)


@pytest.fixture(scope="module")
def smooth(tmp_path_factory):
    d = tmp_path_factory.mktemp("smooth")
    yy, xx = np.mgrid[0:80, 0:96]
    for i in range(3):
        a = np.stack([128 + 100 * np.sin(xx / 17 + i), 128 + 90 * np.cos(yy / 13 + i), 60 + xx + 0 * yy], -1)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(d / f"{i}.png")
    return d


def test_evaluate_glcic_and_baselines(smooth, tmp_path):
    torch.manual_seed(0)
    p = save_checkpoint(tmp_path / "g", models={"G": CompletionNet(0.0625)},
                        meta={"kind": "glcic", "mean": [0.5, 0.5, 0.5], "step": 0, "phase": "completion", "data": {}})
    t = evaluate(p, smooth, mask="rect", size=64, grid=tmp_path / "grid.png")
    assert t["_n"] == 3 and set(t) == {"model", "mean fill", "opencv telea", "opencv ns", "_n"}
    # on smooth images the diffusion baselines beat a flat grey fill inside the hole
    assert t["opencv ns"]["psnr_hole"] > t["mean fill"]["psnr_hole"] + 3
    assert t["opencv telea"]["l1_hole"] < t["mean fill"]["l1_hole"]
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size == (6 * 64, 3 * 64)
    text = format_table(t)
    assert "psnr_hole" in text and "opencv ns" in text


def test_evaluate_ce_and_cli(smooth, tmp_path):
    p = save_checkpoint(tmp_path / "c", models={"G": ContextEncoder(0.0625)},
                        meta={"kind": "ce", "mean": [0.5, 0.5, 0.5], "step": 0, "phase": "joint",
                              "data": {"root": str(smooth), "val_files": ["1.png"]}})
    t = evaluate(p, smooth)
    assert t["_n"] == 3
    res = CliRunner().invoke(cli, ["evaluate", str(p), "--held-out"], standalone_mode=False)
    assert res.exception is None, res.output
    assert "1 images" in res.output and "mean fill" in res.output
    assert CliRunner().invoke(cli, ["evaluate", str(p)]).exit_code == 2  # neither --data nor --held-out
    # --grid: refused before the evaluation when it is no image name or lies in --data (it
    # replaced a photo), written whole otherwise
    with pytest.raises(DataError, match="not an image file name"):
        evaluate(p, smooth, grid=tmp_path / "g.xyz")
    photo = sorted(smooth.iterdir())[0]
    before = photo.read_bytes()
    with pytest.raises(DataError, match="inside --data"):
        evaluate(p, smooth, grid=photo)
    assert photo.read_bytes() == before
    evaluate(p, smooth, grid=tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").format == "PNG" and not list(tmp_path.glob(".*"))


def test_unreadable_images_are_skipped_with_a_warning(smooth, tmp_path):
    from train.evaluate import load_eval_set

    d = tmp_path / "d"
    d.mkdir()
    for f in smooth.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=r"skipped .*broken\.png"):
        imgs, masks, used = load_eval_set(d, 32, "rect")
    assert len(imgs) == 3 and all(p.name != "broken.png" for p in used)


def test_held_out_of_an_exported_model_and_of_a_val_data_run(smooth, tmp_path, monkeypatch):
    """An .onnx (no recorded split) was a KeyError; a --val-data run recorded its paths as given,
    relative to where training ran, and evaluate looked for them under the training folder."""
    p = save_checkpoint(tmp_path / "v", models={"G": ContextEncoder(0.0625)},
                        meta={"kind": "ce", "mean": [0.5, 0.5, 0.5], "step": 0, "phase": "joint",
                              "data": {"root": str(tmp_path / "elsewhere"), "val_files": [smooth.name + "/1.png"]}})
    monkeypatch.chdir(smooth.parent)
    t = evaluate(p, None, held_out=True)
    assert t["_n"] == 1
    q = save_checkpoint(tmp_path / "n", models={"G": ContextEncoder(0.0625)},
                        meta={"kind": "ce", "mean": [0.5, 0.5, 0.5], "step": 0, "phase": "joint"})
    with pytest.raises(DataError, match="records no validation split"):
        evaluate(q, None, held_out=True)
    # --grid over an existing file: refused without --overwrite
    keep = tmp_path / "keep.png"
    keep.write_bytes(b"mine")
    res = CliRunner().invoke(cli, ["evaluate", str(p), "--data", str(smooth), "--grid", str(keep)])
    assert res.exit_code == 2 and "exists (use --overwrite" in res.output and keep.read_bytes() == b"mine"


def test_an_onnx_model_named_in_capitals_is_evaluated_as_one(smooth, tmp_path):
    """`evaluate MODEL.ONNX` was read as a checkpoint ("not a safetensors checkpoint"); run, bench,
    quantize and export take the suffix in any case."""
    import shutil

    tiny = Path(__file__).parent / "data" / "tiny_glcic.onnx"
    shutil.copy(tiny, tmp_path / "MODEL.ONNX")
    t = evaluate(tmp_path / "MODEL.ONNX", smooth, mask="rect", size=64)
    assert t["_n"] == 3 and "model" in t
