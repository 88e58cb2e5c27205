"""Fill from other frames (propagation): each hole pixel takes the same scene point from the
nearest frame of a bounded window that shows it; what no frame shows is left to the image fill.

::

    (tag, (frame, mask)) ──► Propagator: a window of ``window`` frames each side
        motion: each frame analysed once, frame i-1 -> i estimated once (motion.py), when a
            frame within ``window`` of a hole first needs it; chained through the window; a
            cut or an untrusted estimate breaks the chain
        for each hole region of frame t (its box plus a ring of known pixels):
            the window's frames, nearest first (t-1, t+1, t-2, ...), with the kept frame
            after the first two (``keep``: a frame's hole region as propagated, kept for
            ``keep`` frames and moved through the links since: what left the window comes
            from it resampled twice, not once a frame through the chain below, and most of
            the hole before the other window frames are tried), then frame t-1 with the
            pixels propagated into it (``reuse``: what left the window still reaches t through
            it), each warped into the box only (the cost follows the hole, not the frame);
            a frame is used when its warped pixels match frame t's known ring (mean absolute
            difference under ``ring_error`` once their mean colour offset, an exposure change,
            is removed; the offset is applied to what it gives); each still-open hole pixel
            takes the bilinear sample of the first used frame whose four taps are all inside
            that frame and outside its hole
    ──► (tag, (frame with the propagated pixels, the hole that is left)) ──► Inpainter.stream
        (carry=True): the rest filled with the propagated pixels as known, so the image fill
        (harmonic / patch / a model) meets them without a seam; an empty rest costs a copy.

Output is ``window`` frames behind input (the lookahead) and comes out in order; the end of the
stream flushes what waits. Memory: 2 x ``window`` + 2 frames, and the kept hole region. A frame
whose motion to its neighbours is unknown (a cut, too little texture) propagates nothing and is
filled as a still; nothing crosses a cut, since every source is reached through a chain of
trusted links.

A static camera over a static mask propagates nothing (every sample of a hole pixel has a tap in
the source's hole), so that case is exactly the Inpainter's own, with its carried patch state.

Bilinear, not bicubic, sampling: bicubic's 4x4 footprint needs one more known pixel around each
hole, and on the test pans the coverage it loses costs more (1-3 dB) than its sharpness gains.

:class:`VideoFill` is the streaming API: frames (and masks) in, filled frames out, in order.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from ..errors import InputError
from ..geometry import transform_points, warp
from ..inpainter import frozen, one_mask
from ..ops import _C  # (through ops, which sets OpenMP's wait policy before the module loads)
from ..roi import bounding_box, hole_of, hole_regions
from . import motion as mo
from .frames import Decoded
from .still import StillHole  # noqa: F401 (Propagator's still)

MAX_WINDOW = 30
DEFAULT_WINDOW = 12
# pixels converted around what a source's warp samples (bicubic's reach, the ring's refinement of
# up to a pixel, rounding: one more per refinement past the first), and by how much a source's
# conversion grows when it must (a pan's boxes creep a few pixels a frame)
_READ, _GROW = 4, 32
_MAX_RING, _MAX_REFINE = 32, 3  # (the ring within what a frame converts around its hole)
# pixels around each hole region that the next frame may read of this one's propagated pixels
# (``reuse``): far more than a frame's motion, and each pixel's own value is also its own frame's
_REUSE_MARGIN = 48


@dataclass(frozen=True)
class PropagateOptions:
    """How frames fill each other's holes (the defaults are ``fastfill video``'s)."""

    window: int = DEFAULT_WINDOW  # frames each side (1..MAX_WINDOW)
    ring: int = 4  # known pixels around a hole that check a source frame's alignment
    ring_error: float = 10.0  # mean absolute difference (0-255) over the ring accepted
    min_ring: int = 16  # fewer ring pixels seen by a source frame: it cannot be checked, unused
    cell: int = 16  # hole pixels closer than about this are one region (roi.hole_regions)
    # after every frame's own pixels, the previous frame's propagated ones: what left the
    # window long ago still reaches the hole through them, and the fill stays put
    reuse: bool = True
    # a frame's propagated hole (and ``keep_margin`` px around it) is kept and offered, moved
    # through the links since, right after the two nearest frames for this many frames: what left
    # the window reaches the hole resampled twice, not once a frame through ``reuse`` (0 = off)
    keep: int = 8
    keep_margin: int = 48
    sharp: bool = True  # bicubic where its footprint is known, bilinear at the hole's rims
    refine: int = 1  # local translation refinements of each source on the ring (0 = none)
    motion: mo.MotionOptions = field(default_factory=mo.MotionOptions)

    def __post_init__(self):
        if not (1 <= self.ring <= _MAX_RING and 0 <= self.refine <= _MAX_REFINE):
            raise InputError(f"ring must be in [1, {_MAX_RING}] px and refine in [0, {_MAX_REFINE}], "
                             f"got {self.ring}, {self.refine}")
        if not (self.min_ring >= 1 and self.ring_error >= 0):
            raise InputError(f"min_ring must be at least 1 and ring_error not negative, got "
                             f"{self.min_ring}, {self.ring_error}")
        if not 1 <= self.window <= MAX_WINDOW:
            raise InputError(f"window must be in [1, {MAX_WINDOW}] frames, got {self.window}")
        if not (0 <= self.keep <= MAX_WINDOW and 0 <= self.keep_margin <= 1024):
            raise InputError(f"keep must be in [0, {MAX_WINDOW}] frames and keep_margin in "
                             f"[0, 1024] px, got {self.keep}, {self.keep_margin}")


@dataclass
class PropagateStats:
    """What propagation did: hole pixels seen and filled from other frames, frames whose hole
    was filled entirely, links refused (cuts and untrusted estimates), seconds spent."""

    frames: int = 0
    hole_pixels: int = 0
    propagated_pixels: int = 0
    complete_frames: int = 0
    breaks: int = 0
    cuts: int = 0
    refused: int = 0  # source frames whose warped ring did not match (moving things, parallax)
    still: int = 0  # frames given back for the fill before them (Propagator's ``still``)
    seconds: float = 0.0

    @property
    def share(self) -> float:
        """The share of hole pixels filled from other frames."""
        return self.propagated_pixels / self.hole_pixels if self.hole_pixels else 0.0


class _Entry:
    """One frame in the window: what came in, and what motion needs of it (made when needed)."""

    __slots__ = ("tag", "rgb", "mask", "hole", "holes", "usable", "own", "_analysed", "link",
                 "filled", "run")

    def __init__(self, tag, rgb, mask, before: "_Entry | None"):
        self.tag, self.rgb, self.mask = tag, rgb, mask
        # (rgb: an RGB array, or a Decoded frame, converted where it is read)
        self.usable = ((isinstance(rgb, Decoded) or (
                            isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8
                            and rgb.ndim == 3 and rgb.shape[2] == 3))
                       and np.ndim(mask) == 2 and np.shape(mask) == rgb.shape[:2])
        self.own = None  # _Source of the frame's own pixels, made when first used
        self._analysed = None
        self.link = None  # Motion from the previous frame (None: not estimated yet)
        self.filled = None  # _Source of the frame with its propagated pixels (for the next one)
        self.run = None  # (run, its first frame) of a still hole (Propagator's ``still``)
        self.hole = None  # (an unusable pair passes as given: the Inpainter's check says why)
        self.holes = 0  # hole pixels
        if (self.usable and before is not None and before.usable and before.mask is mask
                and frozen(mask)):
            # a static mask: one bool copy (and count) for the clip
            self.hole, self.holes = before.hole, before.holes
        elif self.usable:
            self.hole = hole_of(mask)
            self.holes = int(np.count_nonzero(self.hole))

    def analysed(self, options: mo.MotionOptions, last: list) -> mo.Analysed:
        """The frame analysed for motion; ``last``: [hole, its reduced masks] of the frame
        analysed last, used again for the same hole (a static mask's are made once)."""
        if self._analysed is None:
            if last[0] is not self.hole:
                last[:] = [self.hole, mo.reduced_masks(self.hole, options)]
            self._analysed = mo.analyse(self.rgb, self.hole, options, last[1])
        return self._analysed

    def source(self, cv2, last: list) -> "_Source":
        """The frame's own pixels as a source; ``last``: [hole, its known map] of the source made
        last, used again for the same hole (a static mask's map is made once, not a 1080p
        compare and its fresh 2 MB a frame)."""
        if self.own is None:
            if last[0] is not self.hole:
                last[:] = [self.hole, _Source.known_of(cv2, self.hole)]
            self.own = _Source(self.rgb, last[1])
        return self.own


class _Source:
    """Pixels other frames may take: ``rgb``, and ``known`` (uint8, 255 where the frame shows
    the scene, 0 on its hole). ``rgb`` may be a Decoded frame: then only what is sampled is
    converted (:meth:`need`, before each use), the cost following the hole, not the frame."""

    __slots__ = ("rgb", "known", "_decoded")

    def __init__(self, rgb, known: np.ndarray):
        self._decoded = rgb if isinstance(rgb, Decoded) else None
        self.rgb, self.known = (None if self._decoded is not None else rgb), known

    def need(self, m: np.ndarray, size: tuple[int, int], reach: int) -> None:
        """Make ``rgb`` hold what a warp by ``m`` (this frame -> an output of ``size``, width
        and height) reads, and ``reach`` pixels more (bicubic taps, the ring's refinement)."""
        if self._decoded is None:
            return
        w, h = size
        corners = np.linalg.solve(m, np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1.0]]))
        x, y = corners[0] / corners[2], corners[1] / corners[2]
        fh, fw = self.known.shape
        x0, y0 = max(0, int(np.floor(x.min())) - reach), max(0, int(np.floor(y.min())) - reach)
        x1, y1 = min(fw, int(np.ceil(x.max())) + reach), min(fh, int(np.ceil(y.max())) + reach)
        if x1 > x0 and y1 > y0:
            self.rgb = self._decoded.rgb_within([(y0, x0, y1 - y0, x1 - x0)], source=True,
                                                grow=_GROW)
        elif self.rgb is None:
            self.rgb = self._decoded.rgb_within([], source=True)

    @staticmethod
    def known_of(cv2, hole: np.ndarray) -> np.ndarray:
        known = cv2.compare(hole.view(np.uint8), 0, cv2.CMP_EQ)
        known.setflags(write=False)  # (shared by the frames of a static mask)
        return known


