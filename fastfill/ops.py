"""The pixel ops around every engine call: `prepare` before, `composite` after.

Thin face of the native module ``fastfill._C`` (C++ with OpenMP, and CUDA when built), plus the
NumPy references the tests hold the kernels to. See docs/ARCHITECTURE.md, Data flow.

- ``prepare``: uint8 images + masks -> float NCHW model input: RGB/255 with hole pixels set to a
  prefill (one of :data:`FILLS`: ``mean``, one colour; ``harmonic``, Laplace's equation solved
  inside each hole component with the known pixels around it as boundary values; ``patch``,
  PatchMatch completion from the known pixels around each hole), optionally the mask as a
  4th channel, reflect-padded at the bottom/right to a multiple of ``multiple`` (the padding is
  never hole).
- ``composite``: float prediction -> uint8 images: rint(pred*255) clamped inside the hole, the
  original bytes outside.

Both take ``window=(top, left, height, width)``: a crop of the images, so ROI processing needs no
copy. Bad arguments raise ``TypeError``/``ValueError`` naming the argument.

:func:`fill` is the same fills on their own, uint8 in and out, with no model.
"""

from __future__ import annotations

import functools
import numbers
import os
from typing import Optional, Sequence, Tuple

import numpy as np

# Our kernels run between engine calls: idle OpenMP workers that spin would steal the engine's cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from . import _C  # noqa: E402 - after OMP_WAIT_POLICY, which OpenMP reads when it loads
from .fills import FILLS, get as _get_fill  # noqa: E402

Window = Optional[Tuple[int, int, int, int]]

__all__ = [
    "prepare", "composite", "prepare_reference", "composite_reference", "build_info",
    "padded_size", "cuda_available", "fill", "fill_reference", "FILLS", "PatchState",
    "masked_difference", "masked_difference_reference", "area_reduce4", "area_reduce4_reference",
    "yuv_coefficients", "yuv_to_rgb", "yuv_to_rgb_reference",
    "seamless",
]

# What the patch fill carries from one video frame to the next (opaque; see fill(state=)).
PatchState = _C.PatchState


def _check_kernels_match_fills(native: dict) -> None:
    """The kernels dispatch the fills by name: their list (``_C.FILLS``, name -> option names)
    must be :data:`FILLS`, or a method would reach a kernel that does not know it."""
    have = {name: sorted(opts) for name, opts in native.items()}
    want = {name: sorted(f.options) for name, f in FILLS.items()}
    if list(have.items()) != list(want.items()):
        raise ImportError(f"fastfill._C fills {have} differ from fastfill.fills.FILLS {want}; "
                          "rebuild the native module (pip install -e .) after changing either")


_check_kernels_match_fills(_C.FILLS)


