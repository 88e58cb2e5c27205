"""The patch fill (fastfill.ops.fill(method="patch")) against the patch tools a user can pip-install
(InvokeAI's PatchMatch, GIMP Resynthesizer, OpenCV contrib's shift-map), side by side in one
process on the same inputs, and against the harmonic fill it starts from.

Run from the repo root: `python benchmarks/bench_patch.py [--repeat 3] [--no-anchors]` (the anchors
come with `pip install '.[anchors]'`; a missing one is skipped). Targets (2 cores): a 256² crop
with an object-sized hole <= 1/5 of the fastest anchor; 1080p with a 128² hole <= 60 ms; 1080p
with a 25-35 % hole <= 2 s. Prints the best time of each method and the ratios.
"""

import argparse
import os
import platform
from pathlib import Path

import numpy as np
from PIL import Image

from bench_ops import best_time
from fastfill import ops
from fastfill.fills import DEFAULT_METHOD, DEFAULT_OPTIONS, describe

ROOT = Path(__file__).resolve().parent.parent


def photo(h, w):
    """A bundled example photo, resized: texture where the patch fill works."""
    path = sorted((ROOT / "examples" / "images").iterdir())[0]
    im = Image.open(path).convert("RGB").resize((w, h), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(im))


def blob(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[:h, :w]
    return ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) < 1).astype(np.uint8)


def cases():
    crop = photo(256, 256)
    one = np.zeros((1080, 1920), np.uint8)
    one[476:604, 896:1024] = 1
    big = blob(1080, 1920, 540, 960, 330, 560)
    frame = photo(1080, 1920)
    return [("256² crop, object-sized hole (12 %)", crop, blob(256, 256, 128, 120, 40, 70), True),
            ("1080p, 128² hole", frame, one, False),
            (f"1080p, {100 * big.mean():.0f} % hole", frame, big, False)]


def anchors():
    """The anchors' wrappers of the quality comparison (train/evaluate.py), for one image each;
    a tool that is not installed is skipped, with why."""
    from train.evaluate import patchmatch_fill, resynthesizer_fill, shiftmap_fill

    found = {}
    for name, fn in (("PatchMatch (pypatchmatch)", patchmatch_fill), ("GIMP Resynthesizer", resynthesizer_fill),
                     ("OpenCV shift-map", shiftmap_fill)):
        probe = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), bool)
        probe[1][8:16, 8:16] = True
        try:
            fn(probe[0][None], probe[1][None])
        except ImportError as e:
            print(f"  ({name} skipped: {e})")
            continue
        found[name] = lambda im, m, fn=fn: fn(im[None], m[None] != 0)[0]
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-anchors", action="store_true")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OpenMP threads {ops.build_info().get('omp_max_threads')}")
    tools = {} if args.no_anchors else anchors()
    for name, im, m, with_anchors in cases():
        print(f"\n{name}")
        t_patch = best_time(lambda: ops.fill(im, m, "patch"), args.repeat)
        t_harm = best_time(lambda: ops.fill(im, m, "harmonic"), args.repeat)
        t_rebuilt = best_time(lambda: ops.fill(im, m, "patch", poisson=1), args.repeat)
        t_default = best_time(lambda: ops.fill(im, m, DEFAULT_METHOD, **DEFAULT_OPTIONS), args.repeat)
        print(f"  fastfill patch     {t_patch * 1e3:9.1f} ms")
        print(f"  fastfill harmonic  {t_harm * 1e3:9.1f} ms   (patch / harmonic: {t_patch / t_harm:.1f}x)")
        print(f"  patch, poisson=1   {t_rebuilt * 1e3:9.1f} ms   (its time / fastfill patch: "
              f"{t_rebuilt / t_patch:.2f}x)")
        print(f"  default fill       {t_default * 1e3:9.1f} ms   ({describe(DEFAULT_METHOD, DEFAULT_OPTIONS)})")
        if not with_anchors:
            continue
        times = {}
        for tool, fn in tools.items():
            times[tool] = best_time(lambda: fn(im, m), max(1, args.repeat // 2))
            print(f"  {tool:<26} {times[tool] * 1e3:9.1f} ms   (its time / fastfill patch: "
                  f"{times[tool] / t_patch:.1f}x)")
        if times:
            fastest = min(times, key=times.get)
            print(f"  fastest anchor: {fastest}; fastfill patch is {times[fastest] / t_patch:.1f}x "
                  "faster (target >= 5x)")


if __name__ == "__main__":
    main()
