"""NumPy transcription of the patch fill (``csrc/patch.cpp``): the definition the kernel is held
to, byte for byte. Slow (seconds for a 64x64 image); for tests only.

The algorithm, per 4-connected hole component thicker than ``thin``:

1. Its box: the component's bounding box grown by ``radius``, clipped to the image. Values are
   integers, 4 steps per uint8 level; hole pixels start from ``start`` (the harmonic fill).
   A fourth channel says how textured each place is (``texture`` > 0): the mean absolute
   difference of the grey (the sum of the colours) between 4-neighbouring known pixels within
   ``texture_radius``, times ``texture`` / 300; where no known pair is that near (deep in the
   hole), the harmonic interpolation of those values (the harmonic fill's solver, in quarter
   steps) times ``texture_gain`` / 100. It counts in every patch distance; votes copy the
   colours only.
2. A pyramid of the box (all four channels): a coarser cell is the rounded mean of its known children (of all of them
   when none is known) and is hole only when all its children are (the component's when it is
   hole and a child is the component's), down to where the component spans about two patches
   (at most ``levels``).
3. At each level, coarse to fine: sources are the centres whose ``patch`` x ``patch`` window lies
   in the box and holds no hole pixel; targets, those whose window lies in the box and holds a
   pixel of the component. The coarsest level with sources draws a random source per target; a
   finer level takes its parent's source shifted by its place in the parent (a random source
   where that is none), and its pixels become what their patches say through that field (the
   texture of its own sources, not the parent's blocky values): a vote (step 4) with each patch
   weighed by its distance to the parent's values, then another weighed by its distance to that
   first vote. A level whose
   component cells times sources is at most ``onion`` is then peeled: ring by ring from the
   known cells inwards (a ring: the component's cells 8-next to a known or filled one, in scan
   order), each cell takes the centre of the source whose patch is closest to its own over the
   known and filled cells (all four channels; the first source of equals), every ring read
   before it is written.
4. EM rounds, 1 + ``iterations`` x l at level l (0 = finest): the sum of squared differences of
   each target's patch and its source's; min(``passes``, 1 + l) PatchMatch passes (Jacobi: each
   reads the previous pass's field), each trying, in order, the neighbours' sources shifted back
   at steps 1 and 2^(passes-1-pass), random
   sources in windows halving from the box size (at the coarsest level; from 8 px below it) around
   the best so far, and one random source
   anywhere, a strictly smaller distance winning; then the vote: each pixel of the component
   becomes the mean of what the patches covering it say, weighted 1 / (1 + msd / 8^2) (msd: the
   patch's mean squared difference in uint8 levels), rounded half to even; the last vote of the
   finest level takes what the closest covering patch says instead (no averaging, no blur).
   With ``complete`` > 0, each averaged vote (the start votes too) adds completeness votes: the
   sources whose centre lies within ``patch`` cells of a pixel of the component each keep, per
   level, the target closest to them (a random target at the level's first vote; every vote
   measures the kept targets again and makes one Jacobi pass: the 4 neighbours' targets shifted
   back, then random targets in windows halving from the box size around the best so far) and
   vote their pixels at that target's place, weighted (``complete`` / 100) / (1 + msd / 8^2),
   summed offset by offset in scan order of the sources, then added to the coherence votes.

5. With ``blend`` > 0, the low frequencies come from the start: each pixel of the component less
   the mean, over the component's pixels near it (three box blurs of radius ``blend`` each way of
   the differences and of the mask, divided by the mask's sum plus ``BLEND_PRIOR`` % of a window
   wholly in the hole), of how far the result is from the start, so the patches bring the detail
   and the harmonic fill the shading; where few hole pixels support the mean (thin strokes, a
   hole's edge) the correction shrinks with them; with ``blend_limit`` > 0 it is clipped to that
   many levels either way (a shading correction is small: a larger one is the start's smear of an
   edge the copies continue, and pulling them towards it greys them). With ``poisson`` > 0 instead (:func:`_rebuild`):
   each pixel's difference to each 4-neighbour is its best-vote source pixel's to the same
   neighbour (the start's where that neighbour is unknown), a pair of component pixels taking the
   one first in scan order, or, where their sources are not neighbours the same way (a seam),
   the mean of either source's difference where they agree within ``SEAM_AGREE``, else the
   median of both and the result's own, weighing ``SEAM_EIGHTHS`` / 8; the weighted sums are the right-hand side of the harmonic fill's own
   solver with those link weights (``_C.poisson_fill``: float arithmetic, the same call here and
   in the kernel), rounded back.
6. With ``gate`` > 0, the result's detail (result - start) is scaled pixel by pixel to what the
   known pixels around show (:func:`_gate`), times ``detail`` percent; otherwise, with ``detail``
   < 100, each pixel of the component goes only that percentage of the way from the start to the
   result (rounded half up); with ``detail_depth`` > 0 only from that many rings in (4-connected
   rings from the known pixels of the box), the pixels nearer the known ones going further, all
   the way on the first ring: p = 100 - (100 - ``detail``) min(ring - 1, ``detail_depth``) /
   ``detail_depth`` percent (a hole no ring reaches: ``detail``).

Random numbers are splitmix64 hashes of (seed, pass, position in the box, draw), so nothing
depends on the thread count or on the window around the box.
"""

