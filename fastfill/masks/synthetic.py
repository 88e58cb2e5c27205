"""Mask generators: fn(rng, height, width) -> bool [height, width], True = hole.

Kinds (factory `make_mask_generator(kind)`, table `MASKS`):
  center    the Context Encoder's central square: by default its hole box scaled to the shorter
            side (50 px of 128: the 64 px prediction box less the 7 px overlap on each side, the
            constants below), or any `side`
  rect      GLCIC's random rectangle: each side uniform in [96, 128] px at a 256 crop (scaled with
            the crop), placed uniformly inside the image
  freeform  brush strokes (random walks drawn with a round brush) plus a few blobs (ellipses), for
            object-removal-like holes; sizes scale with the crop
  object    one object-sized smooth blob (a star-shaped polygon whose radius is a smooth random
            function of the angle, elongated at a random angle) covering 6-20 % of the crop, wholly inside it with a margin:
            the hole left by removing one object
  mixed     rect or freeform with equal probability
All are deterministic functions of the numpy Generator they are given.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# The Context Encoder's geometry (Pathak et al. 2016, with the paper's 7 px overlap): a 128 px
# image whose central 64 px box is predicted, the box shrunk by the overlap hidden. Defined here,
# without torch, because the `center` mask is that hole; train.models builds the net from them.
CE_IMAGE_SIZE = 128
CE_PRED_SIZE = 64
CE_OVERLAP = 7


def center_mask(rng, h, w, side=None):
    """A centred square of ``side`` px (default: the Context Encoder's hole box at this size)."""
    if side is None:
        side = round(min(h, w) * (CE_PRED_SIZE - 2 * CE_OVERLAP) / CE_IMAGE_SIZE)
    m = np.zeros((h, w), bool)
    t, l = (h - side) // 2, (w - side) // 2
    m[t:t + side, l:l + side] = True
    return m


def rect_mask(rng, h, w, lo=None, hi=None):
    """One axis-aligned rectangle, sides uniform in [lo, hi] (default 96..128 scaled to min(h,w)/256)."""
    s = min(h, w) / 256
    lo = max(1, round(96 * s)) if lo is None else lo
    hi = max(lo, round(128 * s)) if hi is None else hi
    rh, rw = (int(rng.integers(lo, hi + 1)) for _ in range(2))
    rh, rw = min(rh, h), min(rw, w)
    t = int(rng.integers(0, h - rh + 1))
    l = int(rng.integers(0, w - rw + 1))
    m = np.zeros((h, w), bool)
    m[t:t + rh, l:l + rw] = True
    return m


def freeform_mask(rng, h, w, max_strokes=4, max_blobs=2):
    """Brush strokes (1..max_strokes random walks, 4..12 vertices, width 10..40 px at 256) plus
    0..max_blobs ellipses. Never empty."""
    s = min(h, w) / 256
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        width = int(rng.integers(10, 41) * s) or 1
        angle = float(rng.uniform(0, 2 * math.pi))
        pts = [(x, y)]
        for _ in range(int(rng.integers(4, 13))):
            angle += float(rng.uniform(-1.0, 1.0))
            length = float(rng.uniform(10, 40)) * s
            x = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            pts.append((x, y))
        d.line(pts, fill=255, width=width)
        r = width / 2
        for px, py in pts:  # round joints and caps
            d.ellipse((px - r, py - r, px + r, py + r), fill=255)
    for _ in range(int(rng.integers(0, max_blobs + 1))):
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        rx, ry = (float(rng.uniform(8, 32)) * s for _ in range(2))
        d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    m = np.asarray(img) > 0
    if not m.any():
        m[h // 2, w // 2] = True
    return m


def object_mask(rng, h, w, lo=0.06, hi=0.20, margin=None):
    """One smooth blob covering a fraction U(lo, hi) of the h x w crop, at least `margin` px
    (default 4 % of the shorter side, >= 1) from every edge. Its outline is the polar curve
    r(t) = R exp(sum_k a_k cos(k t + p_k)), k = 1..4, a_k ~ U(-0.35, 0.35) / k (smooth, star-shaped
    around its centre), stretched to an aspect U(1, 3) at a random angle, R set for the drawn
    area; a blob too long for the crop is scaled down to fit (so a few cover less than `lo`).
    Never empty."""
    margin = max(1, round(0.04 * min(h, w))) if margin is None else margin
    frac = float(rng.uniform(lo, hi))
    t = np.linspace(0, 2 * math.pi, 180, endpoint=False)
    k = np.arange(1, 5)[:, None]
    amp = rng.uniform(-0.35, 0.35, (4, 1)) / k
    phase = rng.uniform(0, 2 * math.pi, (4, 1))
    shape = np.exp((amp * np.cos(k * t + phase)).sum(0))  # r(t) / R
    # elongated (aspect U(1, 3): a fruit, a bottle, a spoon) at a random angle
    stretch, turn = math.sqrt(float(rng.uniform(1.0, 3.0))), float(rng.uniform(0, math.pi))
    u, v = shape * np.cos(t) * stretch, shape * np.sin(t) / stretch
    xs, ys = u * math.cos(turn) - v * math.sin(turn), u * math.sin(turn) + v * math.cos(turn)
    # the area of the polygon with unit R (shoelace), then R for the target area
    unit_area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
    r = math.sqrt(frac * h * w / unit_area)
    room_x, room_y = (w - 2 * margin - 1) / (xs.max() - xs.min()), (h - 2 * margin - 1) / (ys.max() - ys.min())
    r = max(0.5, min(r, room_x, room_y))
    xs, ys = xs * r, ys * r
    # centre: uniform over the positions that keep the blob `margin` px inside
    lo_x, hi_x = margin - xs.min(), w - 1 - margin - xs.max()
    lo_y, hi_y = margin - ys.min(), h - 1 - margin - ys.max()
    cx = float(rng.uniform(lo_x, hi_x)) if hi_x > lo_x else (lo_x + hi_x) / 2
    cy = float(rng.uniform(lo_y, hi_y)) if hi_y > lo_y else (lo_y + hi_y) / 2
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon([(float(x + cx), float(y + cy)) for x, y in zip(xs, ys)], fill=255)
    m = np.asarray(img) > 0
    if not m.any():
        m[h // 2, w // 2] = True
    return m


def mixed_mask(rng, h, w):
    return rect_mask(rng, h, w) if rng.random() < 0.5 else freeform_mask(rng, h, w)


MASKS = {"center": center_mask, "rect": rect_mask, "freeform": freeform_mask, "object": object_mask,
         "mixed": mixed_mask}


def make_mask_generator(kind: str):
    """The generator for `kind` (center|rect|freeform|object|mixed); raises ValueError on unknown kinds."""
    try:
        return MASKS[kind]
    except KeyError:
        raise ValueError(f"unknown mask kind {kind!r}; known: {', '.join(MASKS)}") from None


def hole_centers(masks: np.ndarray) -> np.ndarray:
    """[N, 2] (row, col) centre of each mask's bounding box; masks bool [N, H, W]."""
    out = np.zeros((len(masks), 2), np.int64)
    for i, m in enumerate(masks):
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        if len(rows):
            out[i] = ((rows[0] + rows[-1] + 1) // 2, (cols[0] + cols[-1] + 1) // 2)
        else:
            out[i] = (m.shape[0] // 2, m.shape[1] // 2)
    return out


__all__ = ["center_mask", "rect_mask", "freeform_mask", "object_mask", "mixed_mask", "MASKS", "make_mask_generator",
           "hole_centers", "CE_IMAGE_SIZE", "CE_PRED_SIZE", "CE_OVERLAP"]
