"""Export a trained (or random-init) model to ONNX, with metadata, and check the file before success.

    python -m train.export CHECKPOINT -o model.onnx
    python -m train.export --random --kind glcic --width 0.0625 --force -o tests/data/tiny_glcic.onnx
    fastfill export CHECKPOINT -o model.onnx               (the same, from the fastfill CLI)

An existing output is replaced only when asked (``--force``; ``overwrite=True`` in Python).

What the file holds (DESIGN.md §3): one input ``input`` float32 [N, C, H, W] and one output
``output`` float32 [N, 3, H, W], full frame, RGB in [0, 1].
- GLCIC: dynamic N, H, W (multiples of 4).
- CE: fixed 128x128, dynamic N; the 64x64 prediction is pasted into the input frame at the
  model's prediction box inside the graph, so the output is full-frame like GLCIC's.
BatchNorm is folded into the convolutions before export; the graph uses only ops that TensorRT
supports (:data:`ALLOWED_OPS`), opset >= 17. Metadata (``fastfill.*``) comes from
:class:`fastfill.engines.base.ModelMeta` plus the provenance (checkpoint sha256, steps, data).

Before reporting success the export checks itself: ``onnx.checker``, the op allow-list, then ONNX
Runtime against PyTorch on random inputs at two sizes; a max abs difference above ``tol`` (1e-4)
fails and the file is not written.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastfill.engines import FORMATS
from fastfill.engines.base import MODEL_OPS, ModelMeta
from fastfill.io import atomic_write_bytes, sha256_file
from fastfill.errors import FastfillError

OPSET = 17
TOL = 1e-4
# Ops TensorRT runs natively: one list, shared with the FP16 converter of `fastfill build`.
ALLOWED_OPS = MODEL_OPS
DEFAULT_MEAN = (0.5, 0.5, 0.5)


class ExportError(FastfillError, RuntimeError):
    """The export failed or its self-check did not pass."""


# ------------------------------------------------------------------------------ graph surgery

def _fuse(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    return fuse_conv_bn_eval(conv.eval(), bn.eval(), transpose=isinstance(conv, nn.ConvTranspose2d))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into the convolution before it (in eval mode), in place.

    Works on ``nn.Sequential`` runs [Conv|ConvTranspose|module with a ``.mix`` conv, BatchNorm2d];
    a BatchNorm that cannot be folded raises, so it never reaches the graph.
    """
    _fold(module)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            raise ExportError("a BatchNorm2d outside an nn.Sequential could not be folded")
    return module


def _fold(module: nn.Module) -> None:
    for child in module.children():
        _fold(child)
    if isinstance(module, nn.Sequential):
        kids = list(module)
        for i, m in enumerate(kids):
            if not isinstance(m, nn.BatchNorm2d):
                continue
            prev = kids[i - 1] if i > 0 else None
            if isinstance(prev, (nn.Conv2d, nn.ConvTranspose2d)):
                module[i - 1] = _fuse(prev, m)
            elif prev is not None and isinstance(getattr(prev, "mix", None), nn.Conv2d):
                prev.mix = _fuse(prev.mix, m)
            else:
                raise ExportError(f"cannot fold BatchNorm2d after {type(prev).__name__}")
            module[i] = nn.Identity()


class _ChannelWiseFCExport(nn.Module):
    """ChannelWiseFC written with Reshape + MatMul + Add (no Einsum), fixed shapes, dynamic batch."""

    def __init__(self, cwfc: nn.Module):
        super().__init__()
        c, n2, _ = cwfc.weight.shape
        self.c, self.n = c, cwfc.n
        self.weight = nn.Parameter(cwfc.weight.detach().clone(), requires_grad=False)  # [c, n2, n2]
        self.bias = nn.Parameter(cwfc.bias.detach().reshape(c, 1, n2).clone(), requires_grad=False)
        self.mix = cwfc.mix

    def forward(self, x):
        y = torch.matmul(x.reshape(-1, self.c, 1, self.n * self.n), self.weight) + self.bias
        return self.mix(y.reshape(-1, self.c, self.n, self.n))


