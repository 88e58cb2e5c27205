"""Export to ONNX: PyTorch vs ONNX Runtime for both models, TensorRT op allow-list, metadata,
BatchNorm folding, the self-check, checkpoints and the CLI."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export needs PyTorch (pip install 'fastfill[train]')")
onnx = pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402

from fastfill.cli import cli, main  # noqa: E402
from fastfill.engines import load_engine, read_meta  # noqa: E402
from train import export as ex  # noqa: E402

DATA = Path(__file__).parent / "data"
WIDTH = 0.0625


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Random tiny GLCIC and CE models, exported once for the module: {kind: (model, path, result)}."""
    d = tmp_path_factory.mktemp("export")
    out = {}
    for kind, seed in (("glcic", 3), ("ce", 4)):
        model = ex.random_model(kind, WIDTH, seed=seed)
        res = ex.export_model(model, d / f"{kind}.onnx", mean=(0.4, 0.45, 0.5),
                              provenance={"note": "test"}, log=lambda *_: None)
        out[kind] = (model, d / f"{kind}.onnx", res)
    return out


def test_glcic_onnxruntime_matches_pytorch(exported):
    model, path, res = exported["glcic"]
    assert max(res["diffs"]) <= 1e-4 and len(res["diffs"]) == 2
    e = load_engine(path, threads=2)
    g = torch.Generator().manual_seed(11)
    for shape in [(1, 4, 32, 48), (3, 4, 72, 40)]:  # sizes other than the self-check's
        x = torch.rand(shape, generator=g)
        x[:, 3] = (x[:, 3] > 0.5).float()
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(e.infer(x.numpy()), want, atol=1e-4)


def test_ce_onnxruntime_matches_pytorch_full_frame(exported):
    model, path, _ = exported["ce"]
    e = load_engine(path, threads=2)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        pred = model(x)
    got = e.infer(x.numpy())
    top, left, h, w = model.pred_box
    np.testing.assert_allclose(got[..., top:top + h, left:left + w], pred.numpy(), atol=1e-4)
    outside = np.ones((128, 128), bool)
    outside[top:top + h, left:left + w] = False
    np.testing.assert_array_equal(got[..., outside], x.numpy()[..., outside])


@pytest.mark.parametrize("path", [DATA / "tiny_glcic.onnx", DATA / "tiny_ce.onnx", "glcic", "ce"])
def test_graph_uses_only_tensorrt_ops(exported, path):
    p = exported[path][1] if isinstance(path, str) else path
    m = onnx.load(str(p))
    ops = ex.graph_ops(m)
    assert ops <= ex.ALLOWED_OPS, f"ops outside the TensorRT allow-list: {sorted(ops - ex.ALLOWED_OPS)}"
    assert "BatchNormalization" not in ops  # folded
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    meta = read_meta(p)
    if meta.kind == "glcic":
        assert isinstance(dims[0], str) and isinstance(dims[2], str) and isinstance(dims[3], str)
        assert dims[1] == 4
    else:
        assert dims[1:] == [3, 128, 128]


def test_allow_list_check_catches_other_ops():
    m = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Einsum", ["a", "a"], ["b"], equation="ij,ij->ij")], "g",
        [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [2, 2])],
        [onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [2, 2])]))
    with pytest.raises(ex.ExportError, match="Einsum"):
        ex.check_ops(m)


def test_metadata_in_file(exported):
    _, path, res = exported["glcic"]
    meta = read_meta(path)
    assert meta == res["meta"]
    assert meta.mean == (0.4, 0.45, 0.5) and meta.receptive_field == 307 and meta.multiple == 4
    assert meta.provenance["note"] == "test"
    ce = read_meta(exported["ce"][1])
    assert ce.input_size == (128, 128) and ce.channels == 3


def test_fold_batchnorm_is_exact():
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                        nn.ConvTranspose2d(5, 4, 4, 2, 1), nn.BatchNorm2d(4))
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        want = net(x)
        import copy
        folded = ex.fold_batchnorm(copy.deepcopy(net))
        got = folded(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_self_check_failure_writes_nothing(tmp_path):
    model = ex.random_model("glcic", WIDTH)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ex.ExportError, match="differs from PyTorch"):
        ex.export_model(model, out, tol=-1.0, log=lambda *_: None)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_refuses_other_suffix(tmp_path):
    with pytest.raises(ex.ExportError, match=r"\.plan files are made by `fastfill build`"):
        ex.export_model(ex.random_model("glcic", WIDTH), tmp_path / "m.plan")


