"""What every engine shares: the model's metadata and the small interface engines implement.

Engines take arrays and return arrays; they know nothing of files on disk other than their
model, of masks, or of the CLI (docs/ARCHITECTURE.md, Boundaries). Metadata travels inside the
ONNX file as ``metadata_props`` (keys ``fastfill.*``; docs/ARCHITECTURE.md, The model contract)
and, for a TensorRT plan, in the sidecar JSON written beside it by ``fastfill build``.

This module needs only the standard library and numpy: reading the metadata of an ONNX file does
not need the ``onnx`` package (a minimal protobuf reader below walks the top-level fields).
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EngineError, InputError, file_kind
from ..fills import FILLS

PREFIX = "fastfill."
# The ONNX ops a model file may use (the model contract, docs/ARCHITECTURE.md): exports are
# held to it, and every back-end (TensorRT included) runs them.
MODEL_OPS = frozenset({
    "Conv", "ConvTranspose", "Relu", "LeakyRelu", "Sigmoid", "Concat", "Gemm", "MatMul",
    "Reshape", "Pad", "Mul", "Add", "Slice", "Clip",
    # GroupNorm exports as Reshape -> InstanceNormalization -> Reshape, with Shape for the sizes
    "InstanceNormalization", "Shape", "Identity",
})

# Bumped when the meaning of a key changes; a newer file is refused with a clear message.
METADATA_VERSION = 1

# Model files are read whole (the metadata reader, TensorRT's plan): ONNX holds at most 2 GiB in one
# file (protobuf's limit) and fastfill's models are a few MB, so more is not a model.
MAX_MODEL_BYTES = 2 * 1024 ** 3
# The ranges of the numeric metadata (docs/ARCHITECTURE.md, The model contract): beyond them a
# model would fail on its first image, or pad every crop to an absurd size, instead of at load.
MAX_MULTIPLE = 256  # 8 stride-2 stages
MAX_INPUT_SIDE = 8192
MAX_RECEPTIVE_FIELD = 1 << 18  # the patch fill's widest context (radius 65536) is 131074


def _out_of_range(field: str, value, allowed: str) -> EngineError:
    return EngineError(f"{PREFIX}{field} = {value} is out of range (allowed: {allowed})")


def _int_in(field: str, value, lo: int, hi: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise _out_of_range(field, value, f"{lo} to {hi}")


@dataclass(frozen=True)
class ModelMeta:
    """What the runtime needs to know about a model (docs/ARCHITECTURE.md, The model contract)."""

    kind: str  # the trained kind, e.g. 'glcic': a name for messages (the runtime reads the fields below)
    mean: tuple[float, float, float]  # hole fill colour, RGB in [0, 1]
    multiple: int = 4  # H and W must be multiples of this
    input_size: tuple[int, int] | None = None  # fixed (h, w), or None = any size
    receptive_field: int = 0  # pixels one output pixel sees (context margin for ROI crops)
    channels: int = 4  # 4 = RGB + mask (glcic), 3 = RGB (ce)
    provenance: dict = field(default_factory=dict, compare=False)
    fill: str = "mean"  # the prefill of the hole pixels the model was trained on (fills.FILLS)

    def __post_init__(self):
        # Any kind runs: what the runtime uses of a model is checked below (channels, sizes, multiple).
        if not (isinstance(self.kind, str) and 0 < len(self.kind) <= 64 and self.kind.isprintable()):
            raise EngineError(f"{PREFIX}model = {self.kind!r} is not a model kind name "
                              "(1 to 64 printable characters)")
        if len(self.mean) != 3 or not all(0.0 <= float(m) <= 1.0 for m in self.mean):
            raise _out_of_range("mean", ",".join(f"{float(m):g}" for m in self.mean), "3 numbers in [0, 1]")
        if self.fill not in FILLS:
            raise EngineError(f"unknown prefill {self.fill!r} in the model metadata "
                              f"(expected one of {', '.join(FILLS)}); upgrade fastfill")
        _int_in("multiple", self.multiple, 1, MAX_MULTIPLE)
        if isinstance(self.channels, (bool, np.bool_)) or self.channels not in (3, 4):
            raise _out_of_range("channels", self.channels, "3 or 4")
        _int_in("receptive_field", self.receptive_field, 0, MAX_RECEPTIVE_FIELD)
        if self.input_size is not None:
            size = ",".join(str(v) for v in self.input_size)
            try:
                for v in self.input_size:
                    _int_in("input_size", v, 1, MAX_INPUT_SIDE)
            except EngineError:
                raise _out_of_range("input_size", size, f"each side 1 to {MAX_INPUT_SIDE}") from None
            if any(v % self.multiple for v in self.input_size):  # no padded input would fit it
                raise _out_of_range("input_size", size, f"multiples of {PREFIX}multiple ({self.multiple})")

    # -- ONNX metadata_props (all values are strings) -----------------------------------------
    def to_onnx_metadata(self) -> dict[str, str]:
        return {
            PREFIX + "version": str(METADATA_VERSION),
            PREFIX + "model": self.kind,
            PREFIX + "mean": ",".join(repr(float(m)) for m in self.mean),
            PREFIX + "multiple": str(int(self.multiple)),
            PREFIX + "input_size": "" if self.input_size is None else "%d,%d" % tuple(self.input_size),
            PREFIX + "receptive_field": str(int(self.receptive_field)),
            PREFIX + "channels": str(int(self.channels)),
            PREFIX + "provenance": json.dumps(self.provenance, sort_keys=True),
            PREFIX + "fill": self.fill,
        }

    @classmethod
    def from_onnx_metadata(cls, props: dict[str, str], source: str = "model") -> ModelMeta:
        """Rebuild from ``metadata_props``; a file without them gets a message saying what to do."""
        if PREFIX + "model" not in props:
            raise EngineError(
                f"{source}: no fastfill metadata (fastfill.model) in the model file; "
                "export it with `fastfill export CHECKPOINT -o model.onnx`")
        try:
            version = int(props.get(PREFIX + "version", "1"))
            if version > METADATA_VERSION:
                raise EngineError(f"{source}: model metadata version {version} is newer than this "
                                  f"fastfill understands ({METADATA_VERSION}); upgrade fastfill")
            if version < 1:
                raise EngineError(f"{source}: {_out_of_range('version', version, f'1 to {METADATA_VERSION}')}")
            mean = tuple(float(v) for v in props[PREFIX + "mean"].split(","))
            size = props.get(PREFIX + "input_size", "").strip()
            input_size = tuple(int(v) for v in size.split(",")) if size else None
            if input_size is not None and len(input_size) != 2:
                raise ValueError(f"input_size {size!r}")
            prov = props.get(PREFIX + "provenance", "")
            fields = dict(
                kind=props[PREFIX + "model"],
                mean=mean,  # type: ignore[arg-type]
                multiple=int(props.get(PREFIX + "multiple", "4")),
                input_size=input_size,  # type: ignore[arg-type]
                receptive_field=int(props.get(PREFIX + "receptive_field", "0")),
                channels=int(props.get(PREFIX + "channels", "4")),
                provenance=json.loads(prov) if prov else {},
                fill=props.get(PREFIX + "fill", "mean"),  # files from before the key: mean
            )
        except EngineError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise EngineError(f"{source}: bad fastfill metadata ({type(e).__name__}: {e})") from None
        try:
            return cls(**fields)
        except EngineError as e:  # the checks of the values: say which file
            raise EngineError(f"{source}: {e}") from None

    # -- JSON (the .plan sidecar) ------------------------------------------------------------
    def to_dict(self) -> dict:
        return self.to_onnx_metadata()

    @classmethod
    def from_dict(cls, d: dict, source: str = "model") -> ModelMeta:
        return cls.from_onnx_metadata(d, source)


def shape_problem(meta: ModelMeta, shape) -> str | None:
    """Why the model cannot take an input of ``shape`` (N, C, H, W), or None when it can."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[0] < 1:
        return f"engine input must be [N, C, H, W] with N >= 1, got shape {shape}"
    n, c, h, w = shape
    if c != meta.channels:
        return f"{meta.kind} model takes {meta.channels} channels, got {c}"
    if meta.input_size is not None and (h, w) != tuple(meta.input_size):
        return (f"{meta.kind} model takes {meta.input_size[0]}x{meta.input_size[1]} "
                f"inputs, got {h}x{w}")
    if h % meta.multiple or w % meta.multiple:
        return f"input height and width must be multiples of {meta.multiple}, got {h}x{w}"
    return None


