"""Global motion between consecutive frames, and scene cuts (the estimate behind propagation,
:mod:`fastfill.video.propagate`).

Each frame is reduced once (its longest side to at most ``max_side``, so that a 1080p frame
costs a 480-wide estimate: on 1080p pans and zooms as accurate as a 640-wide one, 0.08 px on
average, at 60 % of its time) and analysed once (:func:`analyse`): a grey image (of an RGB frame,
or a decoded 4:2:0 frame's luma plane), corners found away from the hole (a hole's pixels are not
the scene), a colour histogram of its known pixels; corners and histogram only when an estimate
needs them (two identical frames need neither).
The motion from one frame to the next (:func:`estimate`) tracks the first frame's
corners into the second (pyramidal Lucas-Kanade, kept only where tracking back lands within
half a pixel of the start and the end is outside the second frame's hole), then fits a
similarity, an affine map and a homography with RANSAC and keeps the simplest whose inliers are
within a few percent of the best (a translation is a similarity: the extra freedom of a
homography only fits noise there). The transform is returned in full-resolution pixel
coordinates (OpenCV's: integer coordinates at pixel centres). A camera that moves steadily
moves next as it moved last: given the link before (its transform and model), an estimate first
tracks 60 corners at full resolution from where that transform puts them and refits its model
to them (the refinement an estimate on reduced frames ends with), and tracks the reduced frames
only when too few fit (:func:`_verified`).

Two frames are *linked* when the transform is trusted: enough features, a colour histogram that
did not jump (a cut), enough RANSAC inliers among the tracked corners, and a transform that
does not fold or blow up the frame. Anything else breaks the chain of transforms, and nothing is
propagated across it: failing safe is filling from the frame alone, as without propagation.

OpenCV (``opencv-contrib-python-headless``, the ``video`` extra) is imported here, when a video
is propagated, never by ``import fastfill``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .. import ops
from ..errors import FastfillError
from ..geometry import transform_points

_LK_WIN, _LK_LEVELS = (21, 21), 3
_FULL_WIN = (15, 15)  # the full-resolution refinement's window (one pyramid level below it)
_TILE_MARGIN = 6  # pixels around it in the squares it runs on (see _refine)


def import_cv2():
    """OpenCV, or a FastfillError saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise FastfillError("propagation needs OpenCV: pip install 'fastfill[video]' "
                            "(or --no-propagate)") from None
    return cv2


@contextlib.contextmanager
def one_thread(cv2):
    """OpenCV on the calling thread alone inside the block, the caller's thread count after.
    Propagation's calls are box-sized, and OpenCV's pool cost half again their CPU for no speed
    (1080p pan: 31 -> 21 ms of CPU a frame, the same wall time), CPU an encoder beside them
    needs. Nothing is changed when already one (each change restarts OpenCV's threads: a caller
    sets it once around many blocks)."""
    threads = cv2.getNumThreads()
    if threads != 1:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if threads != 1:
            cv2.setNumThreads(threads)


def _inliers(m: np.ndarray, p0: np.ndarray, p1: np.ndarray, t: float) -> np.ndarray:
    """Where the 3x3 ``m`` sends ``p0`` within ``t`` of ``p1`` (bool, one a point pair)."""
    return np.linalg.norm(transform_points(m, p0) - p1, axis=1) < t


