"""The Inpainter: the one place that orchestrates prepare -> engine -> composite
(docs/ARCHITECTURE.md, Data flow).

Windows (pure functions in :mod:`fastfill.roi`). Every image becomes one or more *jobs*: a window
(top, left, height, width) of the image that goes through the model on its own. Without ROI the window is the whole image. With ROI, each
connected hole region (regions whose crops would overlap are merged) gets a window of the hole's
bounding box plus a margin of half the model's receptive field, clipped to the image, with its
origin on the model's stride grid (a multiple of ``meta.multiple``; docs/ARCHITECTURE.md, ROI) —
inside the hole the prediction then equals the full-frame one up to float rounding. Windows
never overlap, so each
job's result is written straight back into the output frame (``ops.composite(out=view)``).

Batching. Jobs whose padded sizes agree share ``engine.infer`` calls of up to ``batch_size``
(fewer where the engine's ``accepts`` refuses the larger batch, e.g. a TensorRT profile). The
steps of one call are chosen once, from what the engine declares (``device_path``, which a GPU
engine grants only for a model whose prefill its kernels compute): prepare / infer / composite
on the host, or the engine's own uint8 path (``run_uint8``).

Engine limits. An engine may refuse shapes it cannot run (``engine.accepts(shape)`` returns the
reason; e.g. outside a TensorRT plan's profiles). ``windows`` falls back to the whole frame when
the engine refuses an ROI window but takes the frame, and ``check`` raises :class:`InputError` for an
image whose windows the engine refuses, so that such an image fails on its own, before any batch.

Checking once. ``check`` validates a pair and finds its windows, returning a :class:`Checked`
pair that ``batch`` and ``stream`` of the same Inpainter take as is: a file runner checks each
file as it reads it (so that it fails alone) and the work is not repeated.

Stage timing. ``batch(..., timings=d)`` adds the seconds spent in each stage to ``d``: ``check``
(validation and the ROI windows), ``prepare``, ``infer`` and ``composite`` (including the copy of the
input that becomes the output). ``fastfill bench`` reports these.

Streaming. :meth:`Inpainter.stream` runs a reader thread (pulls frames and masks from the caller's
iterators, which may decode lazily), an inference thread, and the caller's loop (which may encode),
joined by bounded queues (:func:`fastfill.pipeline.batched`): a few frames in flight, order kept,
the first error of any stage raised in the caller with its original traceback.
"""

from __future__ import annotations

import numbers

import functools
import itertools
import time
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from . import ops, pipeline, steady
from .errors import EngineError, FastfillError, InputError
from .geometry import warp
from .roi import ROI_CELL, ROI_MAX_FRACTION, Job, hole_regions, roi_windows  # noqa: F401 (re-exported)
from .roi import bounding_box, hole_border, hole_of

__all__ = ["Inpainter", "Checked", "Job", "hole_regions", "roi_windows", "ROI_CELL", "ROI_MAX_FRACTION",
           "engine_line", "model_name"]

# Bounds of the resource options (the CLI's flags use the same): past them a typo exhausts the
# machine instead of doing more work.
MAX_THREADS, MAX_BATCH = 256, 256


# -- the Inpainter ------------------------------------------------------------------------------

class Checked(tuple):
    """``(image, hole)`` as :meth:`Inpainter.check` accepted them: uint8 [H, W, 3] and bool
    [H, W], C-contiguous, with the ``windows`` the model runs on and the ``checker`` Inpainter.
    Passed back to ``batch`` or ``stream`` of that Inpainter, it is not checked again."""

    def __new__(cls, image: np.ndarray, hole: np.ndarray, windows: list, checker) -> "Checked":
        self = super().__new__(cls, (image, hole))
        self.windows, self.checker = windows, checker
        return self

    def __reduce__(self):
        # copied or sent to another process it is a plain (image, hole) pair, checked again there
        return (tuple, (tuple(self),))

    @property
    def image(self) -> np.ndarray:
        return self[0]

    @property
    def hole(self) -> np.ndarray:
        return self[1]


