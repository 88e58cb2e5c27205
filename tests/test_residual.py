"""The model contract of fastfill's recipe: the residual head returns its prefill until trained,
the harmonic prefill is what training feeds and what the runtime feeds (fastfill.fill in the
file), models without the key stay `mean`, and the validation keeps the best checkpoint."""

import json
import re

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from fastfill import Inpainter, InputError, ops  # noqa: E402
from fastfill.engines import load_engine  # noqa: E402
from fastfill.engines.base import ModelMeta  # noqa: E402
from train import export as ex  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402
from train.loop import TrainConfig, prefill, train  # noqa: E402
from train.models import CompletionNet, ContextEncoder, build_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_untrained_residual_glcic_returns_its_input(norm):
    net = CompletionNet(0.0625, head="residual", norm=norm).eval()
    x = torch.rand(2, 4, 36, 44)
    assert torch.equal(net(x), x[:, :3])
    # the paper's head does not
    assert not torch.allclose(CompletionNet(0.0625).eval()(x), x[:, :3], atol=0.05)


def test_untrained_residual_ce_returns_its_box():
    net = ContextEncoder(0.0625, head="residual").eval()
    x = torch.rand(2, 3, 128, 128)
    t, l, h, w = net.pred_box
    assert torch.equal(net(x), x[:, :, t:t + h, l:l + w])


def test_config_round_trip_and_old_configs():
    net = CompletionNet(0.125, head="residual", norm="group")
    again = build_model(net.config())
    assert again.head == "residual" and again.norm == "group"
    old = build_model({"kind": "glcic", "width": 0.125, "dilations": [2, 4, 8, 16]})  # no head/norm keys
    assert old.head == "sigmoid" and old.norm == "batch"
    with pytest.raises(ValueError, match="head must be one of"):
        CompletionNet(0.125, head="tanh")
    with pytest.raises(ValueError, match="norm must be one of"):
        CompletionNet(0.125, norm="layer")


def test_training_prefill_is_the_runtime_kernel():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    m = (rng.random((2, 24, 32)) < 0.3).astype(np.uint8)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    mt = torch.from_numpy(m).float()[:, None]
    got = prefill(x, mt, (0.3, 0.4, 0.5), "harmonic").numpy()
    want = ops.prepare(u8, m, (0.3, 0.4, 0.5), 1, mask_channel=False, fill="harmonic")
    np.testing.assert_array_equal(got, want)
    mean = prefill(x, mt, (0.3, 0.4, 0.5), "mean").numpy()
    np.testing.assert_allclose(mean, ops.prepare(u8, m, (0.3, 0.4, 0.5), 1, mask_channel=False), atol=1e-7)


@pytest.mark.parametrize("kind", ["glcic", "ce"])
def test_export_carries_the_fill_and_the_runtime_uses_it(kind, tmp_path):
    torch.manual_seed(0)
    model = (CompletionNet(0.0625, head="residual", norm="group") if kind == "glcic"
             else ContextEncoder(0.0625, head="residual"))
    path = tmp_path / f"{kind}.onnx"
    res = ex.export_model(model, path, mean=(0.4, 0.45, 0.5), fill="harmonic", log=lambda *_: None)
    assert max(res["diffs"]) <= 1e-4
    meta = load_engine(path).meta
    assert meta.fill == "harmonic"
    # untrained residual = its prefill: the runtime's output is the harmonic fill exactly
    rng = np.random.default_rng(1)
    size = (128, 128) if kind == "ce" else (96, 120)
    image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    mask = np.zeros(size, np.uint8)
    mask[40:70, 50:80] = 1
    with Inpainter(str(path), roi=False) as ip:
        out = ip(image, mask)
    want = ops.fill(image, mask, "harmonic")
    assert np.abs(out.astype(int) - want).max() <= 1  # the graph's float32 add + clip, then rint