@dataclass(frozen=True)
class MotionOptions:
    """How motion is estimated (the defaults are what the tests and ``fastfill video`` use)."""

    max_side: int = 480  # frames reduced to at most this side for the estimate
    # most corners per frame; 150 (and 60 refined) fit a pan's motion as well as 300 (and 150)
    # did (the propagated pixels of nine test pans 0.03 dB worse at most), for a third of the tracking
    corners: int = 150
    quality: float = 0.001  # weakest corner kept, relative to the strongest (OpenCV qualityLevel)
    min_distance: int = 6  # between corners (reduced px)
    hole_margin: int = 4  # corners kept this far from a hole (reduced px)
    fb_error: float = 0.5  # forward-backward tracking error accepted (reduced px)
    ransac: float = 1.0  # RANSAC inlier distance (reduced px)
    min_inliers: int = 15  # fewer: not linked
    min_ratio: float = 0.25  # inliers / corners of the first frame under this: not linked
    hist_cut: float = 0.5  # Bhattacharyya distance of the colour histograms over this: a cut
    simpler: float = 0.98  # a simpler model is kept with this share of the best one's inliers
    still: float = 0.05  # mean grey difference under this (reduced frames): no motion
    refine_points: int = 60  # corners tracked again at full resolution (reduced frames; 0: none)
    # a frame's corners are those tracked into it from the frame before (the inliers of the
    # link), found afresh only once fewer than this share of those last found are left (0 =
    # found afresh in every frame)
    reuse_corners: float = 0.7
    # with the link before as a guess (a camera moving steadily): the share of the corners tracked
    # at full resolution from where it puts them (``refine_points`` of them) that its model,
    # refitted to them, must keep; then the reduced frames are not tracked at all. Fewer: the
    # link is estimated as without it (0 = never)
    verify: float = 0.5


class Analysed:
    """What :func:`estimate` needs of one frame, computed once (:func:`analyse`); the corners
    only when an estimate first needs them (two identical frames, a static shot, need none),
    and full-resolution grey only in squares around the refined corners (:meth:`tiles`)."""

    def __init__(self, size, to_reduced, gray, allowed, known, colour, full, options):
        self.size = size  # full-resolution (height, width)
        self.to_reduced = to_reduced  # 3x3: full-resolution pixel coordinates -> reduced ones
        self.gray = gray  # reduced grey, uint8
        self.allowed = allowed  # reduced uint8, 255 where a corner may lie (away from holes, edges)
        self.reduced = gray.shape != tuple(size)
        # the full-resolution frame the squares are cut from: RGB, or a decoded frame's luma
        self._full, self._options = full, options
        self._known, self._colour = known, colour  # (for the histogram: see hist)
        self._points = None
        self._found = 0  # how many corners were last found afresh (carried with tracked ones)
        self._hist = None

    @property
    def hist(self) -> np.ndarray:
        """Colour histogram (8x8x8, normalised) of the known pixels of the reduced frame; made
        when a comparison first needs it (two identical frames need none)."""
        if self._hist is None:
            cv2 = import_cv2()
            small = self._colour()
            hist = cv2.calcHist([small], [0, 1, 2], self._known, [8, 8, 8], [0, 256] * 3)
            cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)
            self._hist = hist
        return self._hist

    @property
    def points(self) -> np.ndarray:
        """Corners (N, 1, 2) float32, reduced coordinates."""
        if self._points is None:
            cv2, o = import_cv2(), self._options
            pts = cv2.goodFeaturesToTrack(self.gray, o.corners, o.quality, o.min_distance,
                                          mask=self.allowed, blockSize=7)
            self._points = np.zeros((0, 1, 2), np.float32) if pts is None else pts.astype(np.float32)
            self._found = len(self._points)
        return self._points

    def tracked_into(self, points: np.ndarray, found: int) -> None:
        """Corners tracked into this frame (reduced (N, 2); after a link verified from the one
        before, the frame before's moved by it, less those that failed), its corners from now
        on unless it has some already or they are too few (``reuse_corners`` of ``found``, the
        count last found afresh): finding corners costs more than the tracking it saves (a
        fifth of an estimate), and corners tracked well once track well again."""
        o = self._options
        if self._points is None and o.reuse_corners > 0 and len(points) >= max(
                o.min_inliers, o.reuse_corners * found):
            self._points = np.ascontiguousarray(points, np.float32).reshape(-1, 1, 2)
            self._found = found

    def tiles(self, centres: np.ndarray, r: int) -> np.ndarray:
        """Full-resolution grey squares of side 2r + 1 centred on the integer ``centres``
        ((N, 2) x, y; each square inside the frame), stacked top to bottom ((N (2r + 1), 2r + 1)
        uint8). Read from the frame when asked: the known pixels around corners, which
        propagation never changes, are what the refinement tracks."""
        full = self._full
        # (slices: a gather by index arrays costs ten times as much)
        sq = np.concatenate([full[y - r:y + r + 1, x - r:x + r + 1] for x, y in centres.tolist()])
        if sq.ndim == 2:  # (a decoded frame's luma)
            return sq
        cv2 = import_cv2()
        return cv2.cvtColor(sq, cv2.COLOR_RGB2GRAY)


