"""The Inpainter: the one place that orchestrates prepare -> engine -> composite (DESIGN.md §1).

Planning. Every image becomes one or more *jobs*: a window (top, left, height, width) of the image
that goes through the model on its own. Without ROI the window is the whole image. With ROI, each
connected hole region (regions whose crops would overlap are merged) gets a window of the hole's
bounding box plus a margin of half the model's receptive field, clipped to the image, with its
origin on the model's stride grid (a multiple of ``meta.multiple``, DESIGN.md §4) — inside the hole
the prediction then equals the full-frame one up to float rounding. Windows never overlap, so each
job's result is written straight back into the output frame (``ops.composite(out=view)``).

Batching. Jobs whose padded sizes agree share ``engine.infer`` calls of up to ``batch_size``
(fewer where the engine's ``accepts`` refuses the larger batch, e.g. a TensorRT profile).

Engine limits. An engine may refuse shapes it cannot run (``engine.accepts(shape)`` returns the
reason; e.g. outside a TensorRT plan's profiles). ``plan`` falls back to the whole frame when the
engine refuses an ROI window but takes the frame, and ``check`` raises :class:`InputError` for an
image whose windows the engine refuses, so that such an image fails on its own, before any batch.

Stage timing. ``batch(..., timings=d)`` adds the seconds spent in each stage to ``d``: ``plan``
(validation and ROI planning), ``prepare``, ``infer`` and ``composite`` (including the copy of the
input that becomes the output). ``fastfill bench`` reports these.

Streaming. :meth:`Inpainter.stream` runs a reader thread (pulls frames and masks from the caller's
iterators, which may decode lazily), an inference thread, and the caller's loop (which may encode),
joined by bounded queues: a few frames in flight, order kept, the first error of any stage raised
in the caller with its original traceback.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import ops, pipeline
from .errors import EngineError, FastfillError, InputError

# ROI is used when the windows cover at most this fraction of the frame (else one full-frame job).
ROI_MAX_FRACTION = 0.6
# Cell size (px) of the coarse grid on which hole regions are found (holes closer than this merge).
ROI_CELL = 8
# Bounds of the resource options (the CLI's flags use the same): past them a typo exhausts the
# machine instead of doing more work.
MAX_THREADS, MAX_BATCH = 256, 256


@dataclass(frozen=True)
class Job:
    """One model call's worth of work: image ``index``, window (top, left, height, width)."""

    index: int
    top: int
    left: int
    height: int
    width: int

    @property
    def window(self) -> tuple[int, int, int, int]:
        return (self.top, self.left, self.height, self.width)


# -- ROI planning -------------------------------------------------------------------------------

