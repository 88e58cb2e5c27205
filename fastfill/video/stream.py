"""Video in, video out: decode with PyAV, fill every frame with :meth:`Inpainter.stream`, encode.

The frame rate, size and (by default) codec of the input are kept, timestamps are carried over
frame by frame, and audio streams are copied packet for packet (no re-encoding). Masks: one file
for every frame, or a folder of per-frame masks named by frame number (``frame_0012.png`` is frame
12, counting from ``first_index``); a frame without a mask file is copied unchanged. Mask files
that match no frame of the clip are reported in one warning line; when none matches any frame
(typically a wrong ``first_index``) the input fails with :class:`NoMaskedFrames` and nothing is
written (``fastfill video`` exits 1, "some inputs failed").

Threads: the stream's reader thread demuxes and decodes (and reads mask files, and propagates:
:mod:`fastfill.video.propagate`, on by default); the inference thread runs the model; the
calling thread converts, encodes and muxes. Only the calling thread touches the output
container.

An 8-bit 4:2:0 frame is never converted to RGB whole unless something reads it whole (a source
frame of a moving camera, text detection): see :mod:`fastfill.video.frames`; the fill's result is
written back over the hole's luma pixels and the chroma of the 2x2 blocks that touch it, every
other sample is the decoder's own. A frame whose hole's neighbourhood stays put across the window
(a still hole: :class:`fastfill.video.still.StillHole`) is not filled: the hole samples written
over the frame before are written again.
"""

from __future__ import annotations

import collections
import contextlib
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FastfillError, InputError
from ..files.codecs import (_temp_stem, atomic_write, classify_image, decode_mask, dilate_mask,
                            folder_prefix, frame_number, links_out, remove_stale_temps)
from ..inpainter import frozen
from ..roi import bounding_box, hole_of
from .frames import (Decoded, PrivateFrames, RGBBuffers, chroma_blocks, from_rgb, planes,
                     reformatter_, takes, to_rgb, yuv_layout)
from .motion import import_cv2, one_thread

# Encoders that take --crf, and its range in each; --preset is x264's and x265's alone.
_CRF_RANGE = {"libx264": 51, "libx265": 51, "libvpx": 63, "libvpx-vp9": 63, "libaom-av1": 63,
              "libsvtav1": 63}
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")

# Decoder names whose encoder has another name in FFmpeg.
_ENCODER_FOR = {"vp9": "libvpx-vp9", "vp8": "libvpx", "hevc": "libx265", "av1": "libaom-av1",
                "h264": "libx264"}


@dataclass
class VideoStats:
    frames: int = 0
    filled: int = 0  # frames whose mask had a hole
    audio_packets: int = 0
    seconds: float = 0.0
    codec: str = ""
    text_detections: int = 0  # --text: frames the detector ran on ...
    text_seconds: float = 0.0  # ... and its time (in the reader thread, beside the fill)
    propagation: object = None  # propagate.PropagateStats (None: --no-propagate)

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        text = (f"; text looked for on {self.text_detections} frames in {self.text_seconds:.1f} s"
                if self.text_detections else "")
        p = self.propagation
        prop = (f"; {100 * p.share:.0f}% of the hole from other frames" if p and p.hole_pixels
                else "")
        return (f"done {self.frames} frames ({self.filled} with a hole) in {self.seconds:.1f} s "
                f"({rate:.2f} frames/s), codec {self.codec}, {self.audio_packets} audio packets "
                f"copied{text}{prop}")


def _import_av():
    try:
        import av  # noqa: F401
    except ImportError:
        raise FastfillError("video needs PyAV: pip install 'fastfill[video]'") from None
    return av


class _Masks:
    """The mask of frame i: a static mask, or a folder of per-frame files (missing = no hole);
    with ``text`` (a :class:`fastfill.masks.text.TextTrack`), united with the text found in the
    frame (``attach``), then dilated; ``mask`` None: the text alone."""

    def __init__(self, mask: str | Path | None, size: tuple[int, int], first_index: int,
                 text=None, turns: int = 0, **mask_opts):
        self.text, self.filled = text, 0  # (filled: frames with a hole, counted with text)
        self.dilate = mask_opts.pop("dilate", 0) if text is not None else 0  # after the union
        self.size, self.mask_opts, self.first_index = size, mask_opts, first_index
        # quarter turns (np.rot90's) from a stored frame to the frame as displayed: mask files
        # are drawn on the picture as a player shows it (a frame the ffmpeg program extracts),
        # and turned back to the stored frame
        self.turns = turns % 4
        p = Path(mask) if mask is not None else None
        self.static = None
        self.files: dict[int, Path] = {}
        if p is None:
            self.static = np.zeros(size, bool)
        elif p.is_file():
            self.static = self._read(p)  # (an array of its own)
        elif p.is_dir():
            inside = folder_prefix(p)
            for f in sorted(p.iterdir()):
                n = frame_number(f)
                if n is None or f.name.startswith(".") or not f.is_file():
                    continue
                # (its frame would keep what the mask covers: the video fails, exit 1)
                if links_out(f, inside):
                    raise BadVideo(f"mask {f}: a link to a file outside the mask folder: not followed")
                fmt, error = classify_image(f)
                if error is not None:
                    raise BadVideo(f"mask {f}: {error}")
                if fmt is None:  # (not an image: no concern of the mask folder)
                    continue
                if n - first_index in self.files:
                    raise InputError(f"two masks for frame {n}: {self.files[n - first_index]}, {f}")
                self.files[n - first_index] = f
            if not self.files:
                raise InputError(f"no mask images with a frame number in their name in {p}")
        else:
            raise InputError(f"{p}: no such mask file or folder")
        self._empty = np.zeros(size, bool)
        # frozen: the same array for every frame, so what the Inpainter derives from it is
        # derived once (Inpainter.check)
        for a in (self.static, self._empty):
            if a is not None:
                a.setflags(write=False)

    def __call__(self, i: int) -> np.ndarray:
        if self.static is not None:
            return self.static
        f = self.files.get(i)
        if f is None:
            return self._empty
        try:
            m = self._read(f)
        except InputError as e:  # (its message names the file; the video fails, exit 1)
            raise BadVideo(str(e)) from None
        # (ours alone: frozen, its hole and windows are found once for the conversion and the fill)
        m.setflags(write=False)
        return m

    def _read(self, path: Path) -> np.ndarray:
        """A mask file, drawn on the frame as displayed, as a mask of the stored frame."""
        h, w = self.size
        shown = (w, h) if self.turns % 2 else (h, w)
        try:
            m = decode_mask(path, shown, **self.mask_opts)
        except InputError as e:
            if self.turns % 2 and f" is {w}x{h} but " in str(e):  # (drawn on the stored frame)
                raise type(e)(f"mask {path} is {w}x{h}, the clip's frames as stored; it is shown "
                              f"turned a quarter ({h}x{w}): draw the mask on the frame as a player "
                              "shows it") from None
            raise
        return np.ascontiguousarray(np.rot90(m, -self.turns)) if self.turns else m

    def attach(self, frames):
        """(tag, rgb) with the frame number last in tag -> (tag, (rgb, its mask)), in order."""
        if self.text is None:
            for tag, rgb in frames:
                yield tag, (rgb, self(tag[-1]))
            return
        for tag, rgb, found in self.text.masks(frames):
            m = self(tag[-1]) | found
            if self.dilate:
                m = dilate_mask(m, self.dilate)
            self.filled += bool(m.any())
            yield tag, (rgb, m)