@dataclass
class Motion:
    """The motion from one frame to the next: ``matrix`` (3x3, full-resolution coordinates of
    the first frame -> the second) when ``linked``; ``reason`` says why not otherwise; ``cut``:
    the histogram jumped (a scene cut)."""

    linked: bool
    matrix: np.ndarray | None = None
    model: str = ""  # "similarity", "affine" or "homography"
    inliers: int = 0
    tracked: int = 0
    hist_distance: float = 0.0
    cut: bool = False
    reason: str = ""


def reduced_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """(height, width) of the frame the estimate runs on: the longest side at most ``max_side``."""
    s = min(1.0, max_side / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _scale_matrix(h: int, w: int, rh: int, rw: int) -> np.ndarray:
    """Full -> reduced pixel coordinates as cv2.resize maps pixel centres."""
    sx, sy = rw / w, rh / h
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)


def reduced_masks(hole: np.ndarray, options: MotionOptions = MotionOptions()):
    """(known, allowed) for a hole (bool [H, W]) on the reduced frame: uint8, 255 where the
    reduced pixel shows the scene, and where a corner may lie (``hole_margin`` from any hole,
    half a tracking window from the edges). The same for every frame of a static mask."""
    cv2 = import_cv2()
    h, w = hole.shape
    rh, rw = reduced_size(h, w, options.max_side)
    known = np.full((rh, rw), 255, np.uint8)
    if hole.any():
        hole_u8 = hole.view(np.uint8) * np.uint8(255)
        if (rh, rw) != (h, w):  # any hole pixel under a reduced pixel makes it hole
            hole_u8 = cv2.resize(hole_u8, (rw, rh), interpolation=cv2.INTER_AREA)
        known[hole_u8 > 0] = 0
    m = options.hole_margin
    allowed = cv2.erode(known, np.ones((2 * m + 1, 2 * m + 1), np.uint8)) if m else known.copy()
    b = _LK_WIN[0] // 2  # corners whose window leaves the frame track poorly
    allowed[:b], allowed[-b:], allowed[:, :b], allowed[:, -b:] = 0, 0, 0, 0
    return known, allowed


def analyse(frame, hole: np.ndarray, options: MotionOptions = MotionOptions(),
            masks=None) -> Analysed:
    """Reduce and analyse one frame for :func:`estimate`: uint8 RGB [H, W, 3], or a decoded
    4:2:0 frame (:class:`fastfill.video.frames.Decoded`, read from its planes: grey is its
    luma, never converted whole); bool hole [H, W]. ``masks``: :func:`reduced_masks` of the
    hole when the caller has them already. Two frames are compared only when analysed from
    the same kind (one clip's frames are)."""
    cv2 = import_cv2()
    h, w = hole.shape
    known, allowed = masks if masks is not None else reduced_masks(hole, options)
    rh, rw = known.shape
    size = (rw, rh)
    if isinstance(frame, np.ndarray):
        full = frame
        small = frame if (rh, rw) == (h, w) else cv2.resize(frame, size,
                                                            interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)

        def colour():
            return small
    else:
        full, u, v = frame.planes
        if (rh, rw) == (h, w):
            gray = full
        elif (4 * rh, 4 * rw) == (h, w):  # (1080p: OpenCV's bytes, a third of its time)
            gray = ops.area_reduce4(full)
        else:
            gray = cv2.resize(full, size, interpolation=cv2.INTER_AREA)

        def colour():
            # from the reduced planes (OpenCV's YUV -> RGB: a histogram only tells scenes
            # apart, and a reduced RGB frame from swscale costs as much as a whole one)
            uv = [cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in (u, v)]
            return cv2.cvtColor(cv2.merge([gray, *uv]), cv2.COLOR_YUV2RGB)
    return Analysed((h, w), _scale_matrix(h, w, rh, rw), gray, allowed, known, colour, full,
                    options)