class Propagator:
    """The window: takes ``(tag, (frame, mask))`` in order (:meth:`push`, :meth:`run`) and gives
    back ``(tag, (frame, mask))`` with the propagated pixels set and the mask reduced to what is
    left, ``window`` frames later (:meth:`flush` at the end). Masks: nonzero = hole.
    ``copy`` False: a frame given back is the array pushed, its hole pixels filled in place
    (a read-only or not C-contiguous array is copied). A Decoded frame is recycled
    (:meth:`Decoded.recycle`) when it leaves the window, ``window`` frames after it was given
    back: a reader of its RGB takes it before then.

    ``still`` (a :class:`fastfill.video.still.StillHole`): a frame whose hole's neighbourhood
    stayed put (one run of the still hole) from ``window`` + 1 frames before it (or from the
    clip's first frame, and at least the frame before it) to ``window`` frames after it has
    nothing to take from its window (no frame around shows anything else there), nor a fill to
    make other than the frame's before it: it comes back untouched with :attr:`still_mask` (an
    empty mask, this same array) as its mask, neither propagated nor its motion estimated, and
    its caller gives it the fill of the frame before it (``fastfill video`` writes that frame's
    hole samples again)."""

    def __init__(self, window: int | None = None, options: PropagateOptions | None = None, *,
                 copy: bool = True, shifts: bool = False, still: "StillHole | None" = None):
        options = options or PropagateOptions()
        if window is not None and window != options.window:
            options = dataclasses.replace(options, window=window)
        self.options = options
        self.window = options.window
        self.stats = PropagateStats()
        self._entries: dict[int, _Entry] = {}
        self._pushed = 0  # frames taken
        self._next = 0  # the next frame to give back
        self._masks: list = [None, None]  # see _Entry.analysed
        self._regions: list = [None, []]  # [hole, its regions] of the frame propagated last
        self._known: list = [None, None]  # see _Entry.source
        # False: a frame's own array is filled in place (only its hole pixels change, which no
        # other frame reads), for callers that own the frames they push
        self.copy = copy
        self._cv2 = mo.import_cv2()
        # with ``shifts``, each frame given back and not yet asked for: the scene's shift from
        # the frame before (see next_shift; the consumer keeps it short)
        self._shifts: collections.deque | None = collections.deque() if shifts else None
        self._probe_of: list = [None, None]  # see _probe
        self._rounding = (0.0, 0.0)  # what rounding the shifts left out so far (_whole_shift)
        # the kept frame (options.keep): (its hole's box as a _Source, its box -> the frame last
        # propagated, that frame, the frame it was kept from)
        self._kept: tuple | None = None
        self._still = still
        self.still_mask: np.ndarray | None = None  # (made at the first still frame)

    def run(self, items: Iterable) -> Iterator[tuple]:
        """``(tag, (frame, mask))`` in order -> the same, propagated, in order (a generator)."""
        for tag, (frame, mask) in items:
            yield from self.push(tag, frame, mask)
        yield from self.flush()

    def push(self, tag, frame, mask) -> list[tuple]:
        """Take the next frame; returns the frames now ready (those ``window`` frames back)."""
        e = self._entries[self._pushed] = _Entry(tag, frame, mask,
                                                 self._entries.get(self._pushed - 1))
        if self._still is not None and e.usable and e.holes:
            before = self._entries.get(self._pushed - 1)
            run = self._still(frame, e.hole if frozen(mask) else None)
            e.run = (before.run if before is not None and before.run is not None
                     and before.run[0] == run else (run, self._pushed))
        self._pushed += 1
        out = []
        while self._next + self.window < self._pushed:
            out.append(self._emit())
        return out

    def flush(self) -> list[tuple]:
        """The frames still waiting (the end of the clip)."""
        return [self._emit() for _ in range(self._next, self._pushed)]

    def _emit(self) -> tuple:
        t = self._next
        e = self._entries[t]
        t0 = time.perf_counter()
        try:
            if not e.usable or not e.holes:
                return e.tag, (e.rgb, e.mask)
            if self._is_still(t, e):
                self.stats.hole_pixels += e.holes
                self.stats.still += 1
                if self.still_mask is None or self.still_mask.shape != e.hole.shape:
                    self.still_mask = np.zeros(e.hole.shape, bool)
                    self.still_mask.setflags(write=False)
                return e.tag, (e.rgb, self.still_mask)
            with mo.one_thread(self._cv2):
                frame, left = self._propagate(t, e)
            return e.tag, (frame, left)
        finally:
            if self._shifts is not None:
                linked = e.link is not None and e.link.linked
                self._shifts.append((self._whole_shift(e), e.link.matrix if linked else None))
            self.stats.frames += 1
            self._next += 1
            gone = self._entries.pop(t - self.window, None)  # no later frame reaches back this far
            if gone is not None and isinstance(gone.rgb, Decoded):
                gone.rgb.recycle()  # (its private RGB frames: the next frames' to convert into)
            if t - 1 in self._entries:
                self._entries[t - 1].filled = None  # only the next frame reads it
            self.stats.seconds += time.perf_counter() - t0

    def _is_still(self, t: int, e: _Entry) -> bool:
        """Whether frame t and every frame from ``window`` + 1 before it (or the clip's first,
        and at least the frame before it) to ``window`` after it (or the clip's last) are one
        run of the still hole (runs are consecutive frames)."""
        if e.run is None:
            return False
        first = e.run[1]
        if first > t - 1 or (first > 0 and first > t - self.window - 1):
            return False
        last = self._entries[min(t + self.window, self._pushed - 1)]
        return last.run is not None and last.run[0] == e.run[0]

    def _centre(self, hole):
        """(x, y) of the centre of a hole's box (found once for a static mask), or None."""
        probe = self._probe(hole) if hole is not None else None
        return None if probe is None else tuple(probe[4])

    def _whole_shift(self, e: _Entry):
        """The scene's shift into frame ``e`` in whole pixels, its rounding carried from frame
        to frame (error diffusion): the shifts since the chain last broke (a cut, a link that is
        not a translation) then add up to the true motion within half a pixel, and any run of
        consecutive ones within a pixel, where each rounded alone drifts (a pan of 0.5 px a frame is
        0 or -1 as the estimate's noise falls, and a patch field moved by their sum left the
        scene by pixels within a few frames, failed its fit check and was searched again)."""
        d = _shift(e.link, lambda: self._centre(e.hole))
        if d is None:
            self._rounding = (0.0, 0.0)
            return None
        ry, rx = self._rounding
        y, x = d[0] + ry, d[1] + rx
        whole = (int(np.floor(y + 0.5)), int(np.floor(x + 0.5)))
        self._rounding = (y - whole[0], x - whole[1])
        return whole

    def next_shift(self):
        """How far the scene moved from the frame before to the next frame given back, in
        whole pixels ``(dy, dx)`` (rounded so that the shifts of consecutive frames add up to the
        motion within a pixel, within half a pixel from where the chain last broke), or None
        when not a translation or not known; one call per frame,
        in order (for ``Inpainter.stream(shifts=...)``, from the filling thread). Recorded only
        by a Propagator made with ``shifts=True``. (A consumer calls this or :meth:`next_motion`,
        not both: each takes the frame's record.)"""
        return self.next_motion()[0]

    def next_motion(self) -> tuple:
        """The next frame given back's motion from the frame before: ``(shift, matrix)``, the
        shift as :meth:`next_shift` gives it and the 3x3 transform (frame before -> this frame,
        pixel coordinates) of a trusted link, or None; ``(None, None)`` when not recorded. One
        call per frame, in order (for ``Inpainter.stream(motions=...)``)."""
        return self._shifts.popleft() if self._shifts else (None, None)

    def _link(self, i: int):
        """The motion from frame i-1 to frame i (estimated on first use), or None."""
        a, b = self._entries.get(i - 1), self._entries.get(i)
        if a is None or b is None or not (a.usable and b.usable):
            return None
        if b.link is None:
            opts = self.options.motion
            before = a.link  # (a steady camera moves next as it moved last: a seed)
            linked = before is not None and before.linked
            b.link = mo.estimate(a.analysed(opts, self._masks), b.analysed(opts, self._masks), opts,
                                 before.matrix if linked else None, before.model if linked else "")
            if not b.link.linked:
                self.stats.breaks += 1
                self.stats.cuts += b.link.cut
        return b.link.matrix if b.link.linked else None

    def _linked(self, t: int) -> tuple[list, list]:
        """The window's frames reached from t through a chain of trusted links, each side
        nearest first: ([(frame s, its link s -> s+1)] before t, [(frame s, its link s-1 -> s)]
        after t); a link is estimated on first use."""
        past, future = [], []
        for s in range(t - 1, t - self.window - 1, -1):
            if self._link(s + 1) is None:
                break
            past.append((self._entries[s], self._entries[s + 1].link))
        for s in range(t + 1, min(t + self.window, self._pushed - 1) + 1):
            if self._link(s) is None:
                break
            future.append((self._entries[s], self._entries[s].link))
        return past, future

    def _sources(self, t: int) -> list[tuple[_Source, np.ndarray]]:
        """The window's frames linked to t, nearest first (the earlier of two at the same
        distance first), each with its transform into frame t; last, the previous frame with
        the pixels propagated into it (``reuse``)."""
        linked_past, linked_future = self._linked(t)
        hole = self._entries[t].hole
        if all(e.hole is hole and link.model == "identity"
               for e, link in linked_past + linked_future):
            # a static shot under a static mask: every sample lands on the hole (decided before
            # any transform is composed: a static shot's every frame)
            return []
        past, future = [], []
        m = np.eye(3)
        for e, link in linked_past:  # s -> t = (s+1 -> t) @ (s -> s+1)
            m = m @ link.matrix
            past.append((e, m / m[2, 2]))
        m = np.eye(3)
        for e, link in linked_future:  # t -> s, inverted
            m = link.matrix @ m
            future.append((e, np.linalg.inv(m / m[2, 2])))
        order = []
        for k in range(max(len(past), len(future))):
            order += past[k:k + 1] + future[k:k + 1]
        # a frame of the same hole whose transform moves the hole's box by under half a pixel
        # gives nothing (each hole pixel's bilinear sample has a tap of weight over a quarter on
        # its own hole, and a source gives only where all four are known): a static camera
        # whose estimate is not exactly the identity (sensor noise) is not tried frame by frame
        probe = self._probe(hole)
        order = [(e, m) for e, m in order if e.hole is not hole or probe is None
                 or np.abs(transform_points(m, probe) - probe).max() >= 0.5]
        sources = [(e.source(self._cv2, self._known), m) for e, m in order]
        kept = self._kept_for(t)
        if kept is not None:
            sources.insert(min(2, len(sources)), kept)
        if self.options.reuse and past and past[0][0].filled is not None:
            sources.append((past[0][0].filled, past[0][1]))
        return sources

    def _probe(self, hole):
        """The corners, edge midpoints and centre (row by row: the centre is the fifth) of a
        hole's box ((9, 2) x, y; found once for a static mask), or None."""
        if self._probe_of[0] is not hole:
            box = bounding_box(hole)
            probe = None
            if box is not None:
                y0, x0, y1, x1 = box
                xs, ys = (x0, 0.5 * (x0 + x1 - 1), x1 - 1), (y0, 0.5 * (y0 + y1 - 1), y1 - 1)
                probe = np.array([(x, y) for y in ys for x in xs], np.float64)
            self._probe_of = [hole, probe]
        return self._probe_of[1]

    def _kept_for(self, t: int):
        """The kept frame as a source of frame t (moved by the link t-1 -> t), or None (none
        kept, not kept through frame t-1, or no trusted link: a cut drops it)."""
        if self._kept is None:
            return None
        src, m, last, made = self._kept
        link = self._link(t) if last == t - 1 else None
        if link is None:
            self._kept = None
            return None
        m = link @ m
        m /= m[2, 2]
        self._kept = (src, m, t, made)
        return src, m

    def _keep(self, t: int, out: np.ndarray, known: np.ndarray, hole: np.ndarray) -> None:
        """Keep frame t's hole region (its box and ``keep_margin`` px; ``known``: 255 where
        ``out`` shows the scene, its own or propagated) when nothing is kept or what is kept was
        kept ``keep`` frames ago."""
        keep = self.options.keep
        if not keep or (self._kept is not None and self._kept[2] == t
                        and t - self._kept[3] < keep):
            return
        box = bounding_box(hole, self.options.keep_margin)
        if box is None:
            self._kept = None
            return
        y0, x0, y1, x1 = box
        m = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)  # box -> frame t
        self._kept = (_Source(np.ascontiguousarray(out[y0:y1, x0:x1]),
                              np.ascontiguousarray(known[y0:y1, x0:x1])), m, t, t)

    def _propagate(self, t: int, e: _Entry) -> tuple[np.ndarray, np.ndarray]:
        """Frame t with its hole filled from the window where it can be: (frame, hole left).
        A Decoded frame comes back as itself, its propagated pixels in the RGB frame its
        ``rgb_within`` gives (converted around the hole only)."""
        hole = e.hole
        n_hole = e.holes
        self.stats.hole_pixels += n_hole
        sources = self._sources(t)
        if not sources:
            return e.rgb, e.mask
        h, w = hole.shape
        if self._regions[0] is not hole:  # (a static mask's regions are found once, and the
            # boxes around them: what is filled, and what is read again (reuse, keep))
            o, grow = self.options, max(self.options.keep_margin, _REUSE_MARGIN)
            regions = hole_regions(hole, o.cell)
            pad = o.ring + 2
            self._regions = [hole, [(max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad),
                                     min(w, x1 + pad)) for y0, x0, y1, x1 in regions],
                             [(max(0, y0 - grow), max(0, x0 - grow), min(h, y1 + grow),
                               min(w, x1 + grow)) for y0, x0, y1, x1 in regions]]
        _, boxes, near = self._regions
        if isinstance(e.rgb, Decoded):  # (ours: filled in place, converted around the hole)
            out = e.rgb.rgb_within([(y0, x0, y1 - y0, x1 - x0) for y0, x0, y1, x1 in near],
                                   source=True)
        else:  # in place when the frames are ours: a 1080p copy costs more than the fill
            out = (e.rgb if not self.copy and e.rgb.flags.writeable and e.rgb.flags.c_contiguous
                   else e.rgb.copy())  # (the native steps take rows in order)
        left = hole.copy()
        for box in boxes:
            self.stats.refused += _fill_box(self._cv2, out, hole, left, box, sources, self.options)
        done = n_hole - int(np.count_nonzero(left))
        self.stats.propagated_pixels += done
        if done and (self.options.reuse or self.options.keep):
            # what the next frames read of this one: its pixels near the hole (what a Decoded
            # frame has converted), the propagated ones now among them
            known = np.zeros((h, w), np.uint8)  # (pages untouched outside the boxes cost nothing)
            for y0, x0, y1, x1 in near:
                known[y0:y1, x0:x1] = self._cv2.compare(left[y0:y1, x0:x1].view(np.uint8), 0,
                                                        self._cv2.CMP_EQ)
            if self.options.reuse:
                e.filled = _Source(out, known)
            self._keep(t, out, known, hole)
        if not left.any():
            self.stats.complete_frames += 1
        if not done:
            return e.rgb, e.mask
        return (e.rgb if isinstance(e.rgb, Decoded) else out), left