class FullFrameCE(nn.Module):
    """A Context Encoder whose output is the full 128x128 frame: the prediction pasted into the
    input at the prediction box. The paste is ``rows @ pred @ cols`` with constant 0/1 placement
    matrices (exact: one product by 1 per output element) then ``x * (1 - box) + pasted``, so the
    graph needs only MatMul, Mul and Add (the exporter turns F.pad into shape arithmetic)."""

    def __init__(self, ce: nn.Module):
        super().__init__()
        ce = copy.deepcopy(ce).eval()
        for name, m in list(ce.named_modules()):
            for cname, child in list(m.named_children()):
                if type(child).__name__ == "ChannelWiseFC":
                    setattr(m, cname, _ChannelWiseFCExport(child))
        self.ce = ce
        size = int(ce.image_size)
        top, left, h, w = ce.pred_box
        self.size = size
        rows = torch.zeros(size, h)
        rows[torch.arange(top, top + h), torch.arange(h)] = 1.0
        cols = torch.zeros(w, size)
        cols[torch.arange(w), torch.arange(left, left + w)] = 1.0
        keep = torch.ones(1, 1, size, size)
        keep[..., top:top + h, left:left + w] = 0.0
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        self.register_buffer("keep", keep)

    def forward(self, x):
        pred = self.ce(x)
        return x * self.keep + torch.matmul(torch.matmul(self.rows, pred), self.cols)


def reference_forward(model: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """What the exported graph must compute, from the untouched PyTorch model."""
    with torch.no_grad():
        if kind == "glcic":
            return model(x)
        top, left, h, w = model.pred_box
        out = x.clone()
        out[..., top:top + h, left:left + w] = model(x)
        return out


# ------------------------------------------------------------------------------ metadata

def model_kind(model: nn.Module) -> str:
    cfg = model.config() if hasattr(model, "config") else {}
    kind = cfg.get("kind")
    if kind not in ("glcic", "ce"):
        raise ExportError(f"cannot export a {type(model).__name__} (kind {kind!r}); "
                          "only the generators 'glcic' and 'ce' are exported")
    return kind


def model_meta(model: nn.Module, mean, provenance: dict, fill: str = "mean") -> ModelMeta:
    kind = model_kind(model)
    if kind == "glcic":
        rf = getattr(model, "receptive_field", None)
        if rf is None:
            from train.models import measure_receptive_field
            rf = measure_receptive_field(model)
        return ModelMeta("glcic", tuple(float(m) for m in mean), multiple=int(model.multiple),
                         input_size=None, receptive_field=int(rf), channels=4,
                         provenance=provenance, fill=fill)
    size = int(model.image_size)
    return ModelMeta("ce", tuple(float(m) for m in mean), multiple=4, input_size=(size, size),
                     receptive_field=size, channels=3, provenance=provenance, fill=fill)


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of every file under a directory (sorted relative names + contents)."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def checkpoint_provenance(path: str | Path, meta: dict) -> dict:
    return {
        "checkpoint": Path(path).name,
        "checkpoint_sha256": sha256_path(path),
        "step": meta.get("step"),
        "phase": meta.get("phase"),
        "data": meta.get("data"),
        "config": meta.get("config"),
    }


# ------------------------------------------------------------------------------ checks

def graph_ops(model_proto) -> set[str]:
    """Every op type in the graph, subgraphs included."""
    ops: set[str] = set()

    def walk(graph):
        for node in graph.node:
            ops.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model_proto.graph)
    return ops


def check_ops(model_proto) -> None:
    bad = graph_ops(model_proto) - ALLOWED_OPS
    if bad:
        raise ExportError(f"the graph uses ops outside the TensorRT allow-list: {', '.join(sorted(bad))}")


def check_sizes(kind: str, size: tuple[int, int] | None):
    """The two input shapes the self-check runs (small, so the check stays fast)."""
    if kind == "ce":
        return [(1, 3, *size), (2, 3, *size)]
    return [(1, 4, 64, 64), (2, 4, 96, 128)]