def estimate(a: Analysed, b: Analysed, options: MotionOptions = MotionOptions(),
             guess: np.ndarray | None = None, model: str = "") -> Motion:
    """The motion from frame ``a`` to the next frame ``b`` (both from :func:`analyse`).
    ``guess``: the motion expected (the link before, full-resolution 3x3), from which the corners
    are tracked at the finest pyramid level or the one above instead of through the whole pyramid
    (a third of the time on a steady pan); when that tracks too few corners or fits too few
    inliers, they are tracked again without it. With the guess's ``model`` too ("similarity",
    "affine" or "homography": the link before's), the guess is first verified at full resolution
    (:func:`_verified`: 1080p pans, 2.5x less time than tracking the reduced frames, as
    accurate), and the reduced frames are tracked only when it fails."""
    cv2 = import_cv2()
    if a.size != b.size:
        return Motion(False, reason="the frame size changed")
    if _identical(a, b, options):  # (the same picture: no cut, and no histogram needed)
        return Motion(True, np.eye(3), "identity")
    d = float(cv2.compareHist(a.hist, b.hist, cv2.HISTCMP_BHATTACHARYYA))
    if d > options.hist_cut:
        return Motion(False, hist_distance=d, cut=True, reason="colour histogram jump (a cut)")
    n = len(a.points)
    if n < options.min_inliers:
        return Motion(False, hist_distance=d, reason=f"{n} corners")
    need = max(options.min_inliers, options.min_ratio * n)  # inliers a link must have
    if guess is not None and model in _MODELS and options.verify > 0:
        motion = _verified(cv2, a, b, options, guess, model, d)
        if motion is not None:
            return motion
    fit = None
    if guess is not None:  # seeded: kept only when it tracks and fits as an estimate must
        p0, p1 = _track(cv2, a, b, options, a.to_reduced @ guess @ np.linalg.inv(a.to_reduced))
        if len(p0) >= need:
            fit = _fit(cv2, p0, p1, options)
            if fit[1] is None or fit[2] < need:
                fit = None
    if fit is None:
        p0, p1 = _track(cv2, a, b, options)
        if len(p0) < options.min_inliers:
            return Motion(False, tracked=len(p0), hist_distance=d,
                          reason=f"{len(p0)} corners tracked")
        fit = _fit(cv2, p0, p1, options)
    model, m, inliers = fit
    motion = Motion(False, None, model, inliers, len(p0), d)
    if m is None or inliers < need:
        motion.reason = f"{inliers} inliers of {n} corners"
        return motion
    full = np.linalg.inv(b.to_reduced) @ m @ a.to_reduced
    full /= full[2, 2]
    inl = _inliers(m, p0, p1, options.ransac)  # (refined, and the next link's corners)
    if a.reduced:
        full = _refine(cv2, a, b, p0[inl], model, full, options)
    why = _implausible(full, a.size)
    if why:
        motion.reason = why
        return motion
    motion.linked, motion.matrix = True, full
    b.tracked_into(p1[inl], a._found)
    return motion


def _identical(a: Analysed, b: Analysed, options: MotionOptions) -> bool:
    """The two reduced frames agree where both show the scene to ``still`` grey levels on
    average and a few levels everywhere: no motion (a static shot; a shift of 0.05 px already
    differs by about that much), so no corners are tracked."""
    cv2 = import_cv2()
    both = a.allowed if a.allowed is b.allowed else cv2.bitwise_and(a.allowed, b.allowed)
    diff = cv2.absdiff(a.gray, b.gray)
    # (minMaxLoc: the largest difference where both show the scene, without a boolean index)
    return (float(cv2.mean(diff, mask=both)[0]) < options.still
            and cv2.minMaxLoc(diff, mask=both)[1] <= 4)


