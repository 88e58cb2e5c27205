"""FP32 vs INT8 (`fastfill quantize`) on ONNX Runtime and OpenVINO, side by side in one process.

Run from the repo root: `python benchmarks/bench_int8.py [--calibration data/train] [--val data/val]`.

Models: the shipped one (residual GLCIC w0.25, GroupNorm, harmonic prefill) and a width-1.0
GLCIC (the paper's net, random He init: speed does not depend on the weights), each quantized here
with `fastfill.quantize` (64 calibration crops of the --calibration photos). Cases: one 256², one
512² input, and a 1920x1080 frame with a 128x128 hole through `Inpainter` with ROI (the window the
model sees is the hole plus half the receptive field each side). Interleaved in rotating order;
p50 of --iters (bounded by --seconds per case), and INT8's ratio to FP32 on the same back-end.
With --val, the hole PSNR of FP32 and INT8 on unseen photos (free-form and rectangular holes at
256², 16 crops per photo) for each quantized model, plus --extra NAME=PATH models (quality only).
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fastfill import Inpainter
from fastfill.engines import default_model_path, load_engine
from fastfill.quantize import _hole_psnr, quantize


def cpu_flags():
    try:
        flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return "unknown"
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return ", ".join(have) or "no AVX2"


def p50(ts):
    return 1e3 * float(np.median(ts))


def speed(models, args):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), np.uint8)
    hole = np.zeros((1080, 1920), bool)
    hole[476:604, 896:1024] = True
    for label, fp32, int8 in models:
        contenders = {}
        for prec, path in (("FP32", fp32), ("INT8", int8)):
            for be in ("onnxruntime", "openvino"):
                try:
                    contenders[(be, prec)] = load_engine(path, backend=be, threads=args.threads)
                except Exception as e:  # noqa: BLE001 - a missing back-end is a row that says so
                    print(f"  {label} {be} {prec}: not run ({e})")
        for case in ("256x256", "512x512", "1080p ROI (128x128 hole)"):
            if case.startswith("1080p"):
                inps = {k: Inpainter(e) for k, e in contenders.items()}
                calls = {k: (lambda i=i: i(frame, hole)) for k, i in inps.items()}
                win = next(iter(inps.values())).windows(hole)[0]
                case = f"{case}, window {win[3]}x{win[2]}"
            else:
                s = int(case.split("x")[0])
                x = rng.random((1, 4, s, s), dtype=np.float32)
                calls = {k: (lambda e=e, x=x: e.infer(x)) for k, e in contenders.items()}
            for f in calls.values():
                f()  # warm-up (OpenVINO compiles for the shape)
            times = {k: [] for k in calls}
            keys = list(calls)
            t_end = time.perf_counter() + args.seconds
            for it in range(args.iters):
                for k in keys[it % len(keys):] + keys[:it % len(keys)]:
                    t0 = time.perf_counter()
                    calls[k]()
                    times[k].append(time.perf_counter() - t0)
                if time.perf_counter() > t_end and it >= 2:
                    break
            for be in ("onnxruntime", "openvino"):
                if (be, "FP32") in times and (be, "INT8") in times:
                    a, b = p50(times[(be, "FP32")]), p50(times[(be, "INT8")])
                    print(f"| {label} | {case} | {be} | {a:.1f} | {b:.1f} | {a / b:.2f}× | {len(times[(be, 'INT8')])} |")


def quality(pairs, val_dir, crops):
    from train.evaluate import load_eval_set

    print("\n| model | holes | FP32 hole PSNR dB | INT8 hole PSNR dB | loss dB | largest change (levels) |")
    print("|---|---|--:|--:|--:|--:|")
    for mask_kind in ("freeform", "rect"):
        images, masks, _ = load_eval_set(val_dir, 256, mask_kind, crops=crops, seed=0)
        for label, fp32, int8 in pairs:
            outs = {}
            for prec, path in (("fp32", fp32), ("int8", int8)):
                with Inpainter(path, backend="onnxruntime", roi=False) as inp:
                    outs[prec] = inp.batch(list(images), list(masks))
            ps = {k: np.mean([_hole_psnr(o, t, m) for o, t, m in zip(v, images, masks)]) for k, v in outs.items()}
            diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(outs["fp32"], outs["int8"]))
            print(f"| {label} | {mask_kind}, {len(images)} crops | {ps['fp32']:.2f} | {ps['int8']:.2f} | "
                  f"{ps['fp32'] - ps['int8']:+.3f} | {diff} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", default="data/train" if Path("data/train").is_dir() else "examples/images")
    ap.add_argument("--val", default="data/val" if Path("data/val").is_dir() else None)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--crops", type=int, default=16)
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                    help="another model for the quality table (quantized here)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, flags: {cpu_flags()}; "
          f"{args.threads} threads; onnxruntime {__import__('onnxruntime').__version__}, "
          f"openvino {__import__('openvino').__version__ if _has('openvino') else 'not installed'}")
    from train.export import export_random

    w1 = tmp / "glcic_w1.onnx"
    export_random("glcic", 1.0, w1, seed=0, log=lambda s: None)
    models = []
    for label, path in [("shipped w0.25", default_model_path()), ("GLCIC w1.0 (random)", w1)] + \
            [tuple(e.split("=", 1)) for e in args.extra]:
        out = tmp / (Path(path).stem + f".{len(models)}.int8.onnx")
        t0 = time.perf_counter()
        r = quantize(path, out, args.calibration, images=64, force=True)
        print(f"quantized {label}: {r.quantized_convs} convolutions, kept float: "
              f"{', '.join(n[1] for n in r.kept_float)}; held-out self-check loss {r.loss_db:+.3f} dB "
              f"({time.perf_counter() - t0:.0f} s)")
        models.append((label, str(path), str(out)))
    print("\n| model | input | back-end | FP32 p50 ms | INT8 p50 ms | INT8 speed-up | n |")
    print("|---|---|---|--:|--:|--:|--:|")
    speed(models[:2], args)
    if args.val:
        quality([m for m in models if "random" not in m[0]], args.val, args.crops)


def _has(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