def _shift(link, centre) -> tuple[float, float] | None:
    """How far a trusted link moves the point ``centre()`` (x, y: the hole's, asked only when
    needed), (dy, dx) in pixels, when the link is nearly a translation (within 1 % in its
    linear part, so the hole's neighbourhood moves alike); None otherwise."""
    if link is None or not link.linked:
        return None
    m = link.matrix
    if np.abs(m[:2, :2] - np.eye(2)).max() > 0.01 or np.abs(m[2, :2]).max() > 1e-6:
        return None
    c = centre()
    if c is None:
        return None
    x, y = c
    p = m @ np.array([x, y, 1.0])
    return float(p[1] / p[2] - y), float(p[0] / p[2] - x)


def _fill_box(cv2, out: np.ndarray, hole: np.ndarray, left: np.ndarray, box, sources,
              options: PropagateOptions) -> int:
    """Fill the open hole pixels (``left``) of one box of ``out`` from the sources in order;
    ``left`` is cleared where filled (both in place). Returns the sources the ring refused.

    Each source is checked and sampled only around what it can give (``_near``): on a pan most
    sources give a strip a few pixels wide, and the cost follows the strip, not the box."""
    y0, x0, y1, x1 = box
    size = (x1 - x0, y1 - y0)
    todo = left[y0:y1, x0:x1]  # a view: filling it fills ``left``
    refused = 0
    if not todo.any():
        return refused
    h_box = hole[y0:y1, x0:x1]
    k = 2 * options.ring + 1
    ring = (cv2.dilate(h_box.view(np.uint8), np.ones((k, k), np.uint8)) > 0) & ~h_box
    cur = out[y0:y1, x0:x1]  # (only hole pixels change: the ring keeps the frame's own)
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    bh, bw = todo.shape
    pad = 2 * options.ring + 2
    for src, m in sources:
        box_m = shift @ m
        # 255 only where all four bilinear taps are known and inside the frame
        known = warp(cv2, src.known, box_m, size, cv2.BORDER_CONSTANT)
        n, ty0, tx0, ty1, tx1 = _C.given_box(known, todo)  # (the open pixels it gives)
        if not n:
            continue
        sy0, sx0, sy1, sx1 = _near((max(0, ty0 - pad), max(0, tx0 - pad), min(bh, ty1 + pad),
                                    min(bw, tx1 + pad)), ring, 4 * options.min_ring)
        sub = (slice(sy0, sy1), slice(sx0, sx1))
        sub_m = np.array([[1, 0, -sx0], [0, 1, -sy0], [0, 0, 1]], np.float64) @ box_m
        src.need(box_m, size, _READ + max(0, options.refine - 1))  # (only a source that gives)
        used = _take_from(cv2, src, sub_m, cur[sub], ring[sub], todo[sub], known[sub] == 255,
                          options)
        refused += used is False
        if used and not todo.any():
            break
    return refused


