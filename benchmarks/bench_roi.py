"""ROI vs full frame: a 1920x1080 frame with one 128x128 hole, the same engine, interleaved.

Run from the repo root:

    python benchmarks/bench_roi.py [--model FILE.onnx ...] [--width 1.0] [--iters N] [--threads N]

Models: tests/data/tiny_glcic.onnx and a random-init CompletionNet at --width (1.0 = the paper's
net; exported with train.export, needs the `train` extra), or the files given with --model.
For each model, Inpainter(roi=True) and Inpainter(roi=False) run on the same frame and hole
(``fastfill.bench``: stage split, GFLOP actually run); the target is ROI >= 8x faster with the
same pixels (max |ROI - full| inside the hole; outside, both keep the original bytes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="GLCIC .onnx (repeatable)")
    ap.add_argument("--width", type=float, default=1.0, help="random CompletionNet width (0 = none)")
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--hole", type=int, default=128, help="side of the square hole")
    ap.add_argument("--iters", type=int, default=None,
                    help="iterations [default: 10 for the tiny model, 2 for a random width >= 0.5]")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import numpy as np

    from fastfill import bench as fb

    threads = args.threads or fb.default_threads()
    w, h = fb.parse_size(args.size)
    tmp = tempfile.TemporaryDirectory(prefix="fastfill-roi-")
    models = [Path(m) for m in args.model] if args.model else [ROOT / "tests/data/tiny_glcic.onnx"]
    if not args.model and args.width > 0:
        from train.export import export_model, random_model

        net = random_model("glcic", args.width, seed=0)
        p = Path(tmp.name) / f"glcic_random_w{args.width:g}.onnx"
        t0 = time.perf_counter()
        export_model(net, p, provenance={"random_init": True, "seed": 0, "config": net.config()},
                     log=lambda m: None)
        print(f"exported random CompletionNet(width={args.width:g}) in "
              f"{time.perf_counter() - t0:.1f} s")
        models.append(p)

    images, _ = fb.synthetic_input(w, h, 1, 0.01, seed=0)
    masks = np.zeros((1, h, w), np.uint8)
    top, left = (h - args.hole) // 2 + 37, (w - args.hole) // 2 - 211  # off-centre, off the grid
    masks[:, top:top + args.hole, left:left + args.hole] = 255
    print(f"frame {w}x{h}, one {args.hole}x{args.hole} hole at (top {top}, left {left}); "
          f"{threads} threads")

    reports = []
    for m in models:
        targets = fb.make_targets([str(m)], threads=threads, roi_modes=(False, True))
        meta = targets[0].engine.meta
        try:
            iters = args.iters or (10 if fb.onnx_flops(m, 256, 256)["gflop"] < 5 else 2)
        except fb.FlopCountError:  # e.g. no onnx package: a few iterations
            iters = args.iters or 2
        print(f"\nmodel {m.name}: receptive field {meta.receptive_field} px, margin "
              f"{targets[0].inpainter.margin} px; {iters} iterations")
        rep = fb.bench(targets, iters=iters, warmup=1, threads=threads, inputs=(images, masks),
                       log=print)
        for t in targets:
            t.inpainter.close()
        print(fb.format_report(rep))
        full, roi = rep["results"]
        c = rep["comparisons"][0]
        speed = c["speedup"]  # baseline (full frame) latency / ROI latency
        rep["model"] = str(m)
        rep["roi_speedup"] = speed
        print(f"ROI window(s): {roi['windows']} = "
              f"{sum(a[2] * a[3] for a in roi['windows']) / (w * h) * 100:.1f} % of the frame; "
              f"GFLOP {roi['gflop_per_image']:.1f} vs {full['gflop_per_image']:.1f}")
        print(f"ROI vs full frame: {speed:.1f}x faster (p50 {c['speedup_p50']:.1f}x); "
              f"infer stage {full['stages_ms']['infer'] / roi['stages_ms']['infer']:.1f}x; "
              f"max |diff| inside the hole {c['max_abs_diff_in_hole']} (uint8), "
              f"{100 * c['pixels_differing_in_hole']:.3f} % of hole pixels differ; outside "
              f"{c['max_abs_diff_outside']} -> target >= 8x: {'met' if speed >= 8 else 'MISSED'}")
        reports.append(rep)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(reports, indent=2, default=fb._json_default) + "\n")
    tmp.cleanup()


if __name__ == "__main__":
    main()
