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
"""

from __future__ import annotations

import collections
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FastfillError, InputError
from ..files.codecs import atomic_write, decode_mask, dilate_mask, frame_number, sniff_image

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
        text = (f"; text found on {self.text_detections} frames in {self.text_seconds:.1f} s"
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
        raise FastfillError("video needs PyAV: pip install fastfill[video]") from None
    return av


class _Masks:
    """The mask of frame i: a static mask, or a folder of per-frame files (missing = no hole);
    with ``text`` (a :class:`fastfill.masks.text.TextTrack`), united with the text found in the
    frame (``attach``), then dilated; ``mask`` None: the text alone."""

    def __init__(self, mask: str | Path | None, size: tuple[int, int], first_index: int,
                 text=None, **mask_opts):
        self.text, self.filled = text, 0  # (filled: frames with a hole, counted with text)
        self.dilate = mask_opts.pop("dilate", 0) if text is not None else 0  # after the union
        self.size, self.mask_opts, self.first_index = size, mask_opts, first_index
        p = Path(mask) if mask is not None else None
        self.static = None
        self.files: dict[int, Path] = {}
        if p is None:
            self.static = np.zeros(size, bool)
        elif p.is_file():
            self.static = decode_mask(p, size, **mask_opts)
        elif p.is_dir():
            for f in sorted(p.iterdir()):
                n = frame_number(f)
                if n is None or f.name.startswith(".") or not f.is_file():
                    continue
                if sniff_image(f) is None:
                    continue
                if n - first_index in self.files:
                    raise InputError(f"two masks for frame {n}: {self.files[n - first_index]}, {f}")
                self.files[n - first_index] = f
            if not self.files:
                raise InputError(f"no mask images with a frame number in their name in {p}")
        else:
            raise InputError(f"{p}: no such mask file or folder")
        self._empty = np.zeros(size, bool)

    def __call__(self, i: int) -> np.ndarray:
        if self.static is not None:
            return self.static
        f = self.files.get(i)
        if f is None:
            return self._empty
        try:
            return decode_mask(f, self.size, **self.mask_opts)
        except InputError as e:
            raise InputError(f"{f}: {e}") from None

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
                  crf: int | None = None, overwrite: bool = False,
                  progress: bool | None = None, text=None, text_every: int | None = None,
                  propagate: bool = True, window: int | None = None) -> VideoStats:
    """Fill the masked region of every frame of ``src`` and write ``dst`` (atomically).

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
    try:
        inp_c = av.open(str(src))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        # UnicodeDecodeError: PyAV decodes the container's metadata tags as UTF-8
        raise InputError(f"{src}: cannot open as a video ({type(e).__name__}: {e})") from None
    stats = VideoStats()
    t0 = time.perf_counter()
    track = None
    propagator = None
    if propagate:
        from .propagate import Propagator

        propagator = Propagator(window)  # (OpenCV is checked here, before anything is written)
        stats.propagation = propagator.stats
    try:
        if not inp_c.streams.video:
            raise InputError(f"{src}: no video stream")
        fmt = inp_c.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg's demuxers of single pictures
            raise InputError(f"{src}: a still image, not a video: fastfill run fills images")
        vin = inp_c.streams.video[0]
        vin.thread_type = "AUTO"
        size = (vin.codec_context.height, vin.codec_context.width)
        if text is not None:
            from ..masks.text import TextTrack

            track = TextTrack(text, text_every or getattr(getattr(text, "options", None), "every", 10))
        masks = _Masks(mask, size, first_index, text=track, invert=invert, threshold=threshold,
                       resize=resize_mask, dilate=dilate, image_name=f"the frames of {src}")

        write = _Transcode(av, inpainter, inp_c, vin, masks, dst, mask, codec, crf, progress, stats,
                           propagator)
        try:
            atomic_write(dst, write, overwrite=overwrite, suffix=dst.suffix or ".mp4")
        except FileExistsError:
            raise InputError(f"{dst} exists (use --overwrite to replace it)") from None
        except av.error.FFmpegError:
            raise
        except OSError as e:
            raise InputError(f"cannot write to {dst}: {e.strerror or e}") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(f"{src}: video error ({e})") from None
    finally:
        inp_c.close()
    stats.seconds = time.perf_counter() - t0
    if track is not None:
        stats.text_detections, stats.text_seconds = track.detections, track.seconds
    return stats


