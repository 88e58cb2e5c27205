"""Decoded 8-bit 4:2:0 frames whose RGB is made where it is read.

A 1080p frame converted whole to RGB is a 6 MB array, kept alive as long as a window of frames
holds the frame (swscale writes it in about 0.5 ms; the windows cost about as much, their pages'
first writes more than their conversion: benchmarks/bench_frames.py). What reads
a frame in ``fastfill video``: the motion estimate, which works on grey (the luma plane, reduced)
and a colour histogram (from the reduced planes); propagation from a moving camera, which
samples anywhere (the whole frame, converted once); the fill, which reads its windows around the
hole; the encoder's write-back, which reads the hole. So a :class:`Decoded` frame converts the
whole frame only when a source needs it, and otherwise only the windows the fill reads.

Conversion of a box is swscale's, the same call that converts a whole frame; for boxes on even
coordinates (whole 2x2 chroma blocks) it gives the whole frame's pixels exactly.
"""

from __future__ import annotations

import mmap

import numpy as np

# 4:2:0 formats whose decoded planes are read and written directly (else: RGB whole).
YUV420 = ("yuv420p", "yuvj420p")
# The RGB frames of :meth:`Decoded.rgb_within` are private anonymous mappings: mmap's default for
# anonymous memory is shared, whose page faults cost about twice as much
# (benchmarks/bench_frames.py).
MAP_FLAGS = mmap.MAP_PRIVATE


def planes(frame) -> list[np.ndarray]:
    """Views of a 4:2:0 frame's three planes (without their line padding); writable when the
    frame's buffers are."""
    w, h = frame.width, frame.height
    sizes = [(h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2)]
    return [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:ph, :pw]
            for p, (ph, pw) in zip(frame.planes, sizes)]


def chroma_blocks(y0: int, x0: int, y1: int, x1: int, h: int, w: int) -> tuple[int, ...]:
    """The box (ends exclusive) grown to whole 2x2 chroma blocks of an h x w frame (even sizes)."""
    return y0 & ~1, x0 & ~1, min(h, (y1 + 1) & ~1), min(w, (x1 + 1) & ~1)


def takes(frame) -> bool:
    """Whether a decoded frame can be a :class:`Decoded`: 8-bit 4:2:0 of even size."""
    return frame.format.name in YUV420 and frame.width % 2 == 0 and frame.height % 2 == 0


class Decoded:
    """A decoded frame (PyAV ``VideoFrame``, see :func:`takes`) and its RGB, made when read:
    :meth:`rgb` whole, :meth:`rgb_within` in boxes only. ``shape`` is the RGB frame's."""

    __slots__ = ("frame", "shape", "_planes", "_whole", "_part", "_reformatter")

    def __init__(self, frame, reformatter=None):
        self.frame = frame
        # (one swscale context for a clip: a frame's own is made anew, 0.4 ms a conversion)
        self._reformatter = reformatter if reformatter is not None else reformatter_()
        self.shape = (frame.height, frame.width, 3)
        self._planes = None
        self._whole = None  # the whole frame in RGB, once asked for
        self._part = None  # an RGB frame converted in boxes (zeros elsewhere), once asked for

    @property
    def planes(self) -> list[np.ndarray]:
        """Y, U, V (read only: the decoder may still use them)."""
        if self._planes is None:
            self._planes = planes(self.frame)
            for p in self._planes:
                p.flags.writeable = False
        return self._planes

    def rgb(self) -> np.ndarray:
        """The whole frame in RGB (converted on first call; the same array afterwards)."""
        if self._whole is None:
            self._whole = to_rgb(self.frame, self._reformatter)
        return self._whole

    def rgb_within(self, boxes) -> np.ndarray:
        """An RGB frame whose pixels are the frame's inside ``boxes`` ((top, left, height,
        width) each) and zero outside (the whole frame once :meth:`rgb` was called). Its own
        array, made once: what the caller writes into it stays there."""
        if self._whole is not None:
            return self._whole
        h, w, _ = self.shape
        if self._part is None:
            # A mapping of its own: the kernel's zero pages cost nothing until written, so only
            # the boxes are paid for (np.zeros on reused heap memory clears all 6 MB of 1080p).
            buf = mmap.mmap(-1, h * w * 3, flags=MAP_FLAGS)
            self._part = np.frombuffer(buf, np.uint8).reshape(self.shape)
        for top, left, bh, bw in boxes:
            # whole 2x2 chroma blocks: a box's conversion is then the whole frame's, exactly
            y0, x0, y1, x1 = chroma_blocks(top, left, top + bh, left + bw, h, w)
            if y1 > y0 and x1 > x0:
                self._part[y0:y1, x0:x1] = self._convert(y0, x0, y1, x1)
        return self._part

    def _convert(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        import av

        f = self.frame
        box = av.VideoFrame(x1 - x0, y1 - y0, f.format.name)
        box.colorspace, box.color_range = f.colorspace, f.color_range
        src = self.planes
        for k, d in enumerate(planes(box)):
            s = 1 if k == 0 else 2
            d[...] = src[k][y0 // s:y1 // s, x0 // s:x1 // s]
        return to_rgb(box, self._reformatter)


def reformatter_():
    """A PyAV reformatter (swscale context, kept across calls of the same conversion): one per
    thread that converts."""
    from av.video.reformatter import VideoReformatter

    return VideoReformatter()


def to_rgb(frame, reformatter) -> np.ndarray:
    """``frame.to_ndarray(format="rgb24")`` through ``reformatter`` (the same pixels)."""
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


__all__ = ["Decoded", "chroma_blocks", "planes", "takes", "to_rgb", "reformatter_", "YUV420"]
