"""Engines: the format table, metadata, load errors, ONNX Runtime, OpenVINO, TensorRT sidecar checks.

Runs the tiny checked-in models (tests/data/tiny_*.onnx, made by `fastfill export --random`).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastfill.engines import FORMATS, find_format, load_engine, read_meta, read_onnx_metadata
from fastfill.engines.base import EngineBase, ModelMeta, check_input
from fastfill.errors import EngineError, FastfillError, InputError

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_glcic.onnx"
TINY_CE = DATA / "tiny_ce.onnx"
HAS_OV = importlib.util.find_spec("openvino") is not None


def glcic_input(n=2, h=64, w=96, seed=0, mean=(0.5, 0.5, 0.5)):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 4, h, w), dtype=np.float32)
    mask = (rng.random((n, 1, h, w)) > 0.7).astype(np.float32)
    x[:, :3] = x[:, :3] * (1 - mask) + np.asarray(mean, np.float32).reshape(1, 3, 1, 1) * mask
    x[:, 3:] = mask
    return x


# ------------------------------------------------------------------------- table + metadata

def test_format_table_drives_the_loader():
    assert find_format("m.onnx").backend == "onnxruntime"
    assert find_format("m.onnx", "openvino").backend == "openvino"
    assert find_format("m.plan").backend == "tensorrt"
    assert find_format("M.ONNX").suffix == ".onnx"
    assert {f.suffix for f in FORMATS} == {".onnx", ".plan", ".safetensors", None}
    assert find_format("m.safetensors").backend == "torch"
    assert find_format(None, "classical").suffix is None
    with pytest.raises(EngineError, match="unknown model format"):
        find_format("m.pt")
    with pytest.raises(EngineError, match="unknown backend"):
        find_format("m.onnx", "tflite")
    with pytest.raises(EngineError, match="reads .plan"):
        find_format("m.onnx", "tensorrt")
    with pytest.raises(EngineError, match="backend 'classical' reads no model file, not .onnx"):
        find_format("m.onnx", "classical")


def test_meta_round_trip():
    m = ModelMeta("ce", (0.1, 0.2, 0.3), multiple=4, input_size=(128, 128), receptive_field=128,
                  channels=3, provenance={"checkpoint_sha256": "ab" * 32, "step": 7, "data": {"n": 3}})
    props = m.to_onnx_metadata()
    assert all(k.startswith("fastfill.") and isinstance(v, str) for k, v in props.items())
    back = ModelMeta.from_onnx_metadata(props)
    assert back == m and back.provenance == m.provenance
    g = ModelMeta("glcic", (0.5, 0.5, 0.5), receptive_field=307)
    assert ModelMeta.from_onnx_metadata(g.to_onnx_metadata()).input_size is None


def test_meta_bad_values():
    with pytest.raises(EngineError, match="no fastfill metadata"):
        ModelMeta.from_onnx_metadata({"other": "1"})
    bad = ModelMeta("glcic", (0.5, 0.5, 0.5)).to_onnx_metadata()
    bad["fastfill.mean"] = "0.5,oops"
    with pytest.raises(EngineError, match="bad fastfill metadata"):
        ModelMeta.from_onnx_metadata(bad)
    with pytest.raises(EngineError, match="fastfill.model = '' is not a model kind name"):
        ModelMeta("", (0.5, 0.5, 0.5))
    # the runtime needs no list of kinds: a new one runs by its channels, sizes and multiple
    assert ModelMeta("gan", (0.5, 0.5, 0.5), channels=3).kind == "gan"


def test_tiny_model_metadata_matches_onnx_package():
    onnx = pytest.importorskip("onnx")
    props = read_onnx_metadata(TINY)
    assert props == {p.key: p.value for p in onnx.load(str(TINY)).metadata_props}
    meta = read_meta(TINY)
    assert (meta.kind, meta.channels, meta.multiple, meta.input_size) == ("glcic", 4, 4, None)
    assert meta.receptive_field == 307  # same dilations as the full model
    assert meta.provenance["random_init"] is True
    ce = read_meta(TINY_CE)
    assert (ce.kind, ce.channels, ce.input_size) == ("ce", 3, (128, 128))
    assert TINY.stat().st_size < 1 << 20 and TINY_CE.stat().st_size < 1 << 20


# ------------------------------------------------------------------------- load errors

def _no_metadata_copy(tmp_path):
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(TINY))
    del m.metadata_props[:]
    p = tmp_path / "plain.onnx"
    onnx.save(m, str(p))
    return p


@pytest.mark.parametrize("case,match", [
    ("missing", "not found"),
    ("empty", "empty"),
    ("text", "not a valid ONNX"),
    ("truncated", "not a valid ONNX|cannot load"),
    ("no_metadata", "no fastfill metadata"),
    ("directory", "directory|not found|unknown model format"),
])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_load_errors_are_clear(tmp_path, case, match, backend):
    if backend == "openvino" and not HAS_OV:
        pytest.skip("openvino is not installed (pip install 'fastfill[openvino]')")
    p = tmp_path / "m.onnx"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "text":
        p.write_text("this is not a model, just some words\n" * 20)
    elif case == "truncated":
        p.write_bytes(TINY.read_bytes()[: TINY.stat().st_size // 2])
    elif case == "no_metadata":
        p = _no_metadata_copy(tmp_path)
    elif case == "directory":
        p.mkdir()
    with pytest.raises(FastfillError, match=match) as ei:
        load_engine(p, backend=backend)
    assert isinstance(ei.value, EngineError)
    assert "\n" not in str(ei.value)  # one line for the CLI


def test_default_model_path_message(monkeypatch, tmp_path):
    import fastfill.engines as E
    monkeypatch.setattr(E, "default_model_path", lambda: tmp_path / "default.onnx")
    with pytest.raises(EngineError, match="default model is not installed"):
        load_engine()


# ------------------------------------------------------------------------- ONNX Runtime

def test_ort_engine_runs_tiny_model():
    e = load_engine(TINY, backend="onnxruntime", threads=2)
    assert (e.name, e.device) == ("onnxruntime", "cpu")
    assert e.providers == ["CPUExecutionProvider"]
    x = glcic_input(mean=e.meta.mean)
    y = e.infer(x)
    assert y.shape == (2, 3, 64, 96) and y.dtype == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0 and y.std() > 1e-3  # a real, non-constant output
    # batch independence: each sample alone gives the same result
    np.testing.assert_allclose(e.infer(x[1:]), y[1:], atol=1e-6)
    # thread count and graph optimisation do not change the numbers
    e1 = load_engine(TINY, backend="onnxruntime", threads=1, optimization="disable")
    np.testing.assert_allclose(e1.infer(x), y, atol=1e-5)
    e.close()


def test_ort_ce_full_frame():
    e = load_engine(TINY_CE, threads=2)
    x = np.random.default_rng(1).random((2, 3, 128, 128), dtype=np.float32)
    y = e.infer(x)
    assert y.shape == (2, 3, 128, 128)
    # outside the prediction box the output is the input (the paste happens inside the graph)
    np.testing.assert_array_equal(y[..., :32, :], x[..., :32, :])
    np.testing.assert_array_equal(y[..., :, 96:], x[..., :, 96:])
    assert not np.allclose(y[..., 32:96, 32:96], x[..., 32:96, 32:96])


def test_infer_input_checks():
    e = load_engine(TINY)
    with pytest.raises(InputError, match="float32"):
        e.infer(np.zeros((1, 4, 64, 64), np.float64))
    with pytest.raises(InputError, match="4 channels"):
        e.infer(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InputError, match="multiples of 4"):
        e.infer(np.zeros((1, 4, 66, 64), np.float32))
    with pytest.raises(InputError, match=r"\[N, C, H, W\]"):
        e.infer(np.zeros((4, 64, 64), np.float32))
    ce = read_meta(TINY_CE)
    with pytest.raises(InputError, match="128x128"):
        check_input(ce, np.zeros((1, 3, 64, 64), np.float32))


def test_ort_gpu_request_falls_back_with_a_warning():
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed: no fallback to test")
    with pytest.warns(RuntimeWarning, match="not available.*CPUExecutionProvider.*pip uninstall -y onnxruntime && pip install 'onnxruntime-gpu"):
        e = load_engine(TINY, device="cuda")
    assert e.device == "cpu"
    with pytest.raises(EngineError, match="unknown onnxruntime device"):
        load_engine(TINY, device="tpu")


def test_strict_gpu_request_that_onnxruntime_cannot_start_is_an_error(monkeypatch):
    """ONNX Runtime lists CUDA but the session falls back to the CPU (its CUDA libraries missing):
    with --device cuda (strict) that is an EngineError, never a silent CPU run. Here a CPU-only
    onnxruntime is made to list CUDA, and the real session falls back."""
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed: CUDA may really start")
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    with pytest.raises(EngineError, match="could not start CUDAExecutionProvider and fell back to "
                                          "CPUExecutionProvider"), \
            pytest.warns(UserWarning, match="not in available provider names"):  # ORT's, here only
        load_engine(TINY, backend="onnxruntime", device="cuda", strict=True)


# ------------------------------------------------------------------------- OpenVINO

@pytest.mark.skipif(not HAS_OV, reason="openvino is not installed (pip install 'fastfill[openvino]')")
@pytest.mark.parametrize("model", [TINY, TINY_CE])
def test_openvino_matches_onnxruntime(tmp_path, model):
    ov_e = load_engine(model, backend="openvino", threads=2, cache_dir=tmp_path / "cache")
    ort_e = load_engine(model, threads=2)
    assert ov_e.name == "openvino" and ov_e.meta == ort_e.meta
    if ov_e.meta.kind == "glcic":
        xs = [glcic_input(1, 64, 64, seed=2), glcic_input(2, 96, 128, seed=3)]  # dynamic shapes
    else:
        xs = [np.random.default_rng(4).random((2, 3, 128, 128), dtype=np.float32)]
    for x in xs:
        np.testing.assert_allclose(ov_e.infer(x), ort_e.infer(x), atol=1e-5)
    assert any((tmp_path / "cache").iterdir())  # compiled blob cached for the next load
    again = load_engine(model, backend="openvino", threads=2, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(again.infer(xs[0]), ort_e.infer(xs[0]), atol=1e-5)


@pytest.mark.skipif(not HAS_OV, reason="openvino is not installed (pip install 'fastfill[openvino]')")
def test_an_openvino_engine_called_from_two_threads_gives_each_its_own_result(tmp_path):
    """One engine, one OpenVINO infer request: two threads took each other's results (a wrong
    fill, no error; 61 of 200 calls in a black-box test)."""
    import threading

    e = load_engine(TINY, backend="openvino", threads=1, cache_dir=tmp_path / "cache")
    xs = [glcic_input(1, 64, 64, seed=5), glcic_input(1, 64, 64, seed=6) * 0.25]
    want = [e.infer(x) for x in xs]
    assert np.abs(want[0] - want[1]).max() > 1e-3  # (the two are told apart)
    wrong = []

    def work(k):
        for _ in range(150):
            if np.abs(e.infer(xs[k]) - want[k]).max() > 1e-5:
                wrong.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"{len(wrong)} of 300 calls gave another call's result"


def test_openvino_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(EngineError, match=r"pip install 'fastfill\[openvino\]'"):
        load_engine(TINY, backend="openvino")


# ------------------------------------------------------------------------- TensorRT (no GPU needed)

def _fake_plan(tmp_path, **overrides):
    from fastfill.engines.tensorrt import SIDECAR_FORMAT, sha256_file
    plan = tmp_path / "glcic.plan"
    plan.write_bytes(b"not really a plan")
    side = {
        "format": SIDECAR_FORMAT, "version": 1, "meta": read_onnx_metadata(TINY),
        "tensorrt": "10.0.0", "gpu": "NVIDIA Imaginary", "compute_capability": "9.0",
        "precision": "fp16", "profiles": [{"min": [1, 4, 64, 64], "opt": [1, 4, 256, 256],
                                           "max": [2, 4, 512, 512], "text": "1x64x64:1x256x256:2x512x512"}],
        "onnx": "model.onnx", "plan_sha256": sha256_file(plan),
    }
    side.update(overrides)
    plan.with_suffix(".json").write_text(json.dumps(side))
    return plan, side


def test_tensorrt_sidecar_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan = tmp_path / "glcic.plan"
    plan.write_bytes(b"x")
    with pytest.raises(EngineError, match="sidecar glcic.json is missing.*fastfill build"):
        load_engine(plan)


def test_tensorrt_sidecar_checked_before_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # any import of tensorrt would fail
    plan, _ = _fake_plan(tmp_path, plan_sha256="0" * 64)
    with pytest.raises(EngineError, match="does not match its sidecar.*rebuild it on this machine: "
                                          "fastfill build model.onnx -o .*glcic.plan --fp16 --profile"):
        load_engine(plan)
    _fake_plan(tmp_path, format="something-else")
    with pytest.raises(EngineError, match="bad sidecar"):
        load_engine(plan)


def test_openvino_missing_names_what_is_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(EngineError, match=r"OpenVINO back-end is not installed: pip install "
                                          r"'fastfill\[openvino\]' \(installed: onnxruntime\)"):
        load_engine(TINY, backend="openvino")


def test_tensorrt_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan, _ = _fake_plan(tmp_path)
    with pytest.raises(EngineError, match=r"TensorRT is not installed: pip install 'fastfill\[trt\]'") as ei:
        load_engine(plan)
    assert "\n" not in str(ei.value)


def test_tensorrt_mismatch_says_rebuild(tmp_path):
    from fastfill.engines.tensorrt import check_sidecar, read_sidecar
    plan, side = _fake_plan(tmp_path)
    assert read_sidecar(plan)["gpu"] == "NVIDIA Imaginary"
    check_sidecar(side, {"tensorrt": "10.0.0", "gpu": "NVIDIA Imaginary", "compute_capability": "9.0"}, plan)
    with pytest.raises(EngineError, match=r"TensorRT 10\.0\.0 in the plan, 10\.3\.0 here.*rebuild"):
        check_sidecar(side, {"tensorrt": "10.3.0", "gpu": "NVIDIA Imaginary", "compute_capability": "9.0"}, plan)
    with pytest.raises(EngineError, match=r"GPU NVIDIA Imaginary in the plan, NVIDIA L4 here; compute "
                                          r"capability 9\.0 in the plan, 8\.9 here.*rebuild"):
        check_sidecar(side, {"tensorrt": "10.0.0", "gpu": "NVIDIA L4", "compute_capability": "8.9"}, plan)


# ------------------------------------------------------------------------- TensorRT on a GPU

@pytest.mark.gpu
def test_tensorrt_fp16_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'fastfill[trt]')")
    from fastfill.build import build_engine
    plan = tmp_path / "tiny.plan"
    build_engine(TINY, plan, precision="fp16", profiles=["1x64x64:1x128x128:2x256x256"],
                 timing_cache=tmp_path / "timing.cache")
    trt_e = load_engine(plan)
    ort_e = load_engine(TINY)
    assert (trt_e.name, trt_e.device) == ("tensorrt", "cuda")
    for shape in [(1, 64, 64), (2, 128, 192)]:
        x = glcic_input(shape[0], shape[1], shape[2], seed=5, mean=ort_e.meta.mean)
        a, b = trt_e.infer(x), ort_e.infer(x)
        psnr = 10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-20))
        print(f"TensorRT fp16 vs ONNX Runtime fp32 {x.shape}: PSNR {psnr:.1f} dB, max {np.abs(a - b).max():.2e}")
        assert psnr >= 40
    with pytest.raises(InputError, match="outside the engine's profiles"):
        trt_e.infer(glcic_input(1, 512, 512))
    trt_e.close()


@pytest.mark.gpu
def test_tensorrt_uint8_path_matches_host_path(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'fastfill[trt]')")
    from fastfill import ops
    from fastfill.build import build_engine
    plan = tmp_path / "tiny32.plan"
    build_engine(TINY, plan, precision="fp32", profiles=["1x64x64:1x128x128:2x256x256"])
    e = load_engine(plan)
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (2, 70, 90, 3), dtype=np.uint8)
    masks = np.zeros((2, 70, 90), np.uint8)
    masks[:, 20:50, 30:60] = 255
    got = e.run_uint8(images, masks)
    x = ops.prepare_reference(images, masks, e.meta.mean, e.meta.multiple)
    want = ops.composite_reference(load_engine(TINY).infer(x), images, masks)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    np.testing.assert_array_equal(got[masks == 0], images[masks == 0])


def test_ort_spinning_off_by_default():
    def spin(e):
        return e.session.get_session_options().get_session_config_entry(
            "session.intra_op.allow_spinning")

    e = load_engine(TINY, backend="onnxruntime", threads=1)
    assert spin(e) == "0" and e.spinning is False
    e2 = load_engine(TINY, threads=1, spinning=True)  # an ONNX Runtime option: auto picks it
    assert spin(e2) == "1"
    x = glcic_input(1, 32, 32)
    np.testing.assert_array_equal(e.infer(x), e2.infer(x))


def test_accepts_matches_check_input():
    e = load_engine(TINY)
    assert e.accepts((2, 4, 64, 96)) is None
    for shape, match in [((1, 3, 64, 64), "4 channels"), ((1, 4, 66, 64), "multiples of 4"),
                         ((0, 4, 64, 64), r"\[N, C, H, W\]")]:
        reason = e.accepts(shape)
        assert reason is not None and match.replace("\\", "") in reason
        with pytest.raises(InputError, match=match):
            check_input(e.meta, np.zeros(shape, np.float32))


def test_tensorrt_accepts_checks_the_profiles():
    """No TensorRT needed: `accepts` reads only the profiles from the sidecar."""
    from fastfill.engines.tensorrt import TensorRTEngine

    e = TensorRTEngine.__new__(TensorRTEngine)
    e.meta = read_meta(TINY)
    e.profiles = [((1, 4, 64, 64), (1, 4, 256, 256), (4, 4, 512, 512))]
    assert e.accepts((1, 4, 128, 256)) is None and e.accepts((4, 4, 512, 512)) is None
    for shape in [(1, 4, 1024, 64), (1, 4, 32, 64), (8, 4, 128, 128)]:
        reason = e.accepts(shape)
        assert "outside the engine's profiles (N x C x H x W: 1-4x4x64-512x64-512)" in reason
    assert "4 channels" in e.accepts((1, 3, 128, 128))
    with pytest.raises(InputError, match="outside the engine's profiles"):
        e._choose_profile((1, 4, 1024, 64))
    assert e._choose_profile((2, 4, 64, 64)) == 0


def test_options_a_backend_does_not_take_are_one_clear_error(tmp_path, monkeypatch):
    """A .plan with --threads is one EngineError naming what the back-end takes, before
    anything is imported (tensorrt here is a module that cannot load), not an internal error."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan, _ = _fake_plan(tmp_path)
    with pytest.raises(EngineError, match=r"the tensorrt back-end takes no 'threads' option \(it takes: device_id\)"):
        load_engine(plan, threads=2)
    with pytest.raises(EngineError, match="takes no 'thread' option"):
        load_engine(TINY, thread=2)
    # a GPU's number where the model runs on the CPU was dropped without a word
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(EngineError, match=r"device_id=3 names a GPU, but onnxruntime runs this model on the CPU"):
            load_engine(TINY, backend="onnxruntime", device_id=3)
    assert load_engine(TINY, backend="onnxruntime", device_id=0).device in ("cpu", "cuda")
    from fastfill import Inpainter
    with pytest.raises(EngineError, match="takes no 'threads' option"):
        Inpainter(str(plan), threads=4)
    assert load_engine(TINY, threads=1).meta.kind == "glcic"  # a real option still works