def test_a_file_without_the_key_is_mean():
    meta = ModelMeta("glcic", (0.5, 0.5, 0.5))
    props = meta.to_onnx_metadata()
    del props["fastfill.fill"]
    assert ModelMeta.from_onnx_metadata(props).fill == "mean"
    props["fastfill.fill"] = "median"
    with pytest.raises(Exception, match="unknown prefill 'median'"):
        ModelMeta.from_onnx_metadata(props)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Smooth colour fields with edges: a few train and val photos."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        (d / split).mkdir()
        for i in range(n):
            yy, xx = np.mgrid[0:64, 0:72]
            img = np.stack([xx * 3, yy * 3, (xx > 30 + i) * 200], -1) + rng.integers(0, 20, (64, 72, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / split / f"{i}.png")
    return d


def test_validation_keeps_the_best_checkpoint(photos, tmp_path):
    cfg = TrainConfig(kind="glcic", data=str(photos / "train"), val_data=str(photos / "val"),
                      out=str(tmp_path), steps=6, batch_size=2, crop=32, width=0.0625, d_width=0.0625,
                      mask="freeform", fill="harmonic", head="residual", norm="group", optimizer="adam",
                      lr=1e-3, warmup=2, val_every=3, val_crops=2, sample_every=0, progress=False,
                      threads=1)
    r = train(cfg)
    vals = [json.loads(line) for line in open(tmp_path / "log.jsonl") if '"val"' in line]
    assert [v["step"] for v in vals] == [0, 3, 6]
    # step 0: the untrained residual net is its prefill
    assert vals[0]["val"]["model"] == vals[0]["val"]["prefill"]
    assert set(vals[0]["val"]["model"]) == {"psnr_hole", "ssim_hole", "l1_hole", "texture"}
    best = max(vals, key=lambda v: v["val"]["model"]["psnr_hole"])
    assert r["best"]["step"] == best["step"]
    net, meta = load_checkpoint(tmp_path / "best.safetensors")
    assert meta["step"] == best["step"] and meta["fill"] == "harmonic" and net.head == "residual"


def test_validation_measures_the_prefill_itself_for_the_context_encoder(photos, tmp_path):
    """The prefill row is the prefilled image (mean colour here), not the net's output: for the
    papers' CE the two differ from step 0 and the prefill's stays put while the net trains."""
    cfg = TrainConfig(kind="ce", data=str(photos / "train"), val_data=str(photos / "val"),
                      out=str(tmp_path), steps=4, batch_size=2, width=0.0625, d_width=0.0625,
                      val_every=2, val_crops=2, sample_every=0, progress=False, threads=1)
    train(cfg)
    vals = [json.loads(line)["val"] for line in open(tmp_path / "log.jsonl") if '"val"' in line]
    assert len(vals) == 3
    assert all(v["prefill"] == vals[0]["prefill"] for v in vals)  # the mean fill does not train
    assert vals[0]["model"] != vals[0]["prefill"]  # a sigmoid net is not its prefill


def test_bad_recipe_values(photos, tmp_path):
    from train.data import DataError
    for k, v in (("fill", "median"), ("head", "tanh"), ("norm", "layer"), ("optimizer", "sgd")):
        with pytest.raises(DataError, match=f"{k} must be one of"):
            TrainConfig(kind="glcic", data=str(photos), out=str(tmp_path), **{k: v})


def test_ema_is_validated_kept_and_resumed(photos, tmp_path):
    base = dict(kind="glcic", data=str(photos / "train"), val_data=str(photos / "val"), batch_size=2,
                crop=32, width=0.0625, d_width=0.0625, mask="freeform", fill="harmonic", head="residual",
                norm="none", optimizer="adam", lr=1e-3, val_every=2, val_crops=1, sample_every=0,
                progress=False, threads=1, ema=0.9)
    full = train(TrainConfig(out=str(tmp_path / "full"), steps=4, **base))
    first = train(TrainConfig(out=str(tmp_path / "split"), steps=2, **base))
    rest = train(TrainConfig(out=str(tmp_path / "split"), steps=4, resume=str(first["checkpoint"]), **base))
    assert first["history"] + rest["history"] == full["history"]
    from safetensors.torch import load_file
    a, b = load_file(str(full["checkpoint"])), load_file(str(rest["checkpoint"]))
    assert any(k.startswith("model.E.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the average differs from the trained weights, and best.safetensors holds the average as G
    assert any(not torch.equal(a[k], a[k.replace("model.E.", "model.G.")]) for k in a if k.startswith("model.E."))
    best = load_file(str(tmp_path / "full" / "best.safetensors"))
    assert set(best) == {k.replace("model.E.", "model.G.") for k in a if k.startswith("model.E.")}


def test_resume_in_the_completion_phase_may_shrink_the_discriminator(photos, tmp_path):
    base = dict(kind="glcic", data=str(photos / "train"), batch_size=2, crop=32, width=0.0625,
                mask="freeform", fill="harmonic", head="residual", norm="none", optimizer="adam",
                val_fraction=0.0, sample_every=0, progress=False, threads=1, out=str(tmp_path), tc=3)
    first = train(TrainConfig(steps=2, d_width=0.125, **base))
    rest = train(TrainConfig(steps=3, d_width=0.0625, resume=str(first["checkpoint"]), **base))
    assert [h["step"] for h in rest["history"]] == [2]
    # past the completion phase the discriminator must match
    with pytest.raises(Exception, match="does not match"):
        train(TrainConfig(steps=4, d_width=0.125, resume=str(rest["checkpoint"]), **base))


def test_resume_keeps_the_recipe_and_a_run_folder_is_not_started_over(photos, tmp_path):
    """Another batch size, seed or phase schedule on resume changed the batches and the losses
    without a word; a fresh run into a run's folder replaced its checkpoint and mixed its log."""
    base = dict(kind="glcic", data=str(photos / "train"), batch_size=2, crop=32, width=0.0625,
                d_width=0.0625, mask="freeform", fill="harmonic", head="residual", norm="none",
                optimizer="adam", val_fraction=0.0, sample_every=0, progress=False, threads=1,
                out=str(tmp_path), tc=3)
    first = train(TrainConfig(steps=2, **base))
    for change, shown in (({"batch_size": 3}, "--batch-size 2 -> 3"), ({"seed": 5}, "--seed 0 -> 5"),
                          ({"tc": 10}, "--tc 3 -> 10"), ({"optimizer": "paper"}, "--optimizer")):
        with pytest.raises(InputError, match="other settings.*" + re.escape(shown)):
            train(TrainConfig(steps=3, resume=str(first["checkpoint"]), **{**base, **change}))
    with pytest.raises(InputError, match="holds a run"):
        train(TrainConfig(steps=3, **base))
    log = (tmp_path / "log.jsonl").read_text()
    rest = train(TrainConfig(steps=3, resume=str(first["checkpoint"]), **base))  # its own: goes on
    assert [h["step"] for h in rest["history"]] == [2]
    assert (tmp_path / "log.jsonl").read_text().startswith(log)


def test_lr_schedule():
    from train.loop import lr_schedule
    assert lr_schedule(0, 1e-3, 10, 100) == pytest.approx(1e-4)
    assert lr_schedule(9, 1e-3, 10, 100) == pytest.approx(1e-3)
    assert lr_schedule(50, 1e-3, 10, 100) == 1e-3
    assert lr_schedule(10, 1e-3, 10, 100, "cosine") == pytest.approx(1e-3)
    assert lr_schedule(55, 1e-3, 10, 100, "cosine") == pytest.approx(5e-4)
    assert lr_schedule(100, 1e-3, 10, 100, "cosine") == pytest.approx(0, abs=1e-12)
    assert lr_schedule(500, 1e-3, 10, 100, "cosine") == pytest.approx(0, abs=1e-12)
