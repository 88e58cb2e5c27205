"""The engine contract: every engine is an EngineBase that declares what it can do; the format
table's rows (options from their constructors, devices, the classical and PyTorch rows) drive
every loader; the fill table is the kernels' list; an option that cannot apply is an error.

Runs the tiny checked-in models and small ONNX graphs built here with the `onnx` package.
"""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke
from fastfill import ops
from fastfill.engines import (CLASSICAL, DEVICE_KINDS, DEVICES, FORMATS, Device, device_options, find_format,
                              load_engine, open_engine, parse_device)
from fastfill.engines.base import EngineBase, ForeignEngine, ModelMeta, as_engine
from fastfill.errors import EngineError, InputError
from fastfill.fills import FILLS
from fastfill.inpainter import Inpainter

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny_glcic.onnx"
MEAN = (0.5, 0.5, 0.5)


def _image_and_mask(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[10:26, 14:40] = 255
    return image, mask


def _identity_model(tmp_path, fill: str) -> Path:
    """A GLCIC-shaped model that returns its input's RGB (its prefill), declaring ``fill``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    meta = ModelMeta("glcic", MEAN, multiple=4, receptive_field=20, channels=4, fill=fill)
    io = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, "H", "W"]),
          helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    consts = [helper.make_tensor(n, TensorProto.INT64, [1], [v])
              for n, v in (("starts", 0), ("ends", 3), ("axes", 1))]
    node = helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["output"])
    model = helper.make_model(helper.make_graph([node], "identity", io[:1], io[1:], consts),
                              opset_imports=[helper.make_opsetid("", 17)])
    for k, v in meta.to_onnx_metadata().items():
        model.metadata_props.add(key=k, value=v)
    path = tmp_path / f"identity-{fill}.onnx"
    onnx.save(model, path)
    return path


# ------------------------------------------------------------------------- the format table

def _constructor_options(fmt):
    """The keyword options of a row's engine constructor (after the model file, for file rows)."""
    params = list(inspect.signature(fmt.engine_class().__init__).parameters.values())[1:]
    if fmt.suffix is not None:
        params = params[1:]  # the model file
    return tuple(p.name for p in params)


def test_every_row_takes_the_options_of_its_constructor_and_is_an_engine_base():
    for fmt in FORMATS:
        cls = fmt.engine_class()
        assert issubclass(cls, EngineBase), fmt.backend
        assert sorted(_constructor_options(fmt)) == sorted(fmt.options), fmt.backend
        for kind, opts in fmt.devices.items():  # what a device sets, the constructor takes
            assert kind in DEVICE_KINDS and set(opts) <= set(fmt.options), (fmt.backend, kind)
        if any(Device(k).gpu for k in fmt.devices):
            assert "device_id" in fmt.options, fmt.backend  # where cuda:N's index goes


def test_devices_come_from_the_table():
    assert DEVICES == ("auto", "cpu", "cuda", "cuda:N", "tensorrt", "openvino")
    assert parse_device("cuda:3") == Device("cuda", 3) and parse_device(None) == Device("auto")
    assert parse_device(Device("cpu")) == Device("cpu") and str(Device("cuda", 1)) == "cuda:1"
    for bad in ("gpu", "cpu:1", "cuda:x", "cuda:", "tensorrt:1", "CUDA"):
        with pytest.raises(EngineError, match=f"unknown device '{re.escape(bad)}'; choose one of: auto, cpu"):
            parse_device(bad)
    assert device_options("m.onnx", "cpu") == (None, {})  # two CPU back-ends: the automatic choice
    assert device_options("m.onnx", "openvino") == ("openvino", {})
    assert device_options("m.onnx", "tensorrt") == ("onnxruntime", {"device": "tensorrt", "device_id": 0,
                                                                    "strict": True})
    assert device_options("m.safetensors", "cpu") == ("torch", {})
    with pytest.raises(EngineError, match=r"a \.safetensors file \(torch\) runs on the CPU only, not on "
                                          r"device 'cuda:1'"):
        device_options("m.safetensors", "cuda:1")
    with pytest.raises(EngineError, match="a classical fill runs on the CPU only, not on device 'cuda'"):
        Inpainter(method="harmonic", device="cuda")
    assert Inpainter(method="harmonic", device="cpu").engine.name == "classical:harmonic"


def test_the_runtime_imports_train_only_through_the_torch_row(tmp_path):
    torch = pytest.importorskip("torch")
    code = ("import sys, fastfill, fastfill.cli, fastfill.engines, fastfill.inpainter, fastfill.bench\n"
            "from fastfill.engines import FORMATS\n"
            "[f.backend for f in FORMATS]\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('train', 'torch')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
    from train.checkpoint import save_checkpoint
    from train.models import CompletionNet

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "g", models={"G": CompletionNet(width=0.0625).eval()},
                           meta={"kind": "glcic", "mean": list(MEAN), "step": 0, "phase": "completion"})
    with Inpainter(str(ckpt), threads=1) as inp:
        assert type(inp.engine).__module__ == "train.torch_engine" and inp.engine.name == "torch"
        assert inp.engine.selection == "torch (the back-end for .safetensors files)"
        assert inp.engine.flops(32, 32) > 0
        image, mask = _image_and_mask()
        out = inp(image, mask)
        assert np.array_equal(out[mask == 0], image[mask == 0]) and not np.array_equal(out, image)


def test_a_row_whose_package_is_missing_is_one_line(tmp_path, monkeypatch):
    ckpt = tmp_path / "g.safetensors"
    ckpt.write_bytes(b"x" * 16)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "train.torch_engine", raising=False)
    with pytest.raises(EngineError, match=r"^the torch back-end: training needs torch: pip install torch "
                                          r"--index-url \S+/cpu && pip install 'fastfill\[train\]'"):
        load_engine(ckpt)