def inpaint_video(inpainter, src: str | Path, dst: str | Path, mask: str | Path | None, *,
                  first_index: int = 0, invert: bool = False, threshold: int = 128,
                  resize_mask: bool = False, dilate: int = 0, codec: str | None = None,
                  crf: int | None = None, preset: str | None = None, overwrite: bool = False,
                  progress: bool | None = None, text=None, text_every: int | None = None,
                  propagate: bool = True, window: int | None = None) -> VideoStats:
    """Fill the masked region of every frame of ``src`` and write ``dst`` (atomically).

    ``codec``: the encoder (default: the input's); ``crf`` and ``preset`` go to it (``preset``
    x264/x265 only: one of :data:`PRESETS`; an encoder that cannot take them is an InputError
    before anything is written).

    ``propagate``: each hole pixel first takes the same scene point from the nearest of
    ``window`` frames each side that shows it (:mod:`fastfill.video.propagate`; default window
    ``propagate.DEFAULT_WINDOW``), the rest is the Inpainter's fill; output waits ``window``
    frames, and a static camera over a static mask is filled as without it.

    ``text``: a text detector (:class:`fastfill.masks.text.TextDetector`) run on every
    ``text_every``-th frame (default: its options' ``every``); each frame's text joins its mask
    (:class:`fastfill.masks.text.TextTrack`). ``mask`` None: the text alone."""
    if mask is None and text is None:
        raise InputError("no mask: give a mask file or folder, or a text detector")
    av = _import_av()
    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        raise InputError(f"{dst} exists (use --overwrite to replace it)")
    if dst.resolve() == src.resolve():
        raise InputError(f"output {dst} is the input")
    if mask is not None:
        where, masks_at = dst.resolve(), Path(mask).resolve()
        if where == masks_at:
            raise InputError(f"output {dst} is the mask")
        if masks_at.is_dir() and masks_at in where.parents:
            raise InputError(f"output {dst} is in the mask folder {mask}")
    if not src.is_file():  # (a FIFO or a device would block the open, or never end)
        raise BadVideo(f"{src}: not a regular file")
    try:
        inp_c, estimated = _open_input(av, src)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        # UnicodeDecodeError: PyAV decodes the container's metadata tags as UTF-8
        raise BadVideo(f"{src}: cannot open as a video ({type(e).__name__}: {e})") from None
    stats = VideoStats()
    t0 = time.perf_counter()
    track = None
    propagator = None
    if propagate:
        from .propagate import Propagator
        from .still import StillHole

        # (OpenCV checked here, before any write); a still hole's frames take the fill of the
        # frame before them (_Transcode._output_frame), compared where the fill reads
        propagator = Propagator(window, copy=False, shifts=True,
                                still=StillHole(inpainter.margin))
        stats.propagation = propagator.stats
    # OpenCV on one thread for the whole run, set once, not at each frame's propagation
    threads = contextlib.ExitStack()
    if propagate:
        threads.enter_context(one_thread(import_cv2()))
    try:
        vin = _main_video(inp_c)
        if vin is None:
            raise BadVideo(f"{src}: no video stream" + (" (only a cover picture)" if inp_c.streams.video
                                                       else ""))
        fmt = inp_c.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg's demuxers of single pictures
            # (image2 goes by the suffix: a text file named .png is neither, a failed input)
            if classify_image(Path(src), named=True)[0] is None:
                raise BadVideo(f"{src}: not a video")
            raise InputError(f"{src}: a still image, not a video: fastfill run fills images")
        _check_boxes(inp_c)  # (before a frame is decoded: FFmpeg would log the cut as it reads)
        vin.thread_type = "AUTO"
        size = (vin.codec_context.height, vin.codec_context.width)
        if text is not None:
            from ..masks.text import TextTrack

            track = TextTrack(text, text_every or getattr(getattr(text, "options", None), "every", 10))
        turns, mirrored = _display_turns(av, src) if mask is not None else (0, False)
        if mirrored:
            print(f"warning: {src}: its display matrix mirrors the picture: the masks are read on "
                  "its frames turned as shown, not mirrored", file=sys.stderr)
        masks = _Masks(mask, size, first_index, text=track, turns=turns,
                       invert=invert, threshold=threshold,
                       resize=resize_mask, dilate=dilate, image_name=f"the frames of {src}")

        write = _Transcode(av, inpainter, inp_c, vin, masks, dst, mask, (codec, crf, preset),
                           progress, stats, propagator)
        write.estimated = estimated
        remove_stale_temps([dst])  # what a killed run left for this output (1 MB and more)
        try:
            atomic_write(dst, write, overwrite=overwrite, suffix=dst.suffix or ".mp4")
        except FileExistsError:
            raise InputError(f"{dst} exists (use --overwrite to replace it)") from None
        except av.error.FFmpegError:
            raise
        except OSError as e:
            raise InputError(f"cannot write to {dst}: {e.strerror or e}") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        why = str(e)
        temp = getattr(e, "filename", None)
        if (temp and Path(temp).parent == dst.parent
                and Path(temp).name.startswith("." + _temp_stem(dst.name) + ".")):
            why = why.replace(temp, str(dst))  # (the output's temporary name means nothing to a user)
        raise BadVideo(f"{src}: video error ({why})") from None
    finally:
        try:
            inp_c.close()
        finally:
            threads.close()  # (OpenCV's thread count back, whatever closing the input raised)
    stats.seconds = time.perf_counter() - t0
    if track is not None:
        stats.text_detections, stats.text_seconds = track.detections, track.seconds
    return stats


