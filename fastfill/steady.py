"""Whether what a fill reads stayed put but for a camera's noise: the rule a held fill
(:class:`fastfill.inpainter.FillHold`) and a still hole (:class:`fastfill.video.still.StillHole`)
share, each on its own samples (RGB pixels; a decoded frame's Y, U and V planes).

A camera's noise moves every sample of a static shot a little, so a per-sample compare with the
frame a fill was made for fails by about the noise, and the same fill would be made again each
frame (another texture each time: a flicker) for nothing. What noise leaves alone: the means of
whole 4x4 blocks (noise moves them by a quarter of itself, a thing entering by as much as its
pixels: on average, and at the block it enters), the border as a whole, and any one border
sample's move past a few times the noise. And noise moves the context as a whole: its whole
blocks' means by 0.2-0.45 levels on average under 1-2 levels of noise through a codec (over a
flat scene, whose rounded means hardly move, its samples and its border's alike), where a
codec's change of a few samples of a clean shot (the first P-frame after a key frame) or a
change along the border alone moves those by almost nothing: that one is met by laying the fill
onto its new border instead. A texture of zero mean over each block appearing away from the
border (fine stripes) is not told from noise.
"""

from __future__ import annotations

import numpy as np

from . import ops

# no border sample moves past this many times the bound under a camera's noise (2 levels of
# noise: ~11 levels at most over a logo's border); a thin thing crossing it may (a pole at
# half its background's brightness: ~70)
NOISE_MAX = 16
# ... nor past this many times it under noise weak enough to pass the per-sample bound on
# average (the context's mean move within half the bound)
WEAK_NOISE_MAX = 4
# no whole 4x4 block's mean moves past this many times the bound under noise (through a codec,
# which quantises a block's mean: 2 levels of noise move the largest by 4-5 levels); a thing
# entering the context moves the blocks it covers by as much as its pixels
NOISE_BLOCK_MAX = 4
# the mean move of the context's whole blocks, as a share of the bound, from which it moved as a
# whole (noise) and not in a few samples or along the border (a codec's local change); noise of
# 1 level through a codec moves it by 0.2-0.3 levels
NOISE_MIN_SHARE = 1 / 32


def blocks4(a: np.ndarray) -> np.ndarray:
    """The means of the whole 4x4 blocks of ``a`` ([h, w] or [h, w, c], uint8 or bool), rounded:
    int16 [h // 4, w // 4(, c)] (``ops.area_reduce4`` a channel at a time: NumPy's reshaped mean
    costs 15 times as much on a 1080p logo's context)."""
    h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
    if not (h and w):
        return np.zeros((h // 4, w // 4, *a.shape[2:]), np.int16)
    a = a[:h, :w].view(np.uint8)
    if a.ndim == 2:
        return ops.area_reduce4(np.ascontiguousarray(a)).astype(np.int16)
    return np.stack([ops.area_reduce4(np.ascontiguousarray(a[:, :, k]))
                     for k in range(a.shape[2])], axis=-1).astype(np.int16)


def known_blocks(values: np.ndarray, known: np.ndarray):
    """(which 4x4 blocks of ``known`` are all known, the means of ``values``' blocks there),
    or None when none is (see :func:`block_difference`)."""
    which = blocks4(known.view(np.uint8) * np.uint8(255)) == 255
    return (which, blocks4(values)[which]) if which.any() else None


def block_difference(now: np.ndarray, which: np.ndarray, means: np.ndarray) -> tuple[float, float]:
    """The mean and the largest, over the known 4x4 blocks (and the channels), of |block mean of
    ``now`` - ``means``|: a scene the same but for noise moves them by a quarter of the noise; a
    thing that enters it, by as much as the per-sample compare (and its blocks, as much as its
    pixels)."""
    d = np.abs(blocks4(now)[which] - means)
    return float(d.mean()), float(d.max(initial=0))


def unchanged(context: float, worst: float, border: float, tolerance: float, blocks) -> bool:
    """Whether a fill made for what a frame's surroundings were still fits them as it is: within
    the per-sample bounds (no border sample moved past ``tolerance``, the context on average by
    at most half of it), or moved by a camera's noise alone (:func:`only_noise`; the arguments
    are its own)."""
    return (worst <= tolerance and context <= 0.5 * tolerance) or only_noise(
        context, worst, border, tolerance, blocks)


def only_noise(context: float, worst: float, border: float, tolerance: float, blocks) -> bool:
    """Whether a fill's surroundings moved by a camera's noise alone, all in the bound's units:
    ``context`` the known samples' mean move, ``worst`` a border sample's largest (at most
    ``NOISE_MAX`` times the bound; ``WEAK_NOISE_MAX`` times it where ``context`` is at most half
    of it), ``border`` the border's mean move (at most the bound), and ``blocks()`` (asked last:
    it costs the most; None: no whole block) the block means' (mean, largest) move: at most half
    the bound on average, none past ``NOISE_BLOCK_MAX`` times it. And the whole context moved, not
    a few samples, its border alone or a part away from it: its blocks' mean move at least
    ``NOISE_MIN_SHARE`` of the bound, or (weak noise over a flat scene, whose rounded block means
    hardly move) the context at least twice that and its border alike, within a factor of 2."""
    if border > tolerance:
        return False
    if worst > (NOISE_MAX if context > 0.5 * tolerance else WEAK_NOISE_MAX) * tolerance:
        return False
    b = blocks()
    if b is None or b[0] > 0.5 * tolerance or b[1] > NOISE_BLOCK_MAX * tolerance:
        return False
    return b[0] >= NOISE_MIN_SHARE * tolerance or (
        context >= 2 * NOISE_MIN_SHARE * tolerance and 0.5 * context <= border <= 2 * context)


__all__ = ["NOISE_BLOCK_MAX", "NOISE_MAX", "NOISE_MIN_SHARE", "WEAK_NOISE_MAX", "block_difference",
           "blocks4", "known_blocks", "only_noise", "unchanged"]
