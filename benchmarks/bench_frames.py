"""What `fastfill video` pays a frame to read a decoded 1080p frame's pixels, in one process.

    python benchmarks/bench_frames.py [--rounds 7] [--iters 40]

A decoded 8-bit 4:2:0 frame (the example photos side by side, scaled to 1920x1080, through
libx264) is read as the fill reads it: converted whole to RGB (`Decoded.rgb`), or only in the
windows the fill reads around a 384x90 logo hole (`Decoded.rgb_within`, the windows the default
fill and the harmonic fill ask for), its RGB frame a private anonymous mapping (today) or a shared
one (mmap's default; the row it is compared with). Each row is a fresh `Decoded` a call, as in the
pipeline, so the mapping's page faults are paid each time. Rounds interleave the rows; each figure
is the median of the rounds' means, with its ratio to the shared mapping's.

Then what a held patch fill pays a frame to check that what it reads stayed put (`FillHold`): the
sum of |now - held| over the known pixels around the logo and around a subtitle band, by the
kernel it calls (`ops.masked_difference`) against the NumPy steps it replaced.
"""

import argparse
from fractions import Fraction
import mmap
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
from PIL import Image  # noqa: E402

from fastfill import Inpainter, ops  # noqa: E402
from fastfill.video import frames as fr  # noqa: E402


def decoded_frame(h: int = 1080, w: int = 1920):
    """One frame of a short libx264 clip of the example photos (decoded, yuv420p)."""
    names = sorted((ROOT / "examples" / "images").iterdir())
    row = np.concatenate([np.asarray(Image.open(p).convert("RGB").resize((w // len(names), h)))
                          for p in names], axis=1)
    rgb = np.ascontiguousarray(np.pad(row, ((0, 0), (0, w - row.shape[1]), (0, 0)), mode="edge"))
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
    codec.time_base = Fraction(1, 30)
    packets = list(codec.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24"))) + list(codec.encode(None))
    dec = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    return frames[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=40)
    args = ap.parse_args()
    frame = decoded_frame()
    hole = np.zeros((1080, 1920), bool)
    hole[50:140, 1480:1864] = True  # the benchmarks' broadcast logo (bench_video.py)
    wins = {"default fill": Inpainter().hole_and_windows(hole)[1],
            "harmonic fill": Inpainter(method="harmonic").hole_and_windows(hole)[1]}
    sws = fr.reformatter_()
    rows = {"whole frame (rgb)": (mmap.MAP_PRIVATE, None)}
    for name, w in wins.items():
        rows[f"{name} windows, private"] = (mmap.MAP_PRIVATE, w)
        rows[f"{name} windows, shared"] = (mmap.MAP_SHARED, w)

    def once(flags, w):
        fr.MAP_FLAGS = flags
        d = fr.Decoded(frame, sws)
        return d.rgb() if w is None else d.rgb_within(w)

    # the same pixels whichever the mapping
    for name, w in wins.items():
        a, b = once(mmap.MAP_PRIVATE, w), once(mmap.MAP_SHARED, w)
        assert np.array_equal(a, b), name
    times = {k: [] for k in rows}
    for _ in range(args.rounds):
        for name, (flags, w) in rows.items():
            once(flags, w)
            t = time.perf_counter()
            for _ in range(args.iters):
                once(flags, w)
            times[name].append((time.perf_counter() - t) / args.iters * 1000)
    fr.MAP_FLAGS = mmap.MAP_PRIVATE
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"1920x1080 yuv420p frame; windows: " +
          "; ".join(f"{k} {v}" for k, v in wins.items()))
    print(f"{'read':44s} {'ms a frame':>10s} {'vs shared':>10s}")
    for name in rows:
        ms = statistics.median(times[name])
        shared = name.replace("private", "shared")
        ratio = (f"{ms / statistics.median(times[shared]):9.2f}x"
                 if shared != name and shared in times else "")
        print(f"{name:44s} {ms:10.3f} {ratio:>10s}")
    held_compare(frame, sws, args.rounds, args.iters)


def held_compare(frame, sws, rounds: int, iters: int) -> None:
    """What a held patch fill checks every frame: |now - held| over the known pixels within its
    context (the hole's box grown by the search radius), by the kernel (`ops.masked_difference`,
    what `FillHold` calls) and by the NumPy steps it replaced (max, min, subtract, multiply by a
    3-channel known mask, sum), on the logo and on the subtitle band."""
    whole = fr.Decoded(frame, sws).rgb()
    held = whole.copy()
    held[::7] ^= 1  # (codec-noise-sized differences)
    radius = Inpainter().margin - 1
    print(f"\nthe held patch fill's compare of its context (radius {radius}):")
    print(f"{'hole':36s} {'NumPy (before)':>14s} {'kernel':>10s} {'ratio':>8s}")
    for name, (y, x, h, w) in {"logo 384x90": (50, 1480, 90, 384),
                               "subtitle band 1320x100": (940, 300, 100, 1320)}.items():
        y0, x0 = max(0, y - radius), max(0, x - radius)
        y1, x1 = min(1080, y + h + radius), min(1920, x + w + radius)
        known = np.ones((y1 - y0, x1 - x0), bool)
        known[y - y0:y - y0 + h, x - x0:x - x0 + w] = False
        known3 = np.repeat(known[:, :, None], 3, axis=2).view(np.uint8)
        now, values = whole[y0:y1, x0:x1], held[y0:y1, x0:x1].copy()

        def numpy_way():
            diff = np.maximum(now, values)
            diff -= np.minimum(now, values)
            diff *= known3
            return int(diff.sum(dtype=np.int64))

        def kernel():
            return ops.masked_difference(now, values, known)

        assert numpy_way() == kernel() == ops.masked_difference_reference(now, values, known)
        times = {f: [] for f in (numpy_way, kernel)}
        for _ in range(rounds):
            for f in times:
                t = time.perf_counter()
                for _ in range(iters):
                    f()
                times[f].append((time.perf_counter() - t) / iters * 1000)
        a, b = (statistics.median(times[f]) for f in (numpy_way, kernel))
        print(f"{name + f' ({y1 - y0}x{x1 - x0})':36s} {a:11.3f} ms {b:7.3f} ms {b / a:7.2f}x")


if __name__ == "__main__":
    main()
