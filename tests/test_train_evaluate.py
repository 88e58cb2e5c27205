"""train.evaluate: metrics against known values, baselines, the table and grid, the CLI command."""

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from click.testing import CliRunner  # noqa: E402

from fastfill.cli import cli  # noqa: E402
from train.checkpoint import save_checkpoint  # noqa: E402
from train.evaluate import evaluate, format_table, metrics, ssim_map  # noqa: E402
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
