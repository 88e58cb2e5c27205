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

Then two steps of propagation, by the kernels they call against the OpenCV and NumPy steps they
replaced: the motion estimate's 4x reduction of the luma plane (`ops.area_reduce4` against
`cv2.resize`'s INTER_AREA, one OpenCV thread as propagation runs it), and placing a source over
the logo's box (the ring's Lucas-Kanade step, the ring check, the offset and the copy:
`_C.ring_shift` + `_C.ring_place` against the NumPy steps), the same results asserted.

Last, what reading a whole frame as 8-bit RGB costs and how far off it is (mean error, levels):
the 8-bit frame by `ops.yuv_to_rgb` (what `frames.to_rgb` and `Decoded` use) against swscale's
fast path (before: about 1.1 levels dark, which the write-back showed as a darker hole) and its
exact one (ACCURATE_RND | FULL_CHR_H_INT), the error against the real-valued BT.601 conversion;
the same frame in yuv420p10le by `frames.to_rgb` (16-bit RGB rounded to 8 bits) against
swscale's direct 8-bit RGB, the error against 16-bit RGB / 257.
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
    propagation_steps(frame, sws, args.rounds, args.iters)
    deep_read(frame, sws, args.rounds, args.iters)


def deep_read(frame, sws, rounds: int, iters: int) -> None:
    """See the module's docstring (its last paragraph)."""
    from av.video.reformatter import Interpolation

    y, u, v = (p.astype(float) for p in fr.planes(frame))
    h, w = y.shape
    uu = u.repeat(2, 0).repeat(2, 1)[:h, :w] - 128
    vv = v.repeat(2, 0).repeat(2, 1)[:h, :w] - 128
    yy, cc = (y - 16) * 255 / 219, 255 / 224  # (BT.601 limited: the frame's, untagged)
    exact8 = np.clip(np.stack([yy + 1.402 * cc * vv, yy - (0.344136 * uu + 0.714136 * vv) * cc,
                               yy + 1.772 * cc * uu], -1), 0, 255)
    deep = frame.reformat(format="yuv420p10le")
    exact10 = deep.reformat(format="rgb48le").to_ndarray() / 257
    exact_flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    rows = [
        ("8-bit: swscale rgb24 (before)", exact8,
         lambda: sws.reformat(frame, format="rgb24", threads=1).to_ndarray()),
        ("8-bit: swscale rgb24, exact flags", exact8,
         lambda: sws.reformat(frame, format="rgb24", threads=1,
                              interpolation=exact_flags).to_ndarray()),
        ("8-bit: ops.yuv_to_rgb (frames.to_rgb)", exact8, lambda: fr.to_rgb(frame, sws)),
        ("10-bit: swscale rgb24 (before)", exact10,
         lambda: sws.reformat(deep, format="rgb24", threads=1).to_ndarray()),
        ("10-bit: frames.to_rgb (rgb48, rounded)", exact10, lambda: fr.to_rgb(deep, sws)),
    ]
    errors = [float((f().astype(float) - ref).mean()) for _, ref, f in rows]
    times = _median_ms([f for _, _, f in rows], rounds, max(1, iters // 4))
    print("\na whole 1920x1080 frame read as 8-bit RGB (ratio: to the row 'before'):")
    print(f"{'read':44s} {'ms a frame':>10s} {'ratio':>8s} {'mean error':>11s}")
    base = None
    for (name, _, _), ms, err in zip(rows, times, errors):
        base = ms if "before" in name else base
        print(f"{name:44s} {ms:10.3f} {ms / base:7.2f}x {err:+11.3f}")


def _median_ms(fns, rounds: int, iters: int) -> list[float]:
    """Each function's time (ms a call), the median over ``rounds`` of ``iters`` calls, the
    functions interleaved within each round."""
    times = {f: [] for f in fns}
    for _ in range(rounds):
        for f in fns:
            t = time.perf_counter()
            for _ in range(iters):
                f()
            times[f].append((time.perf_counter() - t) / iters * 1000)
    return [statistics.median(times[f]) for f in fns]


def propagation_steps(frame, sws, rounds: int, iters: int) -> None:
    """See the module's docstring (its last paragraph)."""
    import cv2

    from fastfill.ops import _C

    cv2.setNumThreads(1)
    luma = fr.planes(frame)[0]
    assert np.array_equal(ops.area_reduce4(luma),
                          cv2.resize(luma, (480, 270), interpolation=cv2.INTER_AREA))
    a, b = _median_ms([lambda: cv2.resize(luma, (480, 270), interpolation=cv2.INTER_AREA),
                       lambda: ops.area_reduce4(luma)], rounds, iters)
    print(f"\npropagation's steps{'':17s} {'OpenCV/NumPy':>14s} {'kernel':>10s} {'ratio':>8s}")
    print(f"{'luma 1920x1080 reduced 4x':36s} {a:11.3f} ms {b:7.3f} ms {b / a:7.2f}x")

    whole = fr.Decoded(frame, sws).rgb()
    y0, x0, y1, x1 = 44, 1474, 146, 1870  # the logo's box and the ring's 6 px around it
    hole = np.zeros((y1 - y0, x1 - x0), bool)
    hole[6:-6, 6:-6] = True
    ring = (cv2.dilate(hole.view(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~hole
    # a source 0.3, -0.2 px off and 3 levels brighter, its last 40 columns beyond its frame
    warped = cv2.warpAffine(whole, np.array([[1, 0, x0 + 0.3], [0, 1, y0 - 0.2]]),
                            (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    warped = cv2.add(warped, (3.0, 3.0, 3.0, 0.0))
    valid = np.ones(hole.shape, bool)
    valid[:, -40:] = False
    frame_box, todo0 = whole[y0:y1, x0:x1].copy(), hole.copy()
    cur, todo = frame_box.copy(), todo0.copy()

    def numpy_way():  # (the steps as they were, fastfill/video/propagate.py before session 24)
        np.copyto(cur, frame_box)
        np.copyto(todo, todo0)
        gray = cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY)
        ring_at = np.flatnonzero(ring)
        ring_rgb, ring_gray = cur[ring].astype(np.float32), gray[ring].astype(np.float32)
        w, v = valid.shape[1], valid.reshape(-1)
        near = [np.clip(ring_at + k, 0, v.size - 1) for k in (-1, 1, -w, w)]
        col = ring_at % w
        sel = (v[ring_at] & v[near[0]] & v[near[1]] & v[near[2]] & v[near[3]] & (col > 0)
               & (col < w - 1) & (ring_at >= w) & (ring_at < v.size - w))
        g = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY).reshape(-1)
        left, right, up, down = (g[i[sel]].astype(np.float32) for i in near)
        gx, gy = 0.5 * (right - left), 0.5 * (down - up)
        r = ring_gray[sel] - g[ring_at[sel]]
        r -= r.mean()
        m = np.array([[gx @ gx, gx @ gy], [gx @ gy, gy @ gy]], np.float64)
        d = (np.linalg.solve(m, np.array([gx @ r, gy @ r], np.float64))
             if np.linalg.eigvalsh(m)[0] >= 4.0 * r.size else None)
        take = todo & valid
        seen = v[ring_at]
        diff = ring_rgb[seen] - warped.reshape(-1, 3)[ring_at[seen]]
        offset = diff.mean(axis=0)
        ok = np.abs(diff - offset).mean() <= 10.0
        out = cv2.add(warped, tuple(float(c) for c in offset) + (0.0,))
        done = cv2.copyTo(out, take.view(np.uint8), cur)
        if done is not cur:
            cur[...] = done
        todo[...] &= ~take
        return d, ok

    def kernel():
        np.copyto(cur, frame_box)
        np.copyto(todo, todo0)
        d = _C.ring_shift(cur, ring, valid, warped)
        return d, _C.ring_place(cur, ring, valid, warped, todo, 16, 10.0)

    d0, ok0 = numpy_way()
    got0 = cur.copy()
    d1, used = kernel()
    assert ok0 and used == 1 and np.array_equal(cur, got0)
    assert np.abs(np.array(d1) - np.array(d0)).max() < 1e-3
    a, b = _median_ms([numpy_way, kernel], rounds, iters)
    print(f"{f'a source placed over the logo ({y1 - y0}x{x1 - x0})':36s} {a:11.3f} ms {b:7.3f} ms "
          f"{b / a:7.2f}x")


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
        a, b = _median_ms([numpy_way, kernel], rounds, iters)
        print(f"{name + f' ({y1 - y0}x{x1 - x0})':36s} {a:11.3f} ms {b:7.3f} ms {b / a:7.2f}x")


if __name__ == "__main__":
    main()
