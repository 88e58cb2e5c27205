"""`--backend auto` against each installed CPU back-end, side by side in one process.

Run from the repo root:

    python benchmarks/bench_auto.py [--model FILE.onnx] [--iters N] [--threads N]

The shipped model's net (fastfill/models/default.onnx, loaded as a file so that the net runs)
on two cases: a 512x512 whole frame (roi off, a 10 % hole) and a 1920x1080 frame with one
128x128 hole through ROI. Each case times Inpainter(backend=onnxruntime), (openvino) and (auto)
interleaved, after a warm-up that includes auto's own probe (it measures once per input size
class, then runs the faster). Prints mean ms per frame, auto / fastest, and what auto chose.
Goal: auto within 10 % of the fastest installed back-end in both cases.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help=".onnx (default: the shipped model's file)")
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import numpy as np

    from fastfill import Inpainter
    from fastfill import bench as fb
    from fastfill.engines import default_model_path, installed_backends

    model = args.model or str(default_model_path())
    backends = [b for b in ("onnxruntime", "openvino") if b in installed_backends()]
    print(f"model {Path(model).name}; CPU back-ends installed: {', '.join(backends)}; "
          f"threads {args.threads or 'default'}; {fb.environment().get('cpu', '')}")
    cases = [("512x512 whole frame", 512, 512, None, False),
             ("1920x1080, 128x128 hole, ROI", 1920, 1080, 128, True)]
    worst = 0.0
    for label, w, h, hole, roi in cases:
        if hole is None:
            images, masks = fb.synthetic_input(w, h, 1, 0.1)
        else:
            images, _ = fb.synthetic_input(w, h, 1, 0.1)
            masks = np.zeros((1, h, w), np.uint8)
            masks[0, 400:400 + hole, 900:900 + hole] = 1
        opts = {} if args.threads is None else {"threads": args.threads}
        inps = {b: Inpainter(model, backend=b, roi=roi, **opts) for b in backends + ["auto"]}
        fns = {b: (lambda inp=inp: inp(images[0], masks[0])) for b, inp in inps.items()}
        times = fb.time_interleaved(fns, args.iters, warmup=2)
        ms = {b: statistics.mean(t) * 1e3 for b, t in times.items()}
        fastest = min((b for b in backends), key=ms.get)
        ratio = ms["auto"] / ms[fastest]
        worst = max(worst, ratio)
        print(f"\n{label}:")
        for b in backends + ["auto"]:
            print(f"  {b:12s} {ms[b]:8.1f} ms")
        print(f"  auto / fastest ({fastest}) = {ratio:.2f}   auto chose: {inps['auto'].engine.selection}")
        for inp in inps.values():
            inp.close()
    print(f"\nworst auto / fastest: {worst:.2f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
