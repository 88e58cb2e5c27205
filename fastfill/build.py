"""ONNX -> TensorRT ``.plan``: FP16 (or FP32), optimization profiles, timing cache, sidecar JSON.

    fastfill build model.onnx -o glcic.plan --fp16 --profile 1x256x256:1x512x512:4x1024x1024

FP16 across TensorRT versions. TensorRT 11 removed the FP16 builder flag that TensorRT 10 still
has (and TensorRT 10 already deprecates "weakly typed" networks). So FP16 is a property of the
graph: :func:`convert_fp16` casts the weights and activations to float16 in a converted ONNX,
keeping the graph's input and output and the final Sigmoid (numerically sensitive) in float32,
and the network is built *strongly typed*. That one path works on TensorRT 10 and 11.

Profiles are ``min:opt:max`` with each shape ``NxHxW`` (or ``HxW`` for N = 1); channels come from
the model's metadata. Without profiles a default covering 64..2048 px (GLCIC) or the fixed size
(CE) is used. The plan and its sidecar (``glcic.json``, see
:mod:`fastfill.engines.tensorrt`) are written to temporary names and renamed.

Without an NVIDIA GPU or without TensorRT, :func:`build_engine` raises a :class:`BuildError` whose
one line says what is missing and how to install it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .engines import FORMATS
from .engines.base import MODEL_OPS as TRT_OPS  # the model contract's ops: all TensorRT runs
from .engines.base import ModelMeta, read_meta, shape_problem
from .engines.tensorrt import (INSTALL_TRT, SIDECAR_FORMAT, SIDECAR_VERSION, gpu_info,
                               import_tensorrt, sidecar_path)
from .errors import BuildError, EngineError
from .files.codecs import sha256_file, write_file

# Ops kept in float32 when they produce the graph output (a Sigmoid in fp16 loses the tails; the
# residual head's prefill + correction, clipped, would lose the prefill's precision).
FP32_TAIL_OPS = frozenset({"Sigmoid", "Clip"})


# ------------------------------------------------------------------------------ profiles

@dataclass(frozen=True)
class Profile:
    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]
    text: str

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max), "text": self.text}


def _shape(s: str, channels: int) -> tuple[int, int, int, int]:
    try:
        parts = [int(p) for p in s.lower().split("x")]
    except ValueError:
        raise ValueError(f"{s!r} is not NxHxW or HxW") from None
    if len(parts) == 2:
        parts = [1] + parts
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(f"{s!r} is not NxHxW or HxW")
    n, h, w = parts
    return (n, channels, h, w)


def parse_profile(text: str, meta: ModelMeta) -> Profile:
    """``min:opt:max`` of ``NxHxW`` shapes -> Profile, checked against the model's constraints."""
    try:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError("expected min:opt:max")
        lo, opt, hi = (_shape(p, meta.channels) for p in parts)
    except ValueError as e:
        raise BuildError(f"bad --profile {text!r} ({e}); example: 1x256x256:1x512x512:4x1024x1024") from None
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise BuildError(f"bad --profile {text!r}: need min <= opt <= max in every dimension")
    for s in (lo, opt, hi):
        reason = shape_problem(meta, s)
        if reason is not None:
            raise BuildError(f"bad --profile {text!r}: {reason}")
    return Profile(lo, opt, hi, text)


def default_profiles(meta: ModelMeta) -> list[Profile]:
    if meta.input_size is not None:
        h, w = meta.input_size
        return [parse_profile(f"1x{h}x{w}:8x{h}x{w}:32x{h}x{w}", meta)]
    return [parse_profile("1x64x64:1x512x512:4x2048x2048", meta)]


# ------------------------------------------------------------------------------ FP16 graph

def _keep_used_initializers(g, new_inits: dict) -> None:
    """The graph's initializers: the old and new ones its nodes read (no value_info: stale)."""
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used] + [t for k, t in new_inits.items() if k in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]


