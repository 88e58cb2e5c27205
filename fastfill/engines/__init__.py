"""Inference engines: one module per back-end, all with the interface in :mod:`.base`.

One table, :data:`FORMATS`, says which file suffix each back-end reads, which options it takes,
which extra installs it and which command makes its files. :func:`load_engine` (the loader) and
``train.export`` / :mod:`fastfill.build` (the producers) both read it, so adding a back-end is one
row plus one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

from ..errors import EngineError
from .base import MAX_MODEL_BYTES, Engine, ModelMeta, check_model_file, read_meta, read_onnx_metadata


@dataclass(frozen=True)
class Format:
    backend: str  # name used by load_engine(backend=...) and `--backend`
    suffix: str  # model file suffix this back-end reads
    module: str  # module under fastfill.engines
    cls: str  # engine class in that module
    extra: str | None  # pip extra that installs it (None = always installed)
    made_by: str  # the command that writes such files
    default: bool = False  # the back-end chosen for this suffix when none is asked for
    options: tuple[str, ...] = ()  # keyword options its engine takes (load_engine checks them)
    requires: str | None = None  # the Python package it needs (the automatic choice checks it)


FORMATS: tuple[Format, ...] = (
    Format("onnxruntime", ".onnx", "onnxruntime", "OrtEngine", None,
           "fastfill export", default=True,
           options=("device", "threads", "optimization", "device_id", "spinning",
                    "strict"), requires="onnxruntime"),
    Format("openvino", ".onnx", "openvino", "OpenVinoEngine", "openvino",
           "fastfill export", options=("threads", "device", "cache_dir", "hint"), requires="openvino"),
    Format("tensorrt", ".plan", "tensorrt", "TensorRTEngine", "trt",
           "fastfill build", default=True, options=("device_id",), requires="tensorrt"),
)

BACKENDS = tuple(f.backend for f in FORMATS)
SUFFIXES = tuple(dict.fromkeys(f.suffix for f in FORMATS))
# backend=None or "auto" for a .onnx file: those of these that are installed and load the model,
# measured on the run's inputs when there are several (which is faster depends on the model and
# the size: benchmarks/bench_auto.py); a back-end named by the user is used as named.
AUTO = "auto"
AUTO_ORDER = ("openvino", "onnxruntime")


def default_model_path() -> Path:
    """The model shipped in the wheel (fastfill/models/default.onnx)."""
    return Path(__file__).resolve().parent.parent / "models" / "default.onnx"


def find_format(path: str | Path | None = None, backend: str | None = None) -> Format:
    """The table row for a file (by suffix) and an optional back-end name."""
    if backend is not None and backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    suffix = Path(path).suffix.lower() if path is not None else None
    if suffix is not None and suffix not in SUFFIXES:
        raise EngineError(f"{path}: unknown model format {suffix or '(no suffix)'!r}; expected "
                          + ", ".join(f"{f.suffix} ({f.backend}, made by `{f.made_by}`)"
                                      for f in FORMATS))
    rows = [f for f in FORMATS if (suffix is None or f.suffix == suffix)
            and (backend is None or f.backend == backend)]
    if not rows:
        wants = [f.suffix for f in FORMATS if f.backend == backend]
        raise EngineError(f"backend {backend!r} reads {', '.join(wants)} files, not {suffix}")
    if backend is None:
        rows = [f for f in rows if f.default] or rows
    return rows[0]


DEVICES = ("auto", "cpu", "cuda", "cuda:N", "tensorrt", "openvino")


def device_options(path: str | Path | None, device: str | None) -> tuple[str | None, dict]:
    """(backend, engine options) for ``--device``: cpu, cuda[:N], tensorrt, openvino or auto
    (None: the back-end's default). A device that is not there is an EngineError at load, naming
    what is missing and what is available: never a silent fall back to the CPU."""
    if device in (None, "auto"):
        return None, {}
    suffix = Path(path).suffix.lower() if path is not None else ".onnx"
    name, _, index = device.partition(":")
    if name not in ("cpu", "cuda", "tensorrt", "openvino") or (index and (name != "cuda" or not index.isdigit())):
        raise EngineError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    if suffix == ".plan":
        if name not in ("cuda", "tensorrt"):
            raise EngineError(f"a TensorRT plan runs on an NVIDIA GPU only, not on device {device!r}")
        return "tensorrt", {"device_id": int(index or 0)}
    if name == "openvino":
        return "openvino", {}
    if name == "cpu":
        return None, {}  # both CPU back-ends: the automatic choice picks one
    return "onnxruntime", {"device": name, "device_id": int(index or 0), "strict": True}


def open_engine(path: str | Path | None = None, *, backend: str | None = None,
                device: str | None = None, threads: int | None = None,
                threads_where_taken: bool = False) -> Engine:
    """:func:`load_engine` for the user's flags: ``--backend``, ``--device`` (see
    :func:`device_options`; a back-end that contradicts it is an EngineError) and ``--threads``
    (an EngineError on a back-end without threads, unless ``threads_where_taken``: then given
    only to back-ends that have them, as ``fastfill bench`` does across several engines). The
    engine's ``selection`` says what picked the back-end."""
    backend = None if backend == AUTO else backend
    dev_backend, opts = device_options(path, device)
    if dev_backend and backend and dev_backend != backend:
        raise EngineError(f"device {device!r} runs on the {dev_backend} back-end, not {backend}")
    if threads is not None and (not threads_where_taken or "threads" in find_format(
            path or default_model_path(), backend or dev_backend).options):
        opts["threads"] = int(threads)
    engine = load_engine(path, backend=backend or dev_backend, **opts)
    if dev_backend and not backend:
        engine.selection = f"{engine.name} (--device {device})"
    return engine