def hole_regions(mask: np.ndarray, cell: int = ROI_CELL) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (y0, x0, y1, x1; end exclusive) of the 8-connected hole regions of ``mask``.

    Found on a coarse grid of ``cell`` x ``cell`` blocks (a block is set when any pixel in it is),
    so holes less than about a cell apart are one region and the boxes may be up to one cell
    larger than the hole. Pure NumPy: label propagation with pointer jumping.
    """
    m = np.asarray(mask).astype(bool, copy=False)
    h, w = m.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), bool)
    padded[:h, :w] = m
    # rows of cells first, then columns: two contiguous reductions (6x faster than axis=(1, 3))
    coarse = padded.reshape(gh, cell, gw * cell).any(axis=1).reshape(gh, gw, cell).any(axis=2)
    ys, xs = np.nonzero(coarse)
    if ys.size == 0:
        return []
    n = ys.size
    # label image: index of each set cell, -1 elsewhere (with a 1-cell border to avoid bounds checks)
    lab = np.full((gh + 2, gw + 2), -1, np.int64)
    lab[ys + 1, xs + 1] = np.arange(n)
    # neighbour pairs (8-connectivity; 4 directions are enough, each pair is seen once)
    a_list, b_list = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        nb = lab[ys + 1 + dy, xs + 1 + dx]
        ok = nb >= 0
        a_list.append(np.arange(n)[ok])
        b_list.append(nb[ok])
    a = np.concatenate(a_list)
    b = np.concatenate(b_list)
    parent = np.arange(n)
    while True:  # min-label propagation over edges + pointer jumping; converges in few rounds
        pa, pb = parent[a], parent[b]
        low = np.minimum(pa, pb)
        new = parent.copy()
        np.minimum.at(new, pa, low)
        np.minimum.at(new, pb, low)
        while True:
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, parent):
            break
        parent = new
    roots, label = np.unique(parent, return_inverse=True)
    k = roots.size
    y0 = np.full(k, gh, np.int64)
    x0 = np.full(k, gw, np.int64)
    y1 = np.zeros(k, np.int64)
    x1 = np.zeros(k, np.int64)
    np.minimum.at(y0, label, ys)
    np.minimum.at(x0, label, xs)
    np.maximum.at(y1, label, ys + 1)
    np.maximum.at(x1, label, xs + 1)
    boxes = []
    for i in range(k):
        boxes.append((int(y0[i]) * cell, int(x0[i]) * cell,
                      min(int(y1[i]) * cell, h), min(int(x1[i]) * cell, w)))
    return boxes


def roi_windows(mask: np.ndarray, margin: int, multiple: int = 4,
                cell: int = ROI_CELL) -> list[tuple[int, int, int, int]]:
    """Non-overlapping windows (top, left, height, width) that cover every hole pixel of ``mask``
    with at least ``margin`` pixels of context on every side (clipped to the image).

    The origin of each window is a multiple of ``multiple`` (the net's stride grid); its far edge
    is extended to a multiple where the image allows, so less of it is reflect padding. Windows
    that would overlap are merged into their bounding window until none do.
    """
    h, w = mask.shape
    boxes = []
    for y0, x0, y1, x1 in hole_regions(mask, cell):
        boxes.append(_expand((y0 - margin, x0 - margin, y1 + margin, x1 + margin), h, w, multiple))
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        boxes.sort()
        out: list[tuple[int, int, int, int]] = []
        for b in boxes:
            for i, o in enumerate(out):
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    out[i] = _expand((min(o[0], b[0]), min(o[1], b[1]), max(o[2], b[2]),
                                      max(o[3], b[3])), h, w, multiple)
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return [(y0, x0, y1 - y0, x1 - x0) for y0, x0, y1, x1 in sorted(boxes)]


def _expand(box, h, w, multiple):
    y0, x0, y1, x1 = box
    y0 = max(0, y0) // multiple * multiple
    x0 = max(0, x0) // multiple * multiple
    ph, pw = ops.padded_size(min(h, y1) - y0, min(w, x1) - x0, multiple)
    return (y0, x0, min(h, y0 + ph), min(w, x0 + pw))


# -- the Inpainter ------------------------------------------------------------------------------

class Inpainter:
    """Fill the masked regions of images with a completion model.

    Args:
        engine: None (the shipped default model, on the CPU), a model file path
            (``.onnx`` or ``.plan``), or a loaded :class:`fastfill.engines.Engine`.
        roi: process each hole region in a crop with enough context instead of the whole frame
            (same pixels inside the hole, cost that follows the hole). Falls back to the whole
            frame when the crops would cover most of it anyway.
        batch_size: the most images (or crops) of the same padded size per engine call.
        threads: intra-op threads of the engine (None = the back-end's default).
        backend: the back-end for a model path (``onnxruntime``, ``openvino``, ``tensorrt``;
            None or ``auto``: OpenVINO when installed and it loads the model, else ONNX Runtime).
        device: ``cpu``, ``cuda[:N]``, ``tensorrt``, ``openvino`` or ``auto`` (None): where a
            model path runs; one that is not there is an EngineError naming what is available.
    """

    def __init__(self, engine=None, *, roi: bool = True, batch_size: int = 4,
                 threads: int | None = None, backend: str | None = None, device: str | None = None):
        if not 1 <= batch_size <= MAX_BATCH:
            raise InputError(f"batch_size must be in [1, {MAX_BATCH}], got {batch_size}")
        if threads is not None and not 1 <= threads <= MAX_THREADS:
            raise InputError(f"threads must be in [1, {MAX_THREADS}], got {threads}")
        if engine is None or isinstance(engine, (str, Path)):
            from .engines import device_options, load_engine

            backend = None if backend == "auto" else backend
            dev_backend, opts = device_options(engine, device)
            if dev_backend and backend and dev_backend != backend:
                raise EngineError(f"device {device!r} runs on the {dev_backend} back-end, not {backend}")
            if threads is not None:
                opts["threads"] = int(threads)
            engine = load_engine(engine, backend=backend or dev_backend, **opts)
        elif device not in (None, "auto"):
            raise InputError("device: pick it when loading (a loaded Engine already has its device)")
        elif not (hasattr(engine, "infer") and hasattr(engine, "meta")):
            raise InputError(f"engine must be None, a model path or an Engine, got "
                             f"{type(engine).__name__}")
        self.engine = engine
        self.meta = engine.meta
        self.roi = bool(roi)
        self.batch_size = int(batch_size)
        self.multiple = max(1, int(self.meta.multiple))
        rf = int(getattr(self.meta, "receptive_field", 0) or 0)
        # Half the receptive field on each side (rounded up), per DESIGN.md §4.
        self.margin = (rf + 1) // 2
        self.fixed_size = tuple(self.meta.input_size) if self.meta.input_size else None
        self.mask_channel = int(self.meta.channels) == 4
        self.channels = int(self.meta.channels)
        self._accepts = _narrower_accepts(engine)

    def __repr__(self):
        return (f"Inpainter({self.engine!r}, roi={self.roi}, batch_size={self.batch_size}, "
                f"margin={self.margin})")

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- validation -----------------------------------------------------------------------------
    def check(self, image, mask) -> tuple[np.ndarray, np.ndarray]:
        """Validate one image/mask pair; returns (uint8 [H,W,3] C-contiguous, bool [H,W])."""
        image = np.asarray(image)
        mask = np.asarray(mask)
        if image.dtype != np.uint8:
            raise InputError(f"image must be uint8, got {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"image must be [H, W, 3] RGB, got shape {image.shape}")
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2:
            raise InputError(f"mask must be [H, W], got shape {mask.shape}")
        if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer)
                or np.issubdtype(mask.dtype, np.floating)):
            raise InputError(f"mask must be bool or numbers (uint8 usually; nonzero = fill), "
                             f"got {mask.dtype}")
        if np.issubdtype(mask.dtype, np.floating) and not np.isfinite(mask).all():
            raise InputError("mask has NaN or infinite values (nonzero = fill cannot say what they mean)")
        if mask.shape != image.shape[:2]:
            raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]} but image is "
                             f"{image.shape[1]}x{image.shape[0]}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise InputError(f"image is empty ({image.shape[1]}x{image.shape[0]})")
        if self.fixed_size is not None and image.shape[:2] != self.fixed_size:
            fh, fw = self.fixed_size
            raise InputError(f"this {self.meta.kind} model takes {fw}x{fh} images only, got "
                             f"{image.shape[1]}x{image.shape[0]}; resize or crop first, or use a "
                             "GLCIC model for any size")
        hole = np.ascontiguousarray(mask != 0)  # (mask != 0 keeps a Fortran or strided layout)
        if self._accepts is not None:
            for _, _, wh, ww in self.plan(hole):
                reason = self._accepts((1, self.channels, *ops.padded_size(wh, ww, self.multiple)))
                if reason is not None:
                    raise InputError(f"{getattr(self.engine, 'name', 'the engine')} cannot take "
                                     f"this {image.shape[1]}x{image.shape[0]} image: {reason}")
        return np.ascontiguousarray(image), hole

    # -- public API -----------------------------------------------------------------------------
    def __call__(self, image, mask) -> np.ndarray:
        """uint8 [H, W, 3] RGB + [H, W] mask (nonzero = fill) -> uint8 [H, W, 3]."""
        return self.batch([image], [mask])[0]

    def batch(self, images, masks, *, timings: dict | None = None) -> list[np.ndarray]:
        """Fill many images (lists or N-d arrays, any mix of sizes); returns a list in order.

        ``masks`` may be one [H, W] mask used for every image. ``timings``: a dict to which the
        seconds spent in each stage are added (``plan``, ``prepare``, ``infer``, ``composite``).
        """
        t0 = time.perf_counter()
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise InputError("batch() takes a list of images or an [N, H, W, 3] array; "
                             "use inp(image, mask) for one image")
        images = list(images)
        if isinstance(masks, np.ndarray) and masks.ndim == 2:
            masks = [masks] * len(images)
        else:
            masks = list(masks)
        if len(masks) != len(images):
            raise InputError(f"{len(images)} images but {len(masks)} masks")
        pairs = [self.check(im, m) for im, m in zip(images, masks)]
        if timings is not None:
            _add(timings, "plan", time.perf_counter() - t0)
        return self._run(pairs, timings)

    def plan(self, mask: np.ndarray) -> list[tuple[int, int, int, int]]:
        """The windows (top, left, height, width) one image with this mask is processed in."""
        hole = np.asarray(mask) != 0
        h, w = hole.shape
        if not hole.any():
            return []
        if self.roi and self.fixed_size is None and self.margin > 0:
            wins = roi_windows(hole, self.margin, self.multiple)
            padded = [ops.padded_size(wh, ww, self.multiple) for _, _, wh, ww in wins]
            if (sum(ph * pw for ph, pw in padded) <= ROI_MAX_FRACTION * h * w
                    and not self._refuses(padded)):
                return wins
        return [(0, 0, h, w)]

    def _refuses(self, padded_sizes) -> bool:
        """True when the engine refuses one of these padded window sizes (one image each)."""
        if self._accepts is None:
            return False
        return any(self._accepts((1, self.channels, ph, pw)) is not None
                   for ph, pw in padded_sizes)

    def stream(self, frames: Iterable, masks=None, *, depth: int | None = None) -> Iterator[np.ndarray]:
        """Fill a stream of frames, yielding results in order.

        ``masks`` is an iterable of masks (one per frame), a single [H, W] mask for all frames,
        or None when ``frames`` yields (frame, mask) pairs.
        Reading (the caller's iterators), inference and the caller's loop run concurrently with
        at most about ``depth`` frames in flight (default: 2 batches); the first error of any
        stage is raised in the caller's loop (:func:`fastfill.pipeline.batched`).
        """
        if masks is None:
            it: Iterable = frames
        elif isinstance(masks, np.ndarray) and masks.ndim == 2:
            it = zip(frames, itertools.repeat(masks))
        else:
            it = _zip_strict(frames, masks)

        def checked():
            for i, (f, m) in enumerate(it):
                try:
                    yield self.check(f, m)
                except InputError as e:
                    raise InputError(f"frame {i}: {e}") from None

        return pipeline.batched(checked(), self._run, batch=self.batch_size,
                                depth=depth or max(2, 2 * self.batch_size))

    # -- the work -------------------------------------------------------------------------------
    def _run(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
             timings: dict | None = None) -> list[np.ndarray]:
        clock = time.perf_counter
        t0 = clock()
        jobs: list[Job] = []
        for i, (_, m) in enumerate(pairs):
            jobs.extend(Job(i, *win) for win in self.plan(m))
        groups: dict[tuple[int, int], list[Job]] = {}
        for j in jobs:
            groups.setdefault(ops.padded_size(j.height, j.width, self.multiple), []).append(j)
        t1 = clock()
        outs = [im.copy() for im, _ in pairs]
        t2 = clock()
        if timings is not None:
            _add(timings, "plan", t1 - t0)
            _add(timings, "composite", t2 - t1)
        for (ph, pw), group in groups.items():
            step = self._chunk(len(group), ph, pw)
            for s in range(0, len(group), step):
                self._infer_jobs(group[s:s + step], pairs, outs, timings)
        return outs

    def _chunk(self, n: int, ph: int, pw: int) -> int:
        """Jobs per engine call for a group of ``n`` padded ph x pw windows: ``batch_size``, or
        less where the engine refuses the larger batch (single images were checked already)."""
        step = min(n, self.batch_size)
        if self._accepts is not None:
            while step > 1 and self._accepts((step, self.channels, ph, pw)) is not None:
                step -= 1
        return max(1, step)

    def _infer_jobs(self, jobs: list[Job], pairs, outs, timings: dict | None = None) -> None:
        fill = self.meta.fill
        # The harmonic solve runs on the CPU, so such models take the float path on a GPU engine:
        # prepare here, the float input uploaded by the engine (see README, "Engines").
        if (getattr(self.engine, "device", "cpu") == "cuda" and hasattr(self.engine, "run_uint8")
                and fill == "mean"):
            return self._infer_jobs_uint8(jobs, pairs, outs, timings)
        clock = time.perf_counter
        t0 = clock()
        mean = tuple(float(v) for v in self.meta.mean)
        whole = [pairs[j.index][0].shape[:2] == (j.height, j.width) for j in jobs]
        same = len({(j.height, j.width) for j in jobs}) == 1
        if len(jobs) > 1 and same and all(whole):  # same-size whole frames: one prepare call
            ims = np.stack([pairs[j.index][0] for j in jobs])
            ms = np.stack([pairs[j.index][1] for j in jobs]).view(np.uint8)
            x = ops.prepare(ims, ms, mean, self.multiple, mask_channel=self.mask_channel, fill=fill)
        else:
            xs = []
            for j, w in zip(jobs, whole):
                im, m = pairs[j.index]
                xs.append(ops.prepare(im[None], m.view(np.uint8)[None], mean, self.multiple,
                                      mask_channel=self.mask_channel, fill=fill,
                                      window=None if w else j.window))
            x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=0)
        x = np.ascontiguousarray(x, dtype=np.float32)
        t1 = clock()
        try:
            pred = self.engine.infer(x)
        except FastfillError:
            raise
        except Exception as e:  # a back-end's own error type
            raise EngineError(f"{getattr(self.engine, 'name', 'engine')} failed on a "
                              f"{x.shape[0]}x{x.shape[1]}x{x.shape[2]}x{x.shape[3]} input: "
                              f"{type(e).__name__}: {e}") from e
        t2 = clock()
        for k, j in enumerate(jobs):
            im, m = pairs[j.index]
            t, l, h, w = j.window
            win = None if (h, w) == im.shape[:2] else j.window
            out_view = outs[j.index][None, t:t + h, l:l + w]
            ops.composite(pred[k:k + 1], im[None], m.view(np.uint8)[None], window=win,
                          out=out_view)
        if timings is not None:
            t3 = clock()
            _add(timings, "prepare", t1 - t0)
            _add(timings, "infer", t2 - t1)
            _add(timings, "composite", t3 - t2)


    def _infer_jobs_uint8(self, jobs: list[Job], pairs, outs, timings: dict | None) -> None:
        """GPU engines with their own uint8 path (DESIGN §1): prepare, the model and composite all
        run on the device, so only uint8 crops and masks cross PCIe; they count as `infer`."""
        t0 = time.perf_counter()
        crops = []
        for j in jobs:
            im, m = pairs[j.index]
            t, l, h, w = j.window
            crops.append((np.ascontiguousarray(im[t:t + h, l:l + w]), np.ascontiguousarray(m[t:t + h, l:l + w])))
        if len({c[0].shape for c in crops}) == 1:  # one call for a batch of same-size crops
            res = self.engine.run_uint8(np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops]))
        else:
            res = [self.engine.run_uint8(c[0][None], c[1][None])[0] for c in crops]
        for j, r in zip(jobs, res):
            t, l, h, w = j.window
            outs[j.index][t:t + h, l:l + w] = r
        if timings is not None:
            _add(timings, "infer", time.perf_counter() - t0)

def _add(timings: dict, stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds


def _narrower_accepts(engine):
    """The engine's ``accepts`` when it may refuse more than the Inpainter's own checks do (None
    otherwise: the default ``EngineBase.accepts`` only restates channels, fixed size and the
    multiple, which ``check`` and the padding already guarantee, so planning twice is skipped)."""
    accepts = getattr(engine, "accepts", None)
    if accepts is None:
        return None
    from .engines.base import EngineBase

    if getattr(type(engine), "accepts", None) is EngineBase.accepts:
        return None
    return accepts


_END = object()


def _zip_strict(frames: Iterable, masks: Iterable) -> Iterator[tuple]:
    fi, mi = iter(frames), iter(masks)
    for i in itertools.count():
        f = next(fi, _END)
        m = next(mi, _END)
        if f is _END and m is _END:
            return
        if f is _END:
            return  # extra masks are ignored (e.g. a mask folder longer than the clip)
        if m is _END:
            raise InputError(f"ran out of masks at frame {i}")
        yield f, m


__all__ = ["Inpainter", "Job", "hole_regions", "roi_windows"]