class _Transcode:
    """Writes the filled video into a temporary file (``atomic_write``'s writer): frames decoded
    in :meth:`Inpainter.stream`'s reader thread, filled, encoded in order; audio packets copied
    as they come."""

    def __init__(self, av, inpainter, inp_c, vin, masks, dst, mask, codec, crf, progress, stats,
                 propagator=None):
        self.av, self.inpainter, self.inp_c, self.vin, self.masks = av, inpainter, inp_c, vin, masks
        self.dst, self.mask, self.codec, self.crf, self.progress = dst, mask, codec, crf, progress
        self.stats = stats
        self.propagator = propagator  # (propagate.Propagator: runs in the reader thread)
        self.pending_audio: collections.deque = collections.deque()

    def __call__(self, tmp: str) -> None:
        av, stats = self.av, self.stats
        try:
            out_c = av.open(tmp, "w", format=_container_format(av, self.dst, self.inp_c))
        except (av.error.FFmpegError, ValueError) as e:
            raise InputError(f"{self.dst}: cannot write this container ({e})") from None
        with out_c:
            vout = _add_video_stream(av, out_c, self.vin, self.codec, self.crf)
            stats.codec = vout.codec_context.name
            audio = []
            for a in self.inp_c.streams.audio:
                try:
                    audio.append((a, out_c.add_stream_from_template(a)))
                except (av.error.FFmpegError, ValueError) as e:
                    print(f"warning: audio stream {a.index} not copied: {e}", file=sys.stderr)
            self.audio_map = {a.index: o for a, o in audio}
            self.encode(out_c, vout, [self.vin] + [a for a, _ in audio])
            stats.filled = _count_filled(self.masks, stats.frames)
        _check_mask_numbers(self.masks, stats, self.mask)  # before the output is committed

    def frames(self, streams):  # runs in the stream's reader thread
        items = self.masks.attach(self._decoded(streams))
        yield from (self.propagator.run(items) if self.propagator is not None else items)

    def _decoded(self, streams):
        i = 0
        for packet in self.inp_c.demux(*streams):
            if packet.stream.type == "audio":
                if packet.dts is not None:
                    self.pending_audio.append(packet)
                continue
            for frame in packet.decode():
                # the frame's timing travels with it through the model
                yield (frame.pts, frame.time_base, i), frame.to_ndarray(format="rgb24")
                i += 1

    def mux_audio(self, out_c):
        while self.pending_audio:
            pkt = self.pending_audio.popleft()
            pkt.stream = self.audio_map[pkt.stream.index]
            out_c.mux(pkt)
            self.stats.audio_packets += 1

    def encode(self, out_c, vout, streams):
        from tqdm import tqdm

        bar = tqdm(total=self.vin.frames or None, unit="frame", file=sys.stderr, dynamic_ncols=True,
                   disable=(not self.progress) if self.progress is not None else None)
        try:
            for (pts, tb, i), result in self.inpainter.stream(self.frames(streams), carry=True,
                                                               tagged=True):
                vf = self.av.VideoFrame.from_ndarray(result, format="rgb24")
                if pts is not None:
                    vf.pts, vf.time_base = pts, tb
                else:
                    vf.pts, vf.time_base = i, 1 / vout.codec_context.framerate
                for pkt in vout.encode(vf):
                    out_c.mux(pkt)
                self.mux_audio(out_c)
                self.stats.frames += 1
                bar.update(1)
            for pkt in vout.encode(None):
                out_c.mux(pkt)
            self.mux_audio(out_c)
        finally:
            bar.close()


class NoMaskedFrames(InputError):
    """A folder of per-frame masks of which no file matches a frame of the clip: this input
    failed (``fastfill video`` exits 1) and no output is written."""


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


def _add_video_stream(av, out_c, vin, codec: str | None, crf: int | None):
    cc = vin.codec_context
    rate = vin.average_rate or vin.guessed_rate or vin.base_rate or 25
    names = [codec] if codec else [cc.name, _ENCODER_FOR.get(cc.name)]
    last = None
    vout = None
    for name in filter(None, names):
        try:
            vout = out_c.add_stream(name, rate=rate)
            break
        except (av.error.FFmpegError, ValueError, av.codec.codec.UnknownCodecError) as e:
            last = e
    if vout is None:
        raise InputError(f"no encoder for codec {names[0]!r} ({last}); pick one with --codec")
    vout.width, vout.height = cc.width, cc.height
    formats = [f.name for f in (vout.codec_context.codec.video_formats or [])]
    pix = cc.pix_fmt or "yuv420p"
    vout.pix_fmt = pix if (not formats or pix in formats) else (
        "yuv420p" if "yuv420p" in formats else formats[0])
    if vin.time_base is not None:
        vout.time_base = vin.time_base
    opts = {}
    if crf is not None:
        opts["crf"] = str(crf)
    if crf is None and vin.bit_rate and vout.codec_context.name not in ("ffv1", "png", "rawvideo"):
        vout.bit_rate = vin.bit_rate  # keep about the input's quality for bit-rate codecs
    if opts:
        vout.options = opts
    return vout


__all__ = ["inpaint_video", "VideoStats", "NoMaskedFrames"]