def test_cli_plan_with_threads_is_exit_2_and_one_line(tmp_path, monkeypatch):
    from PIL import Image

    from conftest import invoke
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan, _ = _fake_plan(tmp_path)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "m.png")
    code, _, stderr = invoke("run", "--engine", plan, "--threads", "2", img, tmp_path / "m.png",
                             "-o", tmp_path / "out.png")
    assert code == 2 and "takes no 'threads' option" in stderr
    assert "internal error" not in stderr and len(stderr.strip().splitlines()) == 1


def test_output_shape_breaking_the_contract_is_refused_at_load(tmp_path):
    """A model returning 4 channels is refused when it is loaded, not at its first inference."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    meta = ModelMeta("glcic", (0.5, 0.5, 0.5), channels=4)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, "H", "W"])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, "H", "W"])
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id4", [inp], [out])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in meta.to_onnx_metadata().items():
        m.metadata_props.add(key=k, value=v)
    path = tmp_path / "four.onnx"
    onnx.save(m, path)
    with pytest.raises(EngineError, match=r"breaks the model contract: .*output \['N', 4, 'H', 'W'\] \[N, 3, H, W\]"):
        load_engine(path)
    assert load_engine(TINY).meta.channels == 4  # the real one loads
    pytest.importorskip("openvino")
    with pytest.raises(EngineError, match=r"breaks the model contract: .* should be \[N, 4, H, W\] and output \[.*4"):
        load_engine(path, backend="openvino", cache_dir=False)
    assert load_engine(TINY, backend="openvino", cache_dir=False).meta.channels == 4


def test_openvino_load_error_keeps_the_reason_on_one_line():
    from fastfill.engines.openvino import _one_line

    e = RuntimeError("Exception from src/inference/src/cpp/core.cpp:112:\n"
                     "Exception from src/frontends/onnx/frontend/src/frontend.cpp:124:\n"
                     "Check 'false' failed at src/frontends/onnx/frontend/src/core/graph.cpp:171:\n"
                     "OpenVINO does not support the following ONNX operations: Foo\n")
    assert _one_line(e) == "OpenVINO does not support the following ONNX operations: Foo"
    assert len(_one_line(RuntimeError("x" * 1000))) == 400


@pytest.mark.parametrize("change,match", [
    ({"meta": "glcic"}, "'meta' is a str, expected a dict"),
    ({"profiles": "1x4x64x64"}, "'profiles' is a str, expected a list"),
    ({"profiles": ["x"]}, "a profile is a str"),
    ({"plan_sha256": 5}, "'plan_sha256' is a int"),
])
def test_sidecar_values_of_the_wrong_type_are_one_line(tmp_path, monkeypatch, change, match):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan, side = _fake_plan(tmp_path)
    side.update(change)
    plan.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(EngineError, match=match) as ei:
        load_engine(plan)
    assert "bad sidecar" in str(ei.value) and "\n" not in str(ei.value)


def test_the_base_class_checks_every_backends_input_once():
    """EngineBase.infer validates against the model contract, then calls the back-end's _infer:
    no back-end sees an input that breaks the contract."""
    from fastfill.engines.base import EngineBase

    seen = []

    class Recorder(EngineBase):
        meta = ModelMeta("glcic", (0.5, 0.5, 0.5), multiple=4, channels=4)

        def _infer(self, x):
            seen.append(x.shape)
            return x[:, :3]

    e = Recorder()
    assert e.infer(np.zeros((1, 4, 8, 12), np.float32)).shape == (1, 3, 8, 12)
    for bad in (np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 4, 6, 8), np.float32),
                np.zeros((1, 4, 8, 8), np.float64)):
        with pytest.raises(InputError):
            e.infer(bad)
    assert seen == [(1, 4, 8, 12)]
    for fmt in FORMATS:  # no back-end overrides the check
        engine_cls = fmt.engine_class()
        assert "infer" not in vars(engine_cls) and "_infer" in vars(engine_cls)


def test_auto_backend_measures_the_installed_cpu_back_ends_and_says_what_it_measured():
    pytest.importorskip("openvino")
    from fastfill.engines.auto import MeasuredEngine

    auto = load_engine(TINY, threads=1)
    assert isinstance(auto, MeasuredEngine) and auto.name == "auto"
    assert [e.name for e in auto.engines] == ["openvino", "onnxruntime"]
    assert auto.selection.startswith("auto (measures openvino and onnxruntime")
    named = load_engine(TINY, backend="onnxruntime", threads=1)
    assert named.name == "onnxruntime" and named.selection == "onnxruntime (named)"
    assert isinstance(load_engine(TINY, backend="auto"), MeasuredEngine)
    x = glcic_input(1, 32, 32, mean=auto.meta.mean)
    np.testing.assert_allclose(auto.infer(x), named.infer(x), atol=1e-4)
    (key, times), = auto.measured.items()
    assert auto.choice[key].name == min(times, key=times.get)  # the fastest measured
    assert auto.selection.startswith(f"auto (measured: {auto.choice[key].name} at 1x32x32 (openvino ")
    assert auto.runs_on == auto.choice[key].runs_on
    auto.close()


class _Timed(EngineBase):
    """A fake back-end whose every call costs ``ms`` on the fake clock below."""

    def __init__(self, name, ms, clock, meta):
        self.name, self.ms, self.clock, self.meta, self.calls = name, ms, clock, meta, 0

    def _infer(self, x):
        self.calls += 1
        self.clock[0] += self.ms / 1e3
        return np.full((x.shape[0], 3) + x.shape[2:], self.ms, np.float32)

    @property
    def runs_on(self):
        return self.name.upper()


def test_measured_engine_keeps_the_fastest_per_size_class_and_probes_each_class_once(monkeypatch):
    import fastfill.engines.auto as auto_mod
    from fastfill.engines.auto import PROBE_RUNS, MeasuredEngine

    clock = [0.0]
    monkeypatch.setattr(auto_mod.time, "perf_counter", lambda: clock[0])
    meta = ModelMeta("glcic", (0.5, 0.5, 0.5))
    slow, fast = _Timed("slow", 9.0, clock, meta), _Timed("fast", 2.0, clock, meta)
    e = MeasuredEngine([slow, fast], ["third: not installed"])
    x = np.zeros((1, 4, 64, 64), np.float32)
    out = e.infer(x)
    assert (out == 2.0).all()  # the answer is the chosen back-end's own
    assert slow.calls == fast.calls == 1 + PROBE_RUNS
    assert e.measured[e.size_class(x.shape)] == pytest.approx({"slow": 9.0, "fast": 2.0})
    assert e.selection == ("auto (measured: fast at 1x64x64 (slow 9.0 ms, fast 2.0 ms); "
                           "third: not installed)")
    e.infer(np.zeros((1, 4, 60, 68), np.float32))  # about the same area: no new probe
    assert slow.calls == 1 + PROBE_RUNS and fast.calls == 2 + PROBE_RUNS
    e.infer(np.zeros((1, 4, 256, 256), np.float32))  # 16x the area: measured again
    assert slow.calls == 2 + 2 * PROBE_RUNS and e.runs_on == "FAST"
    slow.ms = 1.0  # a class where the other one wins
    out = e.infer(np.zeros((2, 4, 64, 64), np.float32))
    assert (out == 1.0).all() and e.choice[(2, 4, 24)] is slow


def test_auto_backend_without_openvino_or_with_ort_options(monkeypatch):
    import fastfill.engines as eng

    e = load_engine(TINY, spinning=False)  # an option only ONNX Runtime takes
    assert e.name == "onnxruntime" and "openvino takes no spinning option" in e.selection
    real = eng.find_spec
    monkeypatch.setattr(eng, "find_spec", lambda name: None if name == "openvino" else real(name))
    e = load_engine(TINY)
    assert e.name == "onnxruntime"
    assert "openvino is not installed (pip install 'fastfill[openvino]')" in e.selection


@pytest.mark.skipif(not HAS_OV, reason="openvino is not installed (pip install 'fastfill[openvino]')")
def _run_outside_ci(code: str, home) -> str:
    """``code`` in a real Python process with ``home`` as its home and no CI variable (as a
    user's shell runs it): its standard output, after checking that it exited 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env["HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_two_threads_loading_openvino_at_once_leave_no_ci_variable(tmp_path):
    """The telemetry switch (the ``CI`` variable) is set around the import and removed after: a
    second thread loading an OpenVINO model while the first is inside that import (held there
    by a slow finder, a real process) must not read the first one's setting and put it back for
    good."""
    pytest.importorskip("openvino")
    code = ("import os, sys, threading, time\n"
            "class Slow:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'openvino':\n"
            "            started.set()\n"
            "            time.sleep(0.5)\n"
            "        return None\n"
            "started = threading.Event()\n"
            "sys.meta_path.insert(0, Slow())\n"
            "from fastfill.engines.openvino import _import_openvino\n"
            "a = threading.Thread(target=_import_openvino)\n"
            "a.start()\n"
            "started.wait(10)\n"
            "b = threading.Thread(target=_import_openvino)\n"
            "b.start()\n"
            "a.join(); b.join()\n"
            "print('CI' in os.environ, 'openvino' in sys.modules)\n")
    out = _run_outside_ci(code, tmp_path)
    assert out.split() == ["False", "True"], out


def test_the_default_inpainter_sends_no_openvino_telemetry(tmp_path):
    """``Inpainter()`` probes the shipped model on OpenVINO when it is installed, and ``import
    openvino`` would send usage telemetry (a forked process posting to Google Analytics, a client
    id written under ~/intel) to a user with no opt-out file: a real process with an empty home,
    no CI variable, declines it, writes nothing there, and leaves the environment as it was."""
    home = tmp_path / "home"
    home.mkdir()
    code = ("import os, sys\n"
            "from fastfill import Inpainter\n"
            "Inpainter()\n"
            "assert 'openvino' in sys.modules, 'the probe did not load OpenVINO'\n"
            "import openvino_telemetry\n"
            "t = openvino_telemetry.Telemetry()\n"
            "print('consent', t.consent, 'CI' in os.environ)\n")
    out = _run_outside_ci(code, home)
    assert "consent False False" in out, out
    assert not (home / "intel").exists() or not any((home / "intel").rglob("*ga_cid*"))