from __future__ import annotations

import numpy as np

SCALE, VMAX, SIGMA2, REACH = 4, 1020, 64.0, 8
COMPLETE_START = 0xC0 << 56  # the pass id of the completeness search's start
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(z):
    z = (z + np.uint64(0x9E3779B97F4A7C15)) & _M64
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
    return z ^ (z >> np.uint64(31))


def _draw(seed, pass_id, pos, k):
    with np.errstate(over="ignore"):
        pos = np.asarray(pos, np.int64).astype(np.uint64)
        z = _mix(np.uint64(seed) ^ np.uint64(pass_id))
        return _mix(_mix(z ^ pos) ^ np.uint64(k))


class _Level:
    def __init__(self, v, hole, mine):
        self.v, self.hole, self.mine = v, hole, mine  # v: int64 [4, h, w]: colours, textureness
        self.h, self.w = hole.shape
        self.bsrc = None  # the source pixel each pixel took in the last best-patch vote (-1)


def _window_sums(m, r):
    h, w = m.shape
    out = np.full((h, w), -1, np.int64)
    if h < 2 * r + 1 or w < 2 * r + 1:
        return out
    I = np.zeros((h + 1, w + 1), np.int64)
    I[1:, 1:] = m.astype(np.int64).cumsum(0).cumsum(1)
    p = 2 * r + 1
    out[r:h - r, r:w - r] = I[p:, p:] - I[:-p, p:] - I[p:, :-p] + I[:-p, :-p]
    return out


def _index(L, r):
    holes, mine = _window_sums(L.hole, r).ravel(), _window_sums(L.mine, r).ravel()
    L.valid = holes == 0
    L.src = np.flatnonzero(L.valid)
    L.targets = np.flatnonzero(mine > 0)
    L.tid = np.full(L.h * L.w, -1, np.int64)
    L.tid[L.targets] = np.arange(L.targets.size)
    return L.src.size > 0 and L.targets.size > 0