def test_the_classical_row_is_a_back_end_like_the_others():
    fmt = find_format(None, CLASSICAL)
    assert fmt.suffix is None and fmt.devices.keys() == {"cpu"}
    e = open_engine(method="patch")
    assert e.name == "classical:patch" and e.meta.fill == "patch" and e.path is None
    assert load_engine(backend=CLASSICAL, method="mean").meta.fill == "mean"
    with pytest.raises(EngineError, match="the classical back-end reads no model file"):
        load_engine(TINY, backend=CLASSICAL)
    with pytest.raises(EngineError, match="method 'patch' replaces the model: give no model file or back-end"):
        open_engine(TINY, method="patch")
    with pytest.raises(EngineError, match="method 'patch' replaces the model"):
        open_engine(backend="onnxruntime", method="patch")


# ------------------------------------------------------------------------- declared capabilities

def _engine_probes(text: str) -> list[str]:
    return re.findall(r"(?:getattr|hasattr)\(\s*(?:self\.|inp\.)?(?:engines\[\d+\]|(?:engine|eng|net)\b)[^)]*\)",
                      text)


def test_nothing_probes_an_engine_for_what_it_can_do():
    for probe in ('getattr(eng, "selection", None)', 'hasattr(self.engine, "close")',
                  'getattr(engines[0], "path", None)'):
        assert _engine_probes(f"x = {probe}") == [probe]  # the scan sees a probe
    assert _engine_probes('getattr(e, "strerror", None)') == []
    found = {}
    for path in sorted((ROOT / "fastfill").rglob("*.py")):
        probes = _engine_probes(path.read_text())
        if probes:
            found[str(path.relative_to(ROOT))] = probes
    assert found == {}


def test_every_capability_is_declared_on_the_base_class():
    e = load_engine(TINY, backend="onnxruntime", threads=1)
    for name in ("name", "device", "path", "selection", "runs_on", "device_path", "narrow_limits",
                 "fill_options"):
        assert name in dir(EngineBase), name
    assert (e.path, e.selection, e.runs_on) == (TINY, "onnxruntime (named)", "CPUExecutionProvider")
    assert (e.device_path, e.narrow_limits, e.flops(64, 64)) == (False, False, None)
    with pytest.raises(EngineError, match="onnxruntime has no uint8 device path"):
        e.run_uint8(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), np.uint8))


class _Foreign:
    """A caller's own engine, not an EngineBase, that claims more than infer."""

    device_path = True  # not honoured: declarations belong to EngineBase subclasses
    narrow_limits = True

    def __init__(self, inner):
        self.meta, self.name, self.device, self.inner, self.calls = inner.meta, "mine", "cpu", inner, 0

    def infer(self, x):
        self.calls += 1
        return self.inner.infer(x)

    def accepts(self, shape):
        return "never"

    def run_uint8(self, images, masks):
        raise AssertionError("a foreign engine's claims are not taken on trust")

    def close(self):
        self.closed = True