def build_info() -> dict:
    """Back-ends the native module was built with (``backends``), OpenMP threads, CUDA status."""
    info = dict(_C.build_info())
    if "cuda" in info["backends"] and info["cuda_device_count"] == 0 and not nvidia_driver_present():
        # The runtime's own words here ("driver version is insufficient") come from the toolkit's
        # stub library and send people looking for a driver update on a machine with no GPU.
        info["cuda_runtime_status"] = "no NVIDIA GPU/driver found"
    return info


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA kernel driver is loaded (Linux, WSL); True where that cannot be told."""
    import sys

    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg"))


def cuda_available() -> bool:
    """True when the CUDA kernels were built and a usable GPU is present."""
    info = _C.build_info()
    return "cuda" in info["backends"] and info["cuda_device_count"] > 0


def _device(device: str) -> str:
    """``device`` for the kernels: "cuda" built but with no usable GPU is a RuntimeError saying why
    (the CUDA runtime's own words name a driver version on a machine with no GPU at all)."""
    if device == "cuda" and not cuda_available():
        info = build_info()
        if "cuda" in info["backends"]:  # (built without: the kernels' own ValueError says so)
            why = info.get("cuda_runtime_status") or "no usable CUDA GPU"
            raise RuntimeError(f"device='cuda': {why}; use device='cpu'")
    return device


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
        vals = tuple(window)
    except TypeError:
        vals = None
    if vals is None or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in vals):
        raise TypeError(f"window: expected (top, left, height, width) integers, got {window!r}")
    t = tuple(int(v) for v in vals)
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
            device: str = "cpu", fill: str = "mean", fill_options: Optional[dict] = None,
            fill_state: Optional["PatchState"] = None) -> np.ndarray:
    """Model input from uint8 images and masks.

    Args:
        images: uint8 ``[N, H, W, 3]`` (or ``[H, W, 3]``) RGB, C-contiguous.
        masks: uint8 or bool ``[N, H, W]`` (or ``[H, W]``), nonzero = hole, C-contiguous.
        mean: the hole colour (r, g, b) in [0, 1] (the training set's mean); with
            ``fill="harmonic"`` only a window that is all hole (no boundary) gets it.
        multiple: output height and width are rounded up to this (reflect padding).
        dtype: float32 or float16 output.
        mask_channel: 4 channels (GLCIC) when True, 3 (Context Encoder) when False.
        window: (top, left, height, width) crop of the images to prepare; None = whole image.
        device: "cpu", or "cuda" to run the CUDA kernel (copies in and out; for tests/one-offs).
            The harmonic solve itself always runs on the CPU (multithreaded, GIL released).
        fill: the prefill of the hole pixels, a name in :data:`FILLS` (see :func:`fill`). Each
            hole component is filled inside the window, with no flux across the window's border.
            The harmonic and patch fills run on the CPU whatever ``device`` is.
        fill_options: options of the fill (see :func:`fill`); None = its defaults.
        fill_state: a :class:`PatchState` carried across the frames of a video (see :func:`fill`).

    Returns:
        ``[N, C, Hp, Wp]`` array of ``dtype`` (a batch even for a single image).
    """
    images, masks, _ = _batched(images, masks)
    return _C.prepare(images, masks, [float(v) for v in _seq3(mean)], _int(multiple, "multiple"),
                      _window(window), _dtype_name(dtype), bool(mask_channel), _device(device),
                      *_fill(fill, fill_options), fill_state)


