"""Propagation (fastfill/video/propagate.py, motion.py): synthetic clips cut from real photos with
known camera motion (a pan, a zoom, a static shot, a cut), so the clean frames under the logo box
are known; the motion estimate against the known transform; `fastfill video` end to end."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")

from conftest import invoke, write_clip  # noqa: E402
from fastfill import Inpainter  # noqa: E402
from fastfill.ops import _C  # noqa: E402
from fastfill.errors import InputError  # noqa: E402
from fastfill.geometry import transform_points  # noqa: E402
from fastfill.video import motion as mo  # noqa: E402
from fastfill.video.propagate import PropagateOptions, Propagator, VideoFill  # noqa: E402

PHOTOS = Path(__file__).parent.parent / "examples" / "images"
H, W = 120, 160


def photo(name="fruits.jpg"):
    return np.asarray(Image.open(PHOTOS / name).convert("RGB"))


def view(img, x, y, scale=1.0):
    """The H x W frame whose pixel (u, v) shows img at (x + scale u, y + scale v), bicubic."""
    m = np.array([[scale, 0, x], [0, scale, y]], np.float64)
    return cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)


def frame_to_frame(a, b):
    """The true transform from view a's pixels to view b's (each a (x, y, scale))."""
    (xa, ya, sa), (xb, yb, sb) = a, b
    return np.array([[sa / sb, 0, (xa - xb) / sb], [0, sa / sb, (ya - yb) / sb], [0, 0, 1.0]])


def max_error(m, truth):
    """Largest distance between where m and truth send a grid over the frame (pixels)."""
    g = np.stack(np.meshgrid(np.arange(0, W, 4), np.arange(0, H, 4)), -1).reshape(-1, 2)
    g = np.c_[g, np.ones(len(g))].T
    p, q = m @ g, truth @ g
    return float(np.abs(p[:2] / p[2] - q[:2] / q[2]).max())


def returns_of(monkeypatch, owner, name) -> list:
    """``owner.name`` called through, what each call returned appended to the list returned."""
    returns, real = [], getattr(owner, name)

    def spy(*args, **kwargs):
        returns.append(real(*args, **kwargs))
        return returns[-1]

    monkeypatch.setattr(owner, name, spy)
    return returns


def logo(y0=44, y1=76, x0=56, x1=104):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def hole_psnr(outs, clean, mask):
    hole = mask != 0
    se = np.concatenate([(o[hole].astype(float) - c[hole]) ** 2 for o, c in zip(outs, clean)])
    return 10 * np.log10(255 ** 2 / max(se.mean(), 1e-12))


def flicker(outs, clean, mask):
    """Mean change of the hole from frame to frame beyond the clean frames' own change."""
    hole = mask != 0
    return float(np.mean([np.abs((b[hole].astype(float) - a[hole]) - (d[hole].astype(float) - c[hole])).mean()
                          for a, b, c, d in zip(outs, outs[1:], clean, clean[1:])]))


@pytest.fixture(scope="module")
def harmonic():
    return Inpainter(method="harmonic")


def rgb(frame):
    """The frame as given (an RGB array)."""
    return frame


def yuv(frame):
    """The frame as ``fastfill video`` reads an 8-bit 4:2:0 clip: a Decoded frame (swscale's
    RGB -> yuv420p here, a decoder's output there), converted to RGB only where it is read."""
    av = pytest.importorskip("av")

    from fastfill.video.frames import Decoded

    return Decoded(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p"))


PAN = [(60 + 2.3 * i, 100 + 0.4 * i, 1.0) for i in range(24)]  # sub-pixel, 2.3 px/frame
ZOOM = [(200 - 80 * (s - 1), 150 - 60 * (s - 1), s) for s in 0.97 ** np.arange(20)]  # zoom in


# -- the motion estimate --------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ((60, 100, 1.0), (62.3, 100.4, 1.0)),  # a sub-pixel pan
    ((60, 100, 1.0), (63, 100, 1.0)),  # a whole-pixel pan
    ((60, 100, 1.0), (60, 100, 1.0)),  # no motion
    ((200, 150, 1.0), (202.4, 151.8, 0.97)),  # a zoom (and a pan)
])
@pytest.mark.parametrize("kind", [rgb, yuv])
def test_motion_recovers_a_known_transform(a, b, kind):
    """From RGB frames, and from a decoded 4:2:0 frame's planes (grey = its luma)."""
    img, hole = photo(), logo() != 0
    fa, fb = kind(view(img, *a)), kind(view(img, *b))
    m = mo.estimate(mo.analyse(fa, hole), mo.analyse(fb, hole))
    assert m.linked, m.reason
    err = max_error(m.matrix, frame_to_frame(a, b))
    print(f"{kind.__name__} {a} -> {b}: {m.model}, {m.inliers} inliers, max error {err:.3f} px")
    assert err < 0.15
    assert (m.model == "identity") == (a == b)
    if kind is yuv:
        assert fa._whole is None and fb._whole is None  # (never converted to RGB)


@pytest.mark.parametrize("seed", ["right", "a little off", "far off"])
def test_motion_from_a_seed_is_the_motion(monkeypatch, seed):
    """A link estimated from the link before (corners tracked from where it puts them, one
    pyramid level up) finds the same transform; a seed far off (a camera that stopped or turned)
    falls back to the whole pyramid and still finds it."""
    img, hole = photo(), logo() != 0
    a, b = (60, 100, 1.0), (64.3, 101.2, 1.0)
    truth = frame_to_frame(a, b)
    guess = {"right": truth, "a little off": truth @ np.array([[1, 0, 3], [0, 1, -2], [0, 0, 1.0]]),
             "far off": np.array([[1, 0, 40], [0, 1, -30], [0, 0, 1.0]])}[seed]
    seeded = []
    real = mo._track

    def track(cv2, a_, b_, options, guess=None):
        seeded.append(guess is not None)
        return real(cv2, a_, b_, options, guess)

    monkeypatch.setattr(mo, "_track", track)
    fa, fb = mo.analyse(view(img, *a), hole), mo.analyse(view(img, *b), hole)
    m = mo.estimate(fa, fb, guess=guess)
    assert m.linked, m.reason
    err = max_error(m.matrix, truth)
    print(f"seed {seed}: tracked seeded {seeded}, max error {err:.3f} px")
    assert err < 0.15
    assert seeded[0] and (len(seeded) == 2) == (seed == "far off")  # (the fall-back)


