"""The measurement behind ``fastfill bench`` (and the scripts in ``benchmarks/``).

What one run measures, per configuration (size x batch) and per *target* (an engine, optionally in
ROI or full-frame mode, or PyTorch eager on a checkpoint). A target is what ``fastfill run`` runs
with the same options (:func:`make_targets`): with none, the shipped model as run loads it (ROI on,
its batch size, the back-end's threads, the default fill where the model adds nothing to its prefill):

- latency of one batch: mean, p50, p90, p99, min; throughput in images/s and megapixels/s;
- the split by stage: ``check`` (validation and the ROI windows), ``prepare``, ``infer``,
  ``composite``, and ``decode`` / ``encode`` when the input comes from files;
- the model's GFLOP per image at the sizes it actually runs (2 x the multiply-adds of every
  conv / convtranspose / gemm / matmul layer, counted from the ONNX graph after shape inference:
  :func:`onnx_flops`; 0 where no net runs) and the GFLOP/s the engine achieves in its ``infer``
  stage.

Targets are measured *interleaved*: every iteration runs each target once, in a rotating order,
so that a noisy machine slows them all alike and their ratios stay meaningful.

Stage timing comes from the Inpainter itself (``Inpainter.batch(..., timings=...)``), so the
numbers describe the real path. When FLOPs cannot be counted, ``gflop_per_image`` is None ("n/a")
and ``gflop_note`` says why: never a partial count. Nothing here imports torch unless a PyTorch
target is asked for.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
import importlib.util
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import ops
from .errors import EngineError, InputError

STAGES = ("decode", "check", "prepare", "infer", "composite", "encode")
SCHEMA_VERSION = 1
_VERSION_DISTS = ("fastfill", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt",
                  "torch", "onnx", "pillow")


# -- small helpers ------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+)\s*(?:[xX\u00d7*]\s*(\d+))?\s*$")


# The largest synthetic input, pixels per image, and per batch (images x size): what the input
# and the engine's buffers take stays within a few GB.
MAX_PIXELS = 50_000_000
MAX_BATCH_PIXELS = 64_000_000


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' (or 'N' for NxN) -> (width, height); InputError with an example otherwise."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise InputError(f"bad size {text!r}: expected WIDTHxHEIGHT, e.g. 512x512 or 1920x1080")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    if w < 1 or h < 1:
        raise InputError(f"bad size {text!r}: width and height must be >= 1")
    if w * h > MAX_PIXELS:  # (the synthetic input alone takes ~85 bytes a pixel)
        raise InputError(f"bad size {text!r}: over {MAX_PIXELS / 1e6:g} megapixels")
    return w, h


def default_threads() -> int:
    """The cores this process may use (the CPU affinity mask, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the numbers (from metadata; no imports)."""
    out = {}
    for d in _VERSION_DISTS:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def environment(threads: int | None = None) -> dict:
    """Where the numbers come from: date, CPU, cores, threads, library versions."""
    try:
        native = ops.build_info()
        kernels = {"backends": list(native["backends"]), "openmp": bool(native["openmp"]),
                   "omp_max_threads": int(native["omp_max_threads"])}
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        kernels = {"error": str(e)}
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "kernels": kernels,
        "versions": versions(),
    }


def percentiles(times_s: Sequence[float]) -> dict[str, float]:
    """Latency summary in milliseconds."""
    a = np.asarray(times_s, dtype=np.float64) * 1e3
    if a.size == 0:
        return {k: float("nan") for k in ("mean", "p50", "p90", "p99", "min", "max")}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "min": float(a.min()), "max": float(a.max())}


def synthetic_input(width: int, height: int, batch: int, hole_fraction: float, seed: int = 0):
    """A smooth random image batch and one centred rectangular hole of ``hole_fraction`` of the
    area (same aspect as the image). Returns (images uint8 [N,H,W,3], masks uint8 [N,H,W])."""
    if not 0.0 < hole_fraction <= 1.0:
        raise InputError(f"hole fraction must be in (0, 1], got {hole_fraction}")
    rng = np.random.default_rng(seed)
    # low-frequency content (a real photo is smooth) + noise; content does not change the speed
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images = np.empty((batch, height, width, 3), np.uint8)
    for i in range(batch):
        f = rng.uniform(0.005, 0.03, size=(3, 2))
        base = [127 + 100 * np.sin(xx * f[c, 0] + yy * f[c, 1] + i) for c in range(3)]
        img = np.stack(base, -1) + rng.normal(0, 8, (height, width, 3))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    s = float(np.sqrt(hole_fraction))
    hh, hw = max(1, round(height * s)), max(1, round(width * s))
    t, l = (height - hh) // 2, (width - hw) // 2
    masks = np.zeros((batch, height, width), np.uint8)
    masks[:, t:t + hh, l:l + hw] = 255
    return images, masks


# -- FLOPs --------------------------------------------------------------------------------------

_FLOP_CACHE: dict = {}


class FlopCountError(ValueError):
    """FLOPs cannot be counted for this model (the message says why); the report shows "n/a"."""


# The ops counted, as 2 x multiply-adds, and where their weight (or B) input is.
_MAC_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1,
            "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "Gemm": 1}
# Standard ops that also do multiply-adds, which this counter does not count: a model with one has
# no number rather than a partial one.
_UNCOUNTED_MAC_OPS = {"Einsum", "RNN", "LSTM", "GRU", "Attention", "MultiHeadAttention",
                      "DeformConv"}
# Ops of other domains known to do no multiply-adds (ONNX Runtime's QDQ); any other is unknown.
_FREE_FOREIGN_OPS = {"QuantizeLinear", "DequantizeLinear"}


class _Uncountable(ValueError):
    """A graph the counter reads but cannot count (its own message, without a type name)."""


def _unknown_op(node) -> str | None:
    """Why ``node`` (or a node of its subgraphs) makes a count impossible, else None."""
    if node.domain not in ("", "ai.onnx"):
        if node.op_type in _FREE_FOREIGN_OPS:
            return None
        return (f"op {node.domain}::{node.op_type} ({node.name or 'unnamed'}): whether and how "
                "many multiply-adds it does is not known to the counter")
    if node.op_type in _UNCOUNTED_MAC_OPS:
        return (f"op {node.op_type} ({node.name or 'unnamed'}) does multiply-adds the counter "
                "does not count")
    for a in node.attribute:  # If / Loop / Scan: a body's layers run an unknown number of times
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            for n in g.node:
                if n.op_type in _MAC_OPS or _unknown_op(n):
                    return (f"{node.op_type} ({node.name or 'unnamed'}) has {n.op_type} in its "
                            "subgraph: the counter does not count subgraphs")
    return None


def _node_macs(node, shapes, attrs) -> int:
    """Multiply-adds of one counted node; _Uncountable naming the node when a shape is unknown."""
    op = node.op_type
    w_at = _MAC_OPS[op]
    x = shapes.get(node.input[0]) if node.input else None
    w = shapes.get(node.input[w_at]) if len(node.input) > w_at else None
    y = shapes.get(node.output[0])
    need = {"ConvTranspose": (x, w)}.get(op, (x, w, y))
    if any(s is None or None in s for s in need):
        raise _Uncountable(f"{op} node {node.name or '(unnamed)'!r}: its shapes cannot be "
                           f"inferred (input {x}, weight {w}, output {y}; None = unknown)")
    if op == "ConvTranspose":  # every input pixel meets the whole [Cout/g, k...] kernel slice
        return int(np.prod(x)) * int(np.prod(w[1:]))
    if op in ("Conv", "ConvInteger", "QLinearConv"):  # every output meets Cin/g x k... weights
        return int(np.prod(y)) * int(np.prod(w[1:]))
    k = x[-2] if (op == "Gemm" and attrs.get("transA") and len(x) >= 2) else x[-1]
    return int(np.prod(y)) * int(k)


def onnx_flops(path: str | Path, height: int, width: int, batch: int = 1) -> dict:
    """GFLOP of one call of an ONNX model on an input of [batch, C, height, width]: 2 x the
    multiply-adds of every Conv, ConvTranspose, Gemm and MatMul node (and their integer /
    QLinear forms), with shapes from ``onnx.shape_inference`` (with data propagation, so shapes
    computed in the graph, e.g. a group norm's ``Reshape(x, Shape(y))``, are followed). Biases,
    norms, activations and other element-wise ops are not counted (as torch's FlopCounterMode
    does not); the CE's paste, two MatMuls, is.

    Returns ``{'gflop': total, 'by_op': {op_type: gflop}, 'layers': [(name, op, gflop)]}``.
    A count is all layers or none: :class:`FlopCountError` saying why when the ``onnx`` package
    is missing (the `dev` or `train` extra), the file cannot be read, a counted layer's shapes
    cannot be inferred, or the graph has an op that may do multiply-adds the counter does not
    count (Einsum, RNNs, ops of other domains, layers inside subgraphs)."""
    key = (str(path), os.path.getmtime(path) if os.path.exists(path) else 0, height, width, batch)
    if key in _FLOP_CACHE:
        if isinstance(_FLOP_CACHE[key], str):  # a model that cannot be counted is tried once
            raise FlopCountError(_FLOP_CACHE[key])
        return _FLOP_CACHE[key]
    try:
        import onnx
        from google.protobuf.message import Error as ProtobufError
        from onnx import shape_inference
    except ImportError:
        raise FlopCountError(f"cannot count FLOPs of {path}: the onnx package is not installed "
                             "(pip install onnx)") from None
    try:
        model = onnx.load(str(path))
        graph = model.graph
        for node in graph.node:
            why = _unknown_op(node)
            if why:
                raise _Uncountable(why)
        inits = {i.name: list(i.dims) for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in inits]
        if not inputs:
            raise ValueError("the graph has no input")
        dims = inputs[0].type.tensor_type.shape.dim
        concrete = [batch, None, height, width]
        for d, v in zip(dims, concrete):
            if v is not None:
                d.ClearField("dim_param")
                d.dim_value = v
        # data_prop: without it a shape computed in the graph (Shape -> Reshape) is unknown and
        # every layer after it would drop out of the count
        inferred = shape_inference.infer_shapes(model, data_prop=True)
        shapes = dict(inits)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(
                inferred.graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                                   for d in t.shape.dim]
        layers = []
        for node in inferred.graph.node:
            if node.op_type not in _MAC_OPS:
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            macs = _node_macs(node, shapes, attrs)
            layers.append((node.name or node.op_type, node.op_type, 2.0 * macs / 1e9))
    except (OSError, ValueError, TypeError, KeyError, IndexError, ProtobufError,
            shape_inference.InferenceError, onnx.checker.ValidationError) as e:
        # a file onnx cannot read, a shape not inferred, an op not counted: "n/a", with why
        why = str(e) if isinstance(e, _Uncountable) else f"{type(e).__name__}: {e}"
        _FLOP_CACHE[key] = f"cannot count FLOPs of {path}: {why}"
        raise FlopCountError(_FLOP_CACHE[key]) from None
    by_op: dict[str, float] = {}
    for _, op, g in layers:
        by_op[op] = by_op.get(op, 0.0) + g
    res = {"gflop": float(sum(g for _, _, g in layers)), "by_op": by_op, "layers": layers}
    _FLOP_CACHE[key] = res
    return res


def sgemm_gflops(threads: int | None = None, n: int = 4096, seconds: float = 1.0) -> dict:
    """This CPU's float32 matrix-multiply rate (numpy matmul, ``n`` x ``n``), best of the runs in
    about ``seconds``; threads set with threadpoolctl when installed."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    limiter = None
    if threads is not None:
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=int(threads), user_api="blas")
        except ImportError:
            limiter = None
    try:
        np.matmul(a, b, out=c)  # warm-up
        best = float("inf")
        t_end = time.perf_counter() + seconds
        runs = 0
        while runs < 3 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
            runs += 1
    finally:
        if limiter is not None:
            limiter.unregister() if hasattr(limiter, "unregister") else limiter.__exit__(None, None, None)
    return {"gflops": 2.0 * n ** 3 / best / 1e9, "n": n, "runs": runs,
            "threads": threads, "threads_controlled": limiter is not None}


# -- targets ------------------------------------------------------------------------------------

@dataclass
class Target:
    """One thing to measure: an engine behind an Inpainter (ROI on or off)."""

    label: str
    inpainter: object  # fastfill.inpainter.Inpainter
    model_path: str | None = None  # the .onnx used for FLOP counting (None: ask the engine)
    info: dict = field(default_factory=dict)

    @property
    def engine(self):
        return self.inpainter.engine

    @property
    def runs_a_net(self) -> bool:
        """False for a classical fill (e.g. the default fill in the shipped model's place: no net runs)."""
        from .engines.classical import ClassicalEngine

        return not isinstance(self.engine, ClassicalEngine)

    def gflop(self, height: int, width: int) -> float:
        """GFLOP of one model call on an input of height x width (already padded): 0 where no
        net runs; :class:`FlopCountError` saying why when it cannot be counted."""
        if not self.runs_a_net:
            return 0.0  # model_path may name the skipped net: its FLOPs are not spent
        if self.model_path and str(self.model_path).lower().endswith(".onnx"):
            return onnx_flops(self.model_path, height, width)["gflop"]
        gflop = self.engine.flops(height, width)
        if gflop is None:
            raise FlopCountError(f"{self.engine.name} has no ONNX file to count FLOPs on")
        return gflop


def make_targets(engines: Sequence[str | None], backends: Sequence[str | None] = (None,), *,
                 torch_checkpoint: str | None = None, threads: int | None = None,
                 roi_modes: Sequence[bool] = (True,), batch_size: int | None = None,
                 device: str | None = None) -> list[Target]:
    """Load every (engine file x back-end) plus the optional PyTorch checkpoint, once per ROI
    mode. ``engines`` None entries mean the shipped default model.

    Each target is what ``fastfill run`` (an :class:`~fastfill.inpainter.Inpainter`) runs with the
    same options: ``threads`` None is the back-end's choice, ``batch_size`` None the Inpainter's
    default, and with no engine, back-end, device or threads the shipped model is skipped for the
    default fill where it adds nothing to its prefill (as ``Inpainter()`` does, checked at load)."""
    from .engines import default_model_path, load_engine, open_engine
    from .inpainter import Inpainter, _engine, engine_line  # the header's words are run's own

    loaded = []
    for path in engines:
        for be in backends or (None,):
            if threads is None:  # Inpainter's own loading rule, shortcut included
                eng = _engine(path, None, be, device)
            else:  # threads go to the back-ends that have them (a TensorRT plan has none)
                eng = open_engine(path, backend=be, device=device, threads=threads,
                                  threads_where_taken=True)
            p = str(path) if path is not None else str(default_model_path())
            loaded.append((eng, p))
    if torch_checkpoint:
        if importlib.util.find_spec("torch") is None:
            raise EngineError("--torch needs PyTorch: pip install 'fastfill[train]' "
                              "(CPU: torch==2.13.0)")
        # the table's torch row (train.torch_engine, imported now: it needs torch)
        loaded.append((open_engine(torch_checkpoint, backend="torch", device=device, threads=threads), None))
    names = [Path(p).name if p else "" for _, p in loaded]
    targets = []
    for eng, p in loaded:
        base = eng.name
        if p and len(set(names)) > 1:
            base += f" {Path(p).name}"
        for roi in roi_modes:
            label = base + ((" roi" if roi else " full") if len(roi_modes) > 1 else "")
            bs = {} if batch_size is None else {"batch_size": batch_size}  # None: run's default
            inp = Inpainter(eng, roi=roi, **bs)
            targets.append(Target(label, inp, p, {
                "engine": eng.name, "model": p or str(eng.path or ""), "device": eng.device, "roi": roi,
                "kind": eng.meta.kind, "threads": threads, "measures": engine_line(inp)}))
    if len({t.label for t in targets}) != len(targets):  # same file twice: number them
        for i, t in enumerate(targets):
            t.label = f"{i + 1}:{t.label}"
    return targets


@dataclass
class FileInput:
    """An image and mask file: decode and encode are timed too. ``resize_mask``, ``max_pixels``:
    as `fastfill run`'s flags of those names."""

    image: Path
    mask: Path
    resize_mask: bool = False
    max_pixels: int | None = None

    def decode(self, batch: int):
        """The file read as `fastfill run` reads it (codecs.read_item), ``batch`` times: a batch
        of N files costs N decodes."""
        from .files import codecs as fio

        opts = fio.FileOptions(resize_mask=self.resize_mask, max_pixels=self.max_pixels)
        pairs = []
        for _ in range(batch):
            try:
                pairs.append(fio.read_item(self.image, self.mask, opts, image_name=str(self.image),
                                           mask_name=str(self.mask)))
            except InputError as e:  # (a mask's message names it; an image's does not)
                said = str(e)
                raise InputError(said if getattr(e, "part", "") == "mask" else f"{self.image}: {said}") from None
        images = np.stack([src.rgb for src, _ in pairs])
        masks = np.stack([m.view(np.uint8) for _, m in pairs])
        return pairs[0][0], images, masks

    def encode(self, src, results: np.ndarray, masks: np.ndarray) -> int:
        """Each result encoded in memory as `fastfill run` writes it (its format, quality 95)."""
        from .files import codecs as fio

        fmt = fio.output_format(src.format)
        return sum(len(fio.encode_result(r, src, m, fmt)) for r, m in zip(results, masks))


# -- the benchmark ------------------------------------------------------------------------------

def _inputs(size, batch, inputs, files, hole_fraction, seed):
    """(images [N,H,W,3], masks [N,H,W]) of one configuration."""
    if inputs is not None:
        return tuple(np.ascontiguousarray(a) for a in inputs)
    if files is not None:
        _, images, masks = files.decode(batch)
        return images, masks
    width, height = size
    return synthetic_input(width, height, batch, hole_fraction, seed)


def _measure(targets, images, masks, batch, files, iters, max_seconds) -> dict:
    """Latencies and stage times of every target, interleaved in rotating order."""
    per = {t.label: {"lat": [], "stages": {k: 0.0 for k in STAGES}, "n": 0} for t in targets}
    started = time.perf_counter()
    order = list(targets)
    for it in range(iters):
        for t in order:
            rec = per[t.label]
            st = rec["stages"]
            a = time.perf_counter()
            if files is not None:
                src, images, masks = files.decode(batch)
                st["decode"] += time.perf_counter() - a
            out = t.inpainter.batch(list(images), list(masks), timings=st)
            if files is not None:
                s0 = time.perf_counter()
                files.encode(src, out, masks)
                st["encode"] += time.perf_counter() - s0
            rec["lat"].append(time.perf_counter() - a)
            rec["n"] += 1
        order = order[1:] + order[:1]  # rotate: nobody always runs first
        if max_seconds is not None and it >= 1 and time.perf_counter() - started > max_seconds:
            break
    return per


def _result(t, rec, masks, width, height, batch, files) -> dict:
    """One target's row: latency, throughput, stages, and the FLOPs actually run per image (the
    model at each of its padded windows)."""
    n = rec["n"]
    wins = t.inpainter.windows(masks[0])
    g, why = 0.0, None
    try:
        for _, _, wh, ww in wins:
            g += t.gflop(*ops.padded_size(wh, ww, t.inpainter.multiple))
    except FlopCountError as e:
        g, why = None, str(e)
    if not t.runs_a_net:
        why = f"{t.label}: no net runs (a classical fill), so no model multiply-adds"
    lat = percentiles(rec["lat"])
    mean_s = lat["mean"] / 1e3
    stages = {k: v / n * 1e3 for k, v in rec["stages"].items()
              if v > 0 or k in ("check", "prepare", "infer", "composite")}
    infer_s = stages["infer"] / 1e3
    r = {
        "target": t.label, **t.info,
        "size": [width, height], "batch": batch, "batch_size": t.inpainter.batch_size,
        "iterations": n,
        "hole_fraction": float((masks != 0).mean()),
        "windows": [list(w) for w in wins],
        "latency_ms": lat,
        "throughput": {"images_per_s": batch / mean_s,
                       "megapixels_per_s": batch * width * height / 1e6 / mean_s},
        "stages_ms": stages,
        "gflop_per_image": g,
        # no rate where no model arithmetic is done (n/a, or no net)
        "gflops_infer": (g * batch / infer_s) if (g and infer_s > 0) else None,
        "gflops_end_to_end": (g * batch / mean_s) if g else None,
    }
    if why:
        r["gflop_note"] = why
    if files is not None:
        r["input_files"] = [str(files.image), str(files.mask)]
    return r


def _compare(targets, per, outputs, masks, width, height, batch) -> list[dict]:
    """Ratios against the first target, and the pixel check between targets."""
    base = targets[0]
    b_ref = per[base.label]
    hole = masks != 0
    out = []
    for t in targets[1:]:
        d = np.abs(outputs[t.label].astype(np.int16) - outputs[base.label].astype(np.int16))
        out.append({
            "size": [width, height], "batch": batch, "baseline": base.label, "target": t.label,
            "speedup": (np.mean(b_ref["lat"]) / np.mean(per[t.label]["lat"])),
            "speedup_p50": float(np.median(b_ref["lat"]) / np.median(per[t.label]["lat"])),
            "max_abs_diff_in_hole": int(d[hole].max()) if hole.any() else 0,
            "max_abs_diff_outside": int(d[~hole].max()) if (~hole).any() else 0,
            "pixels_differing_in_hole": float((d[hole] > 0).mean()) if hole.any() else 0.0,
        })
    return out


def bench(targets: Sequence[Target], sizes: Sequence[tuple[int, int]] = ((512, 512),),
          batches: Sequence[int] = (1,), *, iters: int = 10, warmup: int = 2,
          hole_fraction: float = 0.1, max_seconds: float | None = None, files: FileInput | None = None,
          seed: int = 0, threads: int | None = None, log: Callable[[str], None] | None = None,
          inputs: tuple[np.ndarray, np.ndarray] | None = None,
          start: Callable[[dict], None] | None = None) -> dict:
    """Measure every target on every (size, batch), interleaved. Returns the report dict
    (see :func:`format_report`; ``--json`` writes it as is). ``start`` is called with the report
    so far (environment, settings, targets: :func:`format_header`) before anything is run or
    logged, so that a header printed there comes before every progress line.

    The input is synthetic (:func:`synthetic_input`, one size per ``sizes`` entry), or the files
    of ``files`` (decode and encode timed too), or ``inputs`` = (images [N,H,W,3], masks [N,H,W])
    given as arrays (then ``sizes`` and ``batches`` are ignored)."""
    if iters < 1 or warmup < 0:
        raise InputError(f"iters must be >= 1 and warmup >= 0, got {iters}, {warmup}")
    if inputs is None and files is None:
        for (w, h) in sizes:
            for n in batches:
                if w * h * n > MAX_BATCH_PIXELS:
                    raise InputError(f"--size {w}x{h} --batch {n}: {w * h * n / 1e6:g} megapixels a "
                                     f"call, over {MAX_BATCH_PIXELS / 1e6:g}")
    if not targets:
        raise InputError("nothing to measure: give at least one engine")
    results = []
    comparisons = []
    if inputs is not None:
        configs = [(None, len(inputs[0]))]
    else:
        configs = [(s, b) for s in (sizes if files is None else [None]) for b in batches]
    report = {
        "fastfill_bench": SCHEMA_VERSION,
        "environment": environment(threads),
        "settings": {"iters": iters, "warmup": warmup, "threads": threads,
                     "hole_fraction": None if files else hole_fraction, "max_seconds": max_seconds,
                     "seed": seed, "batches": list(batches),
                     "sizes": [list(s) for s in sizes] if files is None else None,
                     "input": ("arrays" if inputs is not None else
                               str(files.image) if files is not None else "synthetic")},
        "targets": [{"target": t.label, "measures": t.info.get("measures", t.label),
                     "roi": bool(t.inpainter.roi), "batch_size": t.inpainter.batch_size,
                     "max_batch": max(b for _, b in configs)} for t in targets],
    }
    if start:
        start(report)
    for size, batch in configs:
        images, masks = _inputs(size, batch, inputs, files, hole_fraction, seed)
        height, width = images.shape[1:3]
        for t in targets:
            t.inpainter.batch_size = max(t.inpainter.batch_size, batch)
            try:  # the model's own rules (e.g. a fixed size), before any timing
                t.inpainter.check(images[0], masks[0])
            except InputError as e:
                raise InputError(f"{t.label}: {e} (--size sets the bench's image size)") from None
        # warm-up; the first run's result is kept for the pixel comparison between targets
        outputs = {}
        for t in targets:
            outputs[t.label] = np.stack(t.inpainter.batch(list(images), list(masks)))
            for _ in range(max(0, warmup - 1)):
                t.inpainter.batch(list(images), list(masks))
        per = _measure(targets, images, masks, batch, files, iters, max_seconds)
        for t in targets:
            r = _result(t, per[t.label], masks, width, height, batch, files)
            results.append(r)
            if log:
                log(f"  {t.label:<28} {width}x{height} b{batch}: {r['latency_ms']['mean']:.1f} ms "
                    f"(n={r['iterations']})")
        comparisons += _compare(targets, per, outputs, masks, width, height, batch)
    return {**report, "results": results, "comparisons": comparisons}


def _fmt(v, spec=".1f", na="n/a"):
    return na if v is None else format(v, spec)


def format_header(report: dict) -> str:
    """The top of ``fastfill bench``'s output: where, with what, and what each target measures
    (printed before the run, from the ``start`` report of :func:`bench`)."""
    env = report["environment"]
    v = env["versions"]
    st = report["settings"]
    threads = env["threads"] if env["threads"] is not None else "as the back-end chooses"
    lines = [
        f"fastfill bench  {env['date']}",
        f"device: {env['cpu']}, {env['cores']} cores ({env['usable_cores']} usable), "
        f"engine threads {threads}",
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        "measures, as `fastfill run` does with the same options:",
    ]
    for t in report.get("targets", []):
        bs = f"batch size {t['batch_size']}"
        if t["max_batch"] > t["batch_size"]:
            bs += f" ({t['max_batch']} with --batch {t['max_batch']})"
        lines.append(f"  {t['target']}: {t['measures']}; ROI {'on' if t['roi'] else 'off'}, {bs}")
    where = (f"synthetic input, centred hole {st['hole_fraction']:.0%} of the area"
             if st.get("input", "synthetic") == "synthetic" else f"input {st['input']}")
    lines.append(f"{st['iters']} iterations after {st['warmup']} warm-up, targets interleaved; "
                 f"{where}; times per batch in ms")
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """The readable report: :func:`format_header`, then :func:`format_table`."""
    return format_header(report) + "\n\n" + format_table(report)


def format_table(report: dict) -> str:
    """The results of ``fastfill bench``: one row per target and configuration, ratios, notes."""
    lines = []
    hdr = (f"{'target':<26}{'size':>11}{'b':>3}{'mean':>9}{'p50':>9}{'p90':>9}{'p99':>9}"
           f"{'img/s':>8}{'MP/s':>7}  {'stages ms':<40}{'GFLOP':>8}{'GFLOP/s':>9}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for r in report["results"]:
        lat = r["latency_ms"]
        st = " ".join(f"{k[:4]} {r['stages_ms'][k]:.1f}" for k in STAGES if k in r["stages_ms"])
        size = f"{r['size'][0]}x{r['size'][1]}"
        lines.append(
            f"{r['target'][:25]:<26}{size:>11}{r['batch']:>3}{lat['mean']:>9.1f}{lat['p50']:>9.1f}"
            f"{lat['p90']:>9.1f}{lat['p99']:>9.1f}{r['throughput']['images_per_s']:>8.2f}"
            f"{r['throughput']['megapixels_per_s']:>7.2f}  {st:<40}"
            f"{_fmt(r['gflop_per_image'], '.2f'):>8}{_fmt(r['gflops_infer'], '.1f'):>9}")
    if report["comparisons"]:
        lines.append("")
        lines.append("ratios (baseline mean latency / target mean latency; > 1 = target faster):")
        for c in report["comparisons"]:
            lines.append(
                f"  {c['size'][0]}x{c['size'][1]} b{c['batch']}: {c['target']} vs {c['baseline']}: "
                f"{c['speedup']:.2f}x (p50 {c['speedup_p50']:.2f}x); max |diff| in hole "
                f"{c['max_abs_diff_in_hole']}, outside {c['max_abs_diff_outside']}")
    lines.append("")
    lines.append("GFLOP: model multiply-adds x 2 per image at the windows it runs on; "
                 "GFLOP/s: over the infer stage.")
    notes = {(r["gflop_per_image"] is None, r["gflop_note"]): None
             for r in report["results"] if r.get("gflop_note")}
    for na, note in notes:
        lines.append(f"GFLOP {'n/a' if na else '0'}: {note}")
    return "\n".join(lines)


def write_json(report: dict, path: str | Path) -> None:
    """Write the report to ``path`` (asked for explicitly, so an existing file is replaced)
    through :func:`fastfill.files.codecs.atomic_write` (synced, usual mode, atomic rename)."""
    from .files.codecs import atomic_write

    p = Path(path)
    if not p.parent.exists():
        raise InputError(f"cannot write {p}: folder {p.parent} does not exist")
    text = json.dumps(report, indent=2, default=_json_default) + "\n"
    try:
        atomic_write(p, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite=True)
    except OSError as e:
        raise InputError(f"cannot write {p}: {e.strerror or e}") from None


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def time_interleaved(fns: dict[str, Callable[[], object]], iters: int, warmup: int = 1,
                     max_seconds: float | None = None) -> dict[str, list[float]]:
    """Call every function ``iters`` times, interleaved in a rotating order; seconds per call.
    (Used by the scripts in ``benchmarks/``.)"""
    names = list(fns)
    for n in names:
        for _ in range(warmup):
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for i in range(iters):
        for n in names:
            a = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - a)
        names = names[1:] + names[:1]
        if max_seconds is not None and i >= 1 and time.perf_counter() - start > max_seconds:
            break
    return times


__all__ = ["bench", "format_report", "format_header", "format_table", "write_json", "make_targets",
           "Target",
           "FileInput", "parse_size", "onnx_flops", "sgemm_gflops", "environment",
           "percentiles", "synthetic_input", "time_interleaved", "FlopCountError", "STAGES"]