def _fp32_nodes(g, outputs, producer) -> set[int]:
    """ids of the nodes kept in fp32: a FP32_TAIL_OPS node whose output is a graph output, and
    for a residual head (Clip(Slice(input) + delta)) the Add and the Slice of the input too, so
    the prefill passes through at full precision and only the correction is computed in fp16."""
    keep32 = {id(n) for o in outputs if (n := producer.get(o)) is not None and n.op_type in FP32_TAIL_OPS}
    inputs = {i.name for i in g.input}
    for n in [n for n in g.node if id(n) in keep32 and n.op_type == "Clip"]:
        add = producer.get(n.input[0])
        if add is not None and add.op_type == "Add":
            keep32.add(id(add))
            for a in add.input:
                sl = producer.get(a)
                if sl is not None and sl.op_type == "Slice" and sl.input[0] in inputs:
                    keep32.add(id(sl))
    return keep32


def convert_fp16(model_bytes: bytes) -> bytes:
    """A float16 copy of an fp32 ONNX graph: float32 I/O and the final Sigmoid (or the residual
    head's Slice, Add and Clip) kept in float32.

    Initializers used by fp16 nodes become float16; ``Cast`` nodes are inserted where a tensor
    changes precision. Only the ops in :data:`TRT_OPS` are accepted.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise BuildError("the FP16 conversion needs the onnx package: pip install 'fastfill[trt]'") from None
    import numpy as np

    model = onnx.load_from_string(model_bytes)
    g = model.graph
    bad = {n.op_type for n in g.node} - TRT_OPS
    if bad:
        raise BuildError(f"cannot convert ops {', '.join(sorted(bad))} to FP16 (not in the TensorRT op list)")
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    keep32 = _fp32_nodes(g, outputs, producer)

    dtype: dict[str, int] = {i.name: i.type.tensor_type.elem_type for i in g.input}
    for name, t in inits.items():
        dtype[name] = t.data_type
    new_inits: dict[str, object] = {}
    casts: dict[tuple[str, int], str] = {}
    nodes = []

    def as_type(name: str, want: int) -> str:
        if dtype.get(name) not in (FLOAT, HALF) or dtype[name] == want:
            return name
        if name in inits:  # a weight: store a converted copy instead of casting at run time
            key = f"{name}__fp16" if want == HALF else f"{name}__fp32"
            if key not in new_inits:
                arr = numpy_helper.to_array(inits[name]).astype(np.float16 if want == HALF else np.float32)
                new_inits[key] = numpy_helper.from_array(arr, key)
                dtype[key] = want
            return key
        key = (name, want)
        if key not in casts:
            out = f"{name}__to{'16' if want == HALF else '32'}"
            nodes.append(helper.make_node("Cast", [name], [out], to=want, name=f"cast_{out}"))
            casts[key] = out
            dtype[out] = want
        return casts[key]

    for node in g.node:
        want = FLOAT if id(node) in keep32 else HALF
        floats_in = False
        for i, name in enumerate(node.input):
            if name and dtype.get(name) in (FLOAT, HALF):
                floats_in = True
                node.input[i] = as_type(name, want)
        for i, name in enumerate(node.output):
            if floats_in:
                if name in outputs and want == HALF:  # produce fp16, cast back to the fp32 output
                    node.output[i] = f"{name}__fp16"
                    dtype[node.output[i]] = HALF
                    nodes.append(node)
                    nodes.append(helper.make_node("Cast", [node.output[i]], [name], to=FLOAT,
                                                  name=f"cast_{name}__out"))
                    dtype[name] = FLOAT
                    node = None
                    break
                dtype[name] = want
        if node is not None:
            nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    _keep_used_initializers(g, new_inits)
    for o in g.output:
        o.type.tensor_type.elem_type = FLOAT
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ------------------------------------------------------------------------------ build

def check_environment(device_id: int = 0):
    """(tensorrt module, gpu info) or one BuildError line saying what is missing and how to install."""
    missing = []
    try:
        gpu = gpu_info(device_id)
    except EngineError as e:
        gpu, missing = None, [str(e)]
    try:
        trt = import_tensorrt()
    except EngineError:
        trt = None
        missing.append("TensorRT is not installed")
    if missing:
        hint = (INSTALL_TRT if trt is None else "TensorRT needs an NVIDIA GPU and driver")
        raise BuildError(f"cannot build a TensorRT engine here: {'; '.join(missing)}. {hint}. "
                         "(The .onnx runs without a GPU: fastfill run --engine model.onnx)")
    return trt, gpu


def _plan_suffix() -> str:
    return next(f.suffix for f in FORMATS if f.made_by == "fastfill build")


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, precision: str = "fp16",
                 profiles: list[str] | None = None, timing_cache: str | Path | None = None,
                 workspace_mb: int | None = None, device_id: int = 0,
                 overwrite: bool = False, log=print) -> dict:
    """Build a TensorRT plan from an exported ONNX file; returns the sidecar dict."""
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if plan_path.suffix != _plan_suffix():
        raise BuildError(f"{plan_path}: TensorRT engines are written as {_plan_suffix()} files")
    if precision not in ("fp16", "fp32"):
        raise BuildError(f"precision must be fp16 or fp32, got {precision!r}")
    if plan_path.exists() and not overwrite:
        raise BuildError(f"{plan_path} exists (use --force to replace it)")
    side_path = sidecar_path(plan_path)
    if side_path.exists() and not overwrite:  # (the plan's description would replace a file of yours)
        raise BuildError(f"{side_path} exists: the plan's sidecar would replace it (use --force)")
    if timing_cache and Path(timing_cache).resolve() in {p.resolve() for p in (onnx_path, plan_path, side_path)}:
        raise BuildError(f"--timing-cache {timing_cache} is the model, the plan or its sidecar")
    try:
        meta = read_meta(onnx_path)
    except EngineError as e:
        raise BuildError(str(e)) from None
    profs = [parse_profile(p, meta) for p in profiles] if profiles else default_profiles(meta)
    trt, gpu = check_environment(device_id)

    onnx_bytes = onnx_path.read_bytes()
    graph = convert_fp16(onnx_bytes) if precision == "fp16" else onnx_bytes

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")  # TensorRT >= 9
    if typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for p in profs:
        op = builder.create_optimization_profile()
        op.set_shape("input", p.min, p.opt, p.max)
        config.add_optimization_profile(op)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_blob = cache_path.read_bytes() if cache_path and cache_path.exists() else b""
    cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(cache, ignore_mismatch=False)
    log(f"building {precision} TensorRT {trt.__version__} engine for {gpu['gpu']} "
        f"(sm {gpu['compute_capability']}), {len(profs)} profile(s)"
        + (f", timing cache {cache_path} ({len(cache_blob)} bytes)" if cache_path else ""))
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildError("TensorRT failed to build the engine (see its log above)")
    plan_bytes = bytes(plan)
    side = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "meta": meta.to_onnx_metadata(),
        "tensorrt": trt.__version__,
        "gpu": gpu["gpu"],
        "compute_capability": gpu["compute_capability"],
        "precision": precision,
        "strongly_typed": typed,
        "profiles": [p.as_dict() for p in profs],
        "onnx": str(onnx_path),
        "onnx_sha256": sha256_file(onnx_path),
        "plan_sha256": hashlib.sha256(plan_bytes).hexdigest(),  # of the bytes about to be written
        "workspace_mb": workspace_mb,
    }
    write = partial(write_file, error=BuildError, force="--force")
    write(plan_path, plan_bytes, overwrite=overwrite)
    write(side_path, (json.dumps(side, indent=2) + "\n").encode(), overwrite=overwrite)
    if cache_path:
        write(cache_path, bytes(config.get_timing_cache().serialize()), overwrite=True)
    log(f"wrote {plan_path} ({len(plan_bytes) / 1e6:.1f} MB) and {sidecar_path(plan_path).name}")
    return side