def _track(cv2, a: Analysed, b: Analysed, options: MotionOptions, guess=None):
    """a's corners tracked into b, kept where tracking back returns within ``fb_error`` and the
    end lies where b allows corners (not on its hole): (p0, p1), each (N, 2) float32. ``guess``
    (reduced 3x3): each corner starts where it puts it, both ways, one pyramid level up."""
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
    if guess is None:
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a.gray, b.gray, a.points, None, winSize=_LK_WIN,
                                              maxLevel=_LK_LEVELS, criteria=crit)
        p0b, st2, _ = cv2.calcOpticalFlowPyrLK(b.gray, a.gray, p1, None, winSize=_LK_WIN,
                                               maxLevel=_LK_LEVELS, criteria=crit)
    else:
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        start = cv2.perspectiveTransform(a.points, guess).astype(np.float32)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a.gray, b.gray, a.points, start, winSize=_LK_WIN,
                                              maxLevel=1, criteria=crit, flags=flags)
        # (back from where each landed, started where the guess sends it back: not at the
        # start itself, which would pass the check by construction)
        back = cv2.perspectiveTransform(p1, np.linalg.inv(guess)).astype(np.float32)
        p0b, st2, _ = cv2.calcOpticalFlowPyrLK(b.gray, a.gray, p1, back, winSize=_LK_WIN,
                                               maxLevel=1, criteria=crit, flags=flags)
    p0, p1, p0b = a.points[:, 0], p1[:, 0], p0b[:, 0]
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1)
    ok &= np.linalg.norm(p0b - p0, axis=1) < options.fb_error
    ok &= _allowed(b, p1)
    return p0[ok], p1[ok]


def _spread(n: int, k: int) -> np.ndarray:
    """The indices of at most ``k`` of ``n`` points, spread over the list (corners come
    strongest first)."""
    return np.linspace(0, n - 1, k).astype(int) if n > k else np.arange(n)


def _track_full(cv2, a: Analysed, b: Analysed, f0: np.ndarray, start: np.ndarray,
                options: MotionOptions, back=None):
    """Points ``f0`` of frame a (full-resolution (N, 2) float32) tracked into frame b at full
    resolution from ``start`` (where the estimate puts them), Lucas-Kanade on the finest level
    only, and back: (points kept, where they went, their indices in ``f0``), (M, 2), (M, 2),
    (M,), or None when fewer than ``min_inliers`` are kept. Kept: both ways tracked, back
    within twice ``fb_error`` of the point. The way back starts at the point itself, or where
    the 3x3 ``back`` (b -> a) puts the end (when the start is only a guess: a way back started
    at the point passes more easily)."""
    # Lucas-Kanade on squares around the points (stacked into one image) rather than on the
    # whole frames: the same windows and the same pixels, but the image derivatives are taken
    # over the squares only (at 1080p a tenth of the frame's cost). A square is as wide as the
    # window and `_TILE_MARGIN` more each way, more than the refinement moves a point.
    rt = _FULL_WIN[0] // 2 + _TILE_MARGIN
    ca, cb = np.floor(f0).astype(np.int64), np.floor(start).astype(np.int64)
    h, w = a.size
    inside = ((np.minimum(ca, cb) >= rt).all(axis=1) & (ca[:, 0] < w - rt) & (cb[:, 0] < w - rt)
              & (ca[:, 1] < h - rt) & (cb[:, 1] < h - rt))
    if np.count_nonzero(inside) < options.min_inliers:
        return None
    f0, start, ca, cb = f0[inside], start[inside], ca[inside], cb[inside]
    at = np.zeros_like(f0)  # where each square lies in the stack, less its corner
    at[:, 1] = (2 * rt + 1) * np.arange(len(f0))
    at += rt
    m0 = (f0 - ca + at).astype(np.float32)[:, None]
    m1 = (start - cb + at).astype(np.float32)[:, None]
    ta, tb = a.tiles(ca, rt), b.tiles(cb, rt)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.01)
    f1, st1, _ = cv2.calcOpticalFlowPyrLK(ta, tb, m0, m1.copy(), winSize=_FULL_WIN, maxLevel=0,
                                          criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    if back is None:
        from_ = m0.copy()
    else:
        q = transform_points(back, f1[:, 0] - at + cb)
        from_ = np.ascontiguousarray((q - ca + at).astype(np.float32).reshape(-1, 1, 2))
    f0b, st2, _ = cv2.calcOpticalFlowPyrLK(tb, ta, f1, from_, winSize=_FULL_WIN, maxLevel=0,
                                           criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    f1 = (f1 - (at - cb)[:, None]).astype(np.float32)  # back to frame coordinates
    ok = (st1[:, 0] == 1) & (st2[:, 0] == 1)
    ok &= np.linalg.norm(f0b[:, 0] - m0[:, 0], axis=1) < 2 * options.fb_error
    if np.count_nonzero(ok) < options.min_inliers:
        return None
    return f0[ok], f1[ok, 0], np.flatnonzero(inside)[ok]


def _fit_model(cv2, model: str, src: np.ndarray, dst: np.ndarray, t: float):
    """``model`` fitted to the pairs with RANSAC (inlier distance ``t``): (3x3, inlier mask),
    or (None, None)."""
    if model == "similarity":
        r, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=t,
                                             maxIters=2000, confidence=0.995, refineIters=10)
    elif model == "affine":
        r, inl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=t,
                                      maxIters=2000, confidence=0.995, refineIters=10)
    else:
        r, inl = cv2.findHomography(src, dst, cv2.RANSAC, t, maxIters=2000, confidence=0.995)
    if r is None:
        return None, None
    r = np.vstack([r, [0, 0, 1]]) if r.shape[0] == 2 else r
    return r / r[2, 2], inl[:, 0] > 0