def test_a_foreign_engine_is_adapted_once_and_declares_nothing():
    ort = load_engine(TINY, backend="onnxruntime", threads=1)
    foreign = _Foreign(ort)
    adapted = as_engine(foreign)
    assert isinstance(adapted, ForeignEngine) and as_engine(adapted) is adapted and as_engine(ort) is ort
    assert (adapted.name, adapted.device_path, adapted.narrow_limits, adapted.path) == ("mine", False, False, None)
    image, mask = _image_and_mask()
    with Inpainter(foreign) as inp:
        assert inp.engine.inner is foreign
        np.testing.assert_array_equal(inp(image, mask), Inpainter(ort)(image, mask))
    assert foreign.calls >= 1 and foreign.closed
    for bad in (42, object()):
        with pytest.raises(InputError, match="engine must be None, a model path or an Engine"):
            Inpainter(bad)

    class BadMeta(_Foreign):
        meta = {"kind": "glcic"}

        def __init__(self):
            self.name, self.device = "bad", "cpu"

    with pytest.raises(InputError, match="BadMeta.meta is a dict, not a ModelMeta"):
        Inpainter(BadMeta())


# ------------------------------------------------------------------------- the device path

def _trt_class():
    pytest.importorskip("onnx")
    from fastfill.engines.tensorrt import TensorRTEngine

    class OnTheHost(TensorRTEngine):
        """TensorRTEngine's own declarations around a host model (no GPU here): its device path
        is done with the CPU kernels, as the CUDA ones do it, and counted."""

        def __init__(self, path):
            self.inner, self.path, self.uint8_calls = load_engine(path, backend="onnxruntime"), path, 0
            self.meta = self.inner.meta

        def accepts(self, shape):
            return EngineBase.accepts(self, shape)

        def _infer(self, x):
            return self.inner.infer(x)

        def run_uint8(self, images, masks):
            self.uint8_calls += 1
            x = ops.prepare(images, masks.view(np.uint8), self.meta.mean, self.meta.multiple)
            return ops.composite(self.inner.infer(x), images, masks.view(np.uint8))

        def close(self):
            pass

    return TensorRTEngine, OnTheHost


@pytest.mark.parametrize("fill", list(FILLS))
def test_the_gpu_device_path_only_for_a_prefill_its_kernels_compute(tmp_path, fill):
    TensorRTEngine, OnTheHost = _trt_class()
    engine = OnTheHost(_identity_model(tmp_path, fill))
    assert engine.device_path is FILLS[fill].on_device and FILLS["mean"].on_device
    image, mask = _image_and_mask(seed=3)
    for roi in (True, False):
        got = Inpainter(engine, roi=roi)(image, mask)
        if fill == "mean":  # the identity returns its prefill: the mean colour inside the hole
            assert engine.uint8_calls > 0 and (got[mask != 0] == 128).all()
        else:  # the host path, with the CPU's solve: exactly the fill
            assert engine.uint8_calls == 0
            np.testing.assert_array_equal(got, ops.fill(image, mask, fill))
    if not engine.device_path:  # TensorRT's own run_uint8 refuses it, before any CUDA call
        real = TensorRTEngine.__new__(TensorRTEngine)
        real.meta, real.path = engine.meta, engine.path
        with pytest.raises(EngineError, match=f"do not compute the {fill} prefill .* host path"):
            real.run_uint8(image[None], mask[None])


# ------------------------------------------------------------------------- the fill table

def test_the_kernels_list_the_fill_table():
    from fastfill import _C

    assert list(_C.FILLS) == list(FILLS)
    assert {k: sorted(v) for k, v in _C.FILLS.items()} == {k: sorted(f.options) for k, f in FILLS.items()}
    image, mask = _image_and_mask(24, 32)
    for name in FILLS:  # every name dispatches to its kernel
        assert ops.fill(image, mask, name).shape == image.shape
    with pytest.raises(ValueError, match="fill: expected one of 'mean', 'harmonic', 'patch', got 'telea'"):
        _C.fill(image[None], mask[None], list(MEAN), None, "telea", {}, None)
    native = dict(_C.FILLS)
    ops._check_kernels_match_fills(native)
    for broken in ({k: v for k, v in native.items() if k != "patch"},
                   {**native, "telea": ()},
                   {**native, "patch": native["patch"][:-1]}):
        with pytest.raises(ImportError, match="differ from fastfill.fills.FILLS"):
            ops._check_kernels_match_fills(broken)


