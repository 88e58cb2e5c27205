"""ONNX Runtime engine: CPU by default; CUDA / TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import EngineError
from .base import EngineBase, check_io_shapes, read_meta

# device name -> the execution providers asked for, best first (CPU is always appended last).
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
}
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_OPT_LEVELS = ("disable", "basic", "extended", "all")

# ONNX Runtime's GPU build replaces its CPU build (both are the `onnxruntime` package: installed
# side by side, whichever is installed last wins, file by file); fastfill depends on
# the CPU build, so the swap is two steps.
INSTALL_GPU = "pip uninstall -y onnxruntime && pip install 'onnxruntime-gpu>=1.17'"


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - a core dependency
        raise EngineError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from None
    return ort


def choose_providers(device: str, available: list[str], strict: bool = False) -> list[str]:
    """The providers to ask for on ``device``. When they are missing: an EngineError naming what
    is missing and what is there (``strict``, what ``--device`` asks for), else a warning and the
    CPU."""
    if device not in PROVIDERS:
        raise EngineError(f"unknown onnxruntime device {device!r}; choose one of: "
                          f"{', '.join(PROVIDERS)}")
    wanted = PROVIDERS[device]
    have = [p for p in wanted if p in available]
    if not have and strict and device != "cpu":
        raise EngineError(f"device {device}: this onnxruntime has no {' / '.join(wanted)} (it has: "
                          f"{', '.join(available)}); for NVIDIA GPUs: {INSTALL_GPU}")
    if not have:
        if device != "cpu":
            warnings.warn(
                f"onnxruntime: {' / '.join(wanted)} not available (this onnxruntime has: "
                f"{', '.join(available)}); running on the CPU. For NVIDIA GPUs: {INSTALL_GPU}",
                RuntimeWarning, stacklevel=3)
        return ["CPUExecutionProvider"]
    return list(dict.fromkeys(have + ["CPUExecutionProvider"]))


class OrtEngine(EngineBase):
    """An ONNX model on ONNX Runtime.

    Options: ``device`` ('cpu' | 'cuda' | 'tensorrt'), ``threads`` (intra-op threads; None = ORT's
    default), ``optimization`` ('disable' | 'basic' | 'extended' | 'all'), ``device_id``,
    ``spinning``.

    ``spinning`` (default False) lets ORT's intra-op threads busy-wait after ``run()`` returns
    (ORT's own default). fastfill turns it off: the ``prepare`` / ``composite`` kernels (OpenMP),
    decoding and encoding run on the same cores right after each call, and spinning threads steal
    them (measured on 2 cores: prepare + composite after an ORT call 26 ms spinning, 14 ms not).
    Turn it on only when nothing else runs between back-to-back ``infer`` calls.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int | None = None,
                 optimization: str = "all", device_id: int = 0, spinning: bool = False, strict: bool = False):
        ort = _import_ort()
        self.path = Path(path)
        self.meta = read_meta(self.path)  # clear errors for missing/empty/non-ONNX/no metadata
        providers = choose_providers(device, ort.get_available_providers(), strict)
        so = ort.SessionOptions()
        if optimization not in _OPT_LEVELS:
            raise EngineError(f"optimization must be one of {', '.join(_OPT_LEVELS)}")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        if threads is not None:
            if threads < 1:
                raise EngineError(f"threads must be >= 1, got {threads}")
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        self.spinning = bool(spinning)
        opts = [{"device_id": device_id} if p in _GPU_PROVIDERS else {} for p in providers]
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so,
                                                providers=providers, provider_options=opts)
        except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/... types
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EngineError(f"{self.path}: onnxruntime cannot load the model: {msg}") from None
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] in _GPU_PROVIDERS else "cpu"
        if strict and device != "cpu" and self.device != "cuda":
            # listed as available, yet the session fell back (e.g. CUDA libraries missing or not
            # matching the driver): a GPU asked for is never silently a CPU run
            raise EngineError(f"device {device}: onnxruntime could not start "
                              f"{' / '.join(PROVIDERS[device])} and fell back to "
                              f"{', '.join(self.providers)} (check the CUDA and cuDNN libraries "
                              "onnxruntime-gpu needs)")
        if device_id and self.device != "cuda":  # (an option that cannot apply is said, not dropped)
            raise EngineError(f"device_id={device_id} names a GPU, but onnxruntime runs this model on "
                              f"the CPU ({', '.join(self.providers)}): ask for device='cuda' on a "
                              "machine with onnxruntime-gpu, or drop device_id")
        self.device_id = device_id
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != ["input"] or names_out[:1] != ["output"]:
            raise EngineError(f"{self.path}: expected one input 'input' and output 'output', got "
                              f"{names_in} -> {names_out}")
        check_io_shapes(self.path, self.meta, self.session.get_inputs()[0].shape,
                        self.session.get_outputs()[0].shape)
        self._ort = ort

    @property
    def runs_on(self) -> str:
        """The execution provider the session uses (what ONNX Runtime says, not what was asked)."""
        gpu = f" (GPU {self.device_id})" if self.device == "cuda" else ""
        return f"{self.providers[0]}{gpu}"

    def _infer(self, x: np.ndarray) -> np.ndarray:
        if self.device == "cuda":
            return self._infer_iobinding(x)
        return self.session.run(["output"], {"input": x})[0]

    def _infer_iobinding(self, x: np.ndarray) -> np.ndarray:
        """GPU path: the input is copied once to the device, the output is allocated there."""
        binding = self.session.io_binding()
        binding.bind_cpu_input("input", x)
        binding.bind_output("output", "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def close(self) -> None:
        self.session = None