class Inpainter:
    """Fill the masked regions of images with a completion model.

    Args:
        engine: None (the shipped default model, on the CPU; the default fill in its place while it
            returns its prefill unchanged), a model file path
            (``.onnx``, ``.plan`` or a ``.safetensors`` checkpoint), or a loaded
            :class:`fastfill.engines.EngineBase` (another object with ``meta`` and ``infer`` is
            adapted once, :func:`fastfill.engines.as_engine`).
        roi: process each hole region in a crop with enough context instead of the whole frame
            (same pixels inside the hole, cost that follows the hole). Falls back to the whole
            frame when the crops would cover most of it anyway.
        batch_size: the most images (or crops) of the same padded size per engine call.
        threads: intra-op threads of the engine (None = the back-end's default).
        backend: the back-end for a model path (``onnxruntime``, ``openvino``, ``tensorrt``,
            ``torch``; None or ``auto``: for ONNX, both OpenVINO (when installed) and ONNX Runtime
            timed at the first input of each size and the faster kept).
        device: ``cpu``, ``cuda[:N]``, ``tensorrt``, ``openvino`` or ``auto`` (None): where a
            model path runs; one that is not there is an EngineError naming what is available.
        method: a classical fill (a name in :data:`fastfill.fills.FILLS`) instead of a model:
            no model file, back-end or threads go with it.

    ``threads``, ``backend``, ``device`` and ``method`` choose what is loaded: with a loaded
    engine they are an InputError, never dropped.
    """

    def __init__(self, engine=None, *, roi: bool = True, batch_size: int = 4,
                 threads: int | None = None, backend: str | None = None, device=None,
                 method: str | None = None):
        if (not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool)
                or not 1 <= batch_size <= MAX_BATCH):
            raise InputError(f"batch_size must be in [1, {MAX_BATCH}] (an int), got {batch_size!r}")
        if threads is not None and (not isinstance(threads, numbers.Integral) or isinstance(threads, bool)
                                    or not 1 <= threads <= MAX_THREADS):
            raise InputError(f"threads must be in [1, {MAX_THREADS}] (an int, or None), got {threads!r}")
        if not isinstance(roi, (bool, np.bool_)):
            raise InputError(f"roi must be True or False, got {roi!r}")
        engine = _engine(engine, threads, backend, device, method)
        self.engine = engine
        self.meta = engine.meta
        self.roi = bool(roi)
        self.batch_size = int(batch_size)
        self.multiple = max(1, int(self.meta.multiple))
        rf = int(self.meta.receptive_field)
        # Half the receptive field on each side (rounded up): docs/ARCHITECTURE.md, ROI.
        self.margin = (rf + 1) // 2
        self.fixed_size = tuple(self.meta.input_size) if self.meta.input_size else None
        self.mask_channel = int(self.meta.channels) == 4
        self.channels = int(self.meta.channels)
        # Only an engine that says its limits are narrower than the contract is asked about each
        # shape (check() and the padding already guarantee the contract's).
        self._accepts = engine.accepts if engine.narrow_limits else None
        self._execute = (_DeviceSteps(engine) if engine.device_path
                         else _HostSteps(engine, self.multiple, self.mask_channel))
        # (mask, hole, windows) of the last frozen mask: see hole_and_windows()
        self._last_frozen: tuple | None = None

    def __repr__(self):
        return (f"Inpainter({self.engine!r}, roi={self.roi}, batch_size={self.batch_size}, "
                f"margin={self.margin})")

    def close(self) -> None:
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- validation -----------------------------------------------------------------------------
    def check(self, image, mask, *, found: tuple | None = None) -> Checked:
        """Validate one image/mask pair (InputError saying what is wrong); returns it as a
        :class:`Checked` pair ``(image, hole)`` that ``batch``/``stream`` take as is.
        ``found``: what :meth:`hole_and_windows` gave for this mask, for a caller that needed
        it first (a fresh 1080p mask's hole and windows are found once, not twice)."""
        image, mask = _image_and_mask(image, mask)
        if self.fixed_size is not None and image.shape[:2] != self.fixed_size:
            fh, fw = self.fixed_size
            raise InputError(f"this {self.meta.kind} model takes {fw}x{fh} images only, got "
                             f"{image.shape[1]}x{image.shape[0]}; resize or crop first, or use a "
                             "GLCIC model for any size")
        hole, wins = found if found is not None else self.hole_and_windows(mask)
        if self._accepts is not None:
            for _, _, wh, ww in wins:
                reason = self._accepts((1, self.channels, *ops.padded_size(wh, ww, self.multiple)))
                if reason is not None:
                    raise InputError(f"{self.engine.name} cannot take "
                                     f"this {image.shape[1]}x{image.shape[0]} image: {reason}")
        return Checked(np.ascontiguousarray(image), hole, wins, self)

    def _checked(self, pair) -> Checked:
        if isinstance(pair, Checked) and pair.checker is self:
            return pair
        if isinstance(pair, np.ndarray) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputError("without masks, batch() and stream() take (image, mask) pairs (as "
                             f"check() returns them), got a {type(pair).__name__}; pass the masks "
                             "for a list of images")
        return self.check(pair[0], pair[1])

    # -- public API -----------------------------------------------------------------------------
    def __call__(self, image, mask) -> np.ndarray:
        """uint8 [H, W, 3] RGB + [H, W] mask (nonzero = fill) -> uint8 [H, W, 3]."""
        return self.batch([image], [mask])[0]

    def batch(self, images, masks=None, *, timings: dict | None = None) -> list[np.ndarray]:
        """Fill many images (lists or N-d arrays, any mix of sizes); returns a list in order.

        ``masks`` may be one [H, W] (or [H, W, 1]) mask used for every image, or None when ``images`` holds
        (image, mask) pairs, such as :meth:`check` returns. ``timings``: a dict to which the
        seconds spent in each stage are added (``check``, ``prepare``, ``infer``, ``composite``).
        """
        t0 = time.perf_counter()
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise InputError("batch() takes a list of images or an [N, H, W, 3] array; "
                             "use inp(image, mask) for one image")
        if masks is not None:
            images = list(images)
            if one_mask(masks, images[0] if images else None):
                masks = [masks] * len(images)
            else:
                masks = list(masks)
            if len(masks) != len(images):
                raise InputError(f"{len(images)} images but {len(masks)} masks")
            images = list(zip(images, masks))  # (pairs, checked as the pairs given are)
        pairs = []
        for i, p in enumerate(images):
            try:
                pairs.append(self._checked(p))
            except InputError as e:
                raise InputError(f"image {i}: {e}") from None
        if timings is not None:
            _add(timings, "check", time.perf_counter() - t0)
        return self._run(pairs, timings)

    def hole_and_windows(self, mask: np.ndarray) -> tuple[np.ndarray, list]:
        """The hole of a [H, W] mask (bool, C-contiguous) and its :meth:`windows`. A mask that
        cannot change (:func:`frozen`: a video's one mask file, every frame) is read once: what
        it gives is kept while the same mask comes back (a few ms a 1080p frame, as much as the
        fill it serves)."""
        last = self._last_frozen
        if last is not None and last[0] is mask:
            return last[1], last[2]
        hole = hole_of(mask)
        wins = self.windows(hole)
        if frozen(mask):
            hole.setflags(write=False)
            self._last_frozen = (mask, hole, wins)
        return hole, wins

    def windows(self, mask: np.ndarray) -> list[tuple[int, int, int, int]]:
        """The windows (top, left, height, width) one image with this mask is processed in."""
        hole = hole_of(mask, copy=False)
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

    def stream(self, frames: Iterable, masks=None, *, carry: bool = False,
               tagged: bool = False, copy: bool = True, shifts=None, motions=None,
               source_wait: float = 1.0) -> Iterator:
        """Fill a stream of frames, yielding results in order.

        ``carry``: the frames are one video: a patch fill (a ``patch`` classical engine or
        prefill) carries each hole's nearest-neighbour field from frame to frame, so that a
        static background under a static mask stays stable (see ``ops.fill(state=)``).

        ``masks`` is an iterable of masks (one per frame), a single [H, W] (or [H, W, 1]) mask for
        all frames, or None when ``frames`` yields (frame, mask) pairs.
        ``tagged``: ``frames`` yields ``(tag, pair)`` (a pair: (frame, mask) or a
        :meth:`check` result) and the stream yields ``(tag, result)``: what the caller needs to
        finish each item travels with it (``masks`` must then be None).
        ``copy`` False: a result is the frame given, its hole filled in place (untouched when
        it has none; a read-only frame with a hole is copied), for callers that own their
        frames (nothing else reads them meanwhile, from any thread) and read only the result.
        ``shifts`` (with ``carry``): a callable giving, once per frame and in order, how far the
        scene moved from the frame before, ``(dy, dx)`` whole pixels or None when unknown
        (:meth:`fastfill.video.propagate.Propagator.next_shift`): a patch fill's hole that moved
        with the scene then starts from the field of the frame before, moved by it.
        ``motions`` (with ``carry``; instead of ``shifts``): a callable giving, once per frame and
        in order, ``(shift, matrix)``: the shift as above and the 3x3 transform from the frame
        before (pixel coordinates) or None when unknown
        (:meth:`fastfill.video.propagate.Propagator.next_motion`): a classical fill that reads
        beyond its border (the patch fill) then moves the fill it made with the scene instead of
        making up the unseen part again in every frame (:class:`FillHold`).
        Reading (the caller's iterators), inference and the caller's loop run concurrently: up to
        ``5 x batch_size + 1`` frames are read ahead of the result in the caller's hand (two
        queues of ``2 x batch_size``, the batch being filled, the frame being queued), which
        bounds the memory a stream holds. With ``copy`` (the default) each frame is copied as it
        is read, so a source may hand the same buffer again for the next frame (a decoder's
        ring, ``cv2.VideoCapture.read(image=buf)``); with ``copy`` False the frames are filled
        where they are, and a frame must stay as it is until its result comes back. The first
        error of any stage is raised in the caller's loop (:func:`fastfill.pipeline.batched`).
        Leaving the loop (or closing the iterator) stops the stream; a source inside its own
        ``next()`` is waited for ``source_wait`` seconds at most and not interrupted: the reading
        thread ends when that call returns, closing the iterators it made from ``frames`` and
        ``masks`` (a source that runs native code, a detector, wants a longer wait: a thread
        still in it when the process exits can abort the exit).
        """
        if (shifts is not None or motions is not None) and not carry:
            raise InputError("shifts and motions move what a stream carries: give them with carry=True")
        if shifts is not None:
            if motions is not None:
                raise InputError("give shifts or motions, not both")
            motions = lambda: (shifts(), None)  # noqa: E731
        if tagged:
            if masks is not None:
                raise InputError("a tagged stream carries its masks in its pairs")
            return self._tagged_stream(frames, carry, copy, motions, source_wait)
        if masks is None:
            it: Iterable = frames
        elif one_mask(masks):
            it = zip(frames, itertools.repeat(masks))
        else:
            it = _zip_strict(frames, masks)

        def checked():
            for i, pair in enumerate(it):
                try:
                    c = self._checked(pair)
                except InputError as e:
                    raise InputError(f"frame {i}: {e}") from None
                yield self._taken(c) if copy else c

        # (copy: each frame is copied as it is read, and the copy filled in place)
        return pipeline.batched(checked(), self._runner(carry, False, motions), batch=self.batch_size,
                                depth=max(2, 2 * self.batch_size), source_wait=source_wait)

    def _taken(self, pair: Checked) -> Checked:
        """The pair with a copy of its frame, taken while the frame is read (the source may write
        its next frame into the same buffer)."""
        return Checked(pair.image.copy(), pair.hole, pair.windows, self)

    def _tagged_stream(self, items: Iterable, carry: bool, copy: bool = True,
                       motions=None, source_wait: float = 1.0) -> Iterator[tuple]:
        run = self._runner(carry, False, motions)

        def checked():
            for i, item in enumerate(items):
                try:
                    tag, pair = item
                except (TypeError, ValueError):
                    raise InputError(f"frame {i}: a tagged stream takes (tag, (frame, mask)) items, "
                                     f"got {type(item).__name__}") from None
                try:
                    c = self._checked(pair)
                except InputError as e:
                    raise InputError(f"frame {i}: {e}") from None
                yield tag, self._taken(c) if copy else c

        def work(chunk):
            return list(zip((t for t, _ in chunk), run([c for _, c in chunk])))

        return pipeline.batched(checked(), work, batch=self.batch_size,
                                depth=max(2, 2 * self.batch_size), source_wait=source_wait)

    def _runner(self, carry: bool, copy: bool = True, motions=None):
        """The batch step of a stream, ``step(pairs, timings=None)``: with ``carry``, a patch
        fill's state goes from one batch to the next (moved by the shift of ``motions()``, asked
        once a frame, when given), and a classical fill alone holds its fill while what it reads
        stays put, or moves it with the scene (:class:`FillHold`)."""
        from .engines.classical import ClassicalEngine

        state = ops.PatchState() if carry and self.meta.fill == "patch" else None
        run = functools.partial(self._run, state=state, copy=copy)
        if carry and isinstance(self.engine, ClassicalEngine):
            # (a classical engine's receptive field is twice its fill's context: the ROI margin
            # is what the fill reads)
            hold = FillHold(run, copy=copy, margin=self.margin, check=self.check)
            if not carry or motions is None:
                return hold
            return lambda pairs, timings=None: hold(pairs, timings, [motions() for _ in pairs])
        if not carry or motions is None:
            return run
        return lambda pairs, timings=None: run(pairs, timings, [(motions() or (None,))[0]
                                                                for _ in pairs])

    # -- the work -------------------------------------------------------------------------------
    def _run(self, pairs: Sequence[Checked], timings: dict | None = None, shifts=None,
             state=None, copy: bool = True) -> list[np.ndarray]:
        t0 = time.perf_counter()
        jobs = [Job(i, *win) for i, p in enumerate(pairs) for win in p.windows]
        if state is not None:
            # (a batch of several frames shares kernel calls: no shift to carry by then)
            state.shift(shifts[0] if shifts is not None and len(pairs) == 1 else None)
        groups: dict[tuple[int, int], list[Job]] = {}
        for j in jobs:
            groups.setdefault(ops.padded_size(j.height, j.width, self.multiple), []).append(j)
        # (copy False: the frame is its own result, its hole filled in place where it can be
        # written; a 1080p copy costs page faults on both sides, the read of a frame converted
        # only around its hole included. The caller owns the frame: nothing else may read it
        # meanwhile, see fastfill.video.stream._Transcode._for_fill)
        outs = [p.image.copy() if copy or (p.windows and not p.image.flags.writeable) else p.image
                for p in pairs]
        if timings is not None:
            _add(timings, "composite", time.perf_counter() - t0)
        for (ph, pw), group in groups.items():
            step = self._chunk(len(group), ph, pw)
            for s in range(0, len(group), step):
                self._execute(group[s:s + step], pairs, outs, timings, state)
        if state is not None and jobs:
            state.prune()  # (memory: the fields of this batch's components only)
        return outs

    def _chunk(self, n: int, ph: int, pw: int) -> int:
        """Jobs per engine call for a group of ``n`` padded ph x pw windows: ``batch_size``, or
        less where the engine refuses the larger batch (single images were checked already)."""
        step = min(n, self.batch_size)
        if self._accepts is not None:
            while step > 1 and self._accepts((step, self.channels, ph, pw)) is not None:
                step -= 1
        return max(1, step)


