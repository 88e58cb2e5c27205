"""``fastfill quantize``: static INT8 quantization of a fastfill ONNX model (ONNX Runtime's tools).

QDQ format, int8 weights (per output channel by default; 7 bits of range, ``reduce_range``, so that
the u8s8 kernels of a machine without VNNI do not saturate their 16-bit sums) and uint8
activations (the u8s8 kernels that VNNI runs), calibrated on real photos with real hole masks
prepared exactly as the runtime prepares them (``ops.prepare``: the model's own prefill, mean colour and mask channel). What must
stay float stays float: every node after the last convolution (the residual addition and the
final clip, or the sigmoid, or the Context Encoder's paste into the frame) and every node other
than a convolution that reads the graph input (the residual head's slice of the prefilled RGB):
they are cheap, and quantizing them would round the prefill itself, which is exact in float.

Before anything is written the result checks itself against the float model on photos held out
from calibration: the hole PSNR of both against the truth, through the runtime (``Inpainter``).
A loss above ``max_loss_db`` is refused (nothing written) unless ``force``.

Needs ``onnx`` (extras ``quantize``, ``train`` or ``dev``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import codecs as fio
from . import ops
from .engines import read_meta
from .engines.base import PREFIX, read_onnx_metadata
from .errors import EngineError, InputError

# Largest hole-PSNR loss (dB, mean over the held-out crops) accepted without --force: six times the
# largest loss measured on the validation photos (0.016 dB, benchmarks/RESULTS.md "INT8"), a third
# of the 0.3 dB the INT8 target allows (docs/ARCHITECTURE.md, Targets): a loss above it means
# the calibration went wrong.
DEFAULT_MAX_LOSS_DB = 0.1
METHODS = ("minmax", "percentile", "entropy")
# Ops after which there is nothing to gain in int8 (see the module docstring).
_CONV_OPS = ("Conv", "ConvTranspose")


@dataclass
class QuantizeReport:
    """What ``quantize`` did and measured."""

    output: str
    calibration_crops: int
    held_out_crops: int
    size: int
    calibration_method: str
    per_channel: bool
    psnr_fp32: float = float("nan")  # mean hole PSNR (dB) of the float model on held-out crops
    psnr_int8: float = float("nan")
    max_abs_diff: float = float("nan")  # largest |int8 - fp32| output difference inside the holes
    kept_float: list = field(default_factory=list)  # (node name, op, why)
    quantized_convs: int = 0
    seconds: float = 0.0

    @property
    def loss_db(self) -> float:
        return self.psnr_fp32 - self.psnr_int8


def _crops(paths, n, size, seed, log):
    """``n`` (image, mask) pairs: random ``size``² crops of the photos (smaller ones are scaled up)
    with the training masks (a rectangle or free-form strokes), spread evenly over the photos in
    order. Each photo is decoded once, when its turn comes, and dropped after its crops are taken;
    a photo that cannot be read is skipped and its share goes to the ones after it."""
    import math

    from PIL import Image

    from .masks import mixed_mask

    rng = np.random.default_rng(seed)
    out = []
    for k, p in enumerate(paths):
        count = math.ceil((n - len(out)) / (len(paths) - k))
        if count <= 0:
            break
        try:
            im = fio.decode_image(p).rgb
        except InputError as e:
            log(f"skipped: {p}: {e}")
            continue
        h, w = im.shape[:2]
        if min(h, w) < size:
            s = size / min(h, w)
            im = np.asarray(Image.fromarray(im).resize((max(size, round(w * s)), max(size, round(h * s))),
                                                      Image.Resampling.BICUBIC))
            h, w = im.shape[:2]
        for _ in range(count):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            out.append((np.ascontiguousarray(im[y:y + size, x:x + size]), mixed_mask(rng, size, size)))
    return out


def _float_nodes(model) -> list[tuple[str, str, str]]:
    """(name, op, why) of the nodes to keep in float: everything downstream of the last convolution
    on the way to the output, and the non-convolution readers of the graph input."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    keep: dict[str, tuple[str, str, str]] = {}
    inputs = {i.name for i in g.input}
    for n in g.node:
        if n.op_type not in _CONV_OPS and inputs & set(n.input):
            keep[n.name] = (n.name, n.op_type, "reads the float input (the prefilled image)")
    stack = [o.name for o in g.output]
    seen = set()
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type in _CONV_OPS:
            continue
        keep.setdefault(n.name, (n.name, n.op_type, "after the last convolution (output head)"))
        stack.extend(n.input)
    return list(keep.values())


