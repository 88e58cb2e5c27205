"""`fastfill build`: profiles, the FP16 graph conversion (run on ONNX Runtime), the one-line refusal
without a GPU or TensorRT, and (gpu-marked) a real build with its sidecar and timing cache."""

import json
from pathlib import Path

import numpy as np
import pytest

from fastfill.build import TRT_OPS, build_engine, check_environment, convert_fp16, parse_profile
from fastfill.cli import main
from fastfill.engines import read_meta
from fastfill.errors import BuildError, EngineError

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_glcic.onnx"
TINY_CE = DATA / "tiny_ce.onnx"


def _can_build():
    try:
        check_environment()
        return True
    except BuildError:
        return False


def test_parse_profile():
    meta = read_meta(TINY)
    p = parse_profile("1x64x64:2x256x512:4x1024x1024", meta)
    assert (p.min, p.opt, p.max) == ((1, 4, 64, 64), (2, 4, 256, 512), (4, 4, 1024, 1024))
    assert parse_profile("64x64:256x256:512x512", meta).min == (1, 4, 64, 64)
    for bad, why in [("1x64x64:1x32x32:1x512x512", "min <= opt <= max"),
                     ("1x66x64:1x128x128:1x512x512", "multiples of 4"),
                     ("1x64x64:1x128x128", "min:opt:max"),
                     ("axb:1x1x1:2x2x2", "NxHxW")]:
        with pytest.raises(BuildError, match=why):
            parse_profile(bad, meta)
    ce = read_meta(TINY_CE)
    assert parse_profile("1x128x128:8x128x128:32x128x128", ce).max == (32, 3, 128, 128)
    with pytest.raises(BuildError, match="takes 128x128 inputs, got 64x64"):
        parse_profile("1x64x64:1x128x128:1x128x128", ce)


@pytest.mark.parametrize("model", [TINY, TINY_CE])
def test_fp16_graph_runs_and_matches(model):
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    data = model.read_bytes()
    half = convert_fp16(data)
    m = onnx.load_from_string(half)
    T = onnx.TensorProto
    assert m.graph.input[0].type.tensor_type.elem_type == T.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == T.FLOAT
    float_inits = [t for t in m.graph.initializer if t.data_type in (T.FLOAT, T.FLOAT16)]
    assert float_inits and all(t.data_type == T.FLOAT16 for t in float_inits)  # all weights fp16
    assert {n.op_type for n in m.graph.node} <= TRT_OPS | {"Cast"}
    if read_meta(model).kind == "glcic":  # the final Sigmoid runs in float32
        sig = [n for n in m.graph.node if n.op_type == "Sigmoid"]
        assert sig and sig[-1].output[0] == "output"
        cast = next(n for n in m.graph.node if n.output[0] == sig[-1].input[0])
        assert cast.op_type == "Cast" and cast.attribute[0].i == T.FLOAT
    c = read_meta(model).channels
    x = np.random.default_rng(0).random((2, c, 128, 128), dtype=np.float32)
    s32 = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    s16 = ort.InferenceSession(half, providers=["CPUExecutionProvider"])
    a = s32.run(["output"], {"input": x})[0]
    b = s16.run(["output"], {"input": x})[0]
    assert b.dtype == np.float32 and b.shape == a.shape
    psnr = 10 * np.log10(1.0 / float(np.mean((a - b) ** 2)))
    assert 40 <= psnr and np.abs(a - b).max() > 0  # really computed in fp16, and close


def test_convert_fp16_refuses_unknown_ops():
    onnx = pytest.importorskip("onnx")
    h = onnx.helper
    g = h.make_graph([h.make_node("Softmax", ["input"], ["output"])], "g",
                     [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 4])],
                     [h.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 4])])
    with pytest.raises(BuildError, match="Softmax"):
        convert_fp16(h.make_model(g).SerializeToString())


@pytest.mark.skipif(_can_build(), reason="this machine has a GPU and TensorRT")
def test_build_without_gpu_or_tensorrt_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(BuildError, match=r"cannot build a TensorRT engine here: .*pip install 'fastfill\[trt\]'"
                                         r"|TensorRT needs an NVIDIA GPU"):
        build_engine(TINY, tmp_path / "m.plan")
    with pytest.raises(SystemExit) as se:
        main(["build", str(TINY), "-o", str(tmp_path / "m.plan"), "--fp16",
              "--profile", "1x64x64:1x256x256:2x512x512", "--workspace", "512"])
    assert se.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot build a TensorRT engine here")
    assert not (tmp_path / "m.plan").exists() and not (tmp_path / "m.json").exists()