class _Held(NamedTuple):
    """What :class:`FillHold` keeps of the frame whose fill it holds."""

    hole: np.ndarray
    box: tuple  # (y0, x0, y1, x1) of the fill
    where: np.ndarray  # the hole in the box, for each channel
    values: np.ndarray  # the fill's values in the box
    border: np.ndarray  # the hole's border (its known 4-neighbours) in the box
    border_values: np.ndarray  # int16, the frame's values there (the last laid fill's frame)
    solved_border: np.ndarray  # int16, the border of the frame the fill was solved for
    # (box, known [h, w] bool, the frame's values, how many values are known, and the means of
    # its 4x4 blocks all known: (which [h // 4, w // 4] bool, their rounded means, int16 [n, c])
    # or None) of the known pixels within the fill's margin; None for a fill that reads the
    # border only
    context: tuple | None


class FillHold:
    """A classical fill of a video's frames (``stream(carry=True)`` with no net): a frame whose
    hole is the held frame's, whose hole border (the known pixels next to it) is within
    ``tolerance`` levels of the held frame's and, for a fill that reads further (``margin`` > 1:
    the known pixels within ``margin`` of the hole's box), whose pixels there differ from the
    held frame's by at most ``tolerance`` / 2 levels on average, takes the held fill.

    The harmonic fill (``margin`` 1) is a weighted mean of its border values (the maximum
    principle): two borders that differ by at most ``tolerance`` give fills that differ by at
    most that much, so holding is within ``tolerance`` of solving again (before rounding). The
    patch fill has no such bound (a copied patch is a discrete choice): its border is held to the
    same bound (no seam), and its context to the same scene up to a codec's noise, which changes
    a few pixels of a static shot by more than 2 levels in most frames. Either way a static shot
    under a static mask keeps one fill, the same bytes frame after frame, for a compare and a copy
    instead of a fill. Compared with the held frame, never the previous one: slow drift ends the
    hold. A camera's own noise moves every pixel of the context, by about itself on average, past
    that bound, or a few border pixels past theirs; so a context that moved as a whole (the means
    of its whole 4x4 blocks by at least a thirty-second of ``tolerance`` on average, or its
    samples and its border alike: see :func:`fastfill.steady.only_noise`) still passes
    when those means moved by at most ``tolerance`` / 2 on average and none by more than 4 times it
    (noise moves them by a quarter of itself, a thing entering the context by as much as its
    pixels) and the border as a whole (its mean move since the solve) by at most ``tolerance``,
    none of it past ``NOISE_MAX`` times it, 4 times where the context moved by at most half of it
    (:func:`fastfill.steady.only_noise`); the fill is then held as it is, not laid onto a border
    that moved with the noise. A patch fill whose context passes while some border pixels moved
    past ``tolerance`` without the context moving as a whole (none past ``ADJUST_MAX`` times it,
    and the border's mean move since the solve within it: a codec's change of a few pixels) is
    laid onto the new border (:meth:`_adjusted`) and held so, instead of being made up again. A
    frame without a hole comes back as it is and leaves the held fill held (the frames around it
    may share a hole).

    A moving camera (each frame's motion from the one before known: ``motions``, as
    :meth:`fastfill.video.propagate.Propagator.next_motion` gives them), for a fill that reads
    further than its border: the last fill solved moves with the scene (:meth:`_moved_fill`).
    What no frame showed is then made up once and stays put in the scene, instead of being made
    up again, differently, in every frame, and costs a warp and a Poisson solve a frame instead
    of a fill; what the moved fill does not reach (past the box it was kept in) is filled with
    the moved pixels as known, and that frame's fill is kept in turn. Holes under ``MOVE_MIN``
    pixels are filled again each frame: cheap, and where the window reveals a small hole from
    its sides a fill made again meets what is revealed better."""

    # the moved fill's border against the frame's: mean absolute difference (levels) accepted
    # once their mean difference (exposure, the codec) is removed; the propagation's own bound
    MOVE_ERROR = 10.0
    # pixels kept around a solved hole for the fill to move into: a few frames of a tilt
    KEEP = 16
    # a held patch fill is laid onto a border whose pixels moved at most this many times
    # `tolerance` (and on average within it): a codec's noise, not something entering the border
    ADJUST_MAX = 4
    NOISE_MAX = steady.NOISE_MAX  # (see fastfill.steady)
    # holes under this many pixels (a 128 x 128 square) are filled again instead: cheap to make,
    # and a fill made again meets what the window newly shows around a small hole better
    MOVE_MIN = 16384

    def __init__(self, run, tolerance: float = 2.0, *, copy: bool = True, margin: int = 1,
                 check=None):
        self.run, self.tolerance, self.copy = run, tolerance, copy
        self.margin = int(margin)
        self.check = check  # (Inpainter.check: the pair of what a moved fill leaves)
        self.held: _Held | None = None
        self.frames = self.solved = self.moved = self.adjusted = 0
        self._moved = None  # the scene's shift since the last frame solved, when known
        self._key = None  # (box, values, matrix: the solved frame -> the last frame) to move

    def __call__(self, pairs: Sequence["Checked"], timings: dict | None = None,
                 motions=None) -> list:
        """Fill ``pairs`` in order; ``motions``: one ``(shift, matrix)`` (or None) per pair, the
        scene's motion from the frame before (see the class)."""
        outs = []
        for k, p in enumerate(pairs):  # in order: a frame may hold the fill of the one before it
            image, hole = p
            self.frames += 1
            d, m = (motions[k] or (None, None)) if motions is not None else (None, None)
            # (the scene's shift since the last frame solved: the held frames' shifts summed)
            self._moved = (None if d is None or self._moved is None
                           else (self._moved[0] + d[0], self._moved[1] + d[1]))
            if self._key is not None:  # (the kept fill follows the scene, used or not)
                if m is None:
                    self._key = None
                else:
                    box, values, mk = self._key
                    mk = m @ mk
                    self._key = (box, values, mk / mk[2, 2])
            if not p.windows:  # (no hole: nothing to fill, and the held fill stays held)
                outs.append(image.copy() if self.copy else image)
                continue
            held = self._holding(image, hole)
            out = None
            if held is None and self._key is not None and self.check is not None:
                out = self._moved_fill(image, hole, timings)
            if out is not None:
                self.moved += 1
            elif held is None:
                out = self._solve(p, timings)
            else:
                # (copy False: the caller's own frame, filled in place: a 1080p copy a frame)
                out = image if not self.copy and image.flags.writeable else image.copy()
                y0, x0, y1, x1 = held.box
                # (a where= mask as large as the box: a broadcast one, or a boolean index, costs
                # ten times as much)
                np.copyto(out[y0:y1, x0:x1], held.values, where=held.where)
            outs.append(out)
        return outs

    def _solve(self, p, timings, hole: np.ndarray | None = None) -> np.ndarray:
        """Fill ``p`` (the run) and keep its fill to move; held too, unless ``hole`` is given:
        then ``p`` is the part of that hole a moved fill left, and its fill is kept for the whole
        hole (a held fill is the whole hole's)."""
        out = self.run([p], timings, [self._moved])[0]
        self._moved = (0, 0)
        self.solved += 1
        if hole is None:
            self._hold(p, out)
        self._keep(out, p.hole if hole is None else hole)
        return out

    def _keep(self, out: np.ndarray, hole: np.ndarray) -> None:
        """Keep a solved frame's fill (and the known pixels within KEEP of it) to move."""
        g = min(self.KEEP, self.margin - 1)  # (pixels the fill read: there in a windowed frame)
        box = bounding_box(hole, pad=g) if g > 0 else None
        if box is None:
            self._key = None
            return
        y0, x0, y1, x1 = box
        self._key = (box, out[y0:y1, x0:x1].copy(), np.eye(3))

    def _moved_fill(self, image: np.ndarray, hole: np.ndarray, timings):
        """The kept fill moved into this frame's hole (None when it does not fit): each hole
        pixel samples it (bicubic) where the motion since it was solved puts it inside what was
        kept; checked against the hole's border (``MOVE_ERROR``) and laid in without a seam
        (:func:`ops.seamless`: the detail kept, the border met); the pixels it does not reach
        are filled (the run) with the rest as known, and that frame's fill is kept instead."""
        import cv2  # (motions come from propagation, which has OpenCV)

        (ky0, kx0, ky1, kx1), values, mk = self._key
        box = bounding_box(hole, pad=1)
        if box is None:
            return None
        y0, x0, y1, x1 = box
        sub = hole[y0:y1, x0:x1]
        n = int(np.count_nonzero(sub))
        if n < self.MOVE_MIN:
            return None
        corners = np.array([[x0, x1, x0, x1], [y0, y0, y1, y1], [1, 1, 1, 1]], np.float64)
        back = np.linalg.solve(mk, corners)
        if np.abs(back[:2] / back[2] - corners[:2]).max() < 0.5:
            return None  # a still scene: the held fill's own case (a static shot as without motion)
        size = (x1 - x0, y1 - y0)
        # kept box -> this box: (shift into the box) @ mk @ (the kept box's place)
        m = (np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64) @ mk
             @ np.array([[1, 0, kx0], [0, 1, ky0], [0, 0, 1]], np.float64))
        moved = warp(cv2, values, m, size, cv2.BORDER_REPLICATE, cv2.INTER_CUBIC)
        # inside: the 4x4 bicubic footprint within what was kept (its edge pixels count out)
        kept = np.zeros(values.shape[:2], np.uint8)
        kept[2:-2, 2:-2] = 255
        inside = warp(cv2, kept, m, size, cv2.BORDER_CONSTANT) == 255
        take = sub & inside
        if 2 * int(np.count_nonzero(take)) < n:
            return None
        frame = image[y0:y1, x0:x1]
        border = hole_border(sub)
        if not border.any():
            return None
        diff = frame[border].astype(np.float32) - moved[border].astype(np.float32)
        err = np.abs(diff - diff.mean(axis=0)).mean()
        if err > self.MOVE_ERROR:
            return None
        out = image if not self.copy and image.flags.writeable else image.copy()
        out[y0:y1, x0:x1] = ops.seamless(frame, sub, moved)
        rest = sub & ~take
        if rest.any():
            whole = np.zeros_like(hole)
            whole[y0:y1, x0:x1] = rest
            out = self._solve(self.check(out, whole), timings, hole)
        return out

    def _holding(self, image: np.ndarray, hole: np.ndarray):
        h = self.held
        if h is None or not (h.hole is hole or np.array_equal(h.hole, hole)):
            return None
        y0, x0, y1, x1 = h.box
        border = image[y0:y1, x0:x1][h.border].astype(np.int16)
        worst = np.abs(border - h.border_values).max(initial=0)
        if h.context is None:  # (the harmonic fill: its border alone)
            return h if worst <= self.tolerance else None
        # the border as a whole since the fill was solved (laid fills cannot drift)
        moved = float(np.abs(border - h.solved_border).mean()) if border.size else 0.0
        if worst > self.tolerance and moved > self.tolerance:
            return None
        (cy0, cx0, cy1, cx1), known, values, count, blocks = h.context
        now = image[cy0:cy1, cx0:cx1]  # |now - held| over the known pixels, averaged
        context = ops.masked_difference(now, values, known) / count if count else 0.0
        if steady.unchanged(context, worst, moved, self.tolerance, lambda: (
                None if blocks is None else steady.block_difference(now, *blocks))):
            # (under a camera's noise too: the fill is held as it was, not laid onto a border
            # that moved with the noise: the hole does not flicker, nor costs a solve a frame)
            return h
        if context <= 0.5 * self.tolerance and worst <= self.ADJUST_MAX * self.tolerance:
            # (a codec's noise: a few border pixels moved, none far, in the same scene)
            return self._adjusted(image, h, border)
        return None

    def _adjusted(self, image: np.ndarray, h: "_Held", border: np.ndarray) -> "_Held":
        """The held fill laid onto this frame's border (:func:`ops.seamless`: its own detail,
        the border met exactly), held from now on: a patch fill whose context is the same scene
        while a few of its border pixels moved past ``tolerance`` (a codec's noise, the first
        P-frame after a key frame) keeps its texture, where solving again would make up another
        one (a flicker) at the cost of a whole fill. For the harmonic fill the result would be
        the same as solving again (its fill is linear in its border); it reads the border only
        and never comes here."""
        y0, x0, y1, x1 = h.box
        values = ops.seamless(image[y0:y1, x0:x1], h.where[:, :, 0], h.values)
        self.adjusted += 1
        self.held = h._replace(values=values, border_values=border)
        return self.held

    def _hold(self, pair, out: np.ndarray) -> None:
        image, hole = pair
        box = bounding_box(hole, pad=1)
        if box is None:
            self.held = None
            return
        y0, x0, y1, x1 = box
        sub = hole[y0:y1, x0:x1]
        border = hole_border(sub)  # (what the harmonic solve reads)
        context = None
        if self.margin > 1:
            hh, ww = hole.shape
            g = self.margin - 1
            cy0, cx0, cy1, cx1 = max(0, y0 - g), max(0, x0 - g), min(hh, y1 + g), min(ww, x1 + g)
            known = ~hole[cy0:cy1, cx0:cx1]
            values = image[cy0:cy1, cx0:cx1].copy()
            context = ((cy0, cx0, cy1, cx1), known, values,
                       int(np.count_nonzero(known)) * image.shape[2],
                       steady.known_blocks(values, known))
        values = image[y0:y1, x0:x1][border].astype(np.int16)
        self.held = _Held(hole, box, np.repeat(sub[:, :, None], out.shape[2], axis=2),
                          out[y0:y1, x0:x1].copy(), border, values, values, context)



