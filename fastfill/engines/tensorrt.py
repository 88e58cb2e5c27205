"""TensorRT engine: a ``.plan`` built by ``fastfill build``, run on its own CUDA stream.

- The sidecar JSON beside the plan (``glcic.plan`` -> ``glcic.json``) is checked first, before
  TensorRT is imported: a missing/garbled sidecar or one whose plan sha256 does not match is
  refused. Then the TensorRT version, GPU name and compute capability must match the machine;
  a mismatch raises an :class:`EngineError` that says to rebuild (and how).
- Memory and streams use cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in older
  releases); every CUDA call goes through :func:`cuda_call`, so an error code becomes an exception
  at the line that caused it. Host buffers are pinned.
- ``infer`` takes float32 host arrays like every engine. ``run_uint8`` is the device-side path:
  only uint8 images and masks cross PCIe; the CUDA ``prepare`` / ``composite`` kernels of
  :mod:`fastfill.ops` run on the engine's stream around ``execute_async_v3``.
- Shapes outside the engine's optimization profiles raise a clear :class:`InputError`.

Nothing here is imported until a ``.plan`` is loaded; TensorRT and cuda-python are the ``trt`` extra.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import EngineError, InputError
from ..fills import FILLS
from ..files.codecs import sha256_file
from ..ops import padded_size
from .base import EngineBase, ModelMeta, check_io_shapes, check_model_file, shape_problem

SIDECAR_FORMAT = "fastfill-plan"
SIDECAR_VERSION = 1
SIDECAR_MAX_BYTES = 1 << 20  # a few kB of JSON: more is not a sidecar
INSTALL_TRT = "pip install 'fastfill[trt]' (TensorRT 10 or 11 and cuda-python; needs an NVIDIA GPU and driver)"


# ---------------------------------------------------------------------------- sidecar JSON

def sidecar_path(plan: str | Path) -> Path:
    """``glcic.plan`` -> ``glcic.json`` (docs/ARCHITECTURE.md, The model contract)."""
    return Path(plan).with_suffix(".json")


def _rebuild_hint(side: dict, plan: Path) -> str:
    onnx = side.get("onnx") or "model.onnx"
    prec = "--fp32" if side.get("precision") == "fp32" else "--fp16"
    profs = " ".join(f"--profile {p['text']}" for p in side.get("profiles", []) if "text" in p)
    return f"rebuild it on this machine: fastfill build {onnx} -o {plan} {prec}" + (f" {profs}" if profs else "")


def read_sidecar(plan: str | Path) -> dict:
    """The sidecar of a plan, validated (no TensorRT needed): schema, metadata, plan sha256."""
    plan = Path(plan)
    if not plan.exists():
        raise EngineError(f"plan file not found: {plan}")
    check_model_file(plan)
    sp = sidecar_path(plan)
    if not sp.exists():
        raise EngineError(f"{plan}: its sidecar {sp.name} is missing (it is written by `fastfill build` "
                          f"beside the plan); rebuild: fastfill build model.onnx -o {plan}")
    check_model_file(sp, limit=SIDECAR_MAX_BYTES)
    try:
        side = json.loads(sp.read_text())
        if side.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format {side.get('format')!r}, expected {SIDECAR_FORMAT!r}")
        if int(side.get("version", 0)) > SIDECAR_VERSION:
            raise ValueError(f"version {side.get('version')} is newer than this fastfill reads")
        for key in ("meta", "tensorrt", "gpu", "compute_capability", "precision", "profiles",
                    "plan_sha256"):
            if key not in side:
                raise ValueError(f"no {key!r}")
        for key, kind in (("meta", dict), ("profiles", list), ("plan_sha256", str)):
            if not isinstance(side[key], kind):
                raise ValueError(f"{key!r} is a {type(side[key]).__name__}, expected a {kind.__name__}")
        for p in side["profiles"]:
            if not isinstance(p, dict):
                raise ValueError(f"a profile is a {type(p).__name__}, expected an object")
            for k in ("min", "opt", "max"):
                if not isinstance(p[k], list) or len(p[k]) != 4:
                    raise ValueError(f"profile {k} {p[k]!r} is not [N, C, H, W]")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise EngineError(f"{plan}: bad sidecar {sp.name} ({e}); rebuild: fastfill build model.onnx "
                          f"-o {plan}") from None
    ModelMeta.from_dict(side["meta"], source=str(sp))  # validates the model metadata
    if sha256_file(plan) != side["plan_sha256"]:
        raise EngineError(f"{plan}: the plan does not match its sidecar {sp.name} (sha256 differs: the "
                          f"plan was replaced or truncated); {_rebuild_hint(side, plan)}")
    return side


def check_sidecar(side: dict, env: dict, plan: str | Path) -> None:
    """Refuse a plan built for another TensorRT / GPU. ``env``: keys tensorrt, gpu, compute_capability."""
    labels = {"tensorrt": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability"}
    diff = [f"{label} {side.get(k)!s} in the plan, {env.get(k)!s} here"
            for k, label in labels.items() if str(side.get(k)) != str(env.get(k))]
    if diff:
        raise EngineError(f"{plan}: built for another setup ({'; '.join(diff)}); "
                          f"{_rebuild_hint(side, Path(plan))}")


# ---------------------------------------------------------------------------- GPU / imports

def gpu_info(device_id: int = 0) -> dict:
    """Name and compute capability of an NVIDIA GPU through the driver (ctypes, no packages).

    Returns ``{'gpu': str, 'compute_capability': 'M.m', 'count': int}``; raises EngineError with the
    reason when there is no driver or no GPU. Build and load both use this, so names match.
    """
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    lib = None
    for n in names:
        try:
            lib = ctypes.CDLL(n)
            break
        except OSError:
            continue
    if lib is None:
        raise EngineError("no NVIDIA GPU driver found (libcuda is not installed)")
    rc = lib.cuInit(0)
    if rc != 0:
        raise EngineError(f"no usable NVIDIA GPU (cuInit returned CUDA error {rc})")
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        raise EngineError("no NVIDIA GPU found (the driver reports 0 devices)")
    if not 0 <= device_id < count.value:
        raise EngineError(f"GPU {device_id} does not exist ({count.value} found)")
    dev = ctypes.c_int(0)
    lib.cuDeviceGet(ctypes.byref(dev), device_id)
    buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(buf, 256, dev)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._MINOR
    return {"gpu": buf.value.decode(errors="replace").strip(),
            "compute_capability": f"{major.value}.{minor.value}", "count": count.value}


def import_tensorrt(error=EngineError):
    try:
        import tensorrt as trt
    except ImportError:
        raise error(f"TensorRT is not installed: {INSTALL_TRT}") from None
    return trt


def import_cudart(error=EngineError):
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise error(f"cuda-python is not installed: {INSTALL_TRT}") from None
    return cudart


def cuda_call(result):
    """Unpack a cuda-python call's ``(err, *values)``, raising EngineError on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(err) if not isinstance(err, int) else err
    if code != 0:
        cudart = import_cudart()
        _, msg = cudart.cudaGetErrorString(err)
        raise EngineError(f"CUDA error {code}: {msg.decode() if isinstance(msg, bytes) else msg}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


# ---------------------------------------------------------------------------- device buffers

class _Buffer:
    """A device allocation plus a pinned host mirror, grown on demand."""

    def __init__(self, cudart):
        self.cudart, self.nbytes, self.dev, self.host = cudart, 0, 0, 0

    def ensure(self, nbytes: int, host: bool = True):
        if nbytes <= self.nbytes and (self.host or not host):
            return
        self.free()
        self.dev = int(cuda_call(self.cudart.cudaMalloc(nbytes)))
        if host:
            self.host = int(cuda_call(self.cudart.cudaMallocHost(nbytes)))
        self.nbytes = nbytes

    def host_array(self, shape, dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raw = (ctypes.c_ubyte * n).from_address(self.host)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free(self):
        if self.dev:
            self.cudart.cudaFree(self.dev)
        if self.host:
            self.cudart.cudaFreeHost(self.host)
        self.nbytes, self.dev, self.host = 0, 0, 0


def _cuda_kernel(name: str):
    """``prepare_cuda`` / ``composite_cuda`` of the native module, which has them when it was
    built with CUDA (its ``build_info`` says so)."""
    from .. import _C, ops

    if "cuda" not in ops.build_info()["backends"]:
        raise EngineError(f"fastfill was built without CUDA kernels ({name} is missing); reinstall "
                          "fastfill where the CUDA toolkit is found (FASTFILL_CUDA=ON)")
    return {"prepare_cuda": _C.prepare_cuda, "composite_cuda": _C.composite_cuda}[name]


def _launch_kernels(stage: str, *, images: int, masks: int, n: int, h: int, w: int, hp: int, wp: int,
                    stream: int, mean=None, mask_channel=True, net_in: int = 0, pred: int = 0,
                    out: int = 0) -> None:
    """The one place that calls the CUDA kernels of fastfill._C (device pointers as ints).

    stage 'prepare':   uint8 images/masks (device) -> float32 net input [n, C, hp, wp] at ``net_in``
    stage 'composite': float32 prediction [n, 3, hp, wp] at ``pred`` + uint8 images/masks ->
                       uint8 [n, h, w, 3] at ``out`` (contiguous: batch stride h*w*3, row w*3)
    Engine I/O is float32 (``half=False``): the fp16 casts live inside the graph.
    """
    if stage == "prepare":
        _cuda_kernel("prepare_cuda")(images, masks, net_in, n, h, w, None, hp, wp, tuple(mean),
                                     bool(mask_channel), False, stream)
    elif stage == "composite":
        _cuda_kernel("composite_cuda")(pred, False, hp, wp, images, masks, n, h, w, None, out,
                                       h * w * 3, w * 3, stream)
    else:  # pragma: no cover
        raise ValueError(stage)


# ---------------------------------------------------------------------------- the engine

class TensorRTEngine(EngineBase):
    """A TensorRT plan on one GPU. Options: ``device_id`` (0)."""

    name = "tensorrt"
    narrow_limits = True  # the plan's optimization profiles
    device = "cuda"

    @property
    def device_path(self) -> bool:
        """run_uint8 (prepare and composite as CUDA kernels beside the model) for a model whose
        prefill the CUDA prepare kernel computes (``Fill.on_device``); the others are solved on
        the CPU, so they take the host path."""
        return FILLS[self.meta.fill].on_device

    def __init__(self, path: str | Path, *, device_id: int = 0):
        self.path = Path(path)
        self._bufs: dict = {}
        self.stream = None
        side = read_sidecar(self.path)  # before TensorRT is touched
        self.meta = ModelMeta.from_dict(side["meta"], source=str(sidecar_path(self.path)))
        self.profiles = [(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"])) for p in side["profiles"]]
        trt = import_tensorrt()
        cudart = import_cudart()
        env = gpu_info(device_id)
        env["tensorrt"] = trt.__version__
        check_sidecar(side, env, self.path)
        self.gpu = env["gpu"]
        self.trt, self.cudart, self.device_id = trt, cudart, device_id
        cuda_call(cudart.cudaSetDevice(device_id))
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineError(f"{self.path}: TensorRT could not deserialize the plan; "
                              f"{_rebuild_hint(side, self.path)}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != ["input", "output"]:
            raise EngineError(f"{self.path}: expected tensors 'input' and 'output', got {names}")
        for name in names:
            if self.engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise EngineError(f"{self.path}: tensor {name!r} is not float32")
        # dynamic dimensions are -1 here: only fixed ones can break the contract
        shape = {n: [d if d >= 0 else "?" for d in self.engine.get_tensor_shape(n)] for n in names}
        check_io_shapes(self.path, self.meta, shape["input"], shape["output"])
        self.stream = cuda_call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        self._profile = 0

    # -- shapes ---------------------------------------------------------------------------
    def _find_profile(self, shape) -> int | None:
        for i, (lo, _, hi) in enumerate(self.profiles):
            if len(shape) == len(lo) and all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return i
        return None

    def _profile_problem(self, shape) -> str:
        ranges = ", ".join("x".join(f"{a}-{b}" if a != b else f"{a}" for a, b in zip(lo, hi))
                           for lo, _, hi in self.profiles)
        return (f"input shape {'x'.join(map(str, shape))} is outside the engine's profiles "
                f"(N x C x H x W: {ranges}); rebuild with a --profile that covers it")

    def accepts(self, shape) -> str | None:
        """None when ``shape`` (N, C, H, W) fits the model and one of the plan's profiles."""
        reason = super().accepts(shape)
        if reason is None and self._find_profile(tuple(int(s) for s in shape)) is None:
            reason = self._profile_problem(tuple(int(s) for s in shape))
        return reason

    def _choose_profile(self, shape) -> int:
        idx = self._find_profile(tuple(shape))
        if idx is None:
            raise InputError(self._profile_problem(tuple(shape)))
        return idx

    def _set_shape(self, shape) -> None:
        idx = self._choose_profile(shape)
        if idx != self._profile:
            self.context.set_optimization_profile_async(idx, int(self.stream))
            self._profile = idx
        if not self.context.set_input_shape("input", tuple(int(s) for s in shape)):
            raise InputError(f"TensorRT refused the input shape {shape}")

    def _buf(self, name: str, nbytes: int, host: bool = True) -> _Buffer:
        b = self._bufs.get(name)
        if b is None:
            b = self._bufs[name] = _Buffer(self.cudart)
        b.ensure(nbytes, host)
        return b

    def _execute(self, d_in: int, d_out: int) -> None:
        self.context.set_tensor_address("input", d_in)
        self.context.set_tensor_address("output", d_out)
        if not self.context.execute_async_v3(int(self.stream)):
            raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def _copy(self, dst: int, src: int, nbytes: int, to_device: bool) -> None:
        kinds = self.cudart.cudaMemcpyKind
        kind = kinds.cudaMemcpyHostToDevice if to_device else kinds.cudaMemcpyDeviceToHost
        cuda_call(self.cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self.stream))

    def _sync(self) -> None:
        cuda_call(self.cudart.cudaStreamSynchronize(self.stream))

    # -- host path ------------------------------------------------------------------------
    @property
    def runs_on(self) -> str:
        return f"{self.gpu} (GPU {self.device_id})"

    def _infer(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        self._set_shape(x.shape)
        out_shape = (n, 3, h, w)
        bi = self._buf("in", x.nbytes)
        bo = self._buf("out", 4 * n * 3 * h * w)
        bi.host_array(x.shape, np.float32)[...] = x
        self._copy(bi.dev, bi.host, x.nbytes, True)
        self._execute(bi.dev, bo.dev)
        self._copy(bo.host, bo.dev, 4 * n * 3 * h * w, False)
        self._sync()
        return bo.host_array(out_shape, np.float32).copy()

    # -- device path: only uint8 crosses PCIe -------------------------------------------------
    def run_uint8(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] images + [N, H, W] masks (nonzero = hole) -> uint8 [N, H, W, 3].

        prepare (CUDA) -> TensorRT -> composite (CUDA), all on this engine's stream; only for a
        model whose prefill the CUDA kernel computes (``device_path``).
        """
        if not self.device_path:
            raise EngineError(f"{self.path}: the GPU kernels do not compute the {self.meta.fill} "
                              "prefill of this model: it runs on the host path (infer)")
        images = np.ascontiguousarray(images, dtype=np.uint8)
        masks = np.ascontiguousarray(np.asarray(masks) != 0, dtype=np.uint8)
        if images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3]:
            raise InputError(f"run_uint8 wants images [N,H,W,3] and masks [N,H,W], got {images.shape}"
                             f" and {masks.shape}")
        n, h, w, _ = images.shape
        hp, wp = padded_size(h, w, self.meta.multiple)
        c = self.meta.channels
        reason = shape_problem(self.meta, (n, c, hp, wp))
        if reason is not None:
            raise InputError(reason)
        self._set_shape((n, c, hp, wp))
        bimg = self._buf("img", images.nbytes)
        bmask = self._buf("mask", masks.nbytes)
        bres = self._buf("res", images.nbytes)
        bin_ = self._buf("in", 4 * n * c * hp * wp, host=False)
        bout = self._buf("out", 4 * n * 3 * hp * wp, host=False)
        bimg.host_array(images.shape, np.uint8)[...] = images
        bmask.host_array(masks.shape, np.uint8)[...] = masks
        self._copy(bimg.dev, bimg.host, images.nbytes, True)
        self._copy(bmask.dev, bmask.host, masks.nbytes, True)
        stream = int(self.stream)
        _launch_kernels("prepare", images=bimg.dev, masks=bmask.dev, n=n, h=h, w=w, hp=hp, wp=wp,
                        stream=stream, mean=self.meta.mean, mask_channel=(c == 4), net_in=bin_.dev)
        self._execute(bin_.dev, bout.dev)
        _launch_kernels("composite", images=bimg.dev, masks=bmask.dev, n=n, h=h, w=w, hp=hp, wp=wp,
                        stream=stream, pred=bout.dev, out=bres.dev)
        self._copy(bres.host, bres.dev, images.nbytes, False)
        self._sync()
        return bres.host_array(images.shape, np.uint8).copy()

    def close(self) -> None:
        for b in self._bufs.values():
            b.free()
        self._bufs = {}
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = self.engine = self.runtime = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