def fill(image: np.ndarray, mask: np.ndarray, method: str = "harmonic", *,
         mean: Optional[Sequence[float]] = None, window: Window = None,
         state: Optional["PatchState"] = None, **options) -> np.ndarray:
    """Classical fill: the image with its hole pixels filled, uint8, no model involved.

    ``method="harmonic"`` solves Laplace's equation inside each 4-connected hole component with
    the known pixels next to it as boundary values (the smoothest surface that meets its border;
    no flux across the image border), by multigrid-preconditioned conjugate gradients to a
    relative residual of 1e-5 (within ~3e-5 of the exact solution). ``method="mean"`` paints the
    hole one colour.

    ``method="patch"`` completes each 4-connected hole component with texture from the known
    pixels of its search box (its bounding box grown by ``radius``): multi-scale PatchMatch
    nearest-neighbour fields (propagation and random search) inside an EM loop with weighted
    patch voting, coarse to fine, started from the harmonic fill; with ``blend`` > 0 (default 10)
    the result's low frequencies (below a three-box-blur low-pass of that radius) are the harmonic
    fill's, so copied texture takes the hole's shading. The patch distance also compares a
    textureness channel (the mean absolute difference of neighbouring known pixels within
    ``texture_radius``; weight ``texture`` percent), so a hole in a textured region is not
    matched to smooth sources; inside the hole it is the harmonic interpolation of the values
    around it times ``texture_gain`` percent (190: the mean textureness of a sparse texture, a
    star field, is below most of its patches', and a hole asked for the mean is matched to its
    empty sky). A pyramid level whose hole cells
    times candidate sources is at most ``onion`` starts from an onion peel (ring by ring from the
    known pixels inwards, each cell from the source patch closest over its known and filled
    cells), so the structure around the hole continues into it. Each averaged vote adds
    completeness votes (weight ``complete`` percent): every known patch within one patch side of
    the hole votes its pixels into the hole patch closest to it, so the fill shows the patterns
    its surroundings show (a star field's stars, not only its empty sky). With ``poisson`` = 1 the
    component is rebuilt from its copied differences instead of blended (each pixel's differences
    to its neighbours are its source's; Poisson's equation with the known pixels as boundary): a
    smooth gradient comes back smooth, where the blend leaves seams between copies taken from
    different places on it. Deterministic: the same input
    and ``seed`` give the same bytes on any thread count, and a window holding each hole's search
    box gives the same bytes as the whole image. A component with no hole-free patch in its box,
    or no thicker than ``thin`` (4-connected erosions it survives), keeps the harmonic fill.

    Args:
        image: uint8 ``[H, W, 3]`` or ``[N, H, W, 3]``.
        mask: uint8/bool ``[H, W]`` or ``[N, H, W]``, nonzero = hole.
        method: a name in :data:`FILLS` ("harmonic", "mean" or "patch").
        mean: the colour (r, g, b in [0, 1]; a value outside is clamped to it) for "mean", and
            for a hole with no boundary (an all-hole image or window); None = mid-grey
            (0.5, 0.5, 0.5).
        window: (top, left, height, width): fill only this crop and return it.
        state: for the frames of a video, one :class:`PatchState` passed with each frame in
            order: a hole component whose box, size and mask are the same as in the previous
            frame starts from that frame's nearest-neighbour field and refines it (one EM round
            at the finest level) instead of searching from scratch, so a static background under
            a static mask keeps its sources (no flicker beyond the frames' own noise); one whose
            carried field fits, over the colours, more than twice as badly as when the field was
            last completed from scratch (a cut, a pan) is completed from scratch again.
            The result then depends on the frames before; None (the default) = each image alone.
            The state keeps the fields of the components this call completed, and forgets the
            rest (a moving hole's component is new every frame: its fields would pile up), so
            give each call whole frames, not one window of a frame at a time; a call whose
            images are all hole leaves it as it was.
        **options: the method's options (``FILLS[method].options`` lists them with their
            defaults). For "patch": ``patch`` (odd side, 3-15), ``levels`` (most pyramid levels,
            0 = as the hole's size calls for), ``iterations`` (EM rounds: 1 + iterations x l at
            level l, 0 = finest), ``passes``
            (PatchMatch passes per round), ``radius`` (search box margin, px), ``thin``,
            ``blend`` (low-pass radius, px; 0 = the pure patch result), ``blend_limit`` (the
            most levels the blend moves a pixel either way, 0 = no limit), ``detail`` (percent of
            the way from the harmonic fill to the patch result, 0-100), ``detail_depth`` (0 = the
            same everywhere; r > 0: all of the detail on the hole's first ring, ``detail`` from
            ring r + 1 on, linearly between; not with ``gate``), ``gate`` (0 = off; k > 0:
            each pixel's copied detail scaled by min(1, sqrt(k x the surroundings' detail energy /
            its own)), so a fill carries no more pattern than the known pixels around it show;
            pixels over 6 rings deep keep more; ``detail`` then applies on top), ``texture`` (weight of
            the textureness channel, percent; 0 = colours only), ``texture_radius`` (px),
            ``texture_gain`` (percent of the interpolated textureness the hole asks for, 0-1000),
            ``onion`` (the most cells x sources a level peels; 0 = none), ``complete`` (weight
            of the completeness votes, percent, 0-1000; 0 = none), ``poisson`` (1 = the
            gradient-domain rebuild instead of ``blend``; 0, the default = the blend), ``seed``.

    Returns:
        uint8 array of the image's (or window's) shape; pixels outside the hole are the input's.
    """
    images, masks, single = _batched(np.asarray(image), np.asarray(mask))
    if mean is None:
        mean = (0.5, 0.5, 0.5)
    mean, window, (name, opts) = [float(v) for v in _seq3(mean)], _window(window), _fill(method, options)
    if state is not None and not isinstance(state, PatchState):
        raise TypeError(f"state must be a fastfill.ops.PatchState or None, got {type(state).__name__}")
    if _all_hole(images, masks, window):
        res = _constant_fill(images, masks, mean, window, name, opts)
    else:
        res = _C.fill(images, masks, mean, window, name, opts, state)
        if isinstance(state, PatchState):
            state.prune()  # (what this call did not complete cannot be the next frame's start)
    return res[0] if single else res