def _refine(cv2, a: Analysed, b: Analysed, pts, model: str, full: np.ndarray,
            options: MotionOptions) -> np.ndarray:
    """The transform refined at full resolution: the reduced estimate's inliers (``pts``, in
    frame a's reduced coordinates; at most
    ``refine_points``, spread over the list) tracked again between the full-resolution frames
    from where the estimate puts them (Lucas-Kanade at full resolution only: the estimate is
    within a fraction of a pixel), and the same model fitted to
    them. On a reduced frame Lucas-Kanade is biased by about a hundredth of a reduced pixel,
    which chained through a window of frames (x 4 at 1080p) grows past a pixel; here it is a
    hundredth of a full-resolution one. The reduced estimate stands when too few corners
    track back (blur, a frame that changed)."""
    pts = pts[_spread(len(pts), options.refine_points)]
    if len(pts) < options.min_inliers:
        return full
    f0 = transform_points(np.linalg.inv(a.to_reduced), pts).astype(np.float32)
    tracked = _track_full(cv2, a, b, f0, transform_points(full, f0).astype(np.float32), options)
    if tracked is None:
        return full
    r, _ = _fit_model(cv2, model, *tracked[:2], options.ransac)  # (full-resolution pixels now)
    return full if r is None else r


def _verified(cv2, a: Analysed, b: Analysed, options: MotionOptions, guess: np.ndarray,
              model: str, hist_distance: float) -> "Motion | None":
    """The link before's motion (``guess``, its ``model``) checked and refined on this pair
    directly at full resolution, or None: ``refine_points`` of a's corners tracked at full
    resolution from where the guess puts them and back from where its inverse puts them (not
    from the corners themselves: a guess is not yet an estimate), ending off b's hole, and
    ``model`` fitted to them; linked when at least ``verify`` (and ``min_ratio``) of the corners
    tried, and ``min_inliers``, are its inliers and it is plausible. A steady camera's motion
    changes little from frame to frame, and on reduced frames this is the refinement an estimate
    ends with anyway; what it skips is tracking 150 corners through the reduced frames' pyramid
    both ways and three RANSAC fits (nor is the model chosen again: a camera whose motion the
    model no longer fits fails here and is estimated afresh). b's corners are then a's, moved by
    the motion (where b allows corners), less those tried that did not fit (moving things,
    occlusions), for the next link."""
    sel = _spread(len(a.points), options.refine_points)
    f0 = transform_points(np.linalg.inv(a.to_reduced), a.points[sel, 0]).astype(np.float32)
    tracked = _track_full(cv2, a, b, f0, transform_points(guess, f0).astype(np.float32), options,
                          back=np.linalg.inv(guess))
    if tracked is None:
        return None
    src, dst, kept = tracked
    on = _allowed(b, transform_points(b.to_reduced, dst))
    src, dst, kept = src[on], dst[on], kept[on]
    need = max(options.min_inliers, max(options.verify, options.min_ratio) * len(sel))
    if len(src) < need:
        return None
    m, inl = _fit_model(cv2, model, src, dst, options.ransac)
    if m is None or np.count_nonzero(inl) < need or _implausible(m, a.size):
        return None
    drop = np.zeros(len(a.points), bool)
    drop[sel] = True
    drop[sel[kept[inl]]] = False
    moved = transform_points(b.to_reduced @ m @ np.linalg.inv(a.to_reduced), a.points[~drop, 0])
    b.tracked_into(moved[_allowed(b, moved)], a._found)
    return Motion(True, m, model, int(np.count_nonzero(inl)), len(src), hist_distance)