class _Transcode:
    """Writes the filled video into a temporary file (``atomic_write``'s writer): frames decoded
    in :meth:`Inpainter.stream`'s reader thread, filled, encoded in order; audio packets copied
    as they come."""

    def __init__(self, av, inpainter, inp_c, vin, masks, dst, mask, encoder, progress, stats,
                 propagator=None):
        self.av, self.inpainter, self.inp_c, self.vin, self.masks = av, inpainter, inp_c, vin, masks
        self.estimated = False  # the input's duration estimated from its bit rate (_open_input)
        self.dst, self.mask, self.encoder, self.progress = dst, mask, encoder, progress
        self.stats = stats
        self.propagator = propagator  # (propagate.Propagator: runs in the reader thread)
        # frame numbers the propagator gave back as still (its still_mask): added by the reader
        # thread before the frame goes on, taken by this one when it is encoded
        self._still: set[int] = set()
        self._still_mask = lambda: None  # (the empty mask that marks them, once there is one)
        # (its _HoleBox, the Y, U and V samples in its box) of the last frame written over its
        # hole: what a still frame after it takes
        self._held = None
        # packets of the copied streams (audio, subtitles) waiting to be muxed, and their streams
        self.pending: collections.deque = collections.deque()
        self.copy_map: dict = {}
        self._later: dict = {}  # (each copied stream's _Later)
        # frame number -> (decoded YUV frame, its hole's _HoleBox) while the frame is in the
        # pipeline: the result is written into the decoded planes over the hole only (planar YUV)
        self.decoded: dict[int, tuple] = {}
        self.yuv = None  # the output's pixel format when it takes that path
        self._where = None  # _HoleBox of the last hole (the reader thread's: _holes)
        self._out = None  # the last frame encoded: its buffers are written again (_over_hole)
        # swscale contexts of the reader thread and the calling thread (see frames.to_rgb)
        self._read_sws, self._write_sws = reformatter_(), reformatter_()
        # the RGB frames the fill reads in its windows: taken by the reader thread, given back
        # here once the result is encoded
        self._rgb = RGBBuffers()
        # the RGB frames propagation converts its sources into (the reader thread's alone)
        self._private = PrivateFrames()
        self._read = _Read()  # how much of the input the demuxer gave (_check_whole)
        self.vout = None  # the output's video stream
        # frame number -> the decoded frame's duration (the reader thread adds, this one takes)
        self._durations: dict[int, int] = {}

    def __call__(self, tmp: str) -> None:
        av, stats = self.av, self.stats
        try:
            out_c = av.open(tmp, "w", format=_container_format(av, self.dst, self.inp_c))
        except (av.error.FFmpegError, ValueError) as e:
            raise InputError(f"{self.dst}: cannot write this container ({e})") from None
        if out_c.format.name == "image2":  # (FFmpeg's numbered pictures, for a picture's suffix)
            out_c.close()
            raise InputError(f"-o {self.dst}: a picture's name; a video's ends in .mp4, .mkv, .mov, "
                             ".webm, ... (fastfill run fills images)")
        with out_c:
            vout = self.vout = _add_video_stream(av, out_c, self.vin, *self.encoder,
                                                 container=self.inp_c.format.name)
            _carry_tags(self.inp_c, out_c)
            _carry_tags(self.vin, vout)
            stats.codec = vout.codec_context.name
            # (a planar YUV output whose input is decoded in its format takes the decoded samples
            # outside the hole: _over_hole)
            self.yuv = vout.pix_fmt if yuv_layout(vout.pix_fmt) is not None else None
            copied = []
            kind = out_c.format.name.split(",")[0]
            for s in self.inp_c.streams:
                if s is self.vin:
                    continue
                cover = _is_cover(s)
                if (cover or s.type == "attachment") and kind == "matroska":
                    # (a font an ASS subtitle track names, a cover: Matroska attachments)
                    why = _attach(av, out_c, self.inp_c.name, s)
                    if why:
                        print(f"warning: {s.type} stream {s.index} not copied: {why}", file=sys.stderr)
                    continue
                if cover and kind != "mp4":  # (MOV drops it without a word)
                    print(f"warning: cover picture {s.index} not copied: an MP4 or Matroska "
                          f"output holds it, this container ({out_c.format.name}) not as a cover",
                          file=sys.stderr)
                    continue
                if s.type not in ("audio", "subtitle") and not cover:  # (a second video, data,
                    # attachments)
                    print(f"warning: {s.type} stream {s.index} not copied: fastfill writes the "
                          "filled video, the audio, the subtitles, a cover picture (MP4, "
                          "Matroska) and attachments (Matroska)", file=sys.stderr)
                    continue
                try:
                    o = out_c.add_stream_from_template(s)
                    if cover:
                        o.disposition = s.disposition
                except (av.error.FFmpegError, ValueError, TypeError) as e:
                    if s.type == "subtitle" or cover:  # (ASS in MP4: said, and the video goes on)
                        what = "cover picture" if cover else "subtitle stream"
                        print(f"warning: {what} {s.index} not copied: {e}", file=sys.stderr)
                        continue
                    # (the sound is not to be lost: the container cannot hold this codec, so
                    # another container is the fix)
                    raise _uncopyable(self.dst, s, e) from None
                if s.type == "audio":
                    why = _refused_at_header(av, out_c.format.name, s)
                    if why is not None:
                        raise _uncopyable(self.dst, s, why)
                _carry_tags(s, o)
                copied.append((s, o))
            self.copy_map = {s.index: o for s, o in copied}
            self._later = {s.index: _Later() for s, _ in copied}
            self.encode(out_c, vout)
            stats.filled = _count_filled(self.masks, stats.frames)
        # (both before the output is committed)
        _check_whole(self.inp_c, self.vin, self._read, self.estimated)
        _check_mask_numbers(self.masks, stats, self.mask)

    def frames(self):  # runs in the stream's reader thread
        items = self._holes(self.masks.attach(self._decoded()))
        if self.propagator is not None:
            propagator = self.propagator
            items = propagator.run(items)
            # (not through self: a cycle would keep the codecs' threads and buffers, ~160 MB at
            # 1080p, until Python's cyclic collector ran)
            self._still_mask = lambda: propagator.still_mask
        else:
            items = self._still_alone(items)
        yield from self._for_fill(items)

    def _still_alone(self, items):
        """Without propagation: a decoded frame in the still run of the frame before it
        (:class:`fastfill.video.still.StillHole`, its hole's neighbourhood unchanged) comes with
        an empty mask of its own (``_still_mask``), to take that frame's fill."""
        from .still import StillHole

        still, last, empty = StillHole(self.inpainter.margin), None, None
        found = (None, None)  # (a frozen mask, its hole or None: the same array for its frames)
        for tag, (frame, mask) in items:
            run = None
            if isinstance(frame, Decoded) and frozen(mask):  # (a mask that may change: no run)
                if found[0] is not mask:
                    hole, windows = self.inpainter.hole_and_windows(mask)
                    found = (mask, hole if windows else None)
                run = still(frame, found[1])
                if run == last:
                    if empty is None or empty.shape != mask.shape:
                        empty = np.zeros(mask.shape, bool)
                        empty.setflags(write=False)
                        self._still_mask = lambda e=empty: e
                    mask = empty
            last = run
            yield tag, (frame, mask)

    def _for_fill(self, items):
        """Each frame as the Inpainter takes it, its own to fill in place (``copy=False``): a
        Decoded frame is converted in the windows the fill reads (the result is read back on
        the hole alone, :meth:`_output_frame`), into a frame of the buffers when propagation
        still samples the one it converted into (:meth:`Decoded.rgb_lent`); an RGB frame that
        propagation read is copied. Propagation reads a frame for the `window` frames after it,
        from this thread, while the fill writes its hole from another: a bilinear tap of weight
        under 1/510, or a bicubic one past its checked footprint, reads hole pixels."""
        for tag, (frame, mask) in items:
            if isinstance(frame, Decoded) and mask is self._still_mask():
                # (nothing to fill: the frame before's samples are written over its hole, and an
                # RGB frame of the buffers with nothing converted stands in for it)
                self._still.add(tag[-1])
                frame = frame.rgb_within([])
            elif isinstance(frame, Decoded):
                # (a frozen mask's windows are found once; another's, here for check() too)
                found = self.inpainter.hole_and_windows(mask)
                boxes = list(found[1])
                kept = self.decoded.get(tag[-1]) if self.propagator is not None else None
                # (the hole as read, which the result is written back over: propagation filled
                # part of it)
                if isinstance(kept, tuple) and kept[1].box is not None:
                    y0, x0, y1, x1 = kept[1].box
                    boxes.append((y0, x0, y1 - y0, x1 - x0))
                frame = frame.rgb_lent(boxes)
                try:
                    pair = self.inpainter.check(frame, mask, found=found)
                except InputError:  # (the stream's check says why, naming the frame)
                    pair = (frame, mask)
                yield tag, pair
                continue
            elif self.propagator is not None and isinstance(frame, np.ndarray) and np.any(mask):
                frame = frame.copy()  # (no hole: nothing is written into it)
            yield tag, (frame, mask)

    def _decoded(self):
        i = 0
        read = self._read
        size = (self.vin.codec_context.width, self.vin.codec_context.height)
        # every stream's packets: the ones not copied count for how much of the file was read
        for packet in self.inp_c.demux():
            if packet.size:  # (not the demuxer's closing empty packet)
                read.note(packet, packet.stream is self.vin)
            if packet.stream is not self.vin:
                if packet.stream.index in self.copy_map and (
                        packet.dts is not None or _is_cover(packet.stream)):  # (a cover's one
                    # packet has no time)
                    self.pending.append(packet)
                continue
            for frame in packet.decode():
                if i == 0:  # (before the encoder sees a frame, as the muxer needs it)
                    _carry_display_matrix(frame, self.vout)
                    for why in _carry_frame_data(frame, self.vout):
                        print(f"warning: {self.inp_c.name}: {why}", file=sys.stderr)
                    if self.masks.text is not None:  # (text is looked for as the clip is seen)
                        self.masks.text.turns = _quarter_turns(frame)
                if (frame.width, frame.height) != size:  # (masks, windows, the encoder: one size)
                    raise BadVideo(f"{self.inp_c.name}: the frame size changes at frame {i} "
                                   f"({size[0]}x{size[1]} to {frame.width}x{frame.height}): "
                                   "fastfill video fills clips of one size; nothing written")
                tag = (frame.pts, frame.time_base, i)  # (its timing travels with it)
                if frame.duration:  # (a variable rate's last frame: its length, not a guess)
                    self._durations[i] = frame.duration
                if self.yuv and frame.format.name == self.yuv:
                    self.decoded[i] = frame
                    if self.masks.text is None and takes(frame):  # (text is found on RGB)
                        yield tag, Decoded(frame, self._read_sws, self._rgb, self._private)
                        i += 1
                        continue
                yield tag, to_rgb(frame, self._read_sws)
                i += 1

    def _holes(self, items):
        """Each kept decoded frame paired with its hole's box (before propagation shrinks the
        hole; found once for the frames that share a mask)."""
        for tag, (rgb, hole) in items:
            frame = self.decoded.get(tag[-1])
            if frame is not None:
                if self._where is None or self._where.hole is not hole:
                    self._where = _HoleBox(hole, yuv_layout(self.yuv).sub)
                self.decoded[tag[-1]] = (frame, self._where)
            yield tag, (rgb, hole)

    def _output_frame(self, i: int, result: np.ndarray):
        """The frame to encode: the decoded one with the result written over its hole (the
        rest keeps the decoder's exact samples, and only the hole's box is converted), or,
        where the formats differ, the result converted whole."""
        kept = self.decoded.pop(i, None)
        if kept is not None and isinstance(kept, tuple):
            frame, where = kept
            if i in self._still:
                self._still.discard(i)
                held = self._held
                if held is None or held[0] is not where:  # (the propagator's promise broken)
                    raise RuntimeError(f"frame {i}: still, and no frame before it with its hole")
                out = _over_hole(self.av, frame, where, None, self._out, self._write_sws, held[1])
            else:
                out = _over_hole(self.av, frame, where, result, self._out, self._write_sws)
                if where.box is not None:
                    self._held = (where, [p[cut].copy() for p, cut in zip(planes(out), where.cut)])
            self._out = out
            self._rgb.give(result)  # (read for the last time: its windows' frame, used again)
            return out
        return self.av.VideoFrame.from_ndarray(result, format="rgb24")

    def mux_copied(self, out_c):
        while self.pending:
            pkt = self.pending.popleft()
            audio = pkt.stream.type == "audio"
            index = pkt.stream.index
            pkt.stream = self.copy_map[index]
            if pkt.dts is not None:
                shift = self._later[index](pkt.dts, pkt.duration)
                if shift:
                    pkt.dts += shift
                    if pkt.pts is not None:
                        pkt.pts += shift
            out_c.mux(pkt)
            self.stats.audio_packets += audio

    def encode(self, out_c, vout):
        from tqdm import tqdm

        bar = tqdm(total=self.vin.frames or None, unit="frame", file=sys.stderr, dynamic_ncols=True,
                   disable=(not self.progress) if self.progress is not None else None)
        results = None
        lengths: dict[int, int] = {}  # pts -> the input frame's duration, for its packet
        try:
            # (the decoded frames are ours, and only the result's hole box is read: copy=False)
            motions = self.propagator.next_motion if self.propagator is not None else None
            # (stopped early, Ctrl-C: the reader thread decodes, detects text and propagates,
            # native code all; it is waited for, as a thread still in ONNX Runtime when the
            # process exits aborts the exit)
            results = self.inpainter.stream(self.frames(), carry=True, tagged=True, copy=False,
                                            motions=motions, source_wait=60.0)
            later = _Later(strict=True)
            for (pts, tb, i), result in results:
                vf = _in_colours(self.av, self._output_frame(i, result), vout, self.vin.codec_context)
                if pts is not None:
                    pts += later(pts, self._durations.get(i))
                    vf.pts, vf.time_base = pts, tb
                    duration = self._durations.pop(i, None)
                    # (the encoder keeps pts, not lengths; its packets come back in its own time
                    # base, the frames' only where the stream and the encoder share it)
                    if duration and tb == vout.time_base == vout.codec_context.time_base:
                        lengths[pts] = duration
                        while len(lengths) > 256:  # (more than an encoder's delay: never claimed)
                            del lengths[next(iter(lengths))]
                else:
                    vf.pts, vf.time_base = i, 1 / vout.codec_context.framerate
                for pkt in vout.encode(vf):
                    _with_length(pkt, lengths)
                    out_c.mux(pkt)
                self.mux_copied(out_c)
                self.stats.frames += 1
                bar.update(1)
            for pkt in vout.encode(None):
                _with_length(pkt, lengths)
                out_c.mux(pkt)
            self.mux_copied(out_c)
        finally:
            if results is not None:
                results.close()
            bar.close()