@pytest.mark.parametrize("seed", ["right", "a little off", "far off"])
@pytest.mark.parametrize("kind", [rgb, yuv])
@pytest.mark.parametrize("max_side", [480, 96])  # (96: the estimate runs on reduced frames)
def test_a_steady_cameras_motion_is_verified_at_full_resolution(monkeypatch, seed, kind, max_side):
    """With the link before's transform and model, a link is its guess checked and refitted at
    full resolution, the reduced frames not tracked at all (on a steady pan: the same transform);
    a guess that does not fit (the camera turned) is estimated as without it. The next link's
    corners are then these, moved by the motion."""
    img, hole = photo(), logo() != 0
    a, b = (60, 100, 1.0), (64.3, 101.2, 1.0)
    truth = frame_to_frame(a, b)
    guess = {"right": truth, "a little off": truth @ np.array([[1, 0, 1.5], [0, 1, -1], [0, 0, 1.0]]),
             "far off": np.array([[1, 0, 40], [0, 1, -30], [0, 0, 1.0]])}[seed]
    tracked = returns_of(monkeypatch, mo, "_track")
    o = mo.MotionOptions(max_side=max_side)
    fa, fb = mo.analyse(kind(view(img, *a)), hole, o), mo.analyse(kind(view(img, *b)), hole, o)
    assert fa.reduced == (max_side == 96)
    m = mo.estimate(fa, fb, o, guess=guess, model="similarity")
    assert m.linked, m.reason
    err = max_error(m.matrix, truth)
    print(f"{kind.__name__} seed {seed}: reduced frames tracked {len(tracked)} times, "
          f"{m.inliers} of {m.tracked} fit, max error {err:.3f} px")
    assert err < 0.15
    assert (len(tracked) == 0) == (seed != "far off")
    if seed != "far off":
        moved = transform_points(fb.to_reduced @ m.matrix @ np.linalg.inv(fa.to_reduced),
                                 fa.points[:, 0])
        near = np.linalg.norm(moved[:, None] - fb.points[:, 0][None], axis=2).min(axis=0)
        assert len(fb.points) >= 0.7 * len(fa.points) and near.max() < 1e-3
    off = mo.estimate(fa, fb, mo.MotionOptions(max_side=max_side, verify=0), guess=guess,
                      model="similarity")
    assert len(tracked) > 0 and max_error(off.matrix, truth) < 0.15  # (verify 0: never)


@pytest.mark.parametrize("where", [(380, 250), (200, 40), (60, 300)])
def test_a_guess_across_a_cut_is_not_verified(monkeypatch, where):
    """Two far parts of one photo with the link before's motion as the guess, the histogram's
    cut test off (so the corners alone decide): the guess is not verified there (its corners do
    not track), and nothing is linked."""
    a, hole = photo(), logo() != 0
    o = mo.MotionOptions(hist_cut=2.0)
    verified = returns_of(monkeypatch, mo, "_verified")
    first, far = mo.analyse(view(a, 60, 100), hole, o), mo.analyse(view(a, *where), hole, o)
    m = mo.estimate(first, far, o, guess=frame_to_frame((60, 100, 1.0), (62.3, 100.4, 1.0)),
                    model="similarity")
    assert verified == [None] and not m.linked, m