class _HostSteps:
    """prepare on the CPU, ``engine.infer``, composite on the CPU (every engine can do this)."""

    def __init__(self, engine, multiple: int, mask_channel: bool):
        self.engine, self.multiple, self.mask_channel = engine, multiple, mask_channel
        self.fill = engine.meta.fill
        self.fill_options = engine.fill_options
        self.mean = tuple(float(v) for v in engine.meta.mean)

    def prepare(self, jobs, pairs, state=None) -> np.ndarray:
        whole = [pairs[j.index].image.shape[:2] == (j.height, j.width) for j in jobs]
        same = len({(j.height, j.width) for j in jobs}) == 1
        if len(jobs) > 1 and same and all(whole):  # same-size whole frames: one prepare call
            ims = np.stack([pairs[j.index].image for j in jobs])
            ms = np.stack([pairs[j.index].hole for j in jobs]).view(np.uint8)
            x = ops.prepare(ims, ms, self.mean, self.multiple, mask_channel=self.mask_channel,
                            fill=self.fill, fill_options=self.fill_options, fill_state=state)
        else:
            xs = []
            for j, w in zip(jobs, whole):
                im, m = pairs[j.index]
                xs.append(ops.prepare(im[None], m.view(np.uint8)[None], self.mean, self.multiple,
                                      mask_channel=self.mask_channel, fill=self.fill,
                                      fill_options=self.fill_options, fill_state=state,
                                      window=None if w else j.window))
            x = xs[0] if len(xs) == 1 else np.concatenate(xs, axis=0)
        return np.ascontiguousarray(x, dtype=np.float32)

    def infer(self, x: np.ndarray) -> np.ndarray:
        try:
            pred = self.engine.infer(x)
        except FastfillError:
            raise
        except Exception as e:  # a back-end's own error type
            raise EngineError(f"{self.engine.name} failed on a {_shape(x)} input: "
                              f"{type(e).__name__}: {e}") from e
        return checked_output(pred, x, self.engine.name)

    def __call__(self, jobs: list[Job], pairs, outs, timings: dict | None = None, state=None) -> None:
        clock = time.perf_counter
        t0 = clock()
        x = self.prepare(jobs, pairs, state)
        t1 = clock()
        pred = self.infer(x)
        t2 = clock()
        for k, j in enumerate(jobs):
            im, m = pairs[j.index]
            t, l, h, w = j.window
            win = None if (h, w) == im.shape[:2] else j.window
            ops.composite(pred[k:k + 1], im[None], m.view(np.uint8)[None], window=win,
                          out=outs[j.index][None, t:t + h, l:l + w])
        if timings is not None:
            _add(timings, "prepare", t1 - t0)
            _add(timings, "infer", t2 - t1)
            _add(timings, "composite", clock() - t2)