def test_export_checkpoint_provenance(tmp_path):
    from train.checkpoint import save_checkpoint
    model = ex.random_model("glcic", WIDTH, seed=7)
    ckpt = save_checkpoint(tmp_path / "ck", models={"G": model},
                           meta={"kind": "glcic", "mean": [0.3, 0.4, 0.5], "step": 1234,
                                 "phase": "joint", "data": {"root": "photos", "train": 10}})
    res = ex.export_checkpoint(ckpt, tmp_path / "m.onnx", log=lambda *_: None)
    prov = read_meta(tmp_path / "m.onnx").provenance
    assert prov["checkpoint_sha256"] == hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()
    assert prov["step"] == 1234 and prov["phase"] == "joint" and prov["data"]["train"] == 10
    assert prov["config"]["kind"] == "glcic"
    assert res["meta"].mean == (0.3, 0.4, 0.5)
    with pytest.raises(ex.ExportError, match="checkpoint not found"):
        ex.export_checkpoint(tmp_path / "nope.safetensors", tmp_path / "x.onnx")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ex.ExportError, match="cannot load checkpoint"):
        ex.export_checkpoint(tmp_path / "junk.safetensors", tmp_path / "x.onnx")


def test_a_checkpoints_json_is_checked_before_a_net_is_built(tmp_path):
    """A checkpoint's JSON is data: a width of 200 built a 12 GB net (the process was killed), a
    stray key or a JSON list were internal errors."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from train.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "ck", models={"G": ex.random_model("glcic", WIDTH, seed=1)},
                           meta={"kind": "glcic", "mean": [0.5, 0.5, 0.5], "step": 1, "phase": "joint"})
    with safe_open(str(ckpt), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["fastfill"])
    for edit, why in ((lambda m: m["models"]["G"].update(width=200.0), "width must be a number"),
                      (lambda m: m["models"]["G"].update(extra=1), "does not build it"),
                      (lambda m: m["models"]["G"].update(width="wide"), "width must be a number"),
                      (lambda m: m.__setitem__("models", [1, 2]), "cannot load checkpoint")):
        bad = json.loads(json.dumps(meta))
        edit(bad)
        path = tmp_path / "bad.safetensors"
        save_file(tensors, str(path), metadata={"fastfill": json.dumps(bad)})
        with pytest.raises(ex.ExportError, match=why):
            ex.export_checkpoint(path, tmp_path / "x.onnx", log=lambda *_: None)
        assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("flags, why", [(["--opset", "99"], "--opset"), (["--tol", "nan"], "--tol"),
                                        (["--tol", "-1"], "--tol"), (["--width", "200"], "--width")])
def test_export_flags_are_bounded(tmp_path, flags, why):
    r = CliRunner().invoke(cli, ["export", "--random", "-o", str(tmp_path / "m.onnx"), *flags])
    assert r.exit_code == 2 and why in r.output and not (tmp_path / "m.onnx").exists(), r.output


def test_the_random_nets_flags_with_a_checkpoint_are_refused(tmp_path):
    """`--width` with a checkpoint was ignored without a word (the checkpoint has its own)."""
    ck = tmp_path / "last.safetensors"
    ck.write_bytes(b"not read: refused first")
    for flags in (["--width", "0.5"], ["--kind", "ce"], ["--seed", "3"]):
        r = CliRunner().invoke(cli, ["export", str(ck), "-o", str(tmp_path / "m.onnx"), *flags])
        assert r.exit_code == 2 and "is for --random" in r.output and not (tmp_path / "m.onnx").exists(), r.output


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    r = CliRunner().invoke(cli, ["export", "--random", "--width", str(WIDTH), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "max |onnxruntime - pytorch|" in r.output and out.exists()
    assert read_meta(out).kind == "glcic"
    r = CliRunner().invoke(cli, ["export", "-o", str(out)])
    assert r.exit_code != 0 and "CHECKPOINT or --random" in r.output
    # a known failure through main(): one line, exit 2, no traceback
    with pytest.raises(SystemExit) as se:
        main(["export", "--random", "--width", str(WIDTH), "-o", str(tmp_path / "m.plan")])
    assert se.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'm.plan'}: export writes .onnx files; .plan files are made by "
                   "`fastfill build`"]


def _exit_code(argv) -> int:
    """fastfill's own entry point, as the shell runs it: the exit code."""
    with pytest.raises(SystemExit) as se:
        main(argv)
    return se.value.code


def test_fastfill_export_random_ce(tmp_path):
    out = tmp_path / "ce.onnx"
    assert _exit_code(["export", "--random", "--kind", "ce", "--width", str(WIDTH), "-o", str(out)]) == 0
    assert read_meta(out).kind == "ce"


def _mode(p):
    import os
    u = os.umask(0o022)
    os.umask(u)
    return p.stat().st_mode & 0o777, 0o666 & ~u


def test_export_never_overwrites_unless_asked(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(ex.ExportError, match="exists"):  # the default: overwrite=False
        ex.export_model(ex.random_model("glcic", WIDTH), out, log=lambda *_: None)
    args = ["export", "--random", "--width", str(WIDTH), "-o", str(out)]
    assert _exit_code(args) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert _exit_code(args + ["--force"]) == 0
    assert read_meta(out).kind == "glcic"
    got, want = _mode(out)
    assert got == want  # 0o666 & ~umask, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left