def _all_hole(images, masks, window: Window) -> bool:
    """Whether valid arguments leave no known pixel in the window (anything else, bad arguments
    included, goes to the kernel, which says what is wrong)."""
    if not (isinstance(images, np.ndarray) and isinstance(masks, np.ndarray)
            and images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3
            and images.size and images.flags.c_contiguous
            and masks.dtype in (np.uint8, np.bool_) and masks.shape == images.shape[:3]
            and masks.flags.c_contiguous):
        return False
    n, H, W = masks.shape
    t, l, h, w = window or (0, 0, H, W)
    if t < 0 or l < 0 or h < 1 or w < 1 or t + h > H or l + w > W:
        return False
    m = masks[:, t:t + h, l:l + w]
    return bool(m[0, 0, 0]) and bool(m.all())


def _constant_fill(images, masks, mean, window: Window, name: str, opts: dict) -> np.ndarray:
    """An all-hole window has no boundary: every fill gives the mean colour there (the solvers
    took +540 MB and 0.6 s on a 4K frame to find it). The kernel fills one all-hole pixel with the
    same arguments, so its checks and its rounding stay the only ones."""
    px = _C.fill(np.zeros((1, 1, 1, 3), np.uint8), np.ones((1, 1, 1), np.uint8), mean, None, name, opts,
                 None)[0, 0, 0]
    n, H, W = masks.shape
    _, _, h, w = window or (0, 0, H, W)
    out = np.empty((n, h, w, 3), np.uint8)
    out[...] = px
    return out


def _fill(name, options=None) -> tuple[str, dict]:
    """(name, options with defaults) for the kernels; ValueError for an unknown name or option."""
    f = _get_fill(name)
    return f.name, f.resolve(options)


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
    res = _C.composite(pred, images, masks, _window(window), out, _device(device))
    return res[0] if single else res


def masked_difference(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> int:
    """The sum of ``|a - b|`` over the pixels where ``mask`` is nonzero, every channel, exact.

    ``a``, ``b``: uint8 ``[h, w, c]`` of any strides (``a`` may be a view into a frame);
    ``mask``: uint8 or bool ``[h, w]``. One pass with the GIL released (a held video fill compares
    the known pixels around its hole with this every frame). Reference:
    :func:`masked_difference_reference`."""
    return int(_C.masked_difference(a, b, mask))


def area_reduce4(plane: np.ndarray) -> np.ndarray:
    """A uint8 plane ``[h, w]`` (``h``, ``w`` multiples of 4; rows of any stride, such as a
    decoded frame's luma) reduced 4x: each 4x4 block's mean, rounded half to even, which is
    ``cv2.resize(plane, (w // 4, h // 4), interpolation=cv2.INTER_AREA)`` byte for byte, in a
    third of its time on one thread (video motion reduces every frame so).
    Reference: :func:`area_reduce4_reference`."""
    return _C.area_reduce4(plane)


# Kr, Kb of each colour matrix by its number (FFmpeg's AVColorSpace), as swscale reads a YUV
# frame's: BT.709, FCC, SMPTE 240M, BT.2020; anything else (BT.601's 470BG and 170M, unspecified,
# 0) BT.601.
_MATRICES = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 7: (0.212, 0.087), 9: (0.2627, 0.0593),
             10: (0.2627, 0.0593)}
_BT601 = (0.299, 0.114)