def test_build_argument_errors(tmp_path, capsys):
    with pytest.raises(BuildError, match=r"written as \.plan"):
        build_engine(TINY, tmp_path / "m.engine")
    with pytest.raises(BuildError, match="bad --profile"):  # checked before looking for a GPU
        build_engine(TINY, tmp_path / "m.plan", profiles=["1x64x64"])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"")
    with pytest.raises(BuildError, match="empty"):
        build_engine(bad, tmp_path / "m.plan")
    (tmp_path / "exists.plan").write_bytes(b"x")
    with pytest.raises(BuildError, match="--force"):
        build_engine(TINY, tmp_path / "exists.plan")
    # the plan's sidecar (<stem>.json) was written over a file of that name without a word, and
    # a timing cache named as the model replaced the model with the cache
    (tmp_path / "notes.json").write_text('{"my": "notes"}')
    with pytest.raises(BuildError, match="notes.json exists: the plan's sidecar would replace it"):
        build_engine(TINY, tmp_path / "notes.plan")
    assert (tmp_path / "notes.json").read_text() == '{"my": "notes"}'
    with pytest.raises(BuildError, match="--timing-cache .* is the model"):
        build_engine(TINY, tmp_path / "m.plan", timing_cache=TINY)


def test_gpu_info_reports_why(monkeypatch):
    """Without a usable GPU the error names what is missing; with one, the numbers are the
    native module's own device count (two independent probes must agree)."""
    import fastfill.engines.tensorrt as T
    from fastfill import ops

    native = ops.build_info()
    try:
        info = T.gpu_info()
    except EngineError as e:
        assert "GPU" in str(e) or "libcuda" in str(e)
        assert native["cuda_device_count"] == 0
    else:
        assert info["count"] >= 1 and "." in info["compute_capability"]
        if "cuda" in native["backends"]:
            assert native["cuda_device_count"] == info["count"]
    # a missing driver library is named, whatever this machine has
    monkeypatch.setattr(T.ctypes, "CDLL", lambda *a, **k: (_ for _ in ()).throw(OSError("libcuda.so.1: cannot open")))
    with pytest.raises(EngineError, match="libcuda|GPU"):
        T.gpu_info()


@pytest.mark.gpu
def test_build_writes_plan_sidecar_and_timing_cache(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'fastfill[trt]')")
    import tensorrt as trt
    from fastfill.engines.tensorrt import sha256_file
    plan, cache = tmp_path / "g.plan", tmp_path / "timing.cache"
    side = build_engine(TINY, plan, profiles=["1x64x64:1x128x128:2x256x256", "1x256x256:1x512x512:1x512x512"],
                        timing_cache=cache, workspace_mb=256)
    on_disk = json.loads(plan.with_suffix(".json").read_text())
    assert on_disk == side
    assert side["tensorrt"] == trt.__version__ and side["precision"] == "fp16" and side["strongly_typed"]
    assert side["onnx_sha256"] == sha256_file(TINY) and side["plan_sha256"] == sha256_file(plan)
    assert len(side["profiles"]) == 2 and cache.stat().st_size > 0
    import os
    u = os.umask(0o022)
    os.umask(u)
    for f in (plan, plan.with_suffix(".json"), cache):
        assert f.stat().st_mode & 0o777 == 0o666 & ~u, f  # not mkstemp's 0600
    size = cache.stat().st_size
    build_engine(TINY, tmp_path / "g2.plan", profiles=["1x64x64:1x128x128:2x256x256"], timing_cache=cache)
    assert cache.stat().st_size >= size  # reused and kept
    print(f"built with TensorRT {trt.__version__} on {side['gpu']} (sm {side['compute_capability']})")


def test_plan_files_are_written_atomically_with_the_usual_mode(tmp_path):
    """Plans, sidecars and caches go through io.write_file as build calls it: 0o666 & ~umask
    (not mkstemp's 0600); a plan that appeared meanwhile is not replaced without --force;
    nothing temporary is left."""
    import os

    from fastfill.files.codecs import write_file

    u = os.umask(0o022)
    os.umask(u)
    p = tmp_path / "sub" / "g.plan"
    write_file(p, b"plan", overwrite=False, error=BuildError, force="--force")
    assert p.read_bytes() == b"plan" and p.stat().st_mode & 0o777 == 0o666 & ~u
    with pytest.raises(BuildError, match="exists .*--force"):
        write_file(p, b"other", overwrite=False, error=BuildError, force="--force")
    write_file(p, b"new", overwrite=True, error=BuildError)  # sidecars and the timing cache are replaced
    assert p.read_bytes() == b"new" and [q.name for q in p.parent.iterdir()] == ["g.plan"]


def test_fp16_graph_keeps_the_residual_head_in_float32(tmp_path):
    """An untrained residual model returns its prefill; in FP16 it still does, bit for bit:
    the input's RGB (Slice), the addition and the clip stay float32, only the correction is fp16."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    from train import export as ex
    from train.models import CompletionNet

    torch.manual_seed(0)
    path = tmp_path / "res.onnx"
    ex.export_model(CompletionNet(0.0625, head="residual", norm="none"), path, fill="harmonic",
                    log=lambda *_: None)
    half = convert_fp16(path.read_bytes())
    m = onnx.load_from_string(half)
    T = onnx.TensorProto
    kinds = {n.op_type: n for n in m.graph.node}
    assert {"Slice", "Add", "Clip"} <= set(kinds)
    x = np.random.default_rng(0).random((1, 4, 64, 64), dtype=np.float32)
    out = ort.InferenceSession(half, providers=["CPUExecutionProvider"]).run(["output"], {"input": x})[0]
    np.testing.assert_array_equal(out, x[:, :3])
    assert any(t.data_type == T.FLOAT16 for t in m.graph.initializer)  # the trunk is fp16