class _DeviceSteps:
    """GPU engines with their own uint8 path (docs/ARCHITECTURE.md, Data flow): prepare, the
    model and composite all run on the device, so only uint8 crops and masks cross PCIe; they
    count as `infer`."""

    def __init__(self, engine):
        self.engine = engine

    def __call__(self, jobs: list[Job], pairs, outs, timings: dict | None = None, state=None) -> None:
        t0 = time.perf_counter()  # (prefills the kernels compute: nothing to carry)
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


def no_model_flags(threads=None, backend=None, device=None, method=None) -> bool:
    """Whether nothing chooses or tunes a model (None or "auto" each): what then runs is
    :func:`default_engine`'s."""
    return (method is None and threads is None and backend in (None, "auto")
            and str(device or "auto") == "auto")


def default_engine(threads: int | None = None):
    """The engine ``Inpainter()`` runs with no model flags: the shipped model, or the default
    fill where the model adds nothing to its prefill. ``threads``: a share of the cores for a
    net's back-end where it takes threads (a worker among others, e.g. Ray's), which unlike
    ``Inpainter(threads=)`` does not ask for the net."""
    from .engines import open_engine

    return _without_a_net_that_adds_nothing(open_engine(None, threads=threads,
                                                        threads_where_taken=threads is not None))