def test_method_choices_are_the_fill_table():
    from fastfill import cli

    for cmd in (cli.run, cli.video, cli.serve_cmd):
        (param,) = [p for p in cmd.params if p.name == "method"]
        assert list(param.type.choices) == list(FILLS), cmd.name
    (device,) = [p for p in cli.run.params if p.name == "device"]
    assert device.type.convert("cuda:2", device, None) == Device("cuda", 2)


# ------------------------------------------------------------------------- options never dropped

def test_options_that_cannot_apply_are_errors(tmp_path):
    loaded = load_engine(TINY, backend="onnxruntime", threads=1)
    for opt in (dict(threads=2), dict(backend="onnxruntime"), dict(device="cpu"), dict(method="mean")):
        with pytest.raises(InputError, match=f"^{next(iter(opt))}: chosen when loading; a loaded engine has its own"):
            Inpainter(loaded, **opt)
    assert Inpainter(loaded, backend="auto", device="auto").engine is loaded  # the defaults say nothing
    with pytest.raises(EngineError, match=r"the classical back-end takes no 'threads' option"):
        Inpainter(method="harmonic", threads=2)
    for args in (["--method", "harmonic", "--threads", "2"], ["--method", "harmonic", "--threads", "2", "--ray"],
                 ["--method", "harmonic", "--device", "cpu"]):
        code, _, stderr = invoke("run", *args, TINY, TINY, "-o", tmp_path / "out")
        assert code == 2 and not (tmp_path / "out").exists(), stderr
        assert "--threads sets a model's threads" in stderr or "--method replaces the model" in stderr


def test_the_ray_worker_takes_or_refuses_every_option():
    from fastfill.files.ray import _make_inpainter

    base = {"roi": True, "batch_size": 2, "threads": None, "backend": None, "device": None, "method": None}
    inp = _make_inpainter(None, {**base, "method": "patch", "auto_threads": 2})  # the cores: not its option
    assert inp.engine.name == "classical:patch" and inp.batch_size == 2
    with pytest.raises(EngineError, match="the classical back-end takes no 'threads' option"):
        _make_inpainter(None, {**base, "method": "patch", "threads": 2})  # asked for: an error
    eng = _make_inpainter(str(TINY), {**base, "backend": "onnxruntime", "auto_threads": 1}).engine
    assert eng.name == "onnxruntime" and eng.selection == "onnxruntime (named)"
    made = Inpainter(method="mean")
    assert _make_inpainter(lambda: made, {**base, "auto_threads": 2}) is made
    with pytest.raises(InputError, match="threads: the engine callable returned an Inpainter"):
        _make_inpainter(lambda: made, {**base, "threads": 2})
    with pytest.raises(InputError, match="threads: chosen when loading"):
        _make_inpainter(lambda: load_engine(TINY, backend="onnxruntime"), {**base, "threads": 2})


@pytest.mark.slow
def test_method_under_ray_gives_the_local_runs_bytes_for_images_and_videos(tmp_path):
    pytest.importorskip("ray.data", reason="Ray is not installed (pip install 'fastfill[ray]')")
    av = pytest.importorskip("av")
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(3):
        image, mask = _image_and_mask(40, 52, seed=i)
        Image.fromarray(image).save(images / f"a{i}.png")
        Image.fromarray(mask).save(masks / f"a{i}.png")
    with av.open(str(images / "clip.mkv"), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        for i in range(4):
            for p in s.encode(av.VideoFrame.from_ndarray(_image_and_mask(seed=9)[0], format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    Image.fromarray(_image_and_mask()[1]).save(masks / "clip.png")
    for extra in ((), ("--ray",)):
        code, stdout, stderr = invoke("run", "-q", *extra, "--method", "patch", images, masks,
                                      "-o", tmp_path / f"out{len(extra)}")
        assert code == 0 and "done 4, skipped 0, failed 0" in stdout, stderr
    for i in range(3):
        assert (tmp_path / "out0" / f"a{i}.png").read_bytes() == (tmp_path / "out1" / f"a{i}.png").read_bytes()

    def frames(p):
        with av.open(str(p)) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    a, b = frames(tmp_path / "out0" / "clip.mkv"), frames(tmp_path / "out1" / "clip.mkv")
    assert len(a) == len(b) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], _image_and_mask(seed=9)[0])  # filled