@functools.lru_cache(maxsize=64)  # (asked for every box of every frame converted)
def yuv_coefficients(colorspace: int | None, full_range: bool) -> tuple[int, ...]:
    """The 16.16 fixed-point coefficients of :func:`yuv_to_rgb` for a colour matrix
    (``colorspace``: FFmpeg's number, as ``VideoFrame.colorspace`` gives it; unknown or None:
    BT.601, as swscale) and range (full: Y 0..255; else Y 16..235, chroma 16..240): {luma gain,
    luma offset, chroma midpoint, V to R, U to G, V to G, U to B}."""
    kr, kb = _MATRICES.get(int(colorspace or 2), _BT601)
    kg = 1 - kr - kb
    cy, off, cc = (1.0, 0, 1.0) if full_range else (255 / 219, 16, 255 / 224)
    terms = (2 * (1 - kr) * cc, 2 * kb * (1 - kb) / kg * cc, 2 * kr * (1 - kr) / kg * cc,
             2 * (1 - kb) * cc)
    return (int(round(cy * 65536)), off, 128) + tuple(int(round(t * 65536)) for t in terms)


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, coefficients, out=None) -> np.ndarray:
    """8-bit planar YUV to uint8 RGB ``[h, w, 3]``, rounded to the nearest level.

    ``y``: uint8 ``[h, w]``; ``u``, ``v``: uint8 ``[h, w]`` (4:4:4) or with its height and/or
    width divided by 2 or 4, rounded up (4:2:2, 4:2:0, 4:4:0, 4:1:1, 4:1:0), each sample
    covering its block; rows of any stride (a decoded frame's planes, or a box of them starting
    on a chroma block). ``coefficients``: :func:`yuv_coefficients`. ``out``: an RGB array to
    write (rows of any stride), or None for a new one. One thread, the GIL released. swscale's
    own 8-bit RGB truncates (about 1.1 levels dark from 8-bit 4:2:0; its exact path costs 14x):
    the video command reads with this (benchmarks/bench_frames.py).
    Reference: :func:`yuv_to_rgb_reference`."""
    return _C.yuv_to_rgb(y, u, v, list(coefficients), out)


