"""Inference engines: one module per back-end, all :class:`~.base.EngineBase`.

One table, :data:`FORMATS`, says which file suffix each back-end reads (none for the classical
fills), where its engine class lives (imported when a row is used: the PyTorch row's is in
``train``, which the runtime never imports otherwise), which options its constructor takes, which
devices (``--device``) it runs on, which extra installs it and which command makes its files.
:func:`load_engine` / :func:`open_engine` (the loaders) and ``train.export`` /
:mod:`fastfill.build` (the producers) read it, so adding a back-end is one row plus its module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ..errors import EngineError
from .base import (MAX_MODEL_BYTES, Engine, EngineBase, ModelMeta, as_engine, check_model_file, read_meta,
                   read_onnx_metadata)


def _on(**devices: dict) -> Mapping[str, Mapping[str, object]]:
    return MappingProxyType({k: MappingProxyType(v) for k, v in devices.items()})


@dataclass(frozen=True)
class Format:
    backend: str  # name used by load_engine(backend=...) and `--backend`
    suffix: str | None  # model file suffix this back-end reads (None: no model file)
    module: str  # the module of its engine class, imported only when the row is used
    cls: str  # engine class in that module
    extra: str | None  # pip extra that installs it (None = always installed)
    made_by: str | None  # the command that writes such files (None: no file)
    # the --device kinds it runs on -> the engine options each sets (a GPU's index goes to its
    # device_id option)
    devices: Mapping[str, Mapping[str, object]] = field(default_factory=_on, hash=False)
    default: bool = False  # the back-end chosen for this suffix when none is asked for
    options: tuple[str, ...] = ()  # its constructor's keyword options (load_engine checks them)
    requires: str | None = None  # the Python package it needs (the automatic choice checks it)

    def engine_class(self) -> type[EngineBase]:
        """The row's engine class (its module imported now)."""
        if self.module.startswith("train."):
            return vars(import_train(self.module[len("train."):]))[self.cls]
        return vars(import_module(self.module))[self.cls]


# The `train` extra's packages, and how to install its PyTorch on the CPU (a plain `pip install
# torch` on Linux pulls the CUDA build, several GB).
TRAIN_NEEDS = ("torch", "safetensors", "onnx", "cv2")
INSTALL_TRAIN = ("pip install torch --index-url https://download.pytorch.org/whl/cpu && "
                 "pip install 'fastfill[train]' (PyTorch's CPU build; without the index URL pip "
                 "installs its CUDA build)")


def import_train(module: str, needs: tuple[str, ...] = TRAIN_NEEDS):
    """``train.<module>``, fastfill's training package (the `train` extra): an ImportError that
    says what to install when one of ``needs`` is missing, or which file hides the package
    when a `train` module of the user's (a `train.py` in the working folder) comes first."""
    import importlib.util
    from pathlib import Path

    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"training needs {', '.join(missing)}: {INSTALL_TRAIN}")
    train = import_module("train")
    ours = Path(__file__).resolve().parents[2]  # the folder holding fastfill/ (and train/)
    where = Path(getattr(train, "__file__", None) or ".").resolve()
    if where != ours / "train" / "__init__.py":
        raise ImportError(f"a module named 'train' ({where}) hides fastfill's training package: "
                          "run from another folder, or rename it")
    return import_module(f"train.{module}")


CLASSICAL = "classical"  # the row of the classical fills (`--method`): no model file

FORMATS: tuple[Format, ...] = (
    Format("onnxruntime", ".onnx", "fastfill.engines.onnxruntime", "OrtEngine", None, "fastfill export",
           devices=_on(cpu={}, cuda={"device": "cuda", "strict": True},
                       tensorrt={"device": "tensorrt", "strict": True}),
           default=True, options=("device", "threads", "optimization", "device_id", "spinning", "strict"),
           requires="onnxruntime"),
    Format("openvino", ".onnx", "fastfill.engines.openvino", "OpenVinoEngine", "openvino", "fastfill export",
           devices=_on(cpu={}, openvino={}), options=("threads", "device", "cache_dir", "hint"),
           requires="openvino"),
    Format("tensorrt", ".plan", "fastfill.engines.tensorrt", "TensorRTEngine", "trt", "fastfill build",
           devices=_on(cuda={}, tensorrt={}), default=True, options=("device_id",), requires="tensorrt"),
    Format("torch", ".safetensors", "train.torch_engine", "TorchEngine", "train", "fastfill train",
           devices=_on(cpu={}), default=True, options=("threads",), requires="torch"),
    Format(CLASSICAL, None, "fastfill.engines.classical", "ClassicalEngine", None, None,
           devices=_on(cpu={}), options=("method", "options", "mean")),
)