def _read_float_input(model, keep: set[str]) -> None:
    """Let the float nodes read the graph input itself, not its 8-bit copy.

    The quantizer quantizes the input once for the first convolution and rewires every reader to
    the dequantized copy, the residual head's slice of the prefilled RGB included; that slice is
    pointed back at the float input here (its QuantizeLinear / DequantizeLinear stay for the
    convolution)."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inputs = {i.name for i in g.input}
    for n in g.node:
        if n.name not in keep:
            continue
        for k, t in enumerate(n.input):
            dq = producer.get(t)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            qn = producer.get(dq.input[0])
            if qn is not None and qn.op_type == "QuantizeLinear" and qn.input[0] in inputs:
                n.input[k] = qn.input[0]


def _name_nodes(model) -> None:
    """Give every node a name (the quantizer's exclusion list works by name)."""
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"


def _hole_psnr(out: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    d = out[mask].astype(np.float64) - truth[mask].astype(np.float64)
    mse = float(np.mean(d * d)) if d.size else 0.0
    return 99.0 if mse <= 1e-12 else 10 * np.log10(255.0 ** 2 / mse)


def _import_quantization():
    try:
        import onnx
        from onnxruntime import quantization as q
    except ImportError as e:
        raise InputError(f"fastfill quantize needs the onnx package: pip install 'fastfill[quantize]' "
                         f"({e.name} is not installed)") from None
    return onnx, q


def quantize(model: str | Path, output: str | Path, calibration: str | Path, *, images: int = 64,
             size: int = 256, per_channel: bool = True, calibration_method: str = "minmax",
             max_loss_db: float = DEFAULT_MAX_LOSS_DB, force: bool = False, overwrite: bool = False,
             held_out: int | None = None, seed: int = 0, log=None) -> QuantizeReport:
    """Quantize ``model`` (a fastfill .onnx) to INT8 and write ``output`` (see the module docstring).

    Args:
        calibration: a folder of photos (or one photo). A fifth of them (at least one) is held out
            for the self-check when there are two or more; with one photo, held-out crops come
            from other places of it.
        images: calibration crops (``size`` x ``size``), spread over the calibration photos.
        held_out: held-out crops for the self-check (default: images // 4, at least 8).
        calibration_method: activation range calibration (``minmax``, ``percentile`` 99.999 %, ``entropy``).
        max_loss_db / force: refuse (nothing written) when the held-out hole PSNR drops by more.

    Raises InputError (bad arguments, no images, output exists) or EngineError (not a fastfill
    model, already quantized, or the loss is too large).
    """
    log = log or (lambda s: None)
    t0 = time.perf_counter()
    model, output = Path(model), Path(output)
    meta, props = _check(model, output, calibration_method, images, size, overwrite, held_out)
    if meta.input_size is not None:
        size = int(meta.input_size[0])
    size = -(-size // meta.multiple) * meta.multiple
    onnx, q = _import_quantization()
    cal_paths, val_paths = _split(calibration)
    n_val = held_out if held_out is not None else max(8, images // 4)
    log(f"calibration: {images} crops of {size}x{size} from {len(cal_paths)} photos; self-check: "
        f"{n_val} crops from {len(val_paths)} held-out photo(s)"
        + (" (the calibration photo itself: give two or more for a check on an unseen one)"
           if val_paths == cal_paths else ""))
    cal = _crops(cal_paths, images, size, seed, log)
    val = _crops(val_paths, n_val, size, seed + 1, log)
    if not cal or not val:
        raise InputError(f"no usable calibration images in {calibration}")
    with tempfile.TemporaryDirectory(prefix="fastfill-quantize-") as tmp:
        qpath, keep, n_conv = _quantize_graph(onnx, q, model, meta, cal, calibration_method, per_channel, Path(tmp), log)
        report = QuantizeReport(output=str(output), calibration_crops=len(cal), held_out_crops=len(val),
                                size=size, calibration_method=calibration_method, per_channel=per_channel,
                                kept_float=[list(k) for k in keep], quantized_convs=n_conv)
        _self_check(model, qpath, val, report)
        log(f"self-check on {len(val)} held-out crops: hole PSNR fp32 {report.psnr_fp32:.2f} dB, "
            f"int8 {report.psnr_int8:.2f} dB (loss {report.loss_db:+.3f} dB), largest output change "
            f"{report.max_abs_diff * 255:.1f} levels")
        if report.loss_db > max_loss_db and not force:
            raise EngineError(f"INT8 loses {report.loss_db:.2f} dB of hole PSNR on held-out photos "
                              f"(limit {max_loss_db} dB): nothing written (--force to write it anyway, "
                              "--max-loss to change the limit, or try --calibration-method percentile)")
        provenance = {
            "tool": f"onnxruntime.quantization {__import__('onnxruntime').__version__}",
            "format": "QDQ", "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
            "activations": "uint8", "calibration": calibration_method, "source": model.name,
            "source_sha256": fio.sha256_file(model),
            "calibration_photos": [p.name for p in cal_paths][:200], "calibration_crops": len(cal),
            "crop": size, "masks": "fastfill.masks.mixed_mask",
            "held_out_photos": [p.name for p in val_paths][:200], "held_out_crops": len(val),
            "psnr_fp32": round(report.psnr_fp32, 3), "psnr_int8": round(report.psnr_int8, 3),
            "kept_float": [n for n, _, _ in keep], "seed": seed}
        data = _with_metadata(onnx.load(str(qpath)), props, provenance)
    fio.write_file(output, data, overwrite=overwrite)
    report.seconds = time.perf_counter() - t0
    return report


# Calibration crops are held in memory together (about 20 bytes a pixel with the engine's
# inputs): at most this many pixels, about 5 GB.
MAX_CALIBRATION_PIXELS = 256_000_000


def _check(model: Path, output: Path, method, images, size, overwrite, held_out=None):
    """The arguments, before any work: (ModelMeta, the model's metadata)."""
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r}; choose one of: {', '.join(METHODS)}")
    if images < 1 or size < 16:
        raise InputError("images must be >= 1 and size >= 16")
    if images * size * size > MAX_CALIBRATION_PIXELS:  # (every crop is held, ~20 bytes a pixel)
        raise InputError(f"--images {images} --size {size}: {images * size * size / 1e6:g} megapixels "
                         f"of calibration crops, over {MAX_CALIBRATION_PIXELS / 1e6:g} (fewer or smaller)")
    if held_out is not None and held_out * size * size > MAX_CALIBRATION_PIXELS:  # (held as well)
        raise InputError(f"--held-out {held_out} --size {size}: {held_out * size * size / 1e6:g} "
                         f"megapixels of held-out crops, over {MAX_CALIBRATION_PIXELS / 1e6:g} "
                         "(fewer or smaller)")
    if output.suffix.lower() != ".onnx":  # (and so never one of the calibration photos)
        raise InputError(f"{output}: the INT8 model is written as a .onnx file")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists (use --overwrite to replace it)")
    if output.resolve() == model.resolve():
        raise InputError("the output is the model itself")
    meta = read_meta(model)  # EngineError for a file that is not a fastfill model
    props = read_onnx_metadata(model)
    if props.get(PREFIX + "precision", "fp32") != "fp32":
        raise EngineError(f"{model} is already quantized ({props[PREFIX + 'precision']})")
    return meta, props


def _split(calibration) -> tuple[list[Path], list[Path]]:
    """(calibration photos, held-out photos): the last fifth held out (one photo: both)."""
    paths = [c.path for c in fio.find_images(calibration) if c.error is None]
    if not paths:
        raise InputError(f"no calibration images in {calibration}")
    if len(paths) < 2:
        return paths, paths
    n_out = max(1, len(paths) // 5)
    return paths[:-n_out], paths[-n_out:]


def _quantize_graph(onnx, q, model: Path, meta, cal, method, per_channel, tmp: Path, log):
    """ONNX Runtime's static quantization of ``model`` calibrated on ``cal`` (image, mask) pairs
    prepared as the runtime prepares them: (path of the INT8 graph, nodes kept float, convs)."""

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter(cal)

        def get_next(self):
            pair = next(self.it, None)
            if pair is None:
                return None
            im, m = pair
            return {"input": ops.prepare(im[None], m[None].view(np.uint8), meta.mean, meta.multiple,
                                         mask_channel=meta.channels == 4, fill=meta.fill)}

    pre, named, qpath = tmp / "pre.onnx", tmp / "named.onnx", tmp / "int8.onnx"
    q.quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    m = onnx.load(str(pre))
    _name_nodes(m)
    keep = _float_nodes(m)
    onnx.save(m, str(named))
    calib = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
             "entropy": q.CalibrationMethod.Entropy}[method]
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    log(f"calibrating ({method}) and quantizing; kept in float: " + ", ".join(f"{n} ({op})" for n, op, _ in keep))
    root = logging.getLogger()
    level = root.level
    # The quantizer logs a warning per per-channel attempt on a 1-D constant (a bias it then
    # quantizes per tensor): noise to a user, so only errors get through.
    root.setLevel(logging.ERROR)
    try:
        q.quantize_static(str(named), str(qpath), Reader(), quant_format=q.QuantFormat.QDQ,
                          per_channel=per_channel, activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, nodes_to_exclude=[n for n, _, _ in keep],
                          calibrate_method=calib, extra_options=extra, reduce_range=True)
    finally:
        root.setLevel(level)
    qm = onnx.load(str(qpath))
    _read_float_input(qm, {n for n, _, _ in keep})
    onnx.save(qm, str(qpath))
    return qpath, keep, sum(1 for n in m.graph.node if n.op_type in _CONV_OPS)


def _with_metadata(qm, props: dict, provenance: dict) -> bytes:
    """The INT8 graph with the source's fastfill metadata, its precision and its provenance."""
    new = dict(props)
    new[PREFIX + "precision"] = "int8"
    new[PREFIX + "quantization"] = json.dumps(provenance, sort_keys=True)
    del qm.metadata_props[:]
    for k, v in new.items():
        qm.metadata_props.add(key=k, value=v)
    return qm.SerializeToString()


def _self_check(fp32_path, int8_path, val, report) -> None:
    """Both models through the runtime on the held-out crops: hole PSNR against the truth."""
    from .engines import load_engine
    from .inpainter import Inpainter

    images = [im for im, _ in val]
    masks = [m for _, m in val]
    outs = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        with Inpainter(load_engine(path, backend="onnxruntime"), roi=False, batch_size=4) as inp:
            outs[name] = inp.batch(images, masks)
    report.psnr_fp32 = float(np.mean([_hole_psnr(o, t, m) for o, t, m in zip(outs["fp32"], images, masks)]))
    report.psnr_int8 = float(np.mean([_hole_psnr(o, t, m) for o, t, m in zip(outs["int8"], images, masks)]))
    report.max_abs_diff = max(float(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) / 255
                              for a, b in zip(outs["fp32"], outs["int8"]))


__all__ = ["quantize", "QuantizeReport", "DEFAULT_MAX_LOSS_DB", "METHODS"]