def seamless(image: np.ndarray, hole: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` laid into the hole of ``image`` without a seam (Poisson image editing, Pérez et
    al. 2003): the hole takes the solution of Poisson's equation whose guidance is the discrete
    Laplacian of ``values`` and whose boundary is ``image``'s known pixels, so it keeps the
    detail of ``values`` and meets its border exactly; a constant or smooth mismatch between
    ``values`` and the border is spread smoothly over the hole. The harmonic fill's own solver
    (no flux across the array's edge). ``image`` uint8 [h, w, 3]; ``hole`` bool [h, w];
    ``values`` [h, w, 3] of any real type (read at the hole and its 4-neighbours). Returns
    uint8 [h, w, 3]: ``image`` with its hole set."""
    if np.asarray(image).dtype != np.uint8:  # (a cast would wrap 300 to 44 outside the hole)
        raise TypeError(f"seamless: image must be uint8, got {np.asarray(image).dtype}")
    image = np.ascontiguousarray(image)
    hole = np.asarray(hole, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or hole.shape != image.shape[:2] \
            or np.shape(values) != image.shape:
        raise ValueError("seamless: image [h, w, 3] uint8, hole [h, w], values [h, w, 3]")
    v = np.asarray(values, dtype=np.float32)
    h, w = hole.shape
    lap = np.zeros((h, w, 3), np.float32)  # sum over the in-array 4-neighbours q of v_p - v_q
    lap[1:] += v[1:] - v[:-1]
    lap[:-1] += v[:-1] - v[1:]
    lap[:, 1:] += v[:, 1:] - v[:, :-1]
    lap[:, :-1] += v[:, :-1] - v[:, 1:]
    lap *= np.float32(1 / 255)
    res = _C.poisson_fill(image, hole.view(np.uint8), lap)
    out = image.copy()
    out[hole] = np.clip(np.rint(res[hole] * 255), 0, 255).astype(np.uint8)
    return out


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

def fill_reference(image, mask, mean=(0.5, 0.5, 0.5)) -> np.ndarray:
    """SciPy definition of the harmonic fill: float64 ``[H, W, 3]`` in [0, 1], hole pixels solved
    jointly by a sparse direct solve (5-point Laplacian, known 4-neighbours as Dirichlet values, no
    flux across the border); an all-hole image is ``mean``. Slow; for tests and benchmarks."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    img = np.asarray(image, dtype=np.float64) / 255.0
    hole = np.asarray(mask) != 0
    out = img.copy()
    h, w = hole.shape
    if hole.all():
        out[:] = np.asarray(mean, dtype=np.float64)
        return out
    idx = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(hole)
    n = ys.size
    if n == 0:
        return out
    idx[ys, xs] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.zeros(n)]
    b = np.zeros((n, 3))
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        vals[0] = vals[0] + inside
        k = np.nonzero(inside)[0]
        nb = idx[ny[k], nx[k]]
        unknown = nb >= 0
        rows.append(k[unknown])
        cols.append(nb[unknown])
        vals.append(-np.ones(int(unknown.sum())))
        kk = k[~unknown]
        np.add.at(b, kk, img[ny[kk], nx[kk]])
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out[ys, xs] = spla.spsolve(A, b).reshape(n, 3)
    return out


def area_reduce4_reference(plane) -> np.ndarray:
    """NumPy reference of :func:`area_reduce4`."""
    p = np.asarray(plane, np.uint8)
    h, w = p.shape
    sums = p.reshape(h // 4, 4, w // 4, 4).sum(axis=(1, 3), dtype=np.int64)
    return np.rint(sums / 16.0).astype(np.uint8)  # (exact halves: rint rounds them to even)


def yuv_to_rgb_reference(y, u, v, coefficients) -> np.ndarray:
    """NumPy reference of :func:`yuv_to_rgb` (the same integer arithmetic)."""
    y, u, v = (np.asarray(p, np.int64) for p in (y, u, v))
    h, w = y.shape
    # (the smallest factor that gives the chroma's size, as the kernel: at 1 every one does)
    sy = next((f for f in (1, 2, 4) if -(-h // f) == u.shape[0]), None)
    sx = next((f for f in (1, 2, 4) if -(-w // f) == u.shape[1]), None)
    if sy is None or sx is None or v.shape != u.shape:
        raise ValueError(f"u, v: expected the luma's size {y.shape} or it divided by 2 or 4 "
                         f"(rounded up), got {u.shape} and {v.shape}")
    gain, off, mid, rv, gu, gv, bu = coefficients
    u = u.repeat(sy, 0).repeat(sx, 1)[:h, :w] - mid
    v = v.repeat(sy, 0).repeat(sx, 1)[:h, :w] - mid
    lum = gain * (y - off) + (1 << 15)
    rgb = np.stack([lum + rv * v, lum - gu * u - gv * v, lum + bu * u], -1) >> 16
    return np.clip(rgb, 0, 255).astype(np.uint8)


def masked_difference_reference(a, b, mask) -> int:
    """:func:`masked_difference` in NumPy."""
    return int(np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64))[np.asarray(mask) != 0].sum())


def prepare_reference(images, masks, mean, multiple=4, *, dtype=np.float32, mask_channel=True,
                      window: Window = None, fill: str = "mean") -> np.ndarray:
    """NumPy definition of :func:`prepare` (slow; for tests and benchmarks)."""
    images, masks, _ = _batched(np.asarray(images), np.asarray(masks))
    if window is not None:
        t, l, h, w = window
        images, masks = images[:, t:t + h, l:l + w], masks[:, t:t + h, l:l + w]
    n, h, w = masks.shape
    hole = masks != 0
    rgb = images.astype(np.float32) / np.float32(255)
    if _fill(fill)[0] == "patch":
        raise ValueError("prepare_reference: no patch prefill here (patch_reference holds the kernel "
                         "to its definition, from the kernel's own harmonic start)")
    if _fill(fill)[0] == "harmonic":
        solved = np.stack([fill_reference(im, m, mean) for im, m in zip(images, masks)])
        rgb = np.where(hole[..., None], solved.astype(np.float32), rgb)
    else:
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