BACKENDS = tuple(f.backend for f in FORMATS)
MODEL_BACKENDS = tuple(f.backend for f in FORMATS if f.suffix)  # those that run a model file
SUFFIXES = tuple(dict.fromkeys(f.suffix for f in FORMATS if f.suffix))
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
                                      for f in FORMATS if f.suffix))
    rows = [f for f in FORMATS if (suffix is None or f.suffix == suffix)
            and (backend is None or f.backend == backend)]
    if not rows:
        wants = [f.suffix for f in FORMATS if f.backend == backend]
        reads = f"reads {', '.join(wants)} files" if all(wants) else "reads no model file"
        raise EngineError(f"backend {backend!r} {reads}, not {suffix}")
    if backend is None:
        rows = [f for f in rows if f.default] or rows
    return rows[0]


# -- devices --------------------------------------------------------------------------------------

DEVICE_KINDS = tuple(dict.fromkeys(k for f in FORMATS for k in f.devices))  # the devices column's
GPU_DEVICES = frozenset({"cuda", "tensorrt"})  # the kinds that are an NVIDIA GPU
INDEXED_DEVICES = frozenset({"cuda"})  # the kinds that take :N, the GPU's index
DEVICES = (AUTO, *(n for k in DEVICE_KINDS for n in ((k, f"{k}:N") if k in INDEXED_DEVICES else (k,))))
_WHERE = {"cpu": "the CPU", "cuda": "an NVIDIA GPU", "tensorrt": "an NVIDIA GPU", "openvino": "OpenVINO"}


@dataclass(frozen=True)
class Device:
    """A ``--device``, parsed once (:func:`parse_device`): ``kind`` is ``auto`` or a kind of the
    table's devices column, ``index`` the GPU of ``cuda:N`` (None: not given)."""

    kind: str = AUTO
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def gpu(self) -> bool:
        return self.kind in GPU_DEVICES


def parse_device(value: str | Device | None) -> Device:
    """``--device``: auto (None), cpu, cuda, cuda:N, tensorrt or openvino; an EngineError naming
    the choices otherwise."""
    if isinstance(value, Device):
        return value
    if value is None:
        return Device()
    kind, sep, index = str(value).partition(":")
    if ((kind != AUTO and kind not in DEVICE_KINDS)
            or (sep and (kind not in INDEXED_DEVICES or not (index.isascii() and index.isdigit())))):
        raise EngineError(f"unknown device {str(value)!r}; choose one of: {', '.join(DEVICES)}")
    return Device(kind, int(index) if sep else None)


def _device_choice(rows: list[Format], dev: Device) -> tuple[str | None, dict]:
    """(backend, options) among ``rows`` (one file suffix's, or the classical fills') for ``dev``:
    None when several run there (the automatic choice picks one); an EngineError when none does."""
    if dev.kind == AUTO:
        return None, {}
    able = [f for f in rows if dev.kind in f.devices]
    if not able:
        where = " or ".join(dict.fromkeys(_WHERE.get(k, k) for f in rows for k in f.devices))
        what = (f"a {rows[0].suffix} file ({', '.join(f.backend for f in rows)})" if rows[0].suffix
                else f"a {rows[0].backend} fill")
        raise EngineError(f"{what} runs on {where} only, not on device '{dev}'")
    if len(able) > 1:
        return None, {}
    opts = dict(able[0].devices[dev.kind])
    if dev.gpu and "device_id" in able[0].options:
        opts["device_id"] = dev.index or 0
    return able[0].backend, opts


def _file_rows(path: str | Path | None) -> list[Format]:
    suffix = find_format(path or default_model_path()).suffix
    return [f for f in FORMATS if f.suffix == suffix]


def device_options(path: str | Path | None, device: str | Device | None) -> tuple[str | None, dict]:
    """(backend, engine options) for ``--device`` on a model file (None: the shipped model), from
    the table's devices column; backend None: the back-end's default or the automatic choice. A
    device that is not there is an EngineError at load, naming what is missing and what is
    available: never a silent fall back to the CPU."""
    return _device_choice(_file_rows(path), parse_device(device))


