"""What `fastfill video` pays a frame to read a decoded 1080p frame's pixels, in one process.

    python benchmarks/bench_frames.py [--rounds 7] [--iters 40]

A decoded 8-bit 4:2:0 frame (the example photos side by side, scaled to 1920x1080, through
libx264) is read as the fill reads it: converted whole to RGB (`Decoded.rgb`), or only in the
windows the fill reads around a 384x90 logo hole (`Decoded.rgb_within`, the windows the default
fill and the harmonic fill ask for), its RGB frame a private anonymous mapping (today) or a shared
one (mmap's default; the row it is compared with). Each row is a fresh `Decoded` a call, as in the
pipeline, so the mapping's page faults are paid each time. Rounds interleave the rows; each figure
is the median of the rounds' means, with its ratio to the shared mapping's.
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

from fastfill import Inpainter  # noqa: E402
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


if __name__ == "__main__":
    main()
