"""Export a trained (or random-init) model to ONNX, with metadata, and check the file before success.

    fastfill export CHECKPOINT -o model.onnx
    fastfill export --random --kind glcic --width 0.0625 --force -o tests/data/tiny_glcic.onnx

An existing output is replaced only when asked (``--force``; ``overwrite=True`` in Python).

What the file holds (docs/ARCHITECTURE.md, The model contract): one input ``input`` float32
[N, C, H, W] and one output
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

import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from fastfill.engines import FORMATS
from fastfill.engines.base import MODEL_OPS, ModelMeta
from fastfill.files.codecs import sha256_file, write_file
from fastfill.errors import FastfillError

from .kinds import KINDS, Kind, kind_of, reference_forward

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


# ------------------------------------------------------------------------------ metadata

def model_kind(model: nn.Module) -> Kind:
    """The adapter of an exportable generator; ExportError for anything else."""
    return kind_of(model, ExportError)


def model_meta(model: nn.Module, mean, provenance: dict, fill: str = "mean") -> ModelMeta:
    """The model contract's metadata for a generator, as the export writes it."""
    return model_kind(model).meta(model, mean, provenance, fill)


def checkpoint_provenance(path: str | Path, meta: dict) -> dict:
    return {
        "checkpoint": Path(path).name,
        "checkpoint_sha256": sha256_file(path),
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


def self_check(onnx_bytes: bytes, model: nn.Module, kind: Kind, meta: ModelMeta, *, tol: float = TOL,
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
    for shape in kind.check_shapes(meta):
        x = kind.check_input(torch.rand(shape, generator=gen), gen, meta)
        ref = reference_forward(model, x).numpy()
        got = sess.run(["output"], {"input": x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} for input {shape}")
        d = float(np.abs(got - ref).max())
        log(f"self-check {kind.name} input {list(shape)}: max |onnxruntime - pytorch| = {d:.3g}")
        diffs.append(d)
        if not d <= tol:
            raise ExportError(f"ONNX Runtime differs from PyTorch by {d:.3g} (> {tol:g}) on input {shape}")
    return diffs


# ------------------------------------------------------------------------------ export

def to_onnx_bytes(model: nn.Module, kind: Kind, opset: int = OPSET) -> bytes:
    """Trace the (BN-folded, wrapped) model to ONNX bytes."""
    if opset < 17:
        raise ExportError(f"opset must be >= 17, got {opset}")
    net, dummy, axes = kind.export_net(model)
    fold_batchnorm(net)
    net.eval()
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


def check_output_suffix(out: str | Path) -> Path:
    """Exports write the formats that the format table says `fastfill export` makes."""
    out = Path(out)
    suffixes = sorted({f.suffix for f in FORMATS if f.made_by == "fastfill export"})
    if out.suffix.lower() not in suffixes:
        others = {f.suffix: f.made_by for f in FORMATS  # (checkpoints are what export reads)
                  if f.suffix and f.made_by not in ("fastfill export", "fastfill train")}
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
        raise ExportError(f"{out} exists (--force replaces it; overwrite=True from Python)")
    model = model.eval()
    kind = model_kind(model)
    meta = model_meta(model, mean, dict(provenance or {}), fill)
    data = _finalize(to_onnx_bytes(model, kind, opset), meta)
    diffs = self_check(data, model, kind, meta, tol=tol, log=log)
    write_file(out, data, overwrite=overwrite, error=ExportError, force="--force (overwrite=True from Python)")
    log(f"wrote {out} ({len(data) / 1e6:.2f} MB, {kind.name}, opset {opset}, max diff {max(diffs):.3g})")
    return {"path": out, "meta": meta, "diffs": diffs, "bytes": len(data)}


def export_checkpoint(checkpoint: str | Path, out: str | Path, **kw) -> dict:
    """Load a training checkpoint (train.checkpoint.load_checkpoint) and export its generator."""
    from train.checkpoint import load_for_inference

    path, model, meta = load_for_inference(checkpoint, ExportError)
    mean = meta.get("mean") or DEFAULT_MEAN
    return export_model(model, out, mean=mean, provenance=checkpoint_provenance(path, meta),
                        fill=meta.get("fill", "mean"), **kw)


def random_model(kind: str, width: float, seed: int = 0) -> nn.Module:
    """A generator of ``kind`` at ``width`` with a random init that keeps the signal alive
    (tests and benchmarks: an export's numerical check needs outputs that differ)."""
    from train.models import build_model

    if kind not in KINDS:
        raise ExportError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    torch.manual_seed(seed)
    model = build_model(KINDS[kind].random_config(width))
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