def _near(rect, ring: np.ndarray, min_ring: int) -> tuple[int, ...]:
    """``rect`` (y0, x0, y1, x1: what a source gives, grown), or the whole box when it holds
    fewer than ``min_ring`` ring pixels to check the source by."""
    y0, x0, y1, x1 = rect
    if np.count_nonzero(ring[y0:y1, x0:x1]) < min_ring:
        return 0, 0, ring.shape[0], ring.shape[1]
    return rect


def _take_from(cv2, src: "_Source", m: np.ndarray, cur: np.ndarray, ring: np.ndarray,
               todo: np.ndarray, valid: np.ndarray, options: PropagateOptions):
    """One source into one rectangle (views of the frame ``cur``, its ring, open pixels and the
    source's valid samples; ``m``: the source's frame -> the rectangle): refine the alignment on
    the ring, check it, copy what it gives into ``cur`` and clear it in ``todo``.
    True when used, False when the ring refused it, None when it could not be checked.

    The check and the copy (``_C.ring_place``): the ring's pixels this source sees (at least
    ``min_ring``) must match the frame's within ``ring_error`` (mean absolute difference) once
    their mean difference, an exposure change between the frames, is removed; the offset is
    added to what it gives (rounded as ``cv2.add`` rounds)."""
    size = (cur.shape[1], cur.shape[0])
    warped = warp(cv2, src.rgb, m, size, cv2.BORDER_REPLICATE)
    moved = False
    for _ in range(options.refine):
        d = _residual_shift(cur, ring, valid, warped)
        if d is None or max(abs(d[0]), abs(d[1])) < 0.02:
            break
        m = np.array([[1, 0, -d[0]], [0, 1, -d[1]], [0, 0, 1]]) @ m
        warped, moved = warp(cv2, src.rgb, m, size, cv2.BORDER_REPLICATE), True
    if moved:  # (under a pixel: the samples of the last step were valid enough to steer by)
        valid = warp(cv2, src.known, m, size, cv2.BORDER_CONSTANT) == 255
    if options.sharp:  # (before the check, which copies: a refused source's is wasted, rare)
        _sharpen(cv2, warped, src, m, size, todo & valid, valid)
    return _PLACED[_C.ring_place(cur, ring, valid, warped, todo, options.min_ring,
                                 options.ring_error)]