@pytest.mark.parametrize("kind", [rgb, yuv])
def test_motion_on_a_reduced_frame_is_refined_at_full_resolution(kind):
    """Frames over ``max_side`` are estimated reduced (1080p: 4x), then refined at full
    resolution: the reduced estimate's error, chained through a window, would grow past a pixel.
    (A decoded frame: reduced from its luma plane, refined on its luma.)"""
    img = cv2.resize(photo(), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    big = (360, 640)

    def frame(x, y):
        m = np.array([[1, 0, x], [0, 1, y]], np.float64)
        return cv2.warpAffine(img, m, big[::-1], flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)

    hole = np.zeros(big, bool)
    hole[20:60, 400:560] = True
    errors = {}
    for points in (0, 150):  # 0: the reduced estimate alone
        o = mo.MotionOptions(max_side=160, refine_points=points)
        err = []
        for a, b in [((100, 200), (105, 200.4)), ((100, 200), (97.7, 201.1)), ((300, 100), (300, 103.3))]:
            m = mo.estimate(mo.analyse(kind(frame(*a)), hole, o),
                            mo.analyse(kind(frame(*b)), hole, o), o)
            assert m.linked, m.reason
            truth = np.array([[1, 0, a[0] - b[0]], [0, 1, a[1] - b[1]], [0, 0, 1]], float)
            err.append(max_error(m.matrix, truth))
        errors[points] = max(err)
    print(errors)
    # (RGB: 0.16 -> 0.09 px; the luma plane, 14 % less contrast than full-range grey: 0.15 -> 0.09)
    assert errors[150] < 0.1 and errors[150] < 0.7 * errors[0]


def test_the_refinement_squares_are_the_full_resolution_grey():
    """The refinement runs Lucas-Kanade on squares cut around its points: each square is the
    full-resolution grey frame there, pixel for pixel (so the windows read what a whole-frame
    run reads)."""
    img = cv2.resize(photo(), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    hole = np.zeros(img.shape[:2], bool)
    a = mo.analyse(img, hole, mo.MotionOptions(max_side=160))
    assert a.reduced
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    r = 9
    centres = np.array([[r, r], [300, 200], [img.shape[1] - r - 1, img.shape[0] - r - 1]])
    stack = a.tiles(centres, r)
    assert stack.shape == (3 * (2 * r + 1), 2 * r + 1)
    for k, (x, y) in enumerate(centres):
        np.testing.assert_array_equal(stack[k * (2 * r + 1):(k + 1) * (2 * r + 1)],
                                      grey[y - r:y + r + 1, x - r:x + r + 1])


def test_motion_recovers_a_homography():
    img = cv2.resize(photo(), (W * 2, H * 2), interpolation=cv2.INTER_AREA)[40:40 + H, 60:60 + W]
    truth = np.array([[1.02, 0.01, -2.5], [-0.008, 0.99, 1.5], [4e-5, -3e-5, 1.0]])
    warped = cv2.warpPerspective(img, truth, (W, H), flags=cv2.INTER_CUBIC)
    hole = np.zeros((H, W), bool)
    m = mo.estimate(mo.analyse(img, hole), mo.analyse(warped, hole))
    assert m.linked, m.reason
    err = max_error(m.matrix, truth)
    print(f"homography: {m.model}, max error {err:.3f} px")
    assert m.model == "homography" and err < 0.3


@pytest.mark.parametrize("kind", [rgb, yuv])
def test_a_cut_is_not_a_motion(kind):
    """Another photo, or a far part of the same one (same colours): not linked. (A decoded
    frame's histogram: its reduced planes' colours.)"""
    a, hole = photo(), logo() != 0
    first = mo.analyse(kind(view(a, 60, 100)), hole)
    other = mo.estimate(first, mo.analyse(kind(view(photo("apple.jpg"), 100, 100)), hole))
    assert not other.linked and other.cut
    far = mo.estimate(first, mo.analyse(kind(view(a, 380, 250)), hole))
    assert not far.linked, far


# -- propagation on synthetic clips ------------------------------------------------------------------

def run(inp, frames, mask, **opts):
    vf = VideoFill(inp, **opts)
    return list(vf.stream(frames, mask)), vf.stats


def test_the_ring_refinement_reads_no_neighbour_across_the_rectangle_edge():
    """The Lucas-Kanade step that refines a source's alignment on the hole's ring: a ring along
    the rectangle's left and right edges (a source's strip at a box's end) must not take the
    previous row's last pixel for a left neighbour. A photo's texture shifted by (-0.3, +0.2) px
    comes back within 0.1 px (the row-wrapped gradients gave (-0.05, 0.07))."""
    from fastfill.video.propagate import _residual_shift

    img = cv2.GaussianBlur(photo()[300:340, 200:238], (0, 0), 1.0)
    h, w, true = 40, 30, (-0.3, 0.2)
    frame = np.ascontiguousarray(img[:, 4:4 + w])
    # warped(x - d) = frame(x): the source drawn d off
    warped = cv2.warpAffine(img, np.array([[1, 0, 4 - true[0]], [0, 1, -true[1]]]), (w, h),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    ring = np.zeros((h, w), bool)
    ring[:, :3] = ring[:, -3:] = True
    d = _residual_shift(frame, ring, np.ones((h, w), bool), warped)
    assert d is not None and np.abs(np.array(d) - np.array(true)).max() < 0.1, d


def _ring_shift_numpy(cur, ring, valid, warped):
    """NumPy reference of ``_C.ring_shift`` (float64 sums)."""
    h, w = ring.shape
    g = cv2.cvtColor(np.ascontiguousarray(warped), cv2.COLOR_RGB2GRAY).astype(np.float64)
    f = cv2.cvtColor(np.ascontiguousarray(cur), cv2.COLOR_RGB2GRAY).astype(np.float64)
    v = valid.astype(bool)
    sel = np.zeros((h, w), bool)
    sel[1:-1, 1:-1] = (ring[1:-1, 1:-1] & v[1:-1, 1:-1] & v[1:-1, :-2] & v[1:-1, 2:] & v[:-2, 1:-1]
                       & v[2:, 1:-1])
    ys, xs = np.nonzero(sel)
    if ys.size < 32:
        return None
    gx = 0.5 * (g[ys, xs + 1] - g[ys, xs - 1])
    gy = 0.5 * (g[ys + 1, xs] - g[ys - 1, xs])
    r = f[ys, xs] - g[ys, xs]
    r -= r.mean()
    a = np.array([[gx @ gx, gx @ gy], [gx @ gy, gy @ gy]])
    if np.linalg.eigvalsh(a)[0] < 4.0 * ys.size:
        return None
    d = np.linalg.solve(a, np.array([gx @ r, gy @ r]))
    return tuple(d) if np.abs(d).max() <= 1.0 else None


def _ring_place_numpy(cur, ring, valid, warped, todo, min_ring, ring_error):
    """NumPy reference of ``_C.ring_place`` (in place, as it)."""
    v = valid.astype(bool)
    take = todo & v
    seen = ring & v
    if not take.any() or np.count_nonzero(seen) < min_ring:
        return -1
    diff = cur[seen].astype(np.int64) - warped[seen]
    offset = (diff.sum(axis=0).astype(np.float32) / np.float32(np.count_nonzero(seen)))
    err = np.abs((diff.astype(np.float32) - offset).astype(np.float64)).mean()
    if err > ring_error:
        return 0
    add = offset.astype(np.float64) if np.abs(offset).max() >= 0.5 else 0.0
    cur[take] = np.clip(np.rint(warped[take] + add), 0, 255).astype(np.uint8)
    todo &= ~take
    return 1


@pytest.mark.parametrize("seed", range(6))
def test_the_ring_kernels_match_numpy(seed):
    """``_C.ring_shift``, ``_C.ring_place`` and ``_C.given_box`` against NumPy on a photo's
    texture, as propagation calls them: views into a frame (rows wider than the rectangle), a
    source shifted by a fraction of a pixel with an exposure offset (or a different picture, which
    the ring refuses), holes in the source's valid samples, a thin ring."""
    rng = np.random.default_rng(seed)
    img = photo()
    h, w = 48 + 8 * seed, 64 + 12 * seed
    y0, x0 = 40 + 10 * seed, 30 + 7 * seed
    frame = img.copy()
    cur = frame[y0:y0 + h, x0:x0 + w]  # a view: the frame's rows
    dx, dy = rng.uniform(-0.6, 0.6, 2)
    src = img if seed != 5 else np.ascontiguousarray(img[::-1])  # (5: another picture)
    exposure = (seed - 2) * 1.7
    warped = cv2.warpAffine(src, np.array([[1, 0, x0 + dx], [0, 1, y0 + dy]]), (w, h),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REPLICATE)
    warped = np.clip(warped.astype(np.float64) + exposure, 0, 255).astype(np.uint8)
    hole = np.zeros((h, w), bool)
    hole[8:-8, 10:-10] = True
    k = 2 * (1 + seed % 3) + 1
    ring = (cv2.dilate(hole.view(np.uint8), np.ones((k, k), np.uint8)) > 0) & ~hole
    valid_full = np.ones((h + 4, w + 4), bool)
    valid_full[rng.integers(0, h, 40), rng.integers(0, w, 40)] = False  # the source's own holes
    valid_full[:, : 3 + seed] = False  # (a strip beyond the source's frame)
    valid = valid_full[:h, :w]  # (a view: rows w + 4 apart)
    todo_frame = np.zeros((h + 2, w + 6), bool)
    todo = todo_frame[1:1 + h, 3:3 + w]
    todo[hole] = True
    todo[rng.integers(0, h, 30), rng.integers(0, w, 30)] = False  # (filled by a nearer source)

    got = _C.ring_shift(cur, ring, valid, warped)
    want = _ring_shift_numpy(cur, ring, valid, warped)
    assert (got is None) == (want is None)
    if want is not None:
        np.testing.assert_allclose(got, want, atol=1e-9)

    known = np.where(valid, 255, rng.integers(0, 255, (h, w))).astype(np.uint8)
    n, *box = _C.given_box(known, todo)
    take = todo & (known == 255)
    assert n == np.count_nonzero(take)
    from fastfill.roi import bounding_box
    assert tuple(box) == (bounding_box(take) or (0, 0, 0, 0))

    for min_ring, ring_error in ((16, 10.0), (16, 0.5), (10 ** 6, 10.0)):
        mine_cur, mine_todo = frame.copy(), todo_frame.copy()
        ref_cur, ref_todo = frame.copy(), todo_frame.copy()
        sub = (slice(y0, y0 + h), slice(x0, x0 + w))
        tsub = (slice(1, 1 + h), slice(3, 3 + w))
        a = _C.ring_place(mine_cur[sub], ring, valid, warped, mine_todo[tsub], min_ring, ring_error)
        b = _ring_place_numpy(ref_cur[sub], ring, valid, warped, ref_todo[tsub], min_ring,
                              ring_error)
        assert a == b
        np.testing.assert_array_equal(mine_cur, ref_cur)  # (nothing outside the rectangle)
        np.testing.assert_array_equal(mine_todo, ref_todo)
        if a == 1:
            assert not (mine_todo[tsub] & valid).any() and (mine_cur != frame).any()
    # the photo's own texture, moved a fraction of a pixel: used; another picture: refused
    assert _C.ring_place(frame.copy()[sub], ring, valid, warped, todo.copy(), 16, 10.0) == (
        0 if seed == 5 else 1)


def test_the_ring_offset_is_added_as_opencv_adds_it():
    """An exposure offset of exactly half a level (an even number of ring pixels, half of them
    one level brighter in the frame): each given pixel is its sample plus the offset rounded half
    to even, as OpenCV 5's cv2.add(uint8, float scalar) rounds it (the step before the kernel)."""
    h, w = 12, 12
    hole = np.zeros((h, w), bool)
    hole[4:8, 4:8] = True
    ring = ~hole
    warped = np.random.default_rng(0).integers(0, 250, (h, w, 3), dtype=np.uint8)
    cur = warped.copy()
    ys, xs = np.nonzero(ring)
    cur[ys[::2], xs[::2]] += 1  # (80 ring pixels: 40 one level brighter -> offset 0.5)
    assert np.count_nonzero(ring) % 2 == 0
    valid, todo = np.ones((h, w), bool), hole.copy()
    want = cv2.add(warped, (0.5, 0.5, 0.5, 0.0))
    assert _C.ring_place(cur, ring, valid, warped, todo, 16, 10.0) == 1
    np.testing.assert_array_equal(cur[hole], want[hole])
    assert not todo.any()
    odd = warped[hole] % 2 == 1
    assert odd.any() and (cur[hole][odd] == warped[hole][odd] + 1).all()  # (x.5 -> even)
    assert (cur[hole][~odd] == warped[hole][~odd]).all()


def test_the_ring_kernels_refuse_what_they_cannot_read():
    cur = np.zeros((8, 10, 3), np.uint8)
    m = np.zeros((8, 10), bool)
    flat, ones = np.full((40, 40, 3), 128, np.uint8), np.ones((40, 40), bool)
    assert _C.ring_shift(flat, ones, ones, flat) is None  # (no texture: no shift to say)
    assert _C.ring_shift(cur, m, m, cur) is None  # (no ring)
    with pytest.raises(ValueError, match="ring: expected"):
        _C.ring_shift(cur, m[:, :9], m, cur)
    with pytest.raises(ValueError, match="contiguous"):
        _C.ring_shift(cur, m, m, cur[:, ::-1])
    with pytest.raises(ValueError, match="writeable"):
        ro = cur.copy()
        ro.setflags(write=False)
        _C.ring_place(ro, m, m, cur, m.copy(), 1, 10.0)
    with pytest.raises(ValueError, match="todo: expected"):
        _C.ring_place(cur.copy(), m, m, cur, m.astype(np.float32), 1, 10.0)
    with pytest.raises(ValueError, match="known: expected uint8"):
        _C.given_box(m, m)  # (a bool map has no 255)
    one = np.zeros((1, 10, 3), np.uint8)[::-1]  # (one row: its stride is never used)
    assert _C.ring_shift(one, m[:1], m[:1], one) is None


def test_the_pan_is_filled_from_other_frames(harmonic):
    img, mask = photo(), logo()
    clean = [view(img, *p) for p in PAN]
    alone, _ = run(harmonic, clean, mask, propagate=False)
    prop, stats = run(harmonic, clean, mask)
    p0, p1 = hole_psnr(alone, clean, mask), hole_psnr(prop, clean, mask)
    f0, f1 = flicker(alone, clean, mask), flicker(prop, clean, mask)
    print(f"pan: hole PSNR {p0:.2f} dB alone, {p1:.2f} dB propagated ({100 * stats.share:.0f}% of "
          f"the hole); flicker {f0:.2f} -> {f1:.2f}")
    assert p1 > p0 + 8 and f1 < f0 / 3
    assert stats.breaks == 0 and stats.cuts == 0
    hole = mask != 0
    for c, o in zip(clean, prop):  # outside the hole: the frame's own pixels
        assert np.array_equal(c[~hole], o[~hole])


def test_a_patch_fill_is_told_each_frames_motion_once_in_order(monkeypatch):
    """VideoFill hands the Inpainter the propagation's motion of every frame, one call a frame
    in order (the patch fill moves a moving hole's field, and its fill, by it); the known pixels
    stay the frame's own."""
    from fastfill.engines.classical import ClassicalEngine

    img, mask = photo(), logo()
    clean = [view(img, *p) for p in PAN]
    asked = []
    real = Propagator.next_motion

    def counted(self):
        asked.append(real(self))
        return asked[-1]

    monkeypatch.setattr(Propagator, "next_motion", counted)
    outs, stats = run(Inpainter(ClassicalEngine("patch")), clean, mask, window=2)
    assert len(asked) == len(clean) and stats.frames == len(clean)
    assert asked[0] == (None, None)
    assert sum(s is not None and m is not None for s, m in asked) >= len(clean) - 2, asked
    for s, m in asked[1:]:  # (the truth: the scene moves 2.3 px left and 0.4 px up a frame)
        assert m is None or np.abs(m[:2, 2] - (-2.3, -0.4)).max() < 0.1, m
    hole = mask != 0
    for c, o in zip(clean, outs):
        assert np.array_equal(c[~hole], o[~hole])


def _pan_motions(n, dx):
    """What ``Propagator.next_motion`` says of a pan of ``dx`` whole pixels a frame (the scene
    moves -dx), the first frame unknown."""
    m = np.array([[1, 0, -dx], [0, 1, 0], [0, 0, 1]], np.float64)
    return iter([(None, None)] + [((0, -dx), m)] * (n - 1))


def _detail(a):
    a = a.astype(np.float32).mean(axis=2)
    return a - cv2.GaussianBlur(a, (0, 0), 2.0)


def test_a_made_up_fill_moves_with_the_scene(monkeypatch):
    """A pan over a hole no frame shows (motions given, no propagation): the patch fill is made
    once and then moves with the scene, its texture where the scene put it, instead of a fresh
    (differently made-up) fill a frame; a fill is made again where the moved one does not
    reach, and after a frame whose motion is unknown (a cut)."""
    from fastfill.inpainter import FillHold, Inpainter as Inp

    img, mask = photo("apple.jpg"), logo(40, 80, 40, 110)
    dx, n = 2, 12
    frames = [view(img, 80 + dx * i, 60) for i in range(n)]
    hole = mask != 0
    calls = []
    real = Inp._run

    def counted(self, pairs, *a, **k):
        calls.append(len(pairs))
        return real(self, pairs, *a, **k)

    monkeypatch.setattr(Inp, "_run", counted)
    inp = Inpainter(method="patch")
    # a hole under MOVE_MIN pixels is made again every frame (cheap, and better where the window
    # reveals around it); these frames are small, so the floor comes down for the rest
    list(inp.stream(frames, mask, carry=True, motions=_pan_motions(n, dx).__next__))
    assert len(calls) == n and hole.sum() < FillHold.MOVE_MIN
    monkeypatch.setattr(FillHold, "MOVE_MIN", 0)
    calls.clear()
    moved = list(inp.stream(frames, mask, carry=True, motions=_pan_motions(n, dx).__next__))
    made = len(calls)
    calls.clear()
    fresh = list(inp.stream(frames, mask, carry=True,
                            shifts=iter([None] + [(0, -dx)] * (n - 1)).__next__))
    print(f"fills made: {made} of {n} frames moving the fill, {len(calls)} without")
    assert len(calls) == n and made < n // 2, made  # (a fill where the moved one runs out)
    for o, f in zip(moved, frames):
        assert np.array_equal(o[~hole], f[~hole])
    # frame 3 against frame 0 moved by the pan: the same texture where the scene took it
    inner = cv2.erode(hole.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
    inner[:, inner.shape[1] - 3 * dx - 8:] = False  # (what frame 0's fill covers, well inside)
    back = np.roll(_detail(moved[0]), -3 * dx, axis=1)
    same = np.corrcoef(_detail(moved[3])[inner], back[inner])[0, 1]
    other = np.corrcoef(_detail(fresh[3])[inner], np.roll(_detail(fresh[0]), -3 * dx, axis=1)[inner])[0, 1]
    print(f"texture moved with the scene: correlation {same:.3f} (a fresh fill a frame: {other:.3f})")
    assert same > 0.9 and same > other + 0.1
    # a cut: the next frame is filled again, from itself
    calls.clear()
    step = ((0, -dx), np.array([[1, 0, -dx], [0, 1, 0], [0, 0, 1.0]]))
    cut = iter([(None, None)] + [step] * 4 + [(None, None)] + [step] * 3)
    list(inp.stream(frames[:9], mask, carry=True, motions=cut.__next__))
    assert len(calls) == 2, calls  # the first frame and the frame after the cut


def test_a_kept_frame_carries_what_left_the_window_without_blurring_it(harmonic):
    """A pan seen through a window of 2 frames: most of the hole left the window long ago and
    came through the frame before's propagated pixels, resampled once a frame at a sub-pixel
    shift (a blur growing frame by frame); a kept frame's hole, moved through the links, gives
    them resampled twice: closer to the clean frames and keeping their detail."""

    img, mask = photo(), logo()
    clean = [view(img, *p) for p in PAN]
    hole = mask != 0

    def detail(frames):  # high-pass energy in the hole
        return float(np.mean([np.abs(_detail(f))[hole].mean() for f in frames[8:]]))

    chained, s0 = run(harmonic, clean, mask, options=PropagateOptions(window=2, keep=0))
    kept, s1 = run(harmonic, clean, mask, options=PropagateOptions(window=2))
    p0, p1 = hole_psnr(chained[8:], clean[8:], mask), hole_psnr(kept[8:], clean[8:], mask)
    d0, d1, dc = detail(chained), detail(kept), detail(clean)
    print(f"window 2, frames 8-23: {p0:.2f} dB through the chain, {p1:.2f} with a kept frame; "
          f"detail {d0:.2f} / {d1:.2f} (clean {dc:.2f}); {100 * s0.share:.0f} / "
          f"{100 * s1.share:.0f} % propagated")
    assert p1 > p0 + 1 and d0 < d1 <= 1.1 * dc and s1.share >= s0.share
    for c, o in zip(clean, kept):
        assert np.array_equal(c[~hole], o[~hole])
    with pytest.raises(InputError, match="keep"):
        PropagateOptions(keep=-1)


@pytest.mark.parametrize("kw", [dict(ring=0), dict(ring=33), dict(refine=-1), dict(refine=4)])
def test_propagation_options_past_what_a_frame_converts_are_refused(kw):
    """A decoded frame is converted to RGB only around its hole (48 px) and around what a
    source's warp samples (4 px, one more per ring refinement past the first): a wider ring or
    more refinements would read pixels never converted (zeros, taken as the scene)."""
    with pytest.raises(InputError, match="ring must be in"):
        PropagateOptions(**kw)


@pytest.mark.parametrize("kw", [dict(min_ring=0), dict(ring_error=-1.0)])
def test_a_ring_check_that_checks_nothing_is_refused(kw):
    """A source is used only when enough of the ring sees it (at least one pixel: an offset is a
    mean over them) and its error is within a bound that some source can meet."""
    with pytest.raises(InputError, match="min_ring must be at least 1"):
        PropagateOptions(**kw)


def _decoded_pan(av, h, w, n):
    """The first n frames of PAN over the photo at h x w, as decoded 4:2:0 frames."""
    img = photo()

    def big(x, y):
        m = np.array([[1, 0, x], [0, 1, y]], np.float64)
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)

    return [av.VideoFrame.from_ndarray(big(*p[:2]), format="rgb24").reformat(format="yuv420p")
            for p in PAN[:n]]


@pytest.mark.parametrize("options", [None, dict(refine=3, ring=32, keep_margin=0)],
                         ids=["defaults", "widest-ring-most-refinements"])
def test_a_decoded_pan_is_propagated_as_its_rgb_frames_converting_only_around_the_hole(options):
    """Decoded 4:2:0 frames (as ``fastfill video`` reads them): propagation converts to RGB
    only the boxes it reads (each frame's hole region, and what the warps of its sources
    sample), never a whole frame, and gives the same bytes as from the same frames converted
    whole first; the fill's windows are converted afterwards into the same frame, around the
    propagated pixels, which they leave as they are."""
    av = pytest.importorskip("av")
    from fastfill.video.frames import Decoded

    h, w = 192, 256
    mask = np.zeros((h, w), np.uint8)
    mask[84:108, 112:144] = 255
    hole = mask != 0

    def frames():
        return [Decoded(f) for f in _decoded_pan(av, h, w, 16)]

    boxed, whole = frames(), frames()
    for d in whole:
        d.rgb()  # (converted whole first: propagation then reads and writes that frame)
    opts = PropagateOptions(window=4, **options) if options else None
    a = list(Propagator(window=4, copy=False, options=opts).run(enumerate((d, mask) for d in boxed)))
    b = list(Propagator(window=4, copy=False, options=opts).run(enumerate((d, mask) for d in whole)))
    assert [t for t, _ in a] == list(range(16))
    for d in boxed:
        assert d._whole is None  # (never converted whole)
        converted = sum((y1 - y0) * (x1 - x0) for y0, x0, y1, x1 in d._part.done)
        # (the widest ring reads most of so small a frame: there only the bytes are compared)
        assert 0 < converted < (0.75 if options is None else 1.0) * h * w, converted
    for (_, (fa, la)), (_, (fb, lb)) in zip(a, b):
        assert fa in boxed and fb in whole and np.array_equal(la, lb)
        before = fa._part.array.copy()
        out = fa.rgb_within([(0, 0, h, w)])  # (the rest converted: what the fill's windows do)
        assert np.array_equal(out, fb.rgb())
        assert np.array_equal(out[hole], before[hole])  # the propagated pixels left as they were
    assert np.count_nonzero(a[8][1][1]) < np.count_nonzero(mask)  # (something was propagated)


def test_a_decoded_frame_read_for_later_frames_after_the_fill_has_a_private_rgb():
    """A frame whose RGB went to the fill in a buffer (given back and used again once encoded)
    and that propagation then reads for a later frame: its reads are converted into a frame of
    their own, never the lent one; a box asked for again is not converted again; boxes grown
    for a creeping reader come in multiples of the growth."""
    av = pytest.importorskip("av")
    from fastfill.video.frames import Decoded, RGBBuffers, reformatter_, to_rgb

    f = av.VideoFrame.from_ndarray(view(photo(), 60, 100), format="rgb24").reformat(format="yuv420p")
    whole = to_rgb(f, reformatter_())
    buffers = RGBBuffers()
    d = Decoded(f, buffers=buffers)
    lent = d.rgb_within([(10, 10, 20, 20)])
    lent[12, 12] = 7  # (what the fill writes stays: the box is not converted again)
    assert d.rgb_within([(10, 10, 20, 20)]) is lent and lent[12, 12, 0] == 7
    src = d.rgb_within([(40, 50, 10, 10)], source=True, grow=32)
    assert src is not lent and not lent[40:50, 50:60].any()
    assert np.array_equal(src[32:64, 32:64], whole[32:64, 32:64])  # (10..60 grown to 0..96)
    assert np.array_equal(src[:96, :96], whole[:96, :96]) and not src[96:].any()
    buffers.give(lent)  # (given back: the private frame is not one of the buffers')
    assert Decoded(f, buffers=buffers).rgb_within([(0, 0, 2, 2)]) is lent


def test_corners_tracked_into_a_frame_are_its_corners_for_the_next_link(monkeypatch):
    """A pan's links: each frame's corners are those tracked into it from the frame before
    (found afresh only when too few are left), and each link is as accurate as with corners
    found afresh in every frame."""
    found = returns_of(monkeypatch, cv2, "goodFeaturesToTrack")
    img, hole = photo(), logo() != 0
    for reuse in (0.7, 0.0):
        found.clear()
        o = mo.MotionOptions(reuse_corners=reuse)
        frames = [mo.analyse(view(img, *p), hole, o) for p in PAN[:10]]
        errs = []
        for (pa, fa), (pb, fb) in zip(zip(PAN, frames), zip(PAN[1:], frames[1:])):
            m = mo.estimate(fa, fb, o)
            assert m.linked, m.reason
            errs.append(max_error(m.matrix, frame_to_frame(pa, pb)))
        print(f"reuse {reuse}: corners found {len(found)} times for 9 links, "
              f"max error {max(errs):.3f} px")
        assert max(errs) < 0.15
        assert len(found) == 9 if not reuse else len(found) <= 3  # (9 links: 9 first frames)


def test_opencv_runs_on_one_thread_while_propagating_and_is_restored(monkeypatch):
    """OpenCV's own threads cost CPU the encoder beside propagation needs, for box-sized calls
    they do not speed up: set to one while a frame is propagated, the caller's count after."""
    import fastfill.video.propagate as pr

    seen = []
    real = pr.Propagator._propagate

    def spy(self, t, e):
        seen.append(cv2.getNumThreads())
        return real(self, t, e)

    monkeypatch.setattr(pr.Propagator, "_propagate", spy)
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        img, mask = photo(), logo()
        list(Propagator(window=2).run(enumerate((view(img, *p), mask) for p in PAN[:6])))
        assert seen and set(seen) == {1} and cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_the_zoom_is_filled_from_other_frames(harmonic):
    img, mask = photo(), logo(78, 106, 104, 148)  # off-centre: a zoom in uncovers it
    clean = [view(img, *z) for z in ZOOM]
    alone, _ = run(harmonic, clean, mask, propagate=False)
    prop, stats = run(harmonic, clean, mask)
    p0, p1 = hole_psnr(alone, clean, mask), hole_psnr(prop, clean, mask)
    print(f"zoom: hole PSNR {p0:.2f} dB alone, {p1:.2f} dB propagated "
          f"({100 * stats.share:.0f}% of the hole)")
    assert p1 > p0 + 3 and stats.breaks == 0


def test_nothing_crosses_a_cut(harmonic):
    """Frames after a cut take nothing from before it: their hole is nearer the new shot than
    the old one, and propagation still works on each side."""
    a, b, mask = photo(), photo("apple.jpg"), logo()
    old = [view(a, 60 + 3 * i, 100) for i in range(20)]
    new = [view(b, 150 + 3 * i, 120) for i in range(20)]
    clean = old[:10] + new[10:]
    out, stats = run(harmonic, clean, mask)
    alone, _ = run(harmonic, clean, mask, propagate=False)
    assert stats.cuts == 1 and stats.share > 0.5
    hole = mask != 0
    for i in range(10, 20):
        to_new = np.abs(out[i][hole].astype(int) - new[i][hole]).mean()
        to_old = np.abs(out[i][hole].astype(int) - old[i][hole]).mean()
        assert to_new < to_old / 3, (i, to_new, to_old)
    for part, shot in ((slice(0, 10), old), (slice(10, 20), new)):  # each side on its own
        p0, p1 = hole_psnr(alone[part], shot[part], mask), hole_psnr(out[part], shot[part], mask)
        print(f"cut, frames {part.start}-{part.stop - 1}: {p0:.2f} dB alone, {p1:.2f} propagated")
        assert p1 > p0 + 3


@pytest.mark.parametrize("method", ["harmonic", "patch"])
def test_a_static_shot_is_filled_as_without_propagation(method, monkeypatch):
    """A static camera over a static mask: nothing propagates (even with sensor noise), so the
    fill is the Inpainter's own, the same frame after frame; with noise the links are estimated
    (not the identity), and no source is tried: each moves the hole by under half a pixel."""
    from fastfill.video import propagate

    inp = Inpainter(method=method)
    base, mask = view(photo(), 60, 100), logo()
    rng = np.random.default_rng(0)
    noisy = [np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    links = returns_of(monkeypatch, mo, "estimate")
    tried = returns_of(monkeypatch, propagate, "_fill_box")
    for frames in ([base] * 12, noisy):
        links.clear()
        prop, stats = run(inp, frames, mask)
        alone, _ = run(inp, frames, mask, propagate=False)
        assert stats.propagated_pixels == 0 and stats.hole_pixels > 0
        assert all(np.array_equal(p, a) for p, a in zip(prop, alone))
        assert tried == []
    assert links and all(m.linked and m.model != "identity" for m in links)
    if method == "harmonic":
        prop, _ = run(inp, [base] * 12, mask)
        assert all(np.array_equal(prop[0], p) for p in prop)


def test_a_moving_mask_over_a_static_shot_takes_the_background():
    """Object removal with a still camera: the hole moves, the background it hid is in other
    frames, and the frames' own holes are never a source."""
    base = view(photo(), 60, 100)
    masks = [logo(30, 60, 10 + 5 * i, 40 + 5 * i) for i in range(16)]
    frames = [np.where(m[:, :, None] != 0, np.uint8(255), base) for m in masks]  # a white box
    p = Propagator(window=6)
    out = list(p.run((i, (f, m)) for i, (f, m) in enumerate(zip(frames, masks))))
    for i, (tag, (f, left)) in enumerate(out):
        hole = masks[i] != 0
        done = hole & ~np.asarray(left, bool)
        assert tag == i and done.any()
        assert np.abs(f[done].astype(int) - base[done]).max() <= 1  # never the white box
    assert p.stats.share > 0.9


# -- the streaming object --------------------------------------------------------------------------

def test_the_window_keeps_order_bounds_memory_and_flushes():
    img, mask = photo(), logo()
    frames = [view(img, *p) for p in PAN[:20]]
    p = Propagator(window=3)
    got, most = [], 0
    for i, f in enumerate(frames):
        ready = p.push(("frame", i), f, mask if i % 4 else np.zeros((H, W), np.uint8))
        most = max(most, len(p._entries))
        assert all(tag[1] == i - 3 for tag, _ in ready)  # three frames behind
        got += ready
    got += p.flush()
    assert [t[1] for t, _ in got] == list(range(20)) and most <= 2 * 3 + 2
    for i, (tag, (f, m)) in enumerate(got):
        if i % 4 == 0:  # no hole: passed as it came
            assert f is frames[i] and not np.asarray(m).any()
    short = list(Propagator(window=12).run((i, (f, mask)) for i, f in enumerate(frames[:3])))
    assert [t for t, _ in short] == [0, 1, 2]
    with pytest.raises(InputError, match="window"):
        Propagator(window=31)


def test_video_fill_streams_pairs_and_tags(harmonic):
    img, mask = photo(), logo()
    frames = [view(img, *p) for p in PAN[:6]]
    plain = list(VideoFill(harmonic, window=2).stream(frames, mask))
    tagged = list(VideoFill(harmonic, window=2).stream(
        ((("f", i), (f, mask)) for i, f in enumerate(frames)), tagged=True))
    assert len(plain) == 6 and [t for t, _ in tagged] == [("f", i) for i in range(6)]
    assert all(np.array_equal(a, b) for a, (_, b) in zip(plain, tagged))


def test_video_fill_reads_a_writable_mask_every_frame(harmonic):
    """As Inpainter.stream does: it was copied once, so clearing it in place went unseen and
    pixels it no longer covered were changed."""
    img, mask = photo(), logo()
    frames = [view(img, *p) for p in PAN[:6]]
    m = mask.copy()

    def changing():
        for i, f in enumerate(frames):
            if i == 3:
                m[:] = 0  # (read when frame 3 is read)
            yield f

    out = list(VideoFill(harmonic, window=2).stream(changing(), m))
    assert not any(np.array_equal(o, f) for o, f in zip(out[:3], frames[:3]))
    assert all(np.array_equal(o, f) for o, f in zip(out[3:], frames[3:]))


# -- fastfill video -----------------------------------------------------------------------------------

FPS = 12


def encode(path, frames, pix_fmt="bgr0"):
    """A lossless (FFV1) clip with an AAC track."""
    write_clip(path, frames, FPS, codec="ffv1", pix_fmt=pix_fmt)


def decode(path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        info = dict(codec=v.codec_context.name, rate=v.average_rate)
    with av.open(str(path)) as c:
        info["audio_packets"] = sum(1 for p in c.demux(audio=0) if p.size)
    return [f for _, f in frames], [t for t, _ in frames], info


@pytest.mark.parametrize("pix_fmt", ["bgr0", "yuv420p"])
def test_fastfill_video_propagates_and_keeps_the_clip(tmp_path, pix_fmt):
    """RGB frames, and 4:2:0 ones (motion from the decoded planes, RGB made where read)."""
    clean = [view(photo(), *p) for p in PAN]
    mask = logo()
    burnt = [np.where(mask[:, :, None] != 0, np.uint8(250), f) for f in clean]  # a logo box
    src = tmp_path / "in.mkv"
    encode(src, burnt, pix_fmt)
    encode(tmp_path / "clean.mkv", clean, pix_fmt)
    clean = decode(tmp_path / "clean.mkv")[0]  # (what the pixel format can hold of them)
    Image.fromarray(mask).save(tmp_path / "logo.png")
    results = {}
    for flag in ("--propagate", "--no-propagate"):
        out = tmp_path / f"out{flag}.mkv"
        code, stdout, stderr = invoke("video", src, "--mask", tmp_path / "logo.png", "-o", out,
                                      "--method", "harmonic", flag, "-q")
        assert code == 0, stderr
        frames, pts, info = decode(out)
        _, pts_in, info_in = decode(src)
        assert len(frames) == len(PAN) and pts == pts_in
        assert info == info_in and info["codec"] == "ffv1" and info["rate"] == Fraction(FPS)
        results[flag] = hole_psnr(frames, clean, mask)
        assert ("% of the hole from other frames" in stdout) == (flag == "--propagate")
    print(f"fastfill video on the {pix_fmt} pan: {results}")
    # (4:2:0: the chroma taken from other frames was sampled on their 2x2 grid, shifted by the
    # motion against this frame's: +8.0 dB here whether the frames are read as RGB or decoded)
    assert results["--propagate"] > results["--no-propagate"] + (8 if pix_fmt == "bgr0" else 7.5)


@pytest.mark.parametrize("pix_fmt", ["bgr0", "yuv420p"])
def test_fastfill_video_moves_the_made_up_fill_with_a_pan(tmp_path, pix_fmt, monkeypatch):
    """`fastfill video` with the default fill over a pan whose band no frame of the window shows
    whole: what is made up moves with the scene from frame to frame (frame 4's band where frame
    3's was, 3 px on), and nothing outside the hole changes (exact for RGB). (The moved fill's
    size floor, a 128 x 128 hole, comes down to these small frames.)"""
    from fastfill.inpainter import FillHold

    monkeypatch.setattr(FillHold, "MOVE_MIN", 0)
    img = photo("apple.jpg")
    clean = [view(img, 60 + 3 * i, 60) for i in range(10)]
    mask = logo(50, 80, 20, 140)
    hole = mask != 0
    burnt = [np.where(hole[:, :, None], np.uint8(250), f) for f in clean]
    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    encode(src, burnt, pix_fmt)
    Image.fromarray(mask).save(tmp_path / "band.png")
    code, stdout, stderr = invoke("video", src, "--mask", tmp_path / "band.png", "-o", out,
                                  "--window", "2", "-q")
    assert code == 0, stderr
    frames = decode(out)[0]
    assert len(frames) == len(clean)
    if pix_fmt == "bgr0":
        given = decode(src)[0]
        for a, b in zip(given, frames):
            assert np.array_equal(a[~hole], b[~hole])
    # frames 3 and 4 in the band's middle, which neither the two frames each side nor the
    # frames before show (about 6 px from the left, 3 px a frame from the right are shown)
    rows = slice(58, 72)
    now = frames[4][rows, 34:100].astype(float)
    before = frames[3][rows, 37:103].astype(float)  # (the scene moves 3 px left a frame)
    moved = np.abs(now - before).mean()
    print(f"{pix_fmt}: the band's middle against the frame before's, moved with the scene: "
          f"{moved:.2f} levels apart")
    # (a fill made again each frame, its field moved by the shift: 0.78 and 1.51 levels; 4:2:0
    # chroma sampled on each frame's own 2x2 grid adds its part)
    assert moved < {"bgr0": 0.3, "yuv420p": 1.1}[pix_fmt]


def test_a_decoded_pan_with_a_pool_of_private_frames_gives_the_same_bytes():
    """Propagation over Decoded frames that share a PrivateFrames pool (as ``fastfill video``
    reads them): each frame leaving the window gives its private RGB frame back, later frames
    convert into those again (no more fresh frames than the window holds), and every frame
    given back holds the same private frame as without the pool, zeros included."""
    av = pytest.importorskip("av")
    from fastfill.video import frames as fr

    h, w = 192, 256
    masks = []  # (a hole that moves: each frame converts other boxes than the one before it)
    for i in range(16):
        m = np.zeros((h, w), np.uint8)
        m[60 + 4 * i:84 + 4 * i, 40 + 9 * i:72 + 9 * i] = 255
        masks.append(m)
    yuv = _decoded_pan(av, h, w, 16)

    def run(pool):
        made = []
        mapped = fr._mapped

        def counted(shape):
            made.append(shape)
            return mapped(shape)

        fr._mapped = counted
        try:
            out = []
            items = enumerate((fr.Decoded(f, private=pool), m) for f, m in zip(yuv, masks))
            for _, (d, left) in Propagator(window=4, copy=False).run(items):
                # (the private frame as propagation left it: converted boxes, propagated pixels
                # and zeros elsewhere, where a frame used again must hold no earlier frame's)
                out.append((d._part.array.copy(), left.copy()))
            return out, len(made)
        finally:
            fr._mapped = mapped

    pooled, fresh_pooled = run(fr.PrivateFrames())
    alone, fresh_alone = run(None)
    # (a window of 4: the 9 frames it holds at once, then the ones given back)
    assert fresh_pooled <= 2 * 4 + 1 < fresh_alone, (fresh_pooled, fresh_alone)
    for (a, la), (b, lb) in zip(pooled, alone):
        assert np.array_equal(la, lb) and np.array_equal(a, b)
    assert np.count_nonzero(pooled[8][1]) < np.count_nonzero(masks[8])  # (something propagated)


# -- a still hole: frames whose hole's neighbourhood stays put ---------------------------------------

def _still_frames(changes=()):
    """16 frames of a photo as decoded 4:2:0 frames, the mask (frozen), and the hole; ``changes``:
    (frame from which on, y0, y1, x0, x1, added levels) edits of the frames' pixels."""
    base = view(photo(), 60, 100)
    frames = []
    for i in range(16):
        f = base.astype(int)
        for start, y0, y1, x0, x1, add in changes:
            if i >= start:
                f[y0:y1, x0:x1] += add
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    mask = logo()
    mask.setflags(write=False)
    return frames, mask


def test_a_still_hole_is_one_run_while_what_the_fill_reads_stays_put():
    """StillHole: consecutive decoded frames are one run while their known samples within the
    margin stay within the tolerance (a change inside the hole, which no fill reads, or past the
    margin changes nothing); a border sample moved past it, the context moved on average past
    half of it, another mask, an RGB frame each start a new run, compared from there on."""
    from fastfill.video.still import StillHole

    frames, mask = _still_frames()
    hole = mask != 0
    hole.setflags(write=False)
    still = StillHole(margin=8)
    runs = [still(yuv(f), hole) for f in frames[:3]]
    assert runs == [1, 1, 1]
    edit = frames[0].astype(int)
    edit[50:70, 60:100] += 80  # inside the hole (44:76, 56:104)
    edit[0:20, 0:30] += 80  # far outside the margin
    assert still(yuv(np.clip(edit, 0, 255).astype(np.uint8)), hole) == 1
    noisy = frames[0].astype(int)
    noisy[40:44, 60:64] += 1  # a sample of the border, within the tolerance
    assert still(yuv(noisy.astype(np.uint8)), hole) == 1
    border = frames[0].astype(int)
    border[43, 70] += 12  # the pixel above the hole: one luma sample 10 levels off
    assert still(yuv(np.clip(border, 0, 255).astype(np.uint8)), hole) == 2
    assert still(yuv(frames[0]), hole) == 3  # (compared with that frame now)
    for add, run in ((2, 3), (6, 4)):  # bands of the context (not the border) brightened
        shifted = frames[0].astype(int)
        shifted[20:40, 40:120] += add
        shifted[80:100, 40:120] += add
        assert still(yuv(np.clip(shifted, 0, 255).astype(np.uint8)), hole) == run
    assert still(yuv(frames[0]), hole) == 5
    other = hole.copy()
    other.setflags(write=False)
    assert still(yuv(frames[0]), other) == 6  # another mask: measured again
    assert still(yuv(frames[0]), other) == 6
    assert still(frames[0], other) == 7  # an RGB frame is not compared
    assert still(yuv(frames[0]), None) == 8  # nor a frame whose mask may change
    assert still(yuv(frames[0]), other) == 9


def test_a_still_hole_holds_through_a_cameras_noise_but_not_a_new_thing(monkeypatch):
    """A static shot with a camera's noise (a level or so, every pixel, every frame): its samples
    fail the per-sample bounds, but the context moved as a whole while its 4x4 blocks' means and
    its border as a whole did not, so the frames are one run (steady.only_noise, the held fill's
    rule). Something entering what the fill reads, a thin dark thing crossing the border, or a few
    border samples moved in a clean frame (a codec's change, which the held fill is laid onto)
    each start a new run."""
    from fastfill import steady
    from fastfill.video.still import StillHole

    frames, mask = _still_frames()
    hole = mask != 0
    hole.setflags(write=False)
    rng = np.random.default_rng(4)
    noisy = [yuv(np.clip(frames[0] + rng.normal(0, 1.2, frames[0].shape), 0, 255)
                 .astype(np.uint8)) for _ in range(6)]
    still = StillHole(margin=16)
    assert [still(f, hole) for f in noisy] == [1] * 6
    with monkeypatch.context() as m:  # (the noise does fail the per-sample bounds)
        m.setattr(steady, "only_noise", lambda *a: False)
        alone = StillHole(margin=16)
        assert [alone(f, hole) for f in noisy] == [1, 2, 3, 4, 5, 6]

    def edited(frame, y0, y1, x0, x1, scale):
        rgb = frame.astype(float)
        rgb[y0:y1, x0:x1] *= scale
        return yuv(np.clip(rgb + rng.normal(0, 1.2, rgb.shape), 0, 255).astype(np.uint8))

    # a dark thing in what the fill reads, away from the border (hole 44:76, 56:104)
    assert still(edited(frames[0], 30, 40, 60, 100, 0.3), hole) == 2
    assert still(noisy[1], hole) == 3
    # a thin pole reaching the hole: its border and its block means barely move on average
    assert still(edited(frames[0], 28, 44, 80, 81, 0.6), hole) == 4
    assert still(noisy[2], hole) == 5
    # under weak noise, a small thing 25 levels darker arriving at the border (hole 44:76, 56:104)
    weak = frames[0].astype(float)
    weak[38:44, 60:66] -= 25
    weak_still = StillHole(margin=16)
    assert weak_still(yuv(np.clip(frames[0] + rng.normal(0, 0.7, weak.shape), 0, 255)
                          .astype(np.uint8)), hole) == 1
    assert weak_still(yuv(np.clip(weak + rng.normal(0, 0.7, weak.shape), 0, 255)
                          .astype(np.uint8)), hole) == 2
    clean = StillHole(margin=16)
    assert clean(yuv(frames[0]), hole) == 1
    few = frames[0].astype(int)
    few[43, 70:73] += 4  # three border pixels a few levels off, nothing else: not noise
    assert clean(yuv(np.clip(few, 0, 255).astype(np.uint8)), hole) == 2


def test_still_frames_skip_propagation_and_their_motion(monkeypatch):
    """Propagator(still=...): a frame whose run holds the window + 1 frames before it and the
    window after it (or the clip's end) comes back untouched with the still mask, its motion
    never estimated; the frames that see a change within their window are propagated as ever."""
    from fastfill.video.still import StillHole

    frames, mask = _still_frames([(9, 30, 40, 40, 60, 40)])  # something enters at frame 9
    estimates = returns_of(monkeypatch, mo, "estimate")
    p = Propagator(window=2, still=StillHole(margin=16))
    out = list(p.run((i, (yuv(f), mask)) for i, f in enumerate(frames)))
    still = [i for i, (_, (_, m)) in enumerate(out) if m is p.still_mask]
    # run 0-8 (from the clip's start): still 1..6 (frames 7 and 8 see frame 9 in their window);
    # run 9-15: 12..15 (frames 9 and 10 see frames of the run before, and frame 11 must have 8,
    # the window + 1 before it, in its run)
    assert still == [1, 2, 3, 4, 5, 6, 12, 13, 14, 15]
    assert p.stats.still == 10 and p.stats.frames == 16
    assert not p.still_mask.any() and not p.still_mask.flags.writeable
    assert all(m is mask for i, (_, (_, m)) in enumerate(out) if i not in still)
    # links estimated: those the propagated frames' windows reach (0->1, 1->2 for frame 0,
    # 5->6 ... 12->13 for frames 7-11), never 2->3 ... 4->5 nor 13->14 and on
    assert len(estimates) == 10
    # without it: every frame propagated, every link estimated
    estimates.clear()
    plain = Propagator(window=2)
    list(plain.run((i, (yuv(f), mask)) for i, f in enumerate(frames)))
    assert plain.stats.still == 0 and len(estimates) == 15