def load_engine(path: str | Path | None = None, backend: str | None = None, **options) -> Engine:
    """Load a model file on a back-end.

    ``path`` None loads the shipped default model. ``backend`` None or ``"auto"``: for ``.onnx``,
    the CPU back-ends of :data:`AUTO_ORDER` that are installed and load the model, measured per
    input size when there are several (:class:`~fastfill.engines.auto.MeasuredEngine`);
    for ``.plan``, TensorRT. A named back-end is used as named. ``options`` go to the engine (e.g.
    ``threads=2``, ``device='cuda'`` for ONNX Runtime, ``cache_dir`` for OpenVINO). The engine's
    ``selection`` says which back-end was used and why.
    """
    if path is None:
        path = default_model_path()
        if not path.exists():
            raise EngineError(f"the default model is not installed ({path}); pass a model file")
    path = Path(path)
    backend = None if backend == AUTO else backend
    auto = backend is None and path.suffix.lower() == ".onnx"
    fmt = None if auto else find_format(path, backend)
    check_model_file(path)  # a regular file within the size bound, before any back-end reads it
    if auto:
        return _load_auto(path, options)
    engine = _load(fmt, path, options)
    engine.selection = (f"{fmt.backend} (named)" if backend else
                        f"{fmt.backend} (the back-end for {fmt.suffix} files)")
    return engine


def _load_auto(path: Path, options: dict) -> Engine:
    """Every back-end of AUTO_ORDER that is installed, takes ``options`` and loads the model: one
    is used as it is; several are measured on the run's own inputs
    (:class:`~fastfill.engines.auto.MeasuredEngine`), because which is faster depends on the size."""
    why, loaded = [], []
    for name in AUTO_ORDER:
        fmt = find_format(path, name)
        unknown = sorted(set(options) - set(fmt.options))
        if unknown and name != AUTO_ORDER[-1]:  # (the last one says exactly what it takes)
            why.append(f"{name} takes no {', '.join(unknown)} option")
            continue
        if name == "openvino" and str(options.get("device", "cpu")).lower() != "cpu":
            why.append(f"device {options['device']!r} is ONNX Runtime's")
            continue
        if fmt.requires and find_spec(fmt.requires) is None:
            why.append(f"{name} is not installed (pip install 'fastfill[{fmt.extra}]')")
            continue
        try:
            loaded.append(_load(fmt, path, options))
        except EngineError as e:
            if name == AUTO_ORDER[-1] and not loaded:
                raise
            why.append(f"{name} cannot load it ({e})")
    if not loaded:  # pragma: no cover - the last one raises
        raise EngineError(f"{path}: no back-end can run it: {'; '.join(why)}")
    if len(loaded) > 1 and all(e.device == "cpu" for e in loaded):
        from .auto import MeasuredEngine

        return MeasuredEngine(loaded, why)
    engine = loaded[0]
    for other in loaded[1:]:
        other.close()
    reason = "; ".join(why) if why else f"{engine.name} is installed and loads the model"
    engine.selection = f"{engine.name} (auto: {reason})"
    return engine


def installed_backends() -> list[str]:
    """The back-ends whose Python package is installed (for error messages)."""
    return [f.backend for f in FORMATS if not f.requires or find_spec(f.requires) is not None]


def _load(fmt: Format, path: Path, options: dict) -> Engine:
    unknown = sorted(set(options) - set(fmt.options))
    if unknown:
        raise EngineError(f"the {fmt.backend} back-end takes no {', '.join(map(repr, unknown))} option "
                          f"(it takes: {', '.join(fmt.options) or 'none'})")
    mod = import_module(f".{fmt.module}", __name__)
    return getattr(mod, fmt.cls)(path, **options)


__all__ = [
    "Engine", "ModelMeta", "Format", "FORMATS", "BACKENDS", "SUFFIXES",
    "load_engine", "find_format", "default_model_path", "read_meta", "read_onnx_metadata",
    "device_options", "open_engine", "DEVICES", "AUTO", "AUTO_ORDER", "check_model_file",
    "MAX_MODEL_BYTES",
]
