"""The native pixel kernels against their NumPy reference on 8 frames of 1920x1080.

Run from the repo root: `python benchmarks/bench_ops.py [--frames 8] [--repeat 5]`.
Prints, per op, the best time of each, the speed-up (target >= 10x, docs/ARCHITECTURE.md, Targets) and the
kernel's effective bandwidth (bytes read + written per second).
"""

import argparse
import os
import platform
import time

import numpy as np

from fastfill import ops


def best_time(fn, repeat):
    fn()  # warm-up (page faults of fresh outputs, thread pool start)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, h, w = args.frames, args.height, args.width
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    masks = np.zeros((n, h, w), np.uint8)
    masks[:, h // 3: h // 3 + h // 4, w // 3: w // 3 + w // 4] = 255  # a hole of ~6% of the frame
    mean = (0.45, 0.43, 0.40)
    hp, wp = ops.padded_size(h, w, 4)
    info = ops.build_info()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"OpenMP threads {info['omp_max_threads']}; numpy {np.__version__}")
    print(f"{n} frames of {w}x{h}, best of {args.repeat}")
    print(f"{'op':<28}{'C++ ms':>10}{'NumPy ms':>10}{'speed-up':>10}{'C++ GB/s':>10}")

    px = n * h * w
    rows = []
    for dtype in (np.float32, np.float16):
        item = np.dtype(dtype).itemsize
        nbytes = px * 4 + n * 4 * hp * wp * item  # read RGB + mask, write 4 planes
        t_c = best_time(lambda: ops.prepare(images, masks, mean, 4, dtype=dtype), args.repeat)
        t_r = best_time(lambda: ops.prepare_reference(images, masks, mean, 4, dtype=dtype), args.repeat)
        rows.append((f"prepare -> {np.dtype(dtype).name}", t_c, t_r, nbytes))
        pred = rng.random((n, 3, hp, wp), dtype=np.float32).astype(dtype)
        nbytes = n * 3 * hp * wp * item + px * 4 + px * 3  # read pred + RGB + mask, write RGB
        t_c = best_time(lambda: ops.composite(pred, images, masks), args.repeat)
        t_r = best_time(lambda: ops.composite_reference(pred, images, masks), args.repeat)
        rows.append((f"composite <- {np.dtype(dtype).name}", t_c, t_r, nbytes))
    for name, t_c, t_r, nbytes in rows:
        print(f"{name:<28}{t_c * 1e3:>10.1f}{t_r * 1e3:>10.1f}{t_r / t_c:>9.1f}x{nbytes / t_c / 1e9:>10.2f}")
    tot_c = sum(r[1] for r in rows)
    tot_r = sum(r[2] for r in rows)
    print(f"{'all four':<28}{tot_c * 1e3:>10.1f}{tot_r * 1e3:>10.1f}{tot_r / tot_c:>9.1f}x"
          f"   (target >= 10x: {'met' if tot_r / tot_c >= 10 else 'MISSED'})")


if __name__ == "__main__":
    main()