def _engine(engine, threads, backend, device, method=None):
    """A loaded engine from what ``Inpainter`` was given (None, a model path or an Engine, and
    the options that choose what is loaded)."""
    if engine is None or isinstance(engine, (str, Path)):
        from .engines import open_engine

        if engine is None and no_model_flags(threads, backend, device, method):
            return default_engine()
        return open_engine(engine, backend=backend, device=device, threads=threads, method=method)
    from .engines.base import as_engine

    given = [name for name, v in (("threads", threads), ("backend", backend), ("device", device),
                                  ("method", method)) if str(v if v is not None else "auto") != "auto"]
    if given:
        raise InputError(f"{', '.join(given)}: chosen when loading; a loaded engine has its own "
                         "(pass a model path, or none, to choose)")
    return as_engine(engine)


def model_name(inp) -> str:
    """What the model is called in headers: its file name, or the engine's name (no file)."""
    path = inp.engine.path
    return Path(path).name if path else inp.engine.name


def engine_line(inp) -> str:
    """One line for a header (run, video, bench): the model, or the fill when no net runs, and
    where it runs and why there."""
    from .engines.classical import ClassicalEngine

    m = inp.meta
    eng = inp.engine
    if isinstance(eng, ClassicalEngine):  # no net runs: say which fill does the work, plainly
        if eng.path:
            return (f"model: {model_name(inp)} ({m.kind}) adds nothing to its {eng.replaces} "
                    f"prefill (checked at load): running the default fill, {eng.label}, on the CPU")
        return f"fill: {eng.label} (no model), on the CPU"
    return (f"model: {model_name(inp)} ({m.kind}, prefill {m.fill}) on {eng.selection or eng.name}, "
            f"running on {eng.runs_on}")


