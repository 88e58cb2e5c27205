"""A *still hole*: decoded frames whose hole's neighbourhood stays put, compared on their planes.

``fastfill video`` gives a frame of a still run the fill of the frame before it instead of
filling it (with propagation, once the run covers the window around the frame:
:class:`fastfill.video.propagate.Propagator`'s ``still``; with ``--no-propagate``, a frame in the
run of the frame before it): a static logo over a static shot then costs a compare of the samples
around the hole and a copy, not an RGB conversion, a compare and a fill.
"""

from __future__ import annotations

import numpy as np

from .. import steady
from ..ops import _C  # (through ops, which sets OpenMP's wait policy before the module loads)
from ..roi import bounding_box, hole_border
from .frames import Decoded

# RGB levels that a level of Y, U or V moves a pixel by, at most (limited range, the largest of
# BT.601's, BT.709's and BT.2020's: blue 1.164 Y + 2.142 U, red 1.164 Y + 1.793 V): the still
# hole's bounds are the held fill's, in RGB levels
_RGB_PER_LEVEL = (1.17, 2.15, 1.8)


class StillHole:
    """Whether a decoded frame's hole still has the neighbourhood it had (:class:`Propagator`'s
    ``still``): the frames of a *run* share one static mask (the same frozen array) and their
    known samples within ``margin`` of the hole's box (what the fill reads) stay within
    ``tolerance`` RGB levels of the run's first frame's, in all three planes (4:2:0: the chroma
    of the 2x2 blocks that touch no hole pixel; a plane's levels weighted by the most RGB levels
    one moves a pixel by), on average within half of it, and on the hole's border (the known
    samples next to it: what a fill meets, so no seam; and the chroma of the blocks half in the
    hole, which a still frame takes from the frame before) everywhere; or, under a camera's noise,
    within :func:`fastfill.steady.only_noise`'s bounds (the context moved as a whole, its 4x4
    blocks' means and its border as a whole did not, no block and no border sample far). The
    fill's held frames' bounds (:class:`fastfill.inpainter.FillHold`), read on the decoded planes
    themselves: nothing is converted to RGB. Only :class:`Decoded` frames are compared; any other
    frame starts a run of its own."""

    def __init__(self, margin: int, tolerance: float = 2.0):
        self.margin, self.tolerance = int(margin), float(tolerance)
        self._hole = None  # the hole the geometry below is of
        self._geometry = None  # [(rows, cols, known, border) for Y, U, V], count of known samples
        # the run's first frame's samples in the boxes, Y, U, V, each with its border's (int16)
        self._reference = None
        # and its planes' whole 4x4 blocks' means (steady.known_blocks), made when first asked
        # for (a camera that moves starts a run at every frame, and never asks)
        self._blocks = None
        self.run = 0  # the current run's number (a new one at every frame that breaks it)

    def __call__(self, frame, hole: np.ndarray | None) -> int:
        """The run this frame is in (the number of the run before, or a new one); frames come
        in order, one call each."""
        self.run += 1  # (taken back below when the frame continues the run)
        if isinstance(frame, Decoded) and hole is not None:
            if hole is not self._hole:
                self._measure(hole)
            if self._geometry is not None:
                planes = frame.planes
                if self._reference is not None and self._same(planes):
                    self.run -= 1
                    return self.run
                self._reference = [(now, now[border].astype(np.int16)) for now, border in
                                   ((p[rows, cols].copy(), border) for p, (rows, cols, _, border)
                                    in zip(planes, self._geometry[0]))]
                self._blocks = None
                return self.run
        self._reference = None
        return self.run

    def _measure(self, hole: np.ndarray) -> None:
        """The boxes, known samples and borders of a hole (None: nothing to compare)."""
        self._hole, self._geometry, self._reference = hole, None, None
        h, w = hole.shape
        box = bounding_box(hole, self.margin)
        if box is None or h % 2 or w % 2:
            return
        y0, x0, y1, x1 = (box[0] & ~1, box[1] & ~1, min(h, (box[2] + 1) & ~1),
                          min(w, (box[3] + 1) & ~1))
        luma = hole[y0:y1, x0:x1]
        blocks = luma.reshape((y1 - y0) // 2, 2, (x1 - x0) // 2, 2)
        chroma = blocks.any(axis=(1, 3))  # (what a still frame's hole samples are written over)
        # the chroma written over a block half in the hole is its known pixels' too: compared as
        # the border is
        half = chroma & ~blocks.all(axis=(1, 3))
        geometry, count = [], 0
        for k, part in enumerate((luma, chroma, chroma)):
            s = 1 if k == 0 else 2
            border = hole_border(part) | half if k else hole_border(part)
            border = np.nonzero(border)  # (indices: a boolean index reads the whole box)
            known = (~part).view(np.uint8)
            count += int(np.count_nonzero(known))
            geometry.append((slice(y0 // s, y1 // s), slice(x0 // s, x1 // s),
                             np.ascontiguousarray(known), border))
        if count:
            self._geometry = (geometry, count)

    def _same(self, planes) -> bool:
        geometry, count = self._geometry
        context = worst = moved = 0.0
        borders = 0
        nows = []
        for p, (ref, ref_border), (rows, cols, known, border), scale in zip(
                planes, self._reference, geometry, _RGB_PER_LEVEL):
            now = p[rows, cols]
            nows.append(now)
            d = np.abs(now[border].astype(np.int16) - ref_border)
            if d.size:
                worst = max(worst, scale * float(d.max()))
                moved += scale * float(d.sum())
                borders += d.size
            context += scale * _C.masked_difference(now[:, :, None], ref[:, :, None], known)
        context /= count
        return steady.unchanged(context, worst, moved / max(1, borders), self.tolerance,
                                lambda: self._blocks_moved(nows))

    def _blocks_moved(self, nows) -> tuple[float, float] | None:
        """The mean and the largest move of the planes' whole 4x4 blocks of known samples since
        the run's first frame, each plane's levels weighted, the mean over their blocks (None:
        no whole block)."""
        if self._blocks is None:
            self._blocks = [steady.known_blocks(ref, known) for (ref, _), (_, _, known, _)
                            in zip(self._reference, self._geometry[0])]
        total = n = largest = 0.0
        for now, blocks, scale in zip(nows, self._blocks, _RGB_PER_LEVEL):
            if blocks is not None:
                k = int(np.count_nonzero(blocks[0]))
                mean, most = steady.block_difference(now, *blocks)
                total += scale * mean * k
                n += k
                largest = max(largest, scale * most)
        return (total / n, largest) if n else None


__all__ = ["StillHole"]
