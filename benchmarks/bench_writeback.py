"""What writing a filled image back in its own mode costs, against the fill itself.

Run from the repo root:

    python benchmarks/bench_writeback.py [--size 2000] [--hole 1000] [--iters 3]

An image of ``size``² with a centred ``hole``² hole, in three modes, interleaved in one process:
- RGBA, opaque around the hole (the common RGBA photo: the alpha is copied, no solve);
- RGBA, a logo on a transparent canvas with the hole across its edge (the alpha filled, and the
  colour's smooth base alpha-weighted: three harmonic solves over the hole's box);
- 16-bit grey (the 16-bit values below the 8-bit levels: one solve of three planes).
For each, ``codecs.restore_mode`` (the write-back alone, no encoding) and, as the yardstick, the
harmonic fill of the same hole (``ops.fill``): seconds per call and their ratio.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from fastfill import ops  # noqa: E402
from fastfill.files import codecs  # noqa: E402


def _decoded(image: Image.Image, fmt: str = "PNG"):
    buf = io.BytesIO()
    image.save(buf, fmt)
    return codecs.decode_image(buf.getvalue())


def cases(size: int, hole_side: int):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    hole = np.zeros((size, size), bool)
    c0 = (size - hole_side) // 2
    hole[c0:c0 + hole_side, c0:c0 + hole_side] = True
    opaque = np.dstack([rgb, np.full((size, size), 255, np.uint8)])
    logo = opaque.copy()
    logo[:, size // 2:, 3] = 0  # the right half transparent: the hole crosses the edge
    logo[:, size // 2:, :3] = 0
    yy, xx = np.mgrid[:size, :size]
    g16 = (20000 + 7 * xx + 3 * yy).astype(np.uint16)
    return hole, [("RGBA, opaque around the hole", _decoded(Image.fromarray(opaque)), rgb),
                  ("RGBA, hole across a transparent canvas's edge", _decoded(Image.fromarray(logo)), logo[..., :3].copy()),
                  ("16-bit grey", _decoded(Image.fromarray(g16)), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--hole", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    hole, rows = cases(a.size, a.hole)
    mask = hole.astype(np.uint8)
    times: dict[str, list[float]] = {}
    for _ in range(a.iters):  # interleaved: the machine's drift shared by all rows
        for name, src, result in rows:
            t = time.perf_counter()
            ops.fill(result, mask, "harmonic")
            times.setdefault(f"{name}: fill", []).append(time.perf_counter() - t)
            t = time.perf_counter()
            codecs.restore_mode(result, src, hole, "PNG")
            times.setdefault(f"{name}: write-back", []).append(time.perf_counter() - t)
    print(f"{a.size}x{a.size}, hole {a.hole}x{a.hole}, median of {a.iters}")
    for name, _, _ in rows:
        fill = statistics.median(times[f"{name}: fill"])
        back = statistics.median(times[f"{name}: write-back"])
        print(f"{name:48s} write-back {back:7.3f} s   harmonic fill {fill:7.3f} s   "
              f"write-back / fill {back / fill:5.2f}")


if __name__ == "__main__":
    main()