def _without_a_net_that_adds_nothing(engine):
    """The shipped model, or the default fill (:data:`fastfill.fills.DEFAULT_METHOD`) where the
    model returns its prefill unchanged (checked on a probe at load: a residual net whose
    correction is zero), so that the default spends its time on what changes the pixels, and on
    the fill measured best rather than on the prefill the net happened to be trained over."""
    meta = engine.meta
    if meta.fill == "mean" or meta.input_size is not None or int(meta.channels) != 4:
        return engine
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 10:22] = 1
    x = ops.prepare(image, mask, meta.mean, max(1, int(meta.multiple)), fill=meta.fill)
    try:
        same = np.array_equal(engine.infer(x), x[:, :3])
    except FastfillError:
        same = False
    if not same:
        return engine
    from .engines.classical import ClassicalEngine

    fill = ClassicalEngine.instead_of(engine, f"the default fill: the shipped model returns its "
                                              f"{meta.fill} prefill unchanged (checked at load), "
                                              "so the net does not run")
    engine.close()
    return fill


def checked_output(pred, x: np.ndarray, name: str) -> np.ndarray:
    """An engine's output for the input ``x`` as the model contract has it: float32 or float16
    ``[N, 3, H, W]`` covering ``x``'s size, every value finite (EngineError naming the engine
    otherwise: a user's engine, or a float16 model that overflowed, must not leave the hole
    black without a word)."""
    n, _, h, w = x.shape
    want = f"float32 or float16 [{n}, 3, >={h}, >={w}] (the model contract)"
    if not isinstance(pred, np.ndarray):
        raise EngineError(f"{name} returned a {type(pred).__name__}, not an array: expected {want}")
    if (pred.dtype not in (np.float32, np.float16) or pred.ndim != 4 or pred.shape[0] != n
            or pred.shape[1] != 3 or pred.shape[2] < h or pred.shape[3] < w):
        raise EngineError(f"{name} returned {pred.dtype} {list(pred.shape)} for a {_shape(x)} input: "
                          f"expected {want}")
    bad = pred.size - int(np.count_nonzero(np.isfinite(pred)))
    if bad:
        raise EngineError(f"{name} returned {bad} non-finite values (NaN or infinity) of {pred.size} "
                          f"for a {_shape(x)} input")
    return np.ascontiguousarray(pred)