_PLACED = {1: True, 0: False, -1: None}


def _residual_shift(cur: np.ndarray, ring: np.ndarray, valid: np.ndarray, warped: np.ndarray):
    """The shift d = (dx, dy) that brings ``warped`` onto the frame ``cur`` over the ring,
    warped(x + d) ~ frame(x): one Lucas-Kanade step for a translation, in grey, on the ring
    pixels whose four neighbours are valid samples (so no gradient reads a source's hole), none
    across the rectangle's edge (``_C.ring_shift``). The motion chained through the window
    drifts by tenths of a pixel, and a hole at another depth than the scene's dominant plane
    moves differently (parallax): this local correction pays for both. None when the ring has
    too little texture to say (the gradients' smaller eigenvalue under 4 a pixel), or the shift
    is over a pixel (not a drift)."""
    return _C.ring_shift(cur, ring, valid, warped)


def _sharpen(cv2, warped: np.ndarray, src: "_Source", m: np.ndarray, size, take,
             valid: np.ndarray) -> None:
    """Bicubic samples over the bilinear ones (in place) where ``take`` and the 4x4 footprint
    reads only known pixels (``valid``, the bilinear taps known, eroded by one pixel: for the
    near-translations between neighbouring frames, the footprint of a pixel's neighbours):
    bilinear sampling at a fractional shift is a low-pass, and pixels handed on from frame to
    frame (``reuse``) would blur a little more at every step. Bicubic costs five times
    bilinear: only the rectangle around ``take`` is sampled."""
    inner = cv2.erode(valid.view(np.uint8), np.ones((3, 3), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0).view(bool) & take
    found = bounding_box(inner)
    if found is None:
        return
    y0, x0, y1, x1 = found
    sub = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64) @ m
    cubic = warp(cv2, src.rgb, sub, (int(x1 - x0), int(y1 - y0)), cv2.BORDER_REPLICATE,
                 cv2.INTER_CUBIC)
    part = warped[y0:y1, x0:x1]
    done = cv2.copyTo(cubic, inner[y0:y1, x0:x1].view(np.uint8), part)
    if done is not part:
        part[...] = done