def _allowed(b: Analysed, p: np.ndarray) -> np.ndarray:
    """Where reduced points (N, 2) round to a pixel of b that allows corners (inside the frame,
    off its hole): bool (N,)."""
    h, w = b.allowed.shape
    xi, yi = np.round(p[:, 0]).astype(np.int64), np.round(p[:, 1]).astype(np.int64)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    ok = inside.copy()
    ok[inside] = b.allowed[yi[inside], xi[inside]] > 0
    return ok


_MODELS = ("similarity", "affine", "homography")


def _fit(cv2, p0: np.ndarray, p1: np.ndarray, options: MotionOptions):
    """The simplest of similarity / affine / homography (RANSAC) whose inliers are within
    ``simpler`` of the best: (name, 3x3 matrix in reduced coordinates, inliers)."""
    t = options.ransac
    fits = []
    m, inl = cv2.estimateAffinePartial2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=t,
                                         maxIters=2000, confidence=0.995, refineIters=10)
    if m is not None:
        fits.append(("similarity", np.vstack([m, [0, 0, 1]]), int(inl.sum())))
    m, inl = cv2.estimateAffine2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=t,
                                  maxIters=2000, confidence=0.995, refineIters=10)
    if m is not None:
        fits.append(("affine", np.vstack([m, [0, 0, 1]]), int(inl.sum())))
    if len(p0) >= 8:
        m, inl = cv2.findHomography(p0, p1, cv2.RANSAC, t, maxIters=2000, confidence=0.995)
        if m is not None:
            fits.append(("homography", m, int(inl.sum())))
    if not fits:
        return "", None, 0
    best = max(n for _, _, n in fits)
    for name, m, n in fits:  # in order of freedom: the first good enough is the simplest
        if n >= options.simpler * best:
            return name, m.astype(np.float64), n
    return fits[-1]  # (not reached)


def _implausible(m: np.ndarray, size: tuple[int, int]) -> str:
    """Why a transform between consecutive frames cannot be camera motion ('' when it can): it
    folds the frame, or scales its area by more than 2 (a zoom that fast is a cut)."""
    h, w = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64).T
    q = m @ corners
    if (q[2] <= 1e-6).any():
        return "the transform sends a corner to infinity"
    q = (q[:2] / q[2]).T
    x, y = q[:, 0], q[:, 1]
    area = 0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    if not 0.5 <= area / (w * h) <= 2.0:
        return f"the transform scales the frame's area by {area / (w * h):.2f}"
    return ""


__all__ = ["one_thread", "MotionOptions", "Motion", "Analysed", "analyse", "estimate", "reduced_size",
           "reduced_masks", "import_cv2"]
