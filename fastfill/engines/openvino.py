"""OpenVINO engine: the same .onnx on the OpenVINO runtime (extra ``openvino``), CPU."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import EngineError
from .base import EngineBase, check_io_shapes, read_meta


def default_cache_dir() -> Path:
    """Where compiled models are cached so that a second load is fast."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastfill" / "openvino"


_IMPORT_LOCK = threading.Lock()


def _import_openvino():
    """``openvino``, imported with its usage telemetry declined. ``import openvino`` imports
    its model converter, which, unless the user opted out or the process runs in CI (the ``CI``
    environment variable), sends usage data to Google Analytics from a forked process and writes
    a client id under ``~/intel``: fastfill sends nothing anywhere, so the import runs with that
    CI switch set (the environment is restored after). One import at a time: a second thread
    that read the environment while the first had it set would restore that setting for good."""
    try:
        with _IMPORT_LOCK:
            if "openvino" in sys.modules:
                import openvino as ov
            else:
                saved = os.environ.get("CI")
                os.environ["CI"] = "true"
                try:
                    import openvino as ov
                finally:
                    if saved is None:
                        os.environ.pop("CI", None)
                    else:
                        os.environ["CI"] = saved
    except ImportError:
        from . import installed_backends

        raise EngineError("the OpenVINO back-end is not installed: pip install 'fastfill[openvino]' "
                          f"(installed: {', '.join(installed_backends('.onnx'))})") from None
    return ov


def _one_line(e: BaseException, limit: int = 400) -> str:
    """OpenVINO's messages span lines, the reason after source-location lines: keep the reason."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))] or lines
    text = " | ".join(useful) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


class OpenVinoEngine(EngineBase):
    """An ONNX model on OpenVINO.

    Options: ``threads`` (None = OpenVINO's default), ``device`` (OpenVINO device name, 'CPU'),
    ``cache_dir`` (None = ~/.cache/fastfill/openvino, False = no cache), ``hint``
    ('LATENCY' | 'THROUGHPUT'). Inference precision is pinned to f32 so that outputs match ONNX
    Runtime (OpenVINO would otherwise pick bf16 on CPUs that have it).
    """

    name = "openvino"
    device = "cpu"

    def __init__(self, path: str | Path, *, threads: int | None = None, device: str = "CPU",
                 cache_dir: str | Path | None | bool = None, hint: str = "LATENCY"):
        ov = _import_openvino()
        self.path = Path(path)
        self.meta = read_meta(self.path)
        core = ov.Core()
        if cache_dir is not False:
            cdir = Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()
            try:
                cdir.mkdir(parents=True, exist_ok=True)
                core.set_property({"CACHE_DIR": str(cdir)})
                self.cache_dir = cdir
            except OSError:
                self.cache_dir = None  # an unwritable cache only costs load time
        else:
            self.cache_dir = None
        config = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            if threads < 1:
                raise EngineError(f"threads must be >= 1, got {threads}")
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            # Compiling from the path (not a read_model object) lets the cache skip the read too.
            self.compiled = core.compile_model(str(self.path), device.upper(), config)
            self.ov_device = device.upper()
        except Exception as e:
            raise EngineError(f"{self.path}: OpenVINO cannot load the model: {_one_line(e)}") from None
        names_in = [n for p in self.compiled.inputs for n in p.get_names()]
        if "input" not in names_in:
            raise EngineError(f"{self.path}: expected an input named 'input', got {names_in}")

        def dims(port):
            ps = port.get_partial_shape()
            return None if ps.rank.is_dynamic else [d.get_length() if d.is_static else "?" for d in ps]

        check_io_shapes(self.path, self.meta, dims(self.compiled.inputs[0]), dims(self.compiled.outputs[0]))
        self.request = self.compiled.create_infer_request()
        # one request, its input and output tensors shared: calls from two threads took each
        # other's results (a wrong fill, no error)
        self._lock = threading.Lock()

    @property
    def runs_on(self) -> str:
        """The devices OpenVINO executes on (what it reports, e.g. CPU for an AUTO request)."""
        try:
            devices = self.compiled.get_property("EXECUTION_DEVICES")
        except Exception:  # noqa: BLE001 - an OpenVINO without the property: the request
            devices = [self.ov_device]
        return f"OpenVINO {', '.join(devices)}"

    def _infer(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            try:
                self.request.infer({"input": x}, share_inputs=True)
            except Exception as e:
                raise EngineError(f"OpenVINO inference failed: {_one_line(e)}") from None
            return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def close(self) -> None:
        self.request = None
        self.compiled = None