def self_check(onnx_bytes: bytes, model: nn.Module, kind: str, meta: ModelMeta, *, tol: float = TOL,
               seed: int = 0, log=print) -> list[float]:
    """onnx.checker, op allow-list, then ONNX Runtime vs PyTorch at two sizes. Returns the diffs."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load_from_string(onnx_bytes)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"onnx.checker rejected the exported model: {e}") from None
    check_ops(proto)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    for shape in check_sizes(kind, meta.input_size):
        x = torch.rand(shape, generator=gen)
        if kind == "glcic":  # a realistic input: a hole filled with the mean, mask channel 0/1
            mask = (torch.rand(shape[0], 1, *shape[2:], generator=gen) > 0.7).float()
            mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
            x[:, :3] = x[:, :3] * (1 - mask) + mean * mask
            x[:, 3:] = mask
        ref = reference_forward(model, kind, x).numpy()
        got = sess.run(["output"], {"input": x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} for input {shape}")
        d = float(np.abs(got - ref).max())
        log(f"self-check {kind} input {list(shape)}: max |onnxruntime - pytorch| = {d:.3g}")
        diffs.append(d)
        if not d <= tol:
            raise ExportError(f"ONNX Runtime differs from PyTorch by {d:.3g} (> {tol:g}) on input {shape}")
    return diffs


# ------------------------------------------------------------------------------ export

def to_onnx_bytes(model: nn.Module, kind: str, opset: int = OPSET) -> bytes:
    """Trace the (BN-folded, wrapped) model to ONNX bytes."""
    if opset < 17:
        raise ExportError(f"opset must be >= 17, got {opset}")
    net = copy.deepcopy(model).eval()
    if kind == "ce":
        net = FullFrameCE(net)
    fold_batchnorm(net)
    net.eval()
    if kind == "glcic":
        dummy = torch.rand(1, 4, 64, 64)
        axes = {"input": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", 2: "H", 3: "W"}}
    else:
        dummy = torch.rand(1, 3, net.size, net.size)
        axes = {"input": {0: "N"}, "output": {0: "N"}}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation/tracer notes
        torch.onnx.export(net, (dummy,), buf, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"], dynamic_axes=axes,
                          do_constant_folding=True)
    return buf.getvalue()


def _constants_to_initializers(graph) -> None:
    """Turn ``Constant`` nodes (reshape targets) into initializers: same graph, fewer op types."""
    from onnx import numpy_helper

    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _finalize(onnx_bytes: bytes, meta: ModelMeta) -> bytes:
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    _constants_to_initializers(proto.graph)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta.to_onnx_metadata())
    proto.producer_name = "fastfill"
    from fastfill import __version__
    proto.producer_version = __version__
    proto.doc_string = f"fastfill {meta.kind} model; input float32 [N,{meta.channels},H,W] -> output [N,3,H,W]"
    return proto.SerializeToString()


def _write_atomic(path: Path, data: bytes, *, overwrite: bool) -> None:
    """``data`` to ``path`` through :func:`fastfill.io.atomic_write` (usual mode, no clobber
    unless ``overwrite``)."""
    try:
        atomic_write_bytes(path, data, overwrite=overwrite)
    except FileExistsError:
        raise ExportError(f"{path} exists (pass overwrite=True / --force to replace it)") from None


def check_output_suffix(out: str | Path) -> Path:
    """Exports write the formats that the format table says `fastfill export` makes."""
    out = Path(out)
    suffixes = sorted({f.suffix for f in FORMATS if f.made_by == "fastfill export"})
    if out.suffix.lower() not in suffixes:
        others = {f.suffix: f.made_by for f in FORMATS if f.made_by != "fastfill export"}
        hint = "".join(f"; {s} files are made by `{cmd}`" for s, cmd in others.items())
        raise ExportError(f"{out}: export writes {', '.join(suffixes)} files{hint}")
    return out


def export_model(model: nn.Module, out: str | Path, *, mean=DEFAULT_MEAN, provenance: dict | None = None,
                 opset: int = OPSET, tol: float = TOL, overwrite: bool = False, log=print,
                 fill: str = "mean") -> dict:
    """Export ``model`` (CompletionNet or ContextEncoder, any mode) to ``out`` after the self-check.

    ``fill`` is the prefill the model was trained with (``fastfill.fill`` in the file).

    Returns ``{'path', 'meta', 'diffs', 'bytes'}``. Nothing is written when a check fails.
    """
    out = check_output_suffix(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists (pass overwrite=True / --force to replace it)")
    model = model.eval()
    kind = model_kind(model)
    meta = model_meta(model, mean, dict(provenance or {}), fill)
    data = _finalize(to_onnx_bytes(model, kind, opset), meta)
    diffs = self_check(data, model, kind, meta, tol=tol, log=log)
    _write_atomic(out, data, overwrite=overwrite)
    log(f"wrote {out} ({len(data) / 1e6:.2f} MB, {kind}, opset {opset}, max diff {max(diffs):.3g})")
    return {"path": out, "meta": meta, "diffs": diffs, "bytes": len(data)}


def export_checkpoint(checkpoint: str | Path, out: str | Path, **kw) -> dict:
    """Load a training checkpoint (train.checkpoint.load_checkpoint) and export its generator."""
    from train.checkpoint import load_for_inference

    path, model, meta = load_for_inference(checkpoint, ExportError)
    mean = meta.get("mean") or DEFAULT_MEAN
    return export_model(model, out, mean=mean, provenance=checkpoint_provenance(path, meta),
                        fill=meta.get("fill", "mean"), **kw)


def random_model(kind: str, width: float, seed: int = 0) -> nn.Module:
    from train.models import build_model

    torch.manual_seed(seed)
    cfg = {"kind": kind, "width": width}
    if kind == "ce" and width < 1:  # keep the tiny CE tiny: scale the 4000-unit bottleneck too
        cfg["bottleneck"] = max(16, int(round(4000 * width / 16)) * 16)
    model = build_model(cfg)
    # The training init (N(0, 0.02)) makes an untrained net's output a near-constant 0.5, which
    # would hide numerical differences; He init keeps the signal alive through every layer.
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu",
                                    mode="fan_in" if isinstance(m, nn.Conv2d) else "fan_out")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif type(m).__name__ == "ChannelWiseFC":
            nn.init.normal_(m.weight, 0.0, (2.0 / m.weight.shape[1]) ** 0.5)
    # Random-init BatchNorm has mean 0 / var 1, which would make folding trivial; give it
    # non-trivial running statistics so the self-check proves the folding.
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
    return model.eval()


def export_random(kind: str, width: float, out: str | Path, *, seed: int = 0, mean=DEFAULT_MEAN,
                  **kw) -> dict:
    model = random_model(kind, width, seed)
    prov = {"random_init": True, "seed": seed, "config": model.config()}
    return export_model(model, out, mean=mean, provenance=prov, **kw)


def _parse_mean(s: str):
    vals = tuple(float(v) for v in s.split(","))
    if len(vals) != 3:
        raise argparse.ArgumentTypeError("mean must be r,g,b")
    return vals


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?", help="training checkpoint (safetensors + JSON)")
    ap.add_argument("-o", "--output", required=True, help="output .onnx file")
    ap.add_argument("--random", action="store_true", help="export a random-init model (tests, benchmarks)")
    ap.add_argument("--kind", choices=("glcic", "ce"), default="glcic", help="model kind for --random")
    ap.add_argument("--width", type=float, default=1.0, help="channel width multiplier for --random")
    ap.add_argument("--seed", type=int, default=0, help="seed for --random")
    ap.add_argument("--mean", type=_parse_mean, default=DEFAULT_MEAN, help="r,g,b for --random")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--tol", type=float, default=TOL, help="max abs difference allowed in the self-check")
    ap.add_argument("--force", action="store_true", help="replace an existing output")
    a = ap.parse_args(argv)
    try:
        if a.random == bool(a.checkpoint):
            ap.error("give a CHECKPOINT or --random (not both)")
        if a.random:
            export_random(a.kind, a.width, a.output, seed=a.seed, mean=a.mean, opset=a.opset, tol=a.tol,
                          overwrite=a.force)
        else:
            export_checkpoint(a.checkpoint, a.output, opset=a.opset, tol=a.tol, overwrite=a.force)
    except FastfillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
