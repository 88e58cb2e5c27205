"""An all-hole frame through ops.fill: the constant it is, against the solve it used to be.

Run from the repo root:

    python benchmarks/bench_all_hole.py [--size 3840x2160] [--iters 3]

Per fill method, a frame whose mask covers every pixel (the constant path) and the same frame
with one known pixel in a corner (the kernel's solve, what the all-hole frame used to cost),
interleaved in one process: seconds per call, and each path's peak extra memory measured in a
child process (ru_maxrss over the frame's own arrays).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_PEAK = """
import json, resource, sys
import numpy as np
from fastfill import ops
w, h, method, known = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
img = np.zeros((h, w, 3), np.uint8)
mask = np.ones((h, w), np.uint8)
mask[0, 0] = 0 if known else 1
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ops.fill(img, mask, method)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="3840x2160")
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args(argv)
    w, h = map(int, args.size.split("x"))

    import numpy as np

    from fastfill import bench as fb
    from fastfill import ops

    img = np.zeros((h, w, 3), np.uint8)
    hole = np.ones((h, w), np.uint8)
    one_known = hole.copy()
    one_known[0, 0] = 0
    print(f"{w}x{h}, 2 cores; seconds per call (mean of {args.iters}), extra peak MB")
    # the peaks first: a child starts with its parent's high-water mark, which the timing raises
    peaks = {(m, label): json.loads(subprocess.run(
        [sys.executable, "-c", _PEAK, str(w), str(h), m, known], capture_output=True, text=True,
        check=True, cwd=ROOT).stdout)
        for m in ("harmonic", "patch") for label, known in (("all hole", "0"), ("one known pixel", "1"))}
    for method in ("harmonic", "patch"):
        fns = {"all hole": lambda m=method: ops.fill(img, hole, m),
               "one known pixel": lambda m=method: ops.fill(img, one_known, m)}
        times = fb.time_interleaved(fns, args.iters, warmup=1)
        peak = {label: peaks[(method, label)] for label in fns}
        a, b = (statistics.mean(times[k]) for k in ("all hole", "one known pixel"))
        print(f"{method:8s} all hole {a:.4f} s, {peak['all hole']:.0f} MB | one known pixel "
              f"{b:.3f} s, {peak['one known pixel']:.0f} MB | {b / a:.0f}x")


if __name__ == "__main__":
    main()