def _shape(x: np.ndarray) -> str:
    return "x".join(str(v) for v in x.shape)


def one_mask(masks, image=None) -> bool:
    """Whether ``masks`` is one mask for every image: an [H, W] array, or an [H, W, 1] one (of
    ``image``'s size, when given: a stack of width-1 masks is [N, H, 1] too)."""
    if not isinstance(masks, np.ndarray):
        return False
    if masks.ndim == 2:
        return True
    if masks.ndim != 3 or masks.shape[2] != 1:
        return False
    shape = getattr(image, "shape", None)
    return shape is None or tuple(shape[:2]) == masks.shape[:2]


def frozen(a) -> bool:
    """Whether the array ``a`` cannot change under us: read-only and owning its memory (a
    read-only view could still change through its base). What is derived from a frozen mask
    (its hole, windows) may be kept for as long as the same object comes back: its owner must
    not make it writable and change it (NumPy allows that; checking every frame for it would
    cost what freezing saves), as the README says."""
    return (isinstance(a, np.ndarray) and not a.flags.writeable and a.base is None
            and a.flags.owndata)


def _image_and_mask(image, mask) -> tuple[np.ndarray, np.ndarray]:
    """What every pair must be, whatever the model: uint8 [H, W, 3] and a [H, W] mask of bools or
    finite numbers of the same size (InputError saying what is wrong otherwise)."""
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
    return image, mask


def _add(timings: dict, stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds


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