def _in_colours(av, vf, vout, cc):
    """A frame converted whole from RGB (an odd size, 10 bits, a format other than 4:2:0)
    converted to the output's format with the input's matrix and range, which the output is
    tagged with (left to the encoder, swscale's default BT.601 limited range would be shown as
    BT.709 or BT.2020)."""
    if vf.format.name != "rgb24" or not vout.pix_fmt.startswith("yuv"):
        return vf
    kw = {}
    if cc.colorspace not in (None, 0, 2):  # (0: RGB, 2: unspecified)
        kw["dst_colorspace"] = cc.colorspace
    if cc.color_range:
        kw["dst_color_range"] = cc.color_range
    if not kw:
        return vf
    try:
        out = vf.reformat(format=vout.pix_fmt, **kw)
    except (ValueError, TypeError, av.error.FFmpegError):  # (a matrix swscale does not know)
        return vf
    out.colorspace, out.color_range = cc.colorspace, cc.color_range  # (timing: set by the caller)
    return out


class _Later:
    """One stream's timestamps made to go forwards where they go back: segments joined end to
    end (a DVB recording, HLS segments cat'ed together: each starts its clock again) failed the
    encode or the mux, in a message naming the temporary file. Called with each timestamp in
    order (and the length it lasts, if known); returns what to add to it. Going back by more
    than the last step: from there on, everything moves on by how far it went back and one
    length more, as the ffmpeg program mends a discontinuity. A repeat (or less than a step
    back): left as it is where the stream allows it (``strict`` False: copied packets, as a
    TrueHD track's or subtitles that start together), else that one moved a tick past the last
    (the frames given to the encoder, which refuses a repeat)."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.offset, self.last, self.step = 0, None, 1

    def __call__(self, t: int, length: int | None = None) -> int:
        t += self.offset
        last = self.last
        if last is not None and t < last - self.step:
            more = last - t + max(1, length or self.step)
            self.offset += more
            t += more
        elif last is not None and t <= last:
            if not self.strict:
                return self.offset
            self.last = last + 1
            return self.offset + last + 1 - t
        if last is not None and t > last:
            self.step = t - last
        self.last = t
        return self.offset


def _with_length(pkt, lengths: dict) -> None:
    """A packet the encoder left without a duration takes its frame's (by pts): a variable
    rate's last frame keeps its length, and the stream its duration."""
    if not pkt.duration and pkt.pts is not None:
        d = lengths.pop(pkt.pts, None)
        if d:
            pkt.duration = d