def _down(F):
    h, w = (F.h + 1) // 2, (F.w + 1) // 2

    def pad(a, fill=0):
        out = np.full(a.shape[:-2] + (2 * h, 2 * w), fill, np.int64)
        out[..., :F.h, :F.w] = a
        return out.reshape(a.shape[:-2] + (h, 2, w, 2))
    ones = pad(np.ones((F.h, F.w), np.int64)).sum((-3, -1))
    known = pad(~F.hole)
    kcnt = known.sum((-3, -1))
    mean = (pad(F.v).sum((-3, -1)) + ones // 2) // ones
    kmean = ((pad(F.v) * known).sum((-3, -1)) + kcnt // 2) // np.maximum(kcnt, 1)
    hole = pad(F.hole, fill=1).min((-3, -1)).astype(bool)
    return _Level(np.where(kcnt > 0, kmean, mean), hole, hole & pad(F.mine).max((-3, -1)).astype(bool))


def _ssd(L, t, s, r):
    flat = L.v.reshape(4, -1)
    acc = np.zeros(np.shape(t), np.int64)
    for ch in range(4):
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                o = dy * L.w + dx
                e = flat[ch, t + o] - flat[ch, s + o]
                acc += e * e
    return acc


def _offset(z, rad):
    """Random offsets (dy, dx) in [-rad, rad] from draws z: their two 32-bit halves scaled to
    [0, 2 rad + 1)."""
    span = np.uint64(2 * rad + 1)
    return ((((z & np.uint64(0xFFFFFFFF)) * span) >> np.uint64(32)).astype(np.int64) - rad,
            (((z >> np.uint64(32)) * span) >> np.uint64(32)).astype(np.int64) - rad)


def _keep_better(L, query, cand, ok, best, bd, r, allowed):
    """One step of a PatchMatch search, in place: each centre of ``query`` where ``ok`` tries
    ``cand`` when it is not its best so far and ``allowed[cand]``; a strictly smaller patch
    distance wins."""
    ok = ok & (cand != best)
    ok[ok] = allowed[cand[ok]]
    if not ok.any():
        return
    d = _ssd(L, query[ok], cand[ok], r)
    win = d < bd[ok]
    idx = np.flatnonzero(ok)[win]
    best[idx], bd[idx] = cand[ok][win], d[win]


def _pass(L, seed, pass_id, jump, r, reach):
    h, w, t = L.h, L.w, L.targets
    ty, tx = t // w, t % w
    old = L.nnf
    best, bd = L.nnf.copy(), L.dist.copy()

    def tryit(s, ok):
        _keep_better(L, t, s, ok, best, bd, r, L.valid)

    for st in ((1, jump) if jump > 1 else (1,)):
        for ny, nx in ((ty - st, tx), (ty + st, tx), (ty, tx - st), (ty, tx + st)):
            ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            nk = np.where(ok, L.tid[np.clip(ny, 0, h - 1) * w + np.clip(nx, 0, w - 1)], -1)
            ok &= nk >= 0
            s = old[np.maximum(nk, 0)]
            sy, sx = s // w + (ty - ny), s % w + (tx - nx)
            ok &= (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
            tryit(np.where(ok, sy * w + sx, 0), ok)
    k, rad = 0, reach
    while rad >= 1:
        z = _draw(seed, pass_id, t, k)
        k += 1
        dy, dx = _offset(z, rad)
        sy, sx = best // w + dy, best % w + dx
        ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        tryit(np.where(ok, sy * w + sx, 0), ok)
        rad //= 2
    pick = (_draw(seed, pass_id, t, k) % np.uint64(L.src.size)).astype(np.int64)
    tryit(L.src[pick], np.ones(t.size, bool))
    L.nnf, L.dist = best, bd


def _completeness(L, patch, seed, complete, kinv):
    """The completeness votes of one vote (see the module's step 4): (sums [3, n], weights [n]),
    or None when there are none."""
    r, h, w = patch // 2, L.h, L.w
    n = h * w
    first = getattr(L, "band_passes", -1) < 0
    if first:
        near = _window_sums(L.mine, patch).ravel()
        L.band = L.src[near[L.src] > 0]
        L.band_passes = 0
    s, nt = L.band, L.targets.size
    if s.size == 0 or nt == 0:
        return None
    if first:
        L.bt = L.targets[(_draw(seed, COMPLETE_START, s, 0) % np.uint64(nt)).astype(np.int64)]
    old = L.bt
    bd0 = _ssd(L, old, s, r)
    at = np.full(n, -1, np.int64)
    at[s] = np.arange(s.size)
    pass_id = COMPLETE_START + 1 + L.band_passes
    L.band_passes += 1
    sy, sx = s // w, s % w
    best, bd = old.copy(), bd0.copy()

    is_target = L.tid >= 0

    def tryit(ty, tx, ok):
        ok = ok & (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
        _keep_better(L, s, np.where(ok, ty * w + tx, 0), ok, best, bd, r, is_target)

    for ny, nx in ((sy - 1, sx), (sy + 1, sx), (sy, sx - 1), (sy, sx + 1)):
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        nk = np.where(ok, at[np.clip(ny, 0, h - 1) * w + np.clip(nx, 0, w - 1)], -1)
        ok &= nk >= 0
        t = old[np.maximum(nk, 0)]
        tryit(t // w + (sy - ny), t % w + (sx - nx), ok)
    k, rad = 0, max(h, w)
    while rad >= 1:
        z = _draw(seed, pass_id, s, k)
        k += 1
        dy, dx = _offset(z, rad)
        ty, tx = best // w + dy, best % w + dx
        tryit(ty, tx, np.ones(s.size, bool))
        rad //= 2
    L.bt = best
    wt = (complete / 100.0) / (1.0 + bd.astype(np.float64) * kinv)
    flat, mine = L.v.reshape(4, -1), L.mine.ravel()
    acc, ws = np.zeros((3, n)), np.zeros(n)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            i, j = best + dy * w + dx, s + dy * w + dx
            ok = mine[i]
            for ch in range(3):
                np.add.at(acc[ch], i[ok], wt[ok] * flat[ch, j[ok]].astype(np.float64))
            np.add.at(ws, i[ok], wt[ok])
    return acc, ws


def _vote(L, patch, best=False, seed=0, complete=0):
    r, h, w = patch // 2, L.h, L.w
    kinv = 1.0 / (float(patch * patch * 3) * float(SCALE * SCALE) * SIGMA2)
    extra = _completeness(L, patch, seed, complete, kinv) if complete > 0 and not best else None
    weight = 1.0 / (1.0 + L.dist.astype(np.float64) * kinv)
    flat = L.v.reshape(4, -1)
    pix = np.flatnonzero(L.mine.ravel())
    y, x = pix // w, pix % w
    acc = np.zeros((3, pix.size))
    ws = np.zeros(pix.size)
    bd = np.full(pix.size, np.iinfo(np.int64).max)
    took = np.full(pix.size, -1, np.int64)  # the source pixel of the best patch (best only)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            cy, cx = y - dy, x - dx
            ok = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
            tk = np.where(ok, L.tid[np.clip(cy, 0, h - 1) * w + np.clip(cx, 0, w - 1)], -1)
            ok &= tk >= 0
            wt = np.where(ok, weight[np.maximum(tk, 0)], 0.0)
            s = np.where(ok, L.nnf[np.maximum(tk, 0)] + dy * w + dx, 0)
            if best:  # the closest patch alone (the first in this order among equals)
                d = np.where(ok, L.dist[np.maximum(tk, 0)], bd)
                win = ok & (d < bd)
                bd = np.where(win, d, bd)
                took = np.where(win, s, took)
                acc[:, win] = flat[:3, s[win]].astype(np.float64)
                ws[win] = 1.0
                continue
            for ch in range(3):
                acc[ch] = np.where(ok, acc[ch] + wt * flat[ch, s].astype(np.float64), acc[ch])
            ws = np.where(ok, ws + wt, ws)
    if extra is not None:
        acc = acc + extra[0][:, pix]
        ws = ws + extra[1][pix]
    done = ws > 0
    q = np.clip(np.rint(acc[:, done] / ws[done]), 0, VMAX).astype(np.int64)
    flat[:3, pix[done]] = q
    if best:
        L.bsrc = np.full(h * w, -1, np.int64)
        L.bsrc[pix] = took


def _up(C, F, seed, level):
    fy, fx = np.nonzero(F.mine)
    F.v[:3, fy, fx] = C.v[:3, fy // 2, fx // 2]
    t = F.targets
    y, x = t // F.w, t % F.w
    ck = C.tid[(y // 2) * C.w + x // 2]
    cs = C.nnf[np.maximum(ck, 0)]
    sy, sx = 2 * (cs // C.w) + (y & 1), 2 * (cs % C.w) + (x & 1)
    ok = (ck >= 0) & (sy < F.h) & (sx < F.w)
    ok[ok] = F.valid[(sy * F.w + sx)[ok]]
    rand = F.src[(_draw(seed, (level << 40) | 0xFFFFF, t, 0) % np.uint64(F.src.size)).astype(np.int64)]
    F.nnf = np.where(ok, sy * F.w + sx, rand)


def _onion(L, r):
    """The onion peel start of a level (see the module's step 4)."""
    import scipy.ndimage as ndi

    h, w = L.h, L.w
    done = ~L.hole
    flat = L.v.reshape(4, -1)
    S = L.src
    while True:
        ring = L.mine & ~done & ndi.binary_dilation(done, structure=np.ones((3, 3), bool))
        T = np.flatnonzero(ring)
        if T.size == 0:
            return
        ty, tx = T // w, T % w
        sums = np.zeros((T.size, S.size), np.int64)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                yy, xx = ty + dy, tx + dx
                ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                ok[ok] = done[yy[ok], xx[ok]]
                if not ok.any():
                    continue
                a = flat[:, (yy * w + xx)[ok]]  # (4, targets)
                b = flat[:, S + dy * w + dx]  # (4, sources)
                e = a[:, :, None] - b[:, None, :]
                sums[ok] += (e * e).sum(0)
        best = S[np.argmin(sums, axis=1)]  # (the first of equals)
        L.v[:3, ty, tx] = flat[:3, best]
        done = done | ring


def _complete(v0, hole, mine, span, patch, levels, iterations, passes, seed, onion=0, complete=0):
    r = patch // 2
    if hole.shape[0] < patch or hole.shape[1] < patch:
        return None
    pyr = [_Level(v0, hole, mine)]
    want = 0
    while (span >> want) > 2 * patch:
        want += 1
    if levels > 0:
        want = min(want, levels - 1)
    for _ in range(want):
        c = _down(pyr[-1])
        if c.h < patch or c.w < patch:
            break
        pyr.append(c)
    top = len(pyr) - 1
    while top >= 0 and not _index(pyr[top], r):
        top -= 1
    if top < 0:
        return None
    for lv in range(top - 1, -1, -1):
        _index(pyr[lv], r)
    T = pyr[top]
    T.nnf = T.src[(_draw(seed, (top << 40) | 0xFFFFE, T.targets, 0) % np.uint64(T.src.size)).astype(np.int64)]
    for lv in range(top, -1, -1):
        L = pyr[lv]
        if lv < top:
            if L.src.size == 0 or L.targets.size == 0:
                return None
            _up(pyr[lv + 1], L, seed, lv)
            for _ in range(2):
                L.dist = _ssd(L, L.targets, L.nnf, r)
                _vote(L, patch, seed=seed, complete=complete)
        if onion > 0 and int(L.mine.sum()) * L.src.size <= onion:
            _onion(L, r)
        rounds, npass = 1 + iterations * lv, min(passes, 1 + lv)
        for it in range(rounds):
            L.dist = _ssd(L, L.targets, L.nnf, r)
            for pm in range(npass):
                _pass(L, seed, (lv << 40) | (it << 20) | pm, 1 << (npass - 1 - pm), r,
                      max(L.h, L.w) if lv == top else min(max(L.h, L.w), REACH))
            _vote(L, patch, best=lv == 0 and it == rounds - 1, seed=seed, complete=complete)
    return pyr[0]


def _box(a, r, axis):
    """Sums over windows of radius r along `axis` (zero outside)."""
    n = a.shape[axis]
    c = np.concatenate([np.zeros_like(np.take(a, [0], axis)), np.cumsum(a, axis)], axis)
    k = np.arange(n)
    return np.take(c, np.minimum(n, k + r + 1), axis) - np.take(c, np.maximum(0, k - r), axis)


def _blend(v, v0, mine, r, limit=0):
    """The component's low frequencies from the start: v less the mean over the component's pixels
    near each (three box blurs of radius r each way, of v - v0 there and of the mask, divided by
    the mask's sum plus BLEND_PRIOR % of a window wholly in the hole; one rounding half up), that
    mean clipped to +-``limit`` levels when ``limit`` > 0."""
    v, v0 = v[:3], v0[:3]
    d = np.concatenate([np.where(mine[None], v - v0, 0), mine[None]]).astype(np.int64)
    for axis in (2, 2, 2, 1, 1, 1):
        d = _box(d, r, axis)
    side3 = (2 * r + 1) ** 3
    m = np.maximum(d[3:], 1) + side3 * side3 * BLEND_PRIOR // 100
    low = (2 * d[:3] + m) // (2 * m)
    if limit > 0:
        low = np.clip(low, -limit * SCALE, limit * SCALE)
    return np.where(mine[None], np.clip(v - low, 0, VMAX), v)


def _rebuild(v, v0, hole, mine, bsrc, image):
    """The component rebuilt from its copied differences: each pixel's difference to each
    4-neighbour is its best-vote source pixel's to the same neighbour where that one is known,
    else the start's; a pair of component pixels takes the difference of the one first in scan
    order, or, where their sources are not neighbours the same way (a seam between two copies),
    the mean of either source's difference to its own neighbour where the two agree within
    SEAM_AGREE, else the median of both and the voted result's, and weighs SEAM_EIGHTHS / 8
    there; the weighted sums over the 4 neighbours are the right-hand side of
    the harmonic fill's own solver with those link weights (``_C.poisson_fill``, held to SciPy in
    the tests), whose result is rounded back."""
    from .. import _C

    h, w = hole.shape
    n = h * w
    V = v[:3].reshape(3, -1).astype(np.int64)
    S = v0[:3].reshape(3, -1).astype(np.int64)
    holef, minef = hole.ravel(), mine.ravel()
    pix = np.flatnonzero(minef)
    y, x = pix // w, pix % w
    srcmap = bsrc if bsrc is not None else np.full(n, -1, np.int64)  # -1 off the component
    src = srcmap[pix]

    def diff(p, sp, dy, dx):  # p's own difference to p + d (sp: p's source), [3, len(p)]
        sy, sx = sp // w + dy, sp % w + dx
        ok = (sp >= 0) & (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        sq = np.where(ok, sy * w + sx, 0)
        ok &= ~holef[sq]
        q = np.clip(p + dy * w + dx, 0, n - 1)
        return np.where(ok, V[:, np.maximum(sp, 0)] - V[:, sq], S[:, p] - S[:, q])

    total = np.zeros((3, pix.size), np.int64)  # eighths of value steps
    edges = np.ones((n, 2), np.float32)
    for k, (dy, dx) in enumerate(((0, -1), (0, 1), (-1, 0), (1, 0))):
        qy, qx = y + dy, x + dx
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        q = np.where(inside, qy * w + qx, 0)
        pair = inside & minef[q]
        coherent = ((src >= 0) & (srcmap[q] >= 0) & (srcmap[q] - src == q - pix)
                    & (srcmap[q] % w - src % w == q % w - pix % w))  # (not across a row's end)
        weight = np.where(pair & ~coherent, SEAM_EIGHTHS, 8)
        if k % 2 == 1:  # this pixel's right / lower link
            edges[pix[pair], k // 2] = weight[pair].astype(np.float32) / np.float32(8)
        other = pair & (q < pix)
        g = np.where(other, -diff(q, srcmap[q], -dy, -dx), diff(pix, src, dy, dx))
        own, theirs = diff(pix, src, dy, dx), -diff(q, srcmap[q], -dy, -dx)
        voted = V[:, pix] - V[:, q]
        median = np.maximum(np.minimum(own, theirs), np.minimum(np.maximum(own, theirs), voted))
        both = own + theirs
        mean = np.where(both >= 0, both // 2, -((-both) // 2))  # (rounded towards zero, as C++)
        seam_g = np.where(np.abs(own - theirs) <= SEAM_AGREE, mean, median)
        g = np.where(pair & ~coherent, seam_g, g)  # a seam: the sources' mean, or the median
        total += np.where(inside, weight * g, 0)
    guide = np.zeros((n, 3), np.float32)
    guide[pix] = total.T.astype(np.float32) / np.float32(8 * VMAX)
    res = _C.poisson_fill(np.ascontiguousarray(image), mine.astype(np.uint8), guide.reshape(h, w, 3),
                          edges.reshape(h, w, 2))
    val = np.rint(np.clip(res.reshape(n, 3)[pix] * np.float32(VMAX), 0, VMAX)).astype(np.int64)
    colours = v[:3].reshape(3, -1).copy()
    colours[:, pix] = val.T
    return np.concatenate([colours.reshape(3, h, w), v[3:]])


BLEND_PRIOR = 20  # percent of a window wholly in the hole added to the blend's support
SEAM_EIGHTHS = 1  # the rebuild's weight of a link between copies from non-neighbouring sources, /8
SEAM_AGREE = 24 * SCALE  # two sources' differences across a seam this close agree: their mean

GATE_RADII = (1, 7, 2)  # box radii (three blurs each way): the detail's low-pass, the carry, E_hole
GATE_DEPTH = (6, 8)  # pixels deeper than a rings keep more of the detail, all of it from a + b
GATE_ONE = 1024  # the gain's unit


def _isqrt(x):
    """floor(sqrt(x)) of non-negative int64s, exactly."""
    s = np.sqrt(x.astype(np.float64)).astype(np.int64)
    s = np.where(s * s > x, s - 1, s)
    return np.where((s + 1) * (s + 1) <= x, s + 1, s)


def _depth(hole):
    """Rings inwards: 0 on known pixels, 1 on hole pixels 4-next to one, and so on (a hole
    reaching no known pixel: 0)."""
    d = np.where(hole, -1, 0).astype(np.int64)
    ring = 0
    while True:
        p = np.pad(d, 1, constant_values=-1)
        nb = np.stack([p[1:-1, :-2], p[1:-1, 2:], p[:-2, 1:-1], p[2:, 1:-1]])
        grow = (d < 0) & (nb == ring).any(0)
        if not grow.any():
            return np.maximum(d, 0)
        ring += 1
        d = np.where(grow, ring, d)


def _box3(a, r):
    for axis in (a.ndim - 1,) * 3 + (a.ndim - 2,) * 3:
        a = _box(a, r, axis)
    return a


def _gate(v, v0, hole, mine, k, detail):
    """The copied detail d = v - v0 of the component, scaled pixel by pixel so that it carries no
    more than its surroundings show: the gain min(1, sqrt(k E_known / E_hole)) (in 1/GATE_ONE),
    with E_known the squared detail of the known grey (the sum of colours less its normalised
    low-pass over known pixels, radius r1) normalised over the known pixels whose 8 neighbours
    are known (radius r2: carried into the hole), E_hole the normalised local energy of d's grey
    over the component (radius r3); a pixel d rings deep keeps (1 - that gain) (d - a) / b more;
    all times ``detail`` percent, rounded half up. Where E_known is 0 (no known pixel with known
    neighbours within reach), a shallow pixel keeps none of the detail."""
    r1, r2, r3 = GATE_RADII
    a, b = GATE_DEPTH
    known = ~hole
    g = np.where(known, v[:3].sum(0), 0).astype(np.int64)
    w1 = _box3(known.astype(np.int64), r1)
    s1 = _box3(g, r1)
    w1s = np.maximum(w1, 1)
    e = np.where(known, ((g * w1s - s1) ** 2) // (w1s * w1s), 0)
    p = np.pad(known, 1, constant_values=True)
    inner = known & p[:-2, :-2] & p[:-2, 1:-1] & p[:-2, 2:] & p[1:-1, :-2] & p[1:-1, 2:] \
        & p[2:, :-2] & p[2:, 1:-1] & p[2:, 2:]
    wk = _box3(inner.astype(np.int64), r2)
    ek = _box3(np.where(inner, e, 0), r2) // np.maximum(wk, 1)
    dg = np.where(mine, (v[:3].astype(np.int64) - v0[:3]).sum(0), 0)
    wh = _box3(mine.astype(np.int64), r3)
    eh = _box3(dg * dg, r3) // np.maximum(wh, 1)
    sc = np.minimum(GATE_ONE, _isqrt(k * ek * GATE_ONE * GATE_ONE // np.maximum(eh, 1)))
    deep = np.clip((_depth(hole) - a) * GATE_ONE // b, 0, GATE_ONE)
    gain = sc + (GATE_ONE - sc) * deep // GATE_ONE
    d = v[:3].astype(np.int64) - v0[:3]
    out = v0[:3] + (2 * d * detail * gain + 100 * GATE_ONE) // (200 * GATE_ONE)
    return np.where(mine[None], np.clip(out, 0, VMAX), v[:3])


def _texture(v, hole, weight, r, gain):
    """The textureness channel of a box (int64 [h, w]): the mean absolute difference of the grey
    (sum of colours) between 4-neighbouring known pixels within r, times weight / 300, at most
    VMAX; where no known pair is within r, the harmonic interpolation of those values (the
    harmonic fill's own solver, ``_C.poisson_fill`` with no guide, on the values in quarter
    steps), rounded, times gain / 100 (rounded half up), at most VMAX."""
    from .. import _C

    g = v.sum(0)
    known = ~hole
    a = np.zeros(g.shape, np.int64)
    c = np.zeros(g.shape, np.int64)
    ok = known[:, :-1] & known[:, 1:]
    a[:, :-1] += np.where(ok, np.abs(g[:, 1:] - g[:, :-1]), 0)
    c[:, :-1] += ok
    ok = known[:-1] & known[1:]
    a[:-1] += np.where(ok, np.abs(g[1:] - g[:-1]), 0)
    c[:-1] += ok
    a, c = _box(_box(a, r, 1), r, 0), _box(_box(c, r, 1), r, 0)
    t = np.where(c > 0, np.minimum(VMAX, (a * weight + 150 * c) // (300 * np.maximum(c, 1))), -1)
    unset = t < 0
    if not unset.any():
        return t
    q = np.where(unset, 0, (t + 2) // 4).astype(np.uint8)
    res = _C.poisson_fill(np.ascontiguousarray(np.repeat(q[..., None], 3, 2)), unset.astype(np.uint8),
                          np.zeros(q.shape + (3,), np.float32))
    s = np.rint(np.clip(res[..., 0] * np.float32(VMAX), 0, VMAX)).astype(np.int64)
    return np.where(unset, np.minimum(VMAX, (s * gain + 50) // 100), t)


def patch_reference(image, mask, start, *, patch=5, levels=0, iterations=2, passes=5, radius=96,
                    thin=2, blend=10, blend_limit=16, detail=90, detail_depth=0, gate=0, texture=200, texture_radius=2,
                    texture_gain=190, onion=1000000, complete=200, poisson=0, seed=0) -> np.ndarray:
    """The patch fill of ``image`` (uint8 [H, W, 3]) under ``mask`` ([H, W], nonzero = hole) from
    ``start`` (float32 [H, W, 3] in [0, 1], read at hole pixels: the kernel's own harmonic fill, as
    ``ops.prepare(..., fill="harmonic")`` returns it); uint8 [H, W, 3]."""
    import scipy.ndimage as ndi

    image = np.asarray(image, np.uint8)
    hole = np.asarray(mask) != 0
    start = np.asarray(start, np.float32)
    H, W = hole.shape
    vals = np.where(hole[..., None], np.rint(np.clip(start * np.float32(VMAX), 0, VMAX)),
                    image.astype(np.float32) * SCALE).astype(np.int64)
    result = vals.astype(np.float32) / np.float32(VMAX)
    result = np.where(hole[..., None], start, result)
    labels, n = ndi.label(hole, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        comp = labels == lab
        if ndi.distance_transform_cdt(np.pad(comp[sl], 1), metric="taxicab").max() <= thin:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        by0, bx0 = max(0, y0 - radius), max(0, x0 - radius)
        by1, bx1 = min(H, y1 + radius), min(W, x1 + radius)
        box = (slice(by0, by1), slice(bx0, bx1))
        v0 = np.ascontiguousarray(vals[box].transpose(2, 0, 1))
        tex = _texture(v0, hole[box], texture, texture_radius, texture_gain) if texture > 0 else np.zeros_like(v0[0])
        v0 = np.concatenate([v0, tex[None]])
        lv = _complete(v0.copy(), hole[box], comp[box], max(y1 - y0, x1 - x0), patch, levels,
                       iterations, passes, seed, onion, complete)
        if lv is None:
            continue
        v = lv.v
        if poisson > 0:
            v = _rebuild(v, v0, hole[box], comp[box], lv.bsrc, image[box])
        elif blend > 0:
            v = _blend(v, v0, comp[box], blend, blend_limit)
        if gate > 0:
            v = np.concatenate([_gate(v, v0, hole[box], comp[box], gate, detail), v[3:]])
        elif detail != 100:  # damped towards the start, rounded half up
            if detail_depth > 0:  # all of it on ring 1, ``detail`` from ring detail_depth + 1 on
                d = _depth(hole[box])
                r = detail_depth
                num = 2 * (100 * r - (100 - detail) * np.where(d > 0, np.minimum(r, d - 1), r))
                damped = v0[:3] + ((v[:3] - v0[:3]) * num + 100 * r) // (200 * r)
            else:
                damped = v0[:3] + (2 * (v[:3] - v0[:3]) * detail + 100) // 200
            v = np.where(comp[box][None], np.clip(damped, 0, VMAX), v[:3])
        part = result[box]
        m = comp[box]
        part[m] = v[:3].transpose(1, 2, 0)[m].astype(np.float32) / np.float32(VMAX)
    p = result * np.float32(255)
    out = np.where(p > 0, np.where(p >= 255, 255, np.rint(p)), 0).astype(np.uint8)
    return np.where(hole[..., None], out, image)
