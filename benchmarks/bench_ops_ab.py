"""The pixel kernels of this checkout against another build of them (A/B), in one process.

    python benchmarks/bench_ops_ab.py --old /tmp/old_C.so [--frames 4] [--iters 15]

``--old``: a ``fastfill/_C*.so`` built from another commit (copy it out of site-packages before
rebuilding). Both run through ``fastfill.ops`` (the same argument handling), interleaved, on 1080p
frames: prepare (float32 / float16, 4 and 3 channels, whole frame and a ROI window) and composite
(float32 / float16, whole frame and window). Prints the median of each and new / old; the outputs
must be identical (checked).
"""

import argparse
import importlib.machinery
import importlib.util
import os
import platform

import numpy as np

from fastfill import bench as fb
from fastfill import ops


def load_old(path: str):
    loader = importlib.machinery.ExtensionFileLoader("_C", path)  # its init function is PyInit__C
    spec = importlib.util.spec_from_file_location("_C", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the other build's _C*.so")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--iters", type=int, default=15)
    args = ap.parse_args()
    builds = {"new": ops._C, "old": load_old(args.old)}
    n, h, w = args.frames, 1080, 1920
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    masks = np.zeros((n, h, w), np.uint8)
    masks[:, h // 3: h // 3 + h // 4, w // 3: w // 3 + w // 4] = 255
    mean = (0.45, 0.43, 0.40)
    win = (h // 3 - 40, w // 3 - 40, h // 4 + 80, w // 4 + 80)
    hp, wp = ops.padded_size(h, w, 4)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, OpenMP "
          f"threads {ops.build_info()['omp_max_threads']}; {n} frames of {w}x{h}; median of {args.iters}")
    cases = {}
    for dt in (np.float32, np.float16):
        name = np.dtype(dt).name
        cases[f"prepare {name} 4 ch"] = lambda dt=dt: ops.prepare(images, masks, mean, 4, dtype=dt)
        cases[f"prepare {name} 3 ch"] = lambda dt=dt: ops.prepare(images, masks, mean, 4, dtype=dt,
                                                                  mask_channel=False)
        cases[f"prepare {name} window"] = lambda dt=dt: ops.prepare(images, masks, mean, 4, dtype=dt,
                                                                    window=win)
        pred = rng.random((n, 3, hp, wp), dtype=np.float32).astype(dt)
        wpred = np.ascontiguousarray(pred[:, :, :win[2], :win[3]])
        cases[f"composite {name}"] = lambda p=pred: ops.composite(p, images, masks)
        cases[f"composite {name} window"] = lambda p=wpred: ops.composite(p, images, masks, window=win)
    print(f"{'case':<26}{'new ms':>9}{'old ms':>9}{'new/old':>9}")
    ratios = []
    for label, fn in cases.items():
        outs = {}

        def run(b, fn=fn):
            ops._C = builds[b]
            try:
                outs[b] = fn()
            finally:
                ops._C = builds["new"]

        t = fb.time_interleaved({b: (lambda b=b: run(b)) for b in builds}, args.iters, warmup=1)
        if not np.array_equal(outs["new"], outs["old"]):
            raise SystemExit(f"{label}: the two builds' outputs differ")
        new, old = (float(np.median(t[b])) * 1e3 for b in ("new", "old"))
        ratios.append(new / old)
        print(f"{label:<26}{new:>9.2f}{old:>9.2f}{new / old:>8.2f}x")
    print(f"{'geometric mean':<26}{'':>18}{float(np.exp(np.mean(np.log(ratios)))):>8.2f}x   "
          "(outputs identical in every case)")


if __name__ == "__main__":
    main()