def check_io_shapes(source, meta: ModelMeta, in_shape, out_shape) -> None:
    """The model contract at load time (docs/ARCHITECTURE.md): input [N, channels, H, W] and
    output [N, 3, H, W]; symbolic dimensions pass. An EngineError names both shapes otherwise."""
    def bad(shape, channels):
        if shape is None or len(shape) != 4:
            return True
        return isinstance(shape[1], int) and shape[1] != channels

    if bad(in_shape, meta.channels) or bad(out_shape, 3):
        raise EngineError(f"{source}: breaks the model contract: input {list(in_shape or [])} should be "
                          f"[N, {meta.channels}, H, W] and output {list(out_shape or [])} [N, 3, H, W]")


def check_input(meta: ModelMeta, x: np.ndarray) -> np.ndarray:
    """Validate an engine input against the model's contract; returns a C-contiguous float32 array."""
    if not isinstance(x, np.ndarray):
        raise InputError(f"engine input must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise InputError(f"engine input must be float32, got {x.dtype}")
    if x.ndim != 4 or x.shape[0] < 1:
        raise InputError(f"engine input must be [N, C, H, W] with N >= 1, got shape {x.shape}")
    reason = shape_problem(meta, x.shape)
    if reason is not None:
        raise InputError(reason)
    return np.ascontiguousarray(x)


class EngineBase:
    """One loaded model on one back-end: every engine is one (a caller's own object is adapted
    once, :func:`as_engine`). ``infer`` works on host arrays, its input checked here for every
    back-end.

    What an engine is and can do beyond ``infer`` it declares here, so nothing has to guess:

    - ``name``: the back-end's name (e.g. 'onnxruntime'); ``device``: 'cpu' or 'cuda';
    - ``path``: the model file it runs (None: no file);
    - ``selection``: what picked this back-end and why (set by the loader that picked it; None:
      made by the caller, not by a loader);
    - ``runs_on``: where the work runs, as the back-end itself reports it;
    - ``flops(height, width)``: GFLOP of one call at [1, C, height, width], or None when the
      engine cannot count them itself (``fastfill bench`` then counts its ONNX file);
    - ``device_path``: it has ``run_uint8(images, masks)``, prepare + model + composite on its
      own device, so only uint8 crosses to it, for this model (a prefill its kernels compute);
    - ``narrow_limits``: its ``accepts(shape)`` refuses shapes the model contract allows (e.g.
      TensorRT's optimization profiles), so callers ask it before running;
    - ``fill_options``: options of the prefill's kernel (None: the fill's defaults).

    The options it takes are its constructor's, listed in its row of
    :data:`fastfill.engines.FORMATS`.
    """

    meta: ModelMeta
    name = "engine"
    device = "cpu"
    path: Path | None = None
    selection: str | None = None
    device_path = False
    narrow_limits = False
    fill_options: dict | None = None

    @property
    def runs_on(self) -> str:
        """Where the work runs, as the back-end itself reports it (for the run header and info)."""
        return self.device.upper()

    def flops(self, height: int, width: int) -> float | None:
        """GFLOP of one model call at [1, C, height, width]; None: not counted by the engine."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def infer(self, x: np.ndarray) -> np.ndarray:
        """float32 [N, C, H, W] -> float32 [N, 3, H, W]: the input checked against the model's
        contract here, once, for every back-end; then the back-end's ``_infer``."""
        return self._infer(check_input(self.meta, x))

    def _infer(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def accepts(self, shape) -> str | None:
        """Cheap check, without running anything: None when ``infer`` takes an input of ``shape``
        (N, C, H, W), else the reason it would refuse it. Back-ends with narrower limits (e.g.
        TensorRT's optimization profiles) override it; callers use it to refuse one image up
        front instead of failing a whole batch or run."""
        return shape_problem(self.meta, shape)

    def run_uint8(self, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """The device path (only where ``device_path`` says so)."""
        raise EngineError(f"{self.name} has no uint8 device path for this model")

    def close(self) -> None:
        pass

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} on {self.device}: {self.meta.kind}>"


# The engine type of annotations and the API.
Engine = EngineBase


class ForeignEngine(EngineBase):
    """A caller's own engine that is not an :class:`EngineBase`, adapted once: its ``meta`` and
    ``infer`` (required), and its ``name``, ``device`` and ``close`` where it has them, read here
    once. It declares nothing more (the host path, the model contract's limits, no FLOP count):
    an engine that can do more subclasses EngineBase and says so."""

    def __init__(self, inner):
        self.inner, self.meta, self._run = inner, inner.meta, inner.infer
        if not isinstance(self.meta, ModelMeta):
            raise InputError(f"{type(inner).__name__}.meta is a {type(self.meta).__name__}, "
                             "not a ModelMeta")
        self.name = str(getattr(inner, "name", type(inner).__name__))
        self.device = str(getattr(inner, "device", "cpu"))
        self._close = getattr(inner, "close", None)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        return self._run(x)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def as_engine(engine) -> EngineBase:
    """``engine`` as an EngineBase: itself, or a caller's own object with ``meta`` and ``infer``
    adapted once (:class:`ForeignEngine`); an InputError when it is not an engine at all."""
    if isinstance(engine, EngineBase):
        return engine
    try:
        return ForeignEngine(engine)
    except AttributeError:
        raise InputError(f"engine must be None, a model path or an Engine (an EngineBase, or an "
                         f"object with meta and infer), got {type(engine).__name__}") from None


# -- a minimal reader of ONNX metadata_props (no `onnx` package needed at run time) --------------

_MODEL_METADATA_FIELD = 14  # ModelProto.metadata_props (repeated StringStringEntryProto)
_MODEL_GRAPH_FIELD = 7


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: memoryview):
    """Yield (field_number, wire_type, value) of one protobuf message; value is int or memoryview."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ValueError("field number 0")
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if i > len(buf):
            raise ValueError("truncated message")
        yield num, wt, v


def check_model_file(path: str | Path, limit: int = MAX_MODEL_BYTES) -> int:
    """The size of a model file (or a plan's sidecar), after the checks every opener of one makes
    first: it exists and, links followed, is a regular file (a FIFO would block the reader, a
    device feed it forever) of at most ``limit`` bytes. An EngineError in one line otherwise."""
    p = Path(path)
    try:
        st = p.stat()  # follows links: the checks are on what would be read
    except FileNotFoundError:
        raise EngineError(f"model file not found: {p}") from None
    except OSError as e:
        raise EngineError(f"{p}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise EngineError(f"{p}: not a regular file ({file_kind(st.st_mode)})")
    if st.st_size > limit:
        raise EngineError(f"{p}: {st.st_size} bytes, over the limit of {limit} bytes")
    return st.st_size


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, with clear errors for missing/empty/non-ONNX files."""
    p = Path(path)
    size = check_model_file(p)
    try:
        with open(p, "rb") as f:
            data = f.read(size + 1)  # no more than was checked, should the file grow meanwhile
    except OSError as e:
        raise EngineError(f"{p}: cannot read ({e.strerror or e})") from None
    if len(data) > size:
        raise EngineError(f"{p}: the file grew while it was read")
    if not data:
        raise EngineError(f"model file is empty: {p}")
    props: dict[str, str] = {}
    has_graph = False
    try:
        for num, wt, v in _fields(memoryview(data)):
            if num == _MODEL_GRAPH_FIELD and wt == 2:
                has_graph = True
            elif num == _MODEL_METADATA_FIELD and wt == 2:
                kv = {n: bytes(val).decode("utf-8") for n, w, val in _fields(v) if w == 2}
                props[kv.get(1, "")] = kv.get(2, "")
    except (ValueError, UnicodeDecodeError) as e:
        raise EngineError(f"{p}: not a valid ONNX model ({e}); the file may be truncated or of "
                          "another format") from None
    if not has_graph:
        raise EngineError(f"{p}: not a valid ONNX model (no graph found)")
    return props


def read_meta(path: str | Path) -> ModelMeta:
    """The :class:`ModelMeta` stored in an ONNX file."""
    return ModelMeta.from_onnx_metadata(read_onnx_metadata(path), source=str(path))