class _HoleBox:
    """A hole's box in a frame, grown to whole chroma blocks (``sub``: the output format's
    subsampling, rows and columns), with the hole inside it plane by plane: ``cut`` (each
    plane's rows and columns of the box) and ``masks`` (the luma's hole; the chroma samples
    whose block touches it): found once for the frames that share a mask."""

    __slots__ = ("hole", "box", "cut", "masks")

    def __init__(self, hole, sub: tuple[int, int] = (2, 2)):
        self.hole = hole
        m = hole_of(hole, copy=False)
        h, w = m.shape
        found = bounding_box(m)
        self.box = None
        if found is not None:
            sy, sx = sub
            y0, x0, y1, x1 = chroma_blocks(*found, h, w, sub)
            self.box = (y0, x0, y1, x1)
            luma = m[y0:y1, x0:x1]
            # (an odd size's last block is cut by the frame's edge: padded to whole blocks)
            bh, bw = -(-(y1 - y0) // sy) * sy, -(-(x1 - x0) // sx) * sx
            pad = np.zeros((bh, bw), bool)
            pad[:y1 - y0, :x1 - x0] = luma
            chroma = pad.reshape(bh // sy, sy, bw // sx, sx).any(axis=(1, 3))
            at = (slice(y0 // sy, y0 // sy + bh // sy), slice(x0 // sx, x0 // sx + bw // sx))
            self.cut = [(slice(y0, y1), slice(x0, x1)), at, at]
            self.masks = [luma, chroma, chroma]


def _over_hole(av, frame, where: "_HoleBox", result: np.ndarray | None, last, sws, held=None):
    """``frame`` (planar YUV, :func:`fastfill.video.frames.yuv_layout`) with ``result`` (RGB)
    written over the hole (``where``): luma on the hole's pixels, chroma on the blocks that
    touch it, the box converted by the same swscale path a whole frame would take; every other
    sample (an alpha plane's included) is the decoded one, at its own bit depth. ``held``
    instead of ``result``: the Y, U and V samples of the hole's box (of a frame written before)
    written over the hole as they are. (A copy:
    the decoder may still reference the decoded frame's buffers.) ``last``: None, or a frame of
    the same size and format given to the encoder before, whose buffers are used again once no
    one else holds them (``make_writable`` copies them otherwise): a fresh 1080p frame costs page
    faults.
    ``sws``: the caller's reformatter (:func:`fastfill.video.frames.reformatter_`)."""
    if (last is not None and last.format.name == frame.format.name
            and (last.width, last.height) == (frame.width, frame.height)):
        out = last
        out.make_writable()
    else:
        out = av.VideoFrame(frame.width, frame.height, frame.format.name)
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    dst = planes(out)
    for d, src in zip(dst, planes(frame)):
        d[...] = src
    if where.box is not None and held is not None:
        for d, c, cut, m in zip(dst, held, where.cut, where.masks):
            np.copyto(d[cut], c, where=m)
    elif where.box is not None:
        y0, x0, y1, x1 = where.box
        conv = planes(from_rgb(result[y0:y1, x0:x1], frame, sws))
        for d, c, cut, m in zip(dst, conv, where.cut, where.masks):
            d[cut][m] = c[m]
    return out


def _attach(av, out_c, src, s) -> str | None:
    """Stream ``s`` of the input ``src`` (an attachment: a font, or a cover picture) written as an
    attachment of the Matroska output ``out_c``; None, or why not. A cover's picture is its one
    packet, read from a second opening of the input (the header is written before the first
    packet is demuxed); it is named cover.jpg or cover.png, as Matroska players look for it."""
    try:
        if s.type == "attachment":
            name = s.metadata.get("filename") or f"attachment{s.index}"
            mimetype = s.mimetype or s.metadata.get("mimetype") or "application/octet-stream"
            data = s.data
        else:
            codec = s.codec_context.name
            if codec not in ("mjpeg", "png"):
                return f"a {codec} cover picture (Matroska covers are JPEG or PNG)"
            with av.open(str(src)) as c:
                data = next((bytes(p) for p in c.demux(c.streams[s.index]) if p.size), b"")
            if not data:
                return "its picture could not be read"
            name, mimetype = (("cover.jpg", "image/jpeg") if codec == "mjpeg"
                              else ("cover.png", "image/png"))
        out_c.add_attachment(name, mimetype, bytes(data))
    except (av.error.FFmpegError, AttributeError, TypeError, ValueError, OSError) as e:
        return str(e) or type(e).__name__
    return None


def _is_cover(s) -> bool:
    """Whether stream ``s`` is a picture attached to the file (an MP4's or MP3's cover art: one
    frame, not the clip)."""
    return s.type == "video" and bool(s.disposition & s.disposition.__class__.attached_pic)


def _main_video(inp_c):
    """The clip: the first video stream that is not a cover picture (a cover placed first in the
    file was taken for the video: one frame filled, the clip dropped), or None."""
    return next((s for s in inp_c.streams.video if not _is_cover(s)), None)


class BadVideo(InputError):
    """The input video cannot be used (not a video, no video stream, undecodable, cut short):
    this input failed (``fastfill video`` exits 1) and no output is written. The message starts
    with the file's name."""


class NoMaskedFrames(BadVideo):
    """A folder of per-frame masks of which no file matches a frame of the clip: this input
    failed (``fastfill video`` exits 1) and no output is written. (The message does not name
    the video.)"""


def _open_input(av, src: Path):
    """(the opened input, whether FFmpeg estimated its duration from the bit rate: a Matroska
    file written to a pipe has none in its header, and the estimate says nothing of its end).
    FFmpeg says so only in its log: its warnings are captured for the open alone, with PyAV's
    dropping of a message repeated from the last one off (every such file says the same), under
    a lock (the log's level and settings are the process's)."""
    import av.logging as avlog

    with _LOG_LOCK:
        level, skip = avlog.get_level(), avlog.get_skip_repeated()
        avlog.set_level(avlog.WARNING)
        avlog.set_skip_repeated(False)
        try:
            with avlog.Capture() as logs:
                inp_c = av.open(str(src))
        finally:
            avlog.set_skip_repeated(skip)
            avlog.set_level(level)
    return inp_c, any("duration from bitrate" in str(m[-1]) for m in logs)


_LOG_LOCK = threading.Lock()


# HDR side data a frame carries that the output's frames do not (PyAV writes no side data)
_HDR_SIDE_DATA = {"MASTERING_DISPLAY_METADATA": "mastering display",
                  "CONTENT_LIGHT_LEVEL": "content light level"}


def _hdr10_x265(side: dict) -> str:
    """x265's parameters for the HDR10 static metadata in ``side`` ({side data type name: its
    bytes}: FFmpeg's AVMasteringDisplayMetadata, ten rationals (red, green, blue, white point
    x/y, then min and max luminance) and two flags; AVContentLightMetadata, two unsigned ints),
    in its units: chromaticities in 0.00002, luminance in 0.0001 cd/m2."""
    params = []
    raw = side.get("MASTERING_DISPLAY_METADATA")
    if raw is not None and len(raw) >= 88:
        v = struct.unpack("=20i2i", raw[:88])
        r = [v[2 * k] / v[2 * k + 1] if v[2 * k + 1] else 0.0 for k in range(10)]
        has_primaries, has_luminance = v[20], v[21]
        if has_primaries and has_luminance:
            c = [round(x * 50000) for x in r[:8]]
            lum = [round(x * 10000) for x in r[8:]]
            params.append(f"master-display=G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})"
                          f"WP({c[6]},{c[7]})L({lum[1]},{lum[0]})")
    raw = side.get("CONTENT_LIGHT_LEVEL")
    if raw is not None and len(raw) >= 8:
        params.append("max-cll={},{}".format(*struct.unpack("=2I", raw[:8])))
    return ":".join(params)


def _carry_frame_data(frame, vout=None) -> list[str]:
    """What a clip's first frame says, carried to the output where it can be: HDR10's static
    metadata to an x265 output (``vout``) as its parameters (its SEI). Returns what cannot be
    (the frames written are new ones, and PyAV can neither mark them interlaced nor give them
    side data), one line each."""
    out = []
    if frame.interlaced_frame:
        out.append("interlaced frames: the output is written as progressive frames (the fill and "
                   "the encoder see whole frames, and players will not deinterlace it); "
                   "deinterlace it first (ffmpeg -vf bwdif) for an output that plays as it should")
    found = {k: v for k, v in _side_data(frame).items() if k in _HDR_SIDE_DATA}
    names = [_HDR_SIDE_DATA[n] for n in found]
    params = _hdr10_x265(found) if vout is not None and vout.codec_context.name == "libx265" else ""
    if params:
        opts = dict(vout.options or {})
        opts["x265-params"] = ":".join(filter(None, (opts.get("x265-params"), params)))
        vout.options = opts  # (before the encoder opens: at the first frame it is given)
        names = []
    if names:
        out.append(f"HDR metadata ({', '.join(names)}) not carried: the output keeps the colour "
                   "description (primaries, transfer, matrix), and a display tone-maps it by its "
                   "own defaults")
    return out


def _quarter_turns(frame) -> int:
    """Quarter turns (np.rot90's) from a stored frame to the frame as displayed."""
    return int(round((frame.rotation or 0) / 90)) % 4


def _display_turns(av, src: Path) -> tuple[int, bool]:
    """Quarter turns (np.rot90's) from the clip's stored frames to the frames as displayed (a
    phone's display matrix), read from its first frame, and whether the matrix mirrors them
    too; (0, False) when none or it cannot be read (the run itself then says why)."""
    try:
        with av.open(str(src)) as c:
            vin = _main_video(c)
            if vin is None:
                return 0, False
            for frame in c.decode(vin):
                m = _display_matrix(frame)
                mirrored = m is not None and m[0] * m[4] - m[1] * m[3] < 0
                return _quarter_turns(frame), mirrored
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        pass
    return 0, False


def _side_data(frame) -> dict[str, bytes]:
    """A frame's side data: {its type's name (FFmpeg's, e.g. DISPLAYMATRIX): its bytes}."""
    side, out = frame.side_data, {}
    for sd in side:
        if not hasattr(sd, "type"):  # (PyAV 18.1.1 on: a mapping, iterated by its types)
            sd = side[sd]
        name = getattr(getattr(sd, "type", None), "name", "")
        if name:
            out[name] = bytes(sd)
    return out


def _display_matrix(frame) -> list[int] | None:
    """A frame's display matrix (nine 32-bit ints, FFmpeg's layout), or None."""
    raw = _side_data(frame).get("DISPLAYMATRIX")
    return list(struct.unpack("=9i", raw)) if raw is not None and len(raw) == 36 else None


def _carry_display_matrix(frame, vout) -> None:
    """The input's display matrix (a phone's rotation, carried by its frames) onto the output
    stream, so that the filled video is shown as the input is. (PyAV before 18 cannot write it.)"""
    if vout is None or not hasattr(vout, "set_display_matrix"):
        return
    m = _display_matrix(frame)
    if m is not None:
        vout.set_display_matrix(m)


def video_is_whole(path: str | Path) -> bool:
    """Whether an existing video file (an earlier run's output) is whole: it opens, has a video
    stream, and its packets, demuxed without decoding, reach where its index or header says it
    ends (the check an input gets). A re-run redoes an output that is not."""
    import av

    if not Path(path).is_file():  # (a FIFO would block the open)
        return False
    try:
        inp_c, estimated = _open_input(av, Path(path))
    except av.error.InterruptedError:  # (a stop signal while reading: it stops the run)
        raise KeyboardInterrupt from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return False
    try:
        with inp_c:
            vin, read = _main_video(inp_c), _Read()
            if vin is None:
                return False
            _check_boxes(inp_c)
            for packet in inp_c.demux():
                if packet.size:
                    read.note(packet, packet.stream is vin)
            _check_whole(inp_c, vin, read, estimated)
    except av.error.InterruptedError:
        raise KeyboardInterrupt from None
    except (BadVideo, av.error.FFmpegError, UnicodeDecodeError):
        return False
    return True


class _Read:
    """What the demuxer gave: the video packets and the end of the last (in the video stream's
    ticks), and the latest end (seconds) of any packet."""

    def __init__(self):
        self.video_packets = 0
        self.video_end = None
        self.end = None

    def note(self, packet, video: bool) -> None:
        self.video_packets += video
        t = packet.pts if packet.pts is not None else packet.dts
        if t is None or packet.time_base is None:
            return
        ticks = t + (packet.duration or 0)
        if video:
            self.video_end = ticks if self.video_end is None else max(self.video_end, ticks)
        end = float(ticks * packet.time_base)
        self.end = end if self.end is None else max(self.end, end)


# A file without a frame index whose packets end this much short of the duration its header
# declares is cut short: seconds, or this share of the duration when more (whole files measured
# end within 0.02 s of it; the last 5 % of an 8 s file cut off: 0.36 s short).
_SHORT_SECONDS, _SHORT_SHARE = 0.25, 0.0005


def _check_whole(inp_c, vin, read: _Read, estimated: bool = False) -> None:
    """BadVideo when the input was cut short (a copy or download that stopped). The decoder's
    frame threads pass over the last, partial packet without an error, so the file would
    otherwise be filled up to where it stops and reported done.

    - With a frame index (MP4, MOV, AVI): fewer video packets than the frames it lists, and the
      last one ending more than two frames before where the stream says it ends (AVI: its frame
      count in ticks; an AVI pads audio-longer clips with empty chunks and skips dropped frames,
      an edit list drops the samples before its first key frame: fewer packets, whole files).
    - Without (Matroska, WebM): every packet of every stream ending more than ``_SHORT_SECONDS``
      (or ``_SHORT_SHARE`` of it) before the duration its header declares, counted from the
      file's start or from 0 (a segment of a longer recording declares where it ends); not when
      that duration was estimated from the bit rate (``estimated``: a file written to a pipe)."""
    listed = vin.frames or 0
    if listed:
        if read.video_packets >= listed:
            return
        rate = vin.average_rate or vin.guessed_rate or vin.base_rate
        tb = vin.time_base
        if inp_c.format.name == "avi" and tb is not None:
            declared = (vin.start_time or 0) + listed
            frame = 1
        elif vin.duration and tb is not None:
            declared = (vin.start_time or 0) + vin.duration
            frame = 1 / (rate * tb) if rate else 0
        else:
            return
        if read.video_end is None or read.video_end < declared - 2 * frame:
            raise BadVideo(f"{inp_c.name}: cut short: {read.video_packets} of the {listed} "
                           "frames its index lists; nothing written")
        return
    if estimated or not inp_c.duration or read.end is None:
        return
    declared = inp_c.duration / 1e6
    start = inp_c.start_time / 1e6 if inp_c.start_time else 0.0
    got = max(read.end, read.end - start)
    if got < declared - max(_SHORT_SECONDS, _SHORT_SHARE * declared):
        raise BadVideo(f"{inp_c.name}: cut short: its streams end at {got:.2f} s of the "
                       f"{declared:.2f} s its header declares; nothing written")


def _check_boxes(inp_c) -> None:
    """BadVideo when an MP4 or MOV file's boxes run past its end (:func:`_box_past_the_end`)."""
    if inp_c.format.name.split(",")[0] in ("mov", "mp4", "m4a", "3gp", "3g2", "mj2"):
        cut = _box_past_the_end(inp_c.name)
        if cut is not None:
            raise BadVideo(f"{inp_c.name}: cut short: {cut}; nothing written")


def _box_past_the_end(path) -> str | None:
    """An MP4 or MOV file's top-level media box that its size says runs past the end of the file (a
    fragmented MP4 cut short has no index to count against: the demuxer reads its last fragment
    up to where the file stops, and frame threads drop what is partial without an error), said
    in a few words; None when the boxes end with the file, or where the walk meets what is not a
    box (trailing bytes some writers leave: nothing is concluded from them)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                n, kind = struct.unpack(">I4s", head[:8])
                if not all(32 <= c < 127 for c in kind):
                    return None
                if n == 1 and len(head) == 16:
                    (n,) = struct.unpack(">Q", head[8:16])
                elif n == 0:  # (to the end of the file)
                    return None
                if n < 8:
                    return None
                if pos + n > size and kind in (b"mdat", b"moof", b"moov"):  # (media, not a
                    # trailing index or tags: those cut leave every frame there)
                    name = kind.decode("ascii")
                    return (f"its '{name}' box at byte {pos} is {n} bytes long, and the last "
                            f"{pos + n - size} bytes of it are missing")
                pos += n
    except (OSError, struct.error):
        return None
    return None


def _check_mask_numbers(masks: _Masks, stats: VideoStats, where) -> None:
    """Per-frame masks: one warning line when some files fall outside the clip's frames, and
    NoMaskedFrames when none matches a frame (a wrong ``first_index`` would otherwise copy the
    video unchanged and report success)."""
    if masks.static is not None:
        return
    n = stats.frames
    outside = sorted(i for i in masks.files if not 0 <= i < n)
    numbers = sorted(i + masks.first_index for i in masks.files)
    span = (f"frames {masks.first_index}..{masks.first_index + n - 1}" if n
            else "no frames")
    if len(outside) == len(masks.files):
        raise NoMaskedFrames(
            f"no frame has a mask: the {len(numbers)} mask files in {where} are numbered "
            f"{numbers[0]}..{numbers[-1]}, the clip's {n} frames are numbered {span} with "
            f"--first-index {masks.first_index} (check --first-index); nothing written")
    if outside:
        names = ", ".join(masks.files[i].name for i in outside[:3]) + (
            ", ..." if len(outside) > 3 else "")
        print(f"warning: {len(outside)} of {len(masks.files)} mask files in {where} match no "
              f"frame (the clip has {span} with --first-index {masks.first_index}): {names}",
              file=sys.stderr)


def _count_filled(masks: _Masks, n: int) -> int:
    if masks.text is not None:
        return masks.filled
    if masks.static is not None:
        return n if masks.static.any() else 0
    return sum(1 for i in masks.files if 0 <= i < n)


def _container_format(av, dst: Path, inp_c) -> str | None:
    """None = guess from the suffix; the input's format when the output has no suffix."""
    if dst.suffix:
        return None
    return inp_c.format.name.split(",")[0]


# Encoders that take any time base (MPEG-1/2 take only their standard frame rates, MPEG-4 part 2
# a denominator up to 65535).
_ANY_TIME_BASE = frozenset({"libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libaom-av1",
                            "libsvtav1", "librav1e", "ffv1", "rawvideo", "png", "mjpeg", "libopenh264",
                            "h264_nvenc", "hevc_nvenc", "utvideo", "prores_ks", "dnxhd"})


# FFmpeg's demuxers of bare bitstreams (.h264, .hevc, .m2v, ...): no container timing, and an
# average rate that is the demuxer's own default (25), not the clip's
_RAW_VIDEO_FORMATS = frozenset({"h264", "hevc", "vvc", "evc", "mpegvideo", "m4v", "h263", "vc1",
                                "cavsvideo", "avs2", "avs3", "obu", "mjpeg"})


def _frame_rate(vin, container: str):
    """The output's frame rate: the stream's average, or for a bare bitstream the one its
    headers say (FFmpeg's guess, as the ffmpeg program takes): a 29.97 frames/s .h264 came out
    at 25, 20 % slow, and a .m2v's timestamps collided in 1/25 s and failed its encode."""
    if container in _RAW_VIDEO_FORMATS and vin.guessed_rate:
        return vin.guessed_rate
    return vin.average_rate or vin.guessed_rate or vin.base_rate or 25


def _add_video_stream(av, out_c, vin, codec: str | None, crf: int | None, preset: str | None,
                      container: str = ""):
    cc = vin.codec_context
    rate = _frame_rate(vin, container)
    names = [codec] if codec else [cc.name, _ENCODER_FOR.get(cc.name)]
    last = None
    vout = None
    for name in filter(None, names):
        try:
            vout = out_c.add_stream(name, rate=rate)
            if vout.type != "video":
                raise ValueError(f"{name} is not a video encoder")
            break
        except (av.error.FFmpegError, ValueError, TypeError, av.codec.codec.UnknownCodecError) as e:
            # (TypeError: PyAV's, on an audio encoder given a frame rate)
            last = ValueError(f"{name} is not a video encoder") if isinstance(e, TypeError) else e
            vout = None
    if vout is None:
        raise InputError(f"no encoder for codec {names[0]!r} ({last}); pick one with --codec")
    vout.width, vout.height = cc.width, cc.height
    # the pixels' shape (an anamorphic DV, DVD or HDV clip): dropped, a player shows it squashed
    sar = vin.sample_aspect_ratio or cc.sample_aspect_ratio
    if sar:
        for where in (vout.codec_context, vout):  # (the bitstream's, and the container's)
            try:
                where.sample_aspect_ratio = sar
            except (AttributeError, TypeError, ValueError):
                pass
    # the colour description (range, primaries, transfer, matrix): dropped, a player shows an HLG
    # or full-range clip as limited-range BT.709
    for attr in ("color_range", "color_primaries", "color_trc", "colorspace"):
        value = getattr(cc, attr, None)
        if value is not None:
            try:
                setattr(vout.codec_context, attr, value)
            except (AttributeError, TypeError, ValueError):
                pass
    # HEVC in MP4/MOV as tagged (hvc1: parameter sets in the sample entry; the muxer's default,
    # hev1, is refused by Apple's players)
    if (cc.codec_tag == "hvc1" and vout.codec_context.name == "libx265"
            and out_c.format.name.split(",")[0] in ("mp4", "mov")):
        vout.codec_context.codec_tag = "hvc1"
    # frame and slice threads, as the ffmpeg program sets them: PyAV's default (slices only)
    # makes libx264 about 30 % slower at 1080p on 2 cores
    vout.codec_context.thread_type = "AUTO"
    formats = [f.name for f in (vout.codec_context.codec.video_formats or [])]
    pix = cc.pix_fmt or "yuv420p"
    vout.pix_fmt = pix if (not formats or pix in formats) else (
        "yuv420p" if "yuv420p" in formats else formats[0])
    if vin.time_base is not None:
        vout.time_base = vin.time_base
        # the encoder's too, where it takes any: in 1 / the average rate, the frames' timestamps
        # were rounded (a variable rate failed in MP4, or came out with repeated timestamps)
        tb, enc = vin.time_base, vout.codec_context.name
        if enc in _ANY_TIME_BASE or (enc == "mpeg4" and tb.denominator <= 65535):
            vout.codec_context.time_base = tb
    opts = _encoder_options(vout.codec_context.name, crf, preset)
    if crf is None and vin.bit_rate and vout.codec_context.name not in ("ffv1", "png", "rawvideo"):
        vout.bit_rate = vin.bit_rate  # keep about the input's quality for bit-rate codecs
    if opts:
        vout.options = opts
    return vout


def _uncopyable(dst, s, why) -> InputError:
    return InputError(f"{dst}: the input's audio stream {s.index} ({s.codec_context.name}) cannot be "
                      f"copied into this container ({why}); pick a container that holds it (.mkv holds "
                      "most)")


def _refused_at_header(av, fmt: str, s) -> str | None:
    """Why the muxer of ``fmt`` refuses a copy of the stream ``s`` when it writes its header (a
    stream it took when added: Opus in MOV), tried on a throwaway output; None if not."""
    import io

    try:
        with av.open(io.BytesIO(), "w", format=fmt) as probe:
            probe.add_stream_from_template(s)
            probe.start_encoding()
    except (av.error.FFmpegError, ValueError, TypeError) as e:
        return str(e)
    return None


# Tags the muxer writes for itself (or that describe the input file's encode, not the output's)
_OWN_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands", "duration",
                       "number_of_frames", "number_of_bytes", "bps"})


def _carry_tags(src, dst) -> None:
    """A container's or stream's metadata tags (title, language, ...) and a stream's disposition
    (default, forced, ...) onto the output's, as the ffmpeg program carries them."""
    for k, v in dict(src.metadata).items():
        low = k.lower()
        if low in _OWN_TAGS or low.startswith(("_statistics", "number_of_", "bps-", "duration-")):
            continue
        try:
            dst.metadata[k] = v
        except (TypeError, ValueError):
            pass
    disposition = getattr(src, "disposition", None)
    if disposition is not None and hasattr(dst, "disposition"):
        try:
            dst.disposition = disposition
        except (AttributeError, TypeError, ValueError):
            pass


def _encoder_options(name: str, crf: int | None, preset: str | None) -> dict:
    """The encoder's private options for ``crf`` and ``preset``; an encoder that has no such
    option would drop it without a word (FFmpeg keeps unknown options aside): refused."""
    opts = {}
    if crf is not None:
        top = _CRF_RANGE.get(name)
        if top is None:
            raise InputError(f"--crf: encoder {name} takes no CRF (x264, x265, VP8/9 and AV1 "
                             f"do); pick one with --codec")
        if crf > top:
            raise InputError(f"--crf {crf}: {name} takes 0..{top}")
        opts["crf"] = str(crf)
    if preset is not None:
        if name not in ("libx264", "libx265"):
            raise InputError(f"--preset: encoder {name} has no x264/x265 presets; pick libx264 "
                             f"or libx265 with --codec")
        if preset not in PRESETS:
            raise InputError(f"--preset {preset!r}: one of {', '.join(PRESETS)}")
        opts["preset"] = preset
    if name == "libx265":  # (x265 prints its settings to stderr, -q or not; errors stay)
        opts["x265-params"] = "log-level=error"
    return opts


__all__ = ["inpaint_video", "VideoStats", "BadVideo", "NoMaskedFrames"]
