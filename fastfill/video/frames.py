"""Decoded 8-bit 4:2:0 frames whose RGB is made where it is read.

A 1080p frame converted whole to RGB is a 6 MB array, kept alive as long as a window of frames
holds the frame (swscale writes it in about 0.5 ms; the windows cost about as much, their pages'
first writes more than their conversion: benchmarks/bench_frames.py). What reads
a frame in ``fastfill video``: the motion estimate, which works on grey (the luma plane, reduced)
and a colour histogram (from the reduced planes); propagation from a moving camera, which
samples anywhere (the whole frame, converted once); the fill, which reads its windows around the
hole; the encoder's write-back, which reads the hole. So a :class:`Decoded` frame converts the
whole frame only when a source needs it, and otherwise only the windows the fill reads.

Conversion is :func:`fastfill.ops.yuv_to_rgb` (each chroma sample covers its 2x2 block), for a
box as for the whole frame: a box on even coordinates (whole chroma blocks) gives the whole
frame's pixels exactly.
"""

from __future__ import annotations

import collections
import functools
import mmap
import sys
import weakref

import numpy as np

from .. import ops

# 8-bit 4:2:0 formats whose frames travel as Decoded (RGB made in boxes where read); every planar
# YUV format (yuv_layout) is written back over the hole alone.
YUV420 = ("yuv420p", "yuvj420p")
# The RGB frames of :meth:`Decoded.rgb_within` are private anonymous mappings: mmap's default for
# anonymous memory is shared, whose page faults cost about twice as much
# (benchmarks/bench_frames.py).
MAP_FLAGS = mmap.MAP_PRIVATE


class Layout(collections.namedtuple("Layout", "dtype sub planes bits")):
    """A planar YUV format's samples: their dtype (uint8, or little-endian uint16), the chroma's
    subsampling (rows, columns: 1, 2 or 4), the number of planes (3, or 4 with alpha) and the
    bits a sample."""