def open_engine(path: str | Path | None = None, *, backend: str | None = None,
                device: str | Device | None = None, threads: int | None = None,
                method: str | None = None, threads_where_taken: bool = False) -> Engine:
    """:func:`load_engine` for the user's flags: ``--backend``, ``--device`` (see
    :func:`device_options`; a back-end that contradicts it is an EngineError), ``--threads``
    (an EngineError on a back-end without threads, unless ``threads_where_taken``: then given
    only to back-ends that have them, as ``fastfill bench`` does across several engines) and
    ``--method`` (a classical fill instead of a model: the classical row). The engine's
    ``selection`` says what picked the back-end."""
    backend = None if backend == AUTO else backend
    dev = parse_device(device)
    opts: dict = {}
    if method is not None:
        if path is not None or backend not in (None, CLASSICAL):
            raise EngineError(f"method {method!r} replaces the model: give no model file or back-end")
        backend, opts = CLASSICAL, {"method": method}
    rows = [find_format(None, CLASSICAL)] if method is not None else _file_rows(path)
    dev_backend, dev_opts = _device_choice(rows, dev)
    if dev_backend and backend and dev_backend != backend:
        raise EngineError(f"device '{dev}' runs on the {dev_backend} back-end, not {backend}")
    opts.update(dev_opts)
    chosen = backend or dev_backend
    if threads is not None and not (threads_where_taken and "threads" not in find_format(
            None if method is not None else path or default_model_path(), chosen).options):
        opts["threads"] = int(threads)
    engine = load_engine(path, backend=chosen, **opts)
    if dev_backend and not backend:
        engine.selection = f"{engine.name} (--device {dev})"
    return engine


def load_engine(path: str | Path | None = None, backend: str | None = None, **options) -> Engine:
    """Load a model file on a back-end (or, for the classical row, a fill that needs no file).

    ``path`` None loads the shipped default model. ``backend`` None or ``"auto"``: for ``.onnx``,
    the CPU back-ends of :data:`AUTO_ORDER` that are installed and load the model, measured per
    input size when there are several (:class:`~fastfill.engines.auto.MeasuredEngine`);
    otherwise the row for the suffix. A named back-end is used as named. ``options`` go to the
    engine's constructor (e.g. ``threads=2``, ``device='cuda'`` for ONNX Runtime, ``cache_dir``
    for OpenVINO, ``method='patch'`` for the classical row). The engine's ``selection`` says
    which back-end was used and why.
    """
    backend = None if backend == AUTO else backend
    if backend is not None and find_format(None, backend).suffix is None:
        if path is not None:
            raise EngineError(f"the {backend} back-end reads no model file (got {path})")
        return _load(find_format(None, backend), None, options)
    if path is None:
        path = default_model_path()
        if not path.exists():
            raise EngineError(f"the default model is not installed ({path}); pass a model file")
    path = Path(path)
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


def installed_backends(suffix: str | None = None) -> list[str]:
    """The back-ends for model files (of ``suffix``; None: any) whose Python package is installed
    (for error messages)."""
    return [f.backend for f in FORMATS if f.suffix and (suffix is None or f.suffix == suffix)
            and (not f.requires or find_spec(f.requires) is not None)]


def _load(fmt: Format, path: Path | None, options: dict) -> Engine:
    unknown = sorted(set(options) - set(fmt.options))
    if unknown:
        raise EngineError(f"the {fmt.backend} back-end takes no {', '.join(map(repr, unknown))} option "
                          f"(it takes: {', '.join(fmt.options) or 'none'})")
    try:
        cls = fmt.engine_class()
    except ModuleNotFoundError as e:  # the row's own module needs a package at import (torch)
        how = f"pip install 'fastfill[{fmt.extra}]'" if fmt.extra else "reinstall fastfill"
        raise EngineError(f"the {fmt.backend} back-end needs {e.name}: {how}") from None
    except ImportError as e:  # (import_train's words: what to install, or what hides the package)
        raise EngineError(f"the {fmt.backend} back-end: {e}") from None
    return cls(**options) if fmt.suffix is None else cls(path, **options)


__all__ = [
    "Engine", "EngineBase", "ModelMeta", "Format", "FORMATS", "BACKENDS", "MODEL_BACKENDS", "SUFFIXES",
    "CLASSICAL", "load_engine", "find_format", "default_model_path", "read_meta", "read_onnx_metadata",
    "Device", "parse_device", "device_options", "open_engine", "DEVICES", "DEVICE_KINDS", "AUTO",
    "AUTO_ORDER", "check_model_file", "MAX_MODEL_BYTES", "as_engine",
]