class VideoFill:
    """A video's frames in, filled frames out, in order: propagation from the frames around
    (:class:`Propagator`, ``propagate``), then the Inpainter for what is left, with its state
    carried from frame to frame (``Inpainter.stream(carry=True)``).

    ``stream`` takes what :meth:`Inpainter.stream` takes (frames and masks, (frame, mask) pairs,
    or with ``tagged`` (tag, (frame, mask)) items) and yields the results in the same order,
    ``window`` frames behind. Each call is one video (a new window). ``stats``: the last
    stream's propagation (:class:`PropagateStats`)."""

    def __init__(self, inpainter, *, propagate: bool = True, window: int | None = None,
                 options: PropagateOptions | None = None):
        self.inpainter, self.propagate = inpainter, propagate
        self.options = Propagator(window, options).options if propagate else None  # (checked now)
        self.stats = PropagateStats()

    def stream(self, frames: Iterable, masks=None, *, tagged: bool = False) -> Iterator:
        """Fill the frames of one video in order (see the class)."""
        if tagged:
            if masks is not None:
                raise InputError("a tagged stream carries its masks in its pairs")
            items = frames
        else:
            items = enumerate(_pairs(frames, masks))
        if self.propagate:
            propagator = Propagator(options=self.options, shifts=True)
            self.stats = propagator.stats
            items = propagator.run(items)
        results = self.inpainter.stream(items, carry=True, tagged=True,
                                        motions=propagator.next_motion if self.propagate else None)
        return results if tagged else (r for _, r in results)


def _pairs(frames: Iterable, masks) -> Iterator[tuple]:
    """(frame, mask) pairs from frames and masks as Inpainter.stream takes them."""
    if masks is None:
        yield from frames
    elif one_mask(masks):
        if masks.ndim == 3:  # ([H, W, 1]: a frozen one stays read once, as its own frozen plane)
            was_frozen, masks = frozen(masks), masks[:, :, 0]
            if was_frozen:
                masks = np.array(masks)
                masks.setflags(write=False)
        if frozen(masks):  # one mask for every frame, read once
            for f in frames:
                yield f, masks
            return
        # a writable one is read every frame, as Inpainter.stream reads it; the same frozen copy
        # while it is unchanged (a static mask is known by being the same object)
        held = None
        for f in frames:
            if held is None or not np.array_equal(held, masks):
                held = np.array(masks)
                held.setflags(write=False)
            yield f, held
    else:
        mi = iter(masks)
        for i, f in enumerate(frames):
            m = next(mi, None)
            if m is None:
                raise InputError(f"ran out of masks at frame {i}")
            yield f, m


__all__ = ["Propagator", "PropagateOptions", "PropagateStats", "VideoFill", "DEFAULT_WINDOW",
           "MAX_WINDOW"]