@functools.lru_cache(maxsize=None)
def yuv_layout(name: str) -> Layout | None:
    """How the planes of pixel format ``name`` are written sample by sample (:class:`Layout`),
    for planar YUV with one plane a component (Y, U, V, and an alpha plane at the luma's size),
    8 to 16 bits a sample, little-endian; None for any other format (RGB, packed, semi-planar,
    grey, paletted), which is converted whole. (PyAV's ``is_chroma`` is false for unsubsampled
    chroma.)"""
    import av

    try:
        f = av.VideoFormat(name)
    except (ValueError, TypeError):
        return None
    comps = list(f.components)
    bits = {c.bits for c in comps}
    if (not f.is_planar or f.is_rgb or f.is_big_endian or f.has_palette or len(comps) not in (3, 4)
            or [c.plane for c in comps] != list(range(len(comps))) or len(bits) != 1
            or not 8 <= min(bits) <= 16 or any(c.is_alpha for c in comps[:3])
            or (len(comps) == 4 and not comps[3].is_alpha)):
        return None
    dtype = np.dtype(np.uint8) if comps[0].bits == 8 else np.dtype("<u2")
    n = 64  # (a size that every subsampling divides)
    return Layout(dtype, (n // f.chroma_height(n), n // f.chroma_width(n)), len(comps), min(bits))


def planes(frame) -> list[np.ndarray]:
    """Views of a planar YUV frame's planes (:func:`yuv_layout`; without their line padding);
    writable when the frame's buffers are."""
    dtype, (sy, sx), n, _ = yuv_layout(frame.format.name)
    w, h = frame.width, frame.height
    ch, cw = -(-h // sy), -(-w // sx)
    sizes = ((h, w), (ch, cw), (ch, cw), (h, w))
    return [np.frombuffer(p, dtype).reshape(-1, p.line_size // dtype.itemsize)[:ph, :pw]
            for p, (ph, pw) in zip(frame.planes, sizes[:n])]


def chroma_blocks(y0: int, x0: int, y1: int, x1: int, h: int, w: int,
                  sub: tuple[int, int] = (2, 2)) -> tuple[int, ...]:
    """The box (ends exclusive) grown to whole chroma blocks (``sub``: rows, columns) of an
    h x w frame (the last block of an odd size is cut by the frame's edge)."""
    sy, sx = sub
    return y0 - y0 % sy, x0 - x0 % sx, min(h, -(-y1 // sy) * sy), min(w, -(-x1 // sx) * sx)


def takes(frame) -> bool:
    """Whether a decoded frame can be a :class:`Decoded`: 8-bit 4:2:0 of even size."""
    return frame.format.name in YUV420 and frame.width % 2 == 0 and frame.height % 2 == 0


class Decoded:
    """A decoded frame (PyAV ``VideoFrame``, see :func:`takes`) and its RGB, made when read:
    :meth:`rgb` whole, :meth:`rgb_within` in boxes only. ``shape`` is the RGB frame's."""

    __slots__ = ("frame", "shape", "_planes", "_whole", "_part", "_source", "_reformatter",
                 "_buffers", "_private")

    def __init__(self, frame, reformatter=None, buffers: "RGBBuffers | None" = None,
                 private: "PrivateFrames | None" = None):
        self.frame = frame
        # (one swscale context for a clip: a frame's own is made anew, 0.4 ms a conversion)
        self._reformatter = reformatter if reformatter is not None else reformatter_()
        self.shape = (frame.height, frame.width, 3)
        self._planes = None
        self._whole = None  # the whole frame in RGB, once asked for
        self._part = None  # _Converted: an RGB frame converted in boxes (zeros elsewhere)
        self._source = None  # _Converted: the same, private, once _part went to the buffers
        self._buffers = buffers  # where rgb_within's frame comes from (None: a fresh mapping)
        self._private = private  # where a frame not lent comes from (None: a fresh mapping)

    @property
    def planes(self) -> list[np.ndarray]:
        """Y, U, V (read only: the decoder may still use them)."""
        if self._planes is None:
            self._planes = planes(self.frame)
            for p in self._planes:
                p.flags.writeable = False
        return self._planes

    def rgb(self) -> np.ndarray:
        """The whole frame in RGB (converted on first call; the same array afterwards). A frame
        converted in boxes before, for itself (not for :meth:`rgb_within`'s ``source``), is that
        frame with the rest converted: what was written into it stays there."""
        if self._whole is None:
            part = self._part
            if part is None:
                self._whole = to_rgb(self.frame, self._reformatter)
            else:
                h, w, _ = self.shape
                self._whole = self.rgb_within([(0, 0, h, w)])
        return self._whole

    def rgb_within(self, boxes, *, source: bool = False, grow: int = 0) -> np.ndarray:
        """An RGB frame whose pixels are the frame's inside ``boxes`` ((top, left, height,
        width) each) and zero outside (the whole frame once :meth:`rgb` was called). Its own
        array, made once: each pixel is converted once, and what the caller writes into it
        stays there (a box asked for again is not converted again).

        ``source``: for a reader of the frame's own pixels that may outlive the frame's trip
        through the fill (propagation reading it for later frames): the array is never one of
        the buffers' (which the encoder's thread gives back to be used again), a private one
        when the frame's own went to the buffers. ``grow``: a box with anything still to
        convert is grown by this many pixels first (a reader whose boxes creep, such as a
        pan's, then converts a strip every few frames, not a sliver every frame)."""
        if self._whole is not None:
            return self._whole
        h, w, _ = self.shape
        blocks = self._blocks(boxes)
        part = self._part
        if part is None:
            lend = self._buffers is not None and not source
            part = self._part = _Converted(self._buffers.take(self.shape, blocks) if lend
                                           else self._fresh(), lend)
        elif source and part.lent:
            if self._source is None:
                self._source = _Converted(self._fresh(), False)
            part = self._source
        if grow > 0:  # (a block with nothing left to convert is not grown)
            blocks = [_grown(b, grow, h, w) if _missing([b], part.done) else b for b in blocks]
        todo = part.missing(blocks)
        if part.lent and todo:
            self._buffers.written(part.array, todo)
        for y0, x0, y1, x1 in todo:
            self._convert(y0, x0, y1, x1, part.array[y0:y1, x0:x1])
        part.done.extend(todo)
        return part.array

    def _fresh(self) -> np.ndarray:
        return self._private.take(self.shape) if self._private is not None else _mapped(self.shape)

    def recycle(self) -> None:
        """The reader is done with this frame (propagation, once it leaves its window): with a
        pool (``private``), its private RGB frames go back to it, to be used again once nothing
        holds them or a view of them, and what was written into them is gone (the frame
        converts anew if asked again); without one, nothing changes."""
        if self._private is None:
            return
        for part in (self._part, self._source):
            if part is not None and not part.lent:
                self._private.give(part.array, part.done)
        self._part = self._source = self._whole = None

    def _blocks(self, boxes) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) boxes as (y0, x0, y1, x1) of whole 2x2 chroma blocks (a
        box's conversion is then the whole frame's, exactly), the empty ones left out."""
        h, w, _ = self.shape
        return [b for b in (chroma_blocks(top, left, top + bh, left + bw, h, w)
                            for top, left, bh, bw in boxes) if b[2] > b[0] and b[3] > b[1]]

    def rgb_lent(self, boxes) -> np.ndarray:
        """:meth:`rgb_within` for a reader that writes into the frame while others may still
        read it (the fill, in place, while propagation samples the frame for later ones): a
        frame of the buffers that no one else holds. The part itself when it came from the
        buffers; otherwise ``boxes``, converted into the shared frame first (with what was
        written there: the propagated pixels), copied into a frame taken from the buffers."""
        shared = self.rgb_within(boxes)
        part = self._part
        if self._whole is None and part is not None and part.lent:
            return shared
        blocks = self._blocks(boxes)
        if not blocks:  # (no box: nothing is written into it, nor read back)
            return shared
        blocks = _missing(blocks, [])  # (disjoint: each pixel copied once)
        own = (self._buffers.take(self.shape, blocks) if self._buffers is not None
               else _mapped(self.shape))
        for y0, x0, y1, x1 in blocks:
            own[y0:y1, x0:x1] = shared[y0:y1, x0:x1]
        return own

    def _convert(self, y0: int, x0: int, y1: int, x1: int, out: np.ndarray) -> None:
        """The box (on whole chroma blocks) converted into ``out`` (a view of its size)."""
        yp, up, vp = self.planes
        c = (slice(y0 // 2, -(-y1 // 2)), slice(x0 // 2, -(-x1 // 2)))
        ops.yuv_to_rgb(yp[y0:y1, x0:x1], up[c], vp[c], _coefficients(self.frame), out)


def _grown(b, grow: int, h: int, w: int) -> tuple[int, int, int, int]:
    """Box ``b`` grown by ``grow`` (even) and its edges moved out to multiples of it, within
    the frame."""
    y0, x0, y1, x1 = b
    return (max(0, (y0 - grow) // grow * grow), max(0, (x0 - grow) // grow * grow),
            min(h, -(-(y1 + grow) // grow) * grow), min(w, -(-(x1 + grow) // grow) * grow))


class _Converted:
    """An RGB frame converted in boxes: the array, the boxes converted ((y0, x0, y1, x1),
    disjoint), and whether it came from :class:`RGBBuffers` (lent: given back after encoding)."""

    __slots__ = ("array", "done", "lent")

    def __init__(self, array: np.ndarray, lent: bool):
        self.array, self.done, self.lent = array, [], lent

    def missing(self, blocks) -> list[tuple[int, int, int, int]]:
        """Disjoint boxes covering what ``blocks`` hold and nothing converted does."""
        return _missing(blocks, self.done)


def _missing(blocks, done) -> list[tuple[int, int, int, int]]:
    """The parts of ``blocks`` outside every box of ``done``, as disjoint boxes (each block
    less the boxes before it too, so overlapping blocks are converted once)."""
    out: list = []
    for b in blocks:
        pieces = [b]
        for d in (*done, *out):
            pieces = [q for p in pieces for q in _less(p, d)]
            if not pieces:
                break
        out.extend(pieces)
    return out


def _less(r, s) -> list[tuple[int, int, int, int]]:
    """Box ``r`` less box ``s`` (y0, x0, y1, x1 each): at most four boxes."""
    y0, x0, y1, x1 = r
    a0, b0, a1, b1 = s
    if a0 >= y1 or a1 <= y0 or b0 >= x1 or b1 <= x0:
        return [r]
    out = []
    if a0 > y0:
        out.append((y0, x0, a0, x1))
    if a1 < y1:
        out.append((a1, x0, y1, x1))
    m0, m1 = max(y0, a0), min(y1, a1)
    if b0 > x0:
        out.append((m0, x0, m1, b0))
    if b1 < x1:
        out.append((m0, b1, m1, x1))
    return out


def _mapped(shape) -> np.ndarray:
    """A zero frame in a mapping of its own: the kernel's zero pages cost nothing until written,
    so only the boxes are paid for (np.zeros on reused heap memory clears all 6 MB of 1080p)."""
    buf = mmap.mmap(-1, int(np.prod(shape)), flags=MAP_FLAGS)
    return np.frombuffer(buf, np.uint8).reshape(shape)


class RGBBuffers:
    """The frames :meth:`Decoded.rgb_within` converts into, used again once given back (by the
    thread that consumed the frame, :meth:`give`): a fresh mapping pays a page fault for every
    page its boxes touch (about 300 a 1080p frame under a logo; measured 3 % of ``fastfill
    video``'s CPU on a static shot). A frame taken again keeps zeros outside its new boxes: the
    boxes it held before are cleared first. ``take`` runs in one thread and ``give`` in another
    (a deque's append and pop are atomic); a frame never given back is simply not reused, and at
    most ``keep`` unused frames are kept (6 MB each at 1080p)."""

    def __init__(self, keep: int = 4):
        self._free: collections.deque = collections.deque()  # (frame, its boxes) given back
        self._lent: dict = {}  # id(frame) -> (weak reference, the boxes written into it)
        self._keep = keep

    def take(self, shape, boxes) -> np.ndarray:
        """A zero frame of ``shape`` for ``boxes`` ((y0, x0, y1, x1) each, about to be written)."""
        try:
            frame, old = self._free.pop()
        except IndexError:
            frame, old = _mapped(shape), []
        if frame.shape != tuple(shape):
            frame, old = _mapped(shape), []
        for b in old:
            if b not in boxes:
                frame[b[0]:b[2], b[1]:b[3]] = 0
        key = id(frame)
        self._lent[key] = (weakref.ref(frame, lambda _, k=key: self._lent.pop(k, None)),
                           list(boxes))
        return frame

    def written(self, frame: np.ndarray, boxes) -> None:
        """More boxes written into a frame taken before."""
        entry = self._lent.get(id(frame))
        if entry is not None and entry[0]() is frame:
            entry[1].extend(b for b in boxes if b not in entry[1])

    def give(self, frame) -> None:
        """A frame taken here is no longer read (anything else is ignored)."""
        entry = self._lent.pop(id(frame), None)
        if entry is not None and entry[0]() is frame and len(self._free) < self._keep:
            self._free.append((frame, entry[1]))


class PrivateFrames:
    """The private RGB frames of :meth:`Decoded.rgb_within` with ``source`` (propagation's: read
    for later frames, from the reader thread), used again once given back
    (:meth:`Decoded.recycle`) and held by nothing else: a fresh mapping pays a page fault for
    every page its boxes touch (about 270 a frame on a 1080p pan, at several microseconds each
    in a virtual machine). A frame still held, or a view of it (NumPy's views hold the array the
    frame is a view of), is not used again but left to be freed. A frame taken again is zero
    outside its new boxes, as a fresh one: the boxes it held are cleared. One thread; at most
    ``keep`` frames wait."""

    def __init__(self, keep: int = 4):
        self._free: collections.deque = collections.deque()  # (frame, the boxes written into it)
        self._keep = keep

    def take(self, shape) -> np.ndarray:
        """A zero frame of ``shape``."""
        while self._free:
            frame, boxes = self._free.popleft()
            if frame.shape == tuple(shape) and _references(frame) == _ALONE:
                for y0, x0, y1, x1 in boxes:
                    frame[y0:y1, x0:x1] = 0
                return frame
        return _mapped(shape)

    def give(self, frame: np.ndarray, boxes) -> None:
        """A frame taken here (or made by :func:`_mapped`) and the boxes written into it."""
        if len(self._free) < self._keep and isinstance(frame.base, np.ndarray):
            self._free.append((frame, list(boxes)))


def _references(frame: np.ndarray) -> tuple[int, int]:
    """The reference counts of a frame of :func:`_mapped` and of its base (which NumPy's views
    of the frame hold)."""
    return sys.getrefcount(frame), sys.getrefcount(frame.base)


def _alone() -> tuple[int, int]:
    frame = _mapped((1, 1, 3))
    return _references(frame)


# What _references says of a frame held by one local variable and nothing else, measured
# (what a call adds to the counts depends on the interpreter's version)
_ALONE = _alone()


def reformatter_():
    """A PyAV reformatter (swscale context, kept across calls of the same conversion): one per
    thread that converts."""
    from av.video.reformatter import VideoReformatter

    return VideoReformatter()


@functools.lru_cache(maxsize=None)
def _deep(name: str) -> bool:
    """Whether pixel format ``name`` has more than 8 bits a sample."""
    import av

    return any(c.bits > 8 for c in av.VideoFormat(name).components)


_BICUBIC = "BICUBIC"  # (swscale's scaler by name, as PyAV takes it)


def to_rgb(frame, reformatter) -> np.ndarray:
    """A decoded frame's pixels as RGB ``[h, w, 3]``, each rounded to the nearest level, in
    the frame's colour matrix and range: 8-bit planar YUV (:func:`yuv_layout`) by
    :func:`fastfill.ops.yuv_to_rgb` (each chroma sample covers its block); a format of more than
    8 bits through swscale's 16-bit RGB, rounded (:func:`from_rgb` writes through it too, and
    swscale scales high bit depths its own way, 943 for 10-bit white where the standard says
    940: read and write agree); anything else by swscale (``reformatter``). swscale's own 8-bit
    RGB truncates (about 1.1 levels dark from 8-bit 4:2:0, 1.3 from 10 bits: a hole written
    back from it came out darker than the samples around it). Its bilinear 16-bit RGB of 4:2:0
    or 4:4:0 at an odd width is wrong by up to 198 levels; bicubic's is not."""
    layout = yuv_layout(frame.format.name)
    if layout is not None and layout.bits == 8:
        yp, up, vp = planes(frame)[:3]
        return ops.yuv_to_rgb(yp, up, vp, _coefficients(frame))
    if _deep(frame.format.name):
        wide = reformatter.reformat(frame, format="rgb48le", threads=1,
                                    interpolation=_BICUBIC if frame.width % 2 else None)
        return to_8bit(wide.to_ndarray())
    return reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()


def _coefficients(frame) -> tuple[int, ...]:
    """:func:`fastfill.ops.yuv_coefficients` for a frame's matrix and range (yuvj: full)."""
    full = frame.color_range == 2 or frame.format.name.startswith("yuvj")
    return ops.yuv_coefficients(frame.colorspace, full)


@functools.lru_cache(maxsize=None)
def _cv2():
    try:
        import cv2
    except ImportError:  # (the video extra brings it; NumPy does the same, 8x slower)
        return None
    return cv2


def to_8bit(wide: np.ndarray) -> np.ndarray:
    """16-bit samples as 8-bit ones, rounded (v / 257): OpenCV's saturating conversion (1.3 ms
    for a 1080p RGB frame on one core) or, without OpenCV, float32 (exact too: v / 257 is never
    within 1/514 of a half)."""
    cv2 = _cv2()
    if cv2 is not None and wide.ndim >= 2 and wide.flags.c_contiguous:
        return cv2.convertScaleAbs(wide.reshape(wide.shape[0], -1), alpha=1 / 257).reshape(wide.shape)
    return np.rint(np.multiply(wide, np.float32(1 / 257), dtype=np.float32)).astype(np.uint8)


def from_rgb(rgb: np.ndarray, like, reformatter):
    """RGB pixels (uint8) as a frame in ``like``'s format, colour matrix and range: the inverse
    of :func:`to_rgb` (16-bit RGB for a format of more than 8 bits, as it reads them)."""
    import av

    if _deep(like.format.name):
        f = av.VideoFrame.from_ndarray(np.multiply(rgb, 257, dtype=np.uint16), format="rgb48le")
    else:
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    f.colorspace, f.color_range = like.colorspace, like.color_range
    return reformatter.reformat(f, format=like.format.name)


__all__ = ["Decoded", "PrivateFrames", "RGBBuffers", "chroma_blocks", "from_rgb", "planes", "takes", "to_rgb",
           "reformatter_", "to_8bit", "yuv_layout", "Layout", "YUV420"]
