"""The pixel ops around every engine call: `prepare` before, `composite` after.

Thin face of the native module ``fastfill._C`` (C++ with OpenMP, and CUDA when built), plus the
NumPy references the tests hold the kernels to. See DESIGN.md §1.

- ``prepare``: uint8 images + masks -> float NCHW model input: RGB/255 with hole pixels set to the
  mean colour, optionally the mask as a 4th channel, reflect-padded at the bottom/right to a
  multiple of ``multiple`` (the padding is never hole).
- ``composite``: float prediction -> uint8 images: rint(pred*255) clamped inside the hole, the
  original bytes outside.

Both take ``window=(top, left, height, width)``: a crop of the images, so ROI processing needs no
copy. Bad arguments raise ``TypeError``/``ValueError`` naming the argument.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np

# Our kernels run between engine calls: idle OpenMP workers that spin would steal the engine's cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from . import _C  # noqa: E402 - after OMP_WAIT_POLICY, which OpenMP reads when it loads

Window = Optional[Tuple[int, int, int, int]]

__all__ = [
    "prepare", "composite", "prepare_reference", "composite_reference", "build_info",
    "padded_size", "cuda_available",
]


def build_info() -> dict:
    """Back-ends the native module was built with (``backends``), OpenMP threads, CUDA status."""
    return dict(_C.build_info())


def cuda_available() -> bool:
    """True when the CUDA kernels were built and a usable GPU is present."""
    info = _C.build_info()
    return "cuda" in info["backends"] and info["cuda_device_count"] > 0


def padded_size(height: int, width: int, multiple: int) -> Tuple[int, int]:
    """(Hp, Wp): ``height`` and ``width`` rounded up to ``multiple``."""
    return (-(-height // multiple) * multiple, -(-width // multiple) * multiple)


def _batched(images, masks):
    """Accept a single [H,W,3] image + [H,W] mask as a batch of one (views, no copies)."""
    single = isinstance(images, np.ndarray) and images.ndim == 3
    if single:
        images = images[None]
        if isinstance(masks, np.ndarray) and masks.ndim == 2:
            masks = masks[None]
    return images, masks, single


def _window(window: Window):
    if window is None:
        return None
    try:
        t = tuple(int(v) for v in window)
    except (TypeError, ValueError):
        raise TypeError(f"window: expected (top, left, height, width) integers, got {window!r}") from None
    if len(t) != 4:
        raise ValueError(f"window: expected 4 values (top, left, height, width), got {len(t)}")
    return t


def _dtype_name(dtype) -> str:
    try:
        return np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float16, got {dtype!r}") from None


def prepare(images: np.ndarray, masks: np.ndarray, mean: Sequence[float], multiple: int = 4, *,
            dtype=np.float32, mask_channel: bool = True, window: Window = None,
            device: str = "cpu") -> np.ndarray:
    """Model input from uint8 images and masks.

    Args:
        images: uint8 ``[N, H, W, 3]`` (or ``[H, W, 3]``) RGB, C-contiguous.
        masks: uint8 or bool ``[N, H, W]`` (or ``[H, W]``), nonzero = hole, C-contiguous.
        mean: the hole colour (r, g, b) in [0, 1] (the training set's mean).
        multiple: output height and width are rounded up to this (reflect padding).
        dtype: float32 or float16 output.
        mask_channel: 4 channels (GLCIC) when True, 3 (Context Encoder) when False.
        window: (top, left, height, width) crop of the images to prepare; None = whole image.
        device: "cpu", or "cuda" to run the CUDA kernel (copies in and out; for tests/one-offs).

    Returns:
        ``[N, C, Hp, Wp]`` array of ``dtype`` (a batch even for a single image).
    """
    images, masks, _ = _batched(images, masks)
    return _C.prepare(images, masks, [float(v) for v in _seq3(mean)], _int(multiple, "multiple"),
                      _window(window), _dtype_name(dtype), bool(mask_channel), device)


def composite(pred: np.ndarray, images: np.ndarray, masks: np.ndarray, *, window: Window = None,
              out: Optional[np.ndarray] = None, device: str = "cpu") -> np.ndarray:
    """uint8 result: the prediction inside the hole, the original bytes outside.

    Args:
        pred: float32/float16 ``[N, 3, Hp, Wp]`` in [0, 1], covering the window from its top-left.
        images, masks: the originals, as for :func:`prepare`.
        window: (top, left, height, width) crop the prediction belongs to; None = whole image.
        out: optional uint8 ``[N, h, w, 3]`` destination; may be a strided view into a larger frame
            (``frame[:, y:y+h, x:x+w]``) or the images themselves (in place).
        device: "cpu" or "cuda".

    Returns:
        ``out`` (or a new ``[N, h, w, 3]`` array); ``[h, w, 3]`` when given a single image.
    """
    images, masks, single = _batched(images, masks)
    if single and isinstance(pred, np.ndarray) and pred.ndim == 3:
        pred = pred[None]
    if single and isinstance(out, np.ndarray) and out.ndim == 3:
        out = out[None]
    res = _C.composite(pred, images, masks, _window(window), out, device)
    return res[0] if single else res


def _int(v, name) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    return int(v)


def _seq3(mean):
    vals = list(np.asarray(mean, dtype=np.float64).reshape(-1))
    if len(vals) != 3:
        raise ValueError(f"mean: expected 3 values (r, g, b), got {len(vals)}")
    return vals


# --- NumPy references: the definition the kernels are tested against --------------------------

def prepare_reference(images, masks, mean, multiple=4, *, dtype=np.float32, mask_channel=True,
                      window: Window = None) -> np.ndarray:
    """NumPy definition of :func:`prepare` (slow; for tests and benchmarks)."""
    images, masks, _ = _batched(np.asarray(images), np.asarray(masks))
    if window is not None:
        t, l, h, w = window
        images, masks = images[:, t:t + h, l:l + w], masks[:, t:t + h, l:l + w]
    n, h, w = masks.shape
    hole = masks != 0
    rgb = images.astype(np.float32) / np.float32(255)
    rgb = np.where(hole[..., None], np.asarray(mean, dtype=np.float32), rgb)
    chans = [rgb.transpose(0, 3, 1, 2), hole[:, None].astype(np.float32)]
    x = np.concatenate(chans if mask_channel else chans[:1], axis=1)
    hp, wp = padded_size(h, w, multiple)
    x = np.pad(x, ((0, 0), (0, 0), (0, hp - h), (0, wp - w)), mode="reflect")
    if mask_channel:
        x[:, 3, h:, :] = 0
        x[:, 3, :, w:] = 0
    return x.astype(dtype)


def composite_reference(pred, images, masks, *, window: Window = None) -> np.ndarray:
    """NumPy definition of :func:`composite` (slow; for tests and benchmarks)."""
    images, masks, single = _batched(np.asarray(images), np.asarray(masks))
    pred = np.asarray(pred)
    if single and pred.ndim == 3:
        pred = pred[None]
    if window is not None:
        t, l, h, w = window
        images, masks = images[:, t:t + h, l:l + w], masks[:, t:t + h, l:l + w]
    n, h, w = masks.shape
    p = pred[:, :, :h, :w].astype(np.float32).transpose(0, 2, 3, 1) * np.float32(255)
    p = np.clip(np.rint(np.nan_to_num(p, nan=0.0)), 0, 255).astype(np.uint8)
    res = np.where((masks != 0)[..., None], p, images)
    return res[0] if single else res
