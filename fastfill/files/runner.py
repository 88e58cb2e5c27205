"""The file run: one driver for ``fastfill run``, on this machine or on Ray Data.

::

    find_work(IMAGES, MASKS, OUT) -> Worklist   (worklist.py: pairing, output names, skip rules)
    run(...)                                    the driver: worklist, executor, report
      executor.start(echo)                      load the engine (local) or check it (Ray)
      start(worklist, report)                   rows failed up front, stale temporaries, redos
      executor.images(rows, ...) -> outcomes    read_item -> Inpainter -> encode_result -> write
      executor.videos(rows, ...) -> outcomes    run_video each
      Report: the summary, one line per failed file, OUT/fastfill-failures.jsonl

Two executors do the same work per row: :class:`LocalExecutor` (a decode pool ahead of
:meth:`Inpainter.stream`, an encode pool behind it) and :class:`fastfill.files.ray.RayExecutor`
(Ray Data ``map_batches``). Each yields one :class:`Outcome` per row, and only the driver
counts and reports them.
"""

from __future__ import annotations

import collections
import json
import os
import posixpath
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import codecs as fio
from .codecs import FileOptions
from .. import pipeline
from ..errors import EngineError, FastfillError, InputError, printable
from .worklist import FAILURES_FILE, MAX_JOBS, VIDEO_SUFFIXES, Worklist, find_work


@dataclass
class Summary:
    """What a run did (``fastfill run``'s last line)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)  # (path, reason)
    report_error: str = ""  # the failures file could not be written (said after the summary)

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        one = self.skipped == 1
        why = (f"; skipped: {'its output exists' if one else 'their outputs exist'}, kept "
               f"(--overwrite replaces {'it' if one else 'them'})") if self.skipped else ""
        return (f"done {self.done}, skipped {self.skipped}, failed {self.failed} "
                f"in {self.seconds:.1f} s ({rate:.2f} images/s){why}")


@dataclass(frozen=True)
class Outcome:
    """What became of one row: ``error`` empty when its output was written; ``note``: something
    about the input worth one line (e.g. metadata dropped)."""

    file: str
    mask: str
    error: str = ""
    note: str = ""


# -- one row ------------------------------------------------------------------------------------

def read_row(row: dict, fs_images, fs_masks, opts: FileOptions = FileOptions(), text=None
             ) -> tuple[fio.Decoded, object]:
    """Decode a row's image and mask (bool [H, W]) with the run's rules; InputError on a bad file.
    ``text``: a text detector whose mask joins the row's (a row without a mask file: its only
    mask), before ``opts.dilate`` (:func:`fastfill.files.codecs.read_item`)."""
    mask = fs_masks.source(row["mask"]) if row["mask"] else None
    return fio.read_item(fs_images.source(row["image"]), mask, opts, image_name=row["image"],
                         mask_name=row["mask"] or None, text=text)


def write_row(row: dict, result, src: fio.Decoded, mask, fs_out, opts: FileOptions = FileOptions(),
              fs_images=None) -> None:
    """Encode a result in its source's mode (as far as the row's format allows) and write it
    atomically; InputError on failure. With ``fs_images``, an empty hole with the output in the
    source's format writes the source's own bytes (``row["image"]``): re-encoding would move a
    JPEG's pixels for nothing."""
    if fs_images is not None and row["format"] == src.format and not np.asarray(mask).any():
        data = fs_images.source(row["image"])
        if not isinstance(data, (bytes, bytearray)):  # (a local path)
            with open(data, "rb") as f:
                data = f.read()
    else:
        data = fio.encode_result(result, src, mask, row["format"], opts)
    fs_out.write(row["out"], data, overwrite=opts.overwrite or bool(row.get("replace")))


def run_video(row: dict, inpainter, fs_videos, fs_masks, fs_out, opts: FileOptions = FileOptions(),
              text=None) -> int:
    """One video row, start to end (decode -> Inpainter.stream -> encode); returns its frames.
    ``text``: a text detector (its frames' text joins the row's mask; :class:`TextTrack`)."""
    from ..video import stream as fvideo

    with tempfile.TemporaryDirectory(prefix="fastfill-") as tmp:
        src = fs_videos.local_copy(row["video"], tmp)
        mask = fs_masks.local_copy(row["mask"], tmp) if row["mask"] else None
        dst = os.path.join(tmp, "out-" + posixpath.basename(row["out"])) if fs_out.remote else row["out"]
        try:
            stats = fvideo.inpaint_video(inpainter, src, dst, mask,
                                         overwrite=opts.overwrite or bool(row.get("replace")),
                                         progress=False, invert=opts.invert, threshold=opts.threshold,
                                         resize_mask=opts.resize_mask, dilate=opts.dilate, text=text)
        except InputError as e:  # (the report names the video: the message need not)
            said = str(e)
            if said.startswith(f"{src}: "):
                said = said[len(src) + 2:]
            raise InputError(said.replace(src, row["video"])) from None
        if fs_out.remote:
            fs_out.put(dst, row["out"], overwrite=opts.overwrite)
    return stats.frames


def video_outcome(row: dict, inpainter, p: Worklist, opts: FileOptions, text=None) -> Outcome:
    """:func:`run_video` as an Outcome: a bad video fails alone, an engine error is raised."""
    try:
        run_video(row, inpainter, p.fs_images, p.fs_masks, p.fs_out, opts, text=text)
        return Outcome(row["video"], row["mask"])
    except EngineError:
        raise
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the run
        return Outcome(row["video"], row["mask"], reason(e, "fill the video"))


def reason(e: BaseException, stage: str) -> str:
    """One line for a file that failed at ``stage`` (decode, encode, ...): an InputError says it
    all; anything else is named with its type."""
    return str(e) if isinstance(e, InputError) else f"cannot {stage}: {type(e).__name__}: {e}"


# -- the report ---------------------------------------------------------------------------------

class Report:
    """The summary, one line per failed file (and per note), and the failures file. Thread-safe."""

    def __init__(self, echo: Callable[[str], None] | None = None, skipped: int = 0):
        self.summary = Summary(skipped=skipped)
        self.failures: list[dict] = []
        self.say = outliving(echo or (lambda msg: None))
        self.lock = threading.Lock()
        self.t0 = time.perf_counter()

    def fail(self, file: str, reason: str, mask: str | None = None) -> None:
        file, reason = printable(file), printable(reason)
        with self.lock:
            self.summary.failed += 1
            self.summary.failures.append((file, reason))
            self.failures.append({"file": file, "mask": printable(mask) if mask else None,
                                  "error": reason})
            self.say(f"failed: {file}: {reason}")

    def note(self, file: str, text: str) -> None:
        with self.lock:
            self.say(f"note: {printable(file)}: {printable(text)}")

    def done(self) -> None:
        with self.lock:
            self.summary.done += 1

    def add(self, o: Outcome) -> None:
        """Count (and say) one row's outcome."""
        if o.note:
            self.note(o.file, o.note)
        if o.error:
            self.fail(o.file, o.error, o.mask or None)
        else:
            self.done()

    def finish(self, p: Worklist) -> Summary:
        """Write (or remove, when nothing failed) the failures file; the summary. A failures file
        that cannot be written is ``summary.report_error``: it must not cost the summary."""
        path, fs = p.failures_path, p.fs_out
        try:
            if not self.failures:
                if fs.exists(path):
                    fs.delete(path)
            else:
                text = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in self.failures)
                fs.write(path, text.encode("utf-8"), overwrite=True)
                if posixpath.basename(path) != FAILURES_FILE:
                    self.say(f"failures listed in {printable(path)} (an output of this run is "
                             f"named {FAILURES_FILE})")
        except (OSError, FastfillError) as e:
            what = "write" if self.failures else "remove the stale"
            self.summary.report_error = printable(
                f"cannot {what} failures file {path}: {getattr(e, 'strerror', None) or e}")
        self.summary.seconds = time.perf_counter() - self.t0
        return self.summary


def start(p: Worklist, report: Report) -> tuple[list[dict], list[dict]]:
    """The rows to do: failed up-front rows reported, temporary files a killed run left for these
    outputs removed, outputs to redo announced."""
    todo = []
    for rows, key in ((p.images, "image"), (p.videos, "video")):
        good = []
        for r in rows:
            if r["error"]:
                report.fail(r[key], r["error"], r.get("mask"))
            else:
                r.setdefault("replace", False)
                good.append(r)
        todo.append(good)
    images, videos = todo
    if not p.fs_out.remote:
        fio.remove_stale_temps(r["out"] for r in images + videos)
    for r in images + videos:
        if r.get("replace"):
            report.say(f"redoing {printable(r['out'])}: the existing file is incomplete")
    return images, videos


# -- the driver ---------------------------------------------------------------------------------

def run(images, masks, output, executor, opts: FileOptions = FileOptions(), *, fmt: str | None = None,
        filesystem=None, progress: bool | None = None,
        echo: Callable[[str], None] | None = None) -> Summary:
    """``fastfill run``: pair the files, start the executor, do every row, report; the Summary.

    ``images``/``masks``/``output``: local paths or (with an executor that takes them) URIs or
    paths on ``filesystem`` (a pyarrow FileSystem). ``executor``: :class:`LocalExecutor` or
    :class:`fastfill.files.ray.RayExecutor`. Failed files are said through ``echo``, counted, and
    listed in ``OUTPUT/fastfill-failures.jsonl``. An engine error stops the run (EngineError):
    it would fail every file.
    """
    fmt = fio.normalize_format(fmt)
    if masks is None and getattr(executor, "text", None) is None:
        raise InputError("no MASKS and nothing that finds the holes (a text detector: --text)")
    p = find_work(images, masks, output, fmt, overwrite=opts.overwrite, filesystem=filesystem,
                  absolute=executor.needs_absolute_paths)
    with executor:
        # the engine first: a model or device that is not there stops the run before anything is made
        executor.start(None if progress is False else echo)  # (quiet: no header either)
        if not p.fs_out.remote:
            fio.check_writable_dir(Path(p.out).parent if p.single_file else p.out)
        return drive(p, executor, opts, progress=progress, echo=echo)


def drive(p: Worklist, executor, opts: FileOptions = FileOptions(), *, progress: bool | None = None,
          echo: Callable[[str], None] | None = None) -> Summary:
    """Do a worklist with a started executor: each row's Outcome counted, a progress bar."""
    from tqdm import tqdm

    report = Report(echo, skipped=p.skipped)
    images, videos = start(p, report)
    bar = tqdm(total=len(images) + len(videos), unit="file", dynamic_ncols=True, file=sys.stderr,
               disable=(not progress) if progress is not None else None)
    if not bar.disable:
        report.say = outliving(lambda line: bar.write(line, file=sys.stderr))
    tick, close = outliving(bar.update), outliving(bar.close)
    try:
        for outcomes in (executor.images(images, p, opts) if images else (),
                         executor.videos(videos, p, opts) if videos else ()):
            for o in outcomes:
                report.add(o)
                tick(1)
    finally:
        close()
    return report.finish(p)


def outliving(say: Callable) -> Callable:
    """``say`` that goes quiet, rather than stopping the run, once its stream is gone (a reader
    that closed its pipe, a full disk): messages are a side channel; the outputs, the summary
    and the failures file still tell what happened."""
    gone = False

    def guarded(*args):
        nonlocal gone
        if not gone:
            try:
                say(*args)
            except OSError:
                gone = True

    return guarded


# -- this machine -------------------------------------------------------------------------------

class LocalExecutor:
    """The rows on this machine: decoding on ``jobs`` threads ahead of the model (bounded),
    inference in :meth:`Inpainter.stream`, encoding on ``jobs`` threads; videos one by one.

    ``inpainter``: an Inpainter, or a zero-argument callable that opens one (called by
    :meth:`start`, so that a missing model fails before anything is made; then closed with the
    executor). ``text``: a text detector (:class:`fastfill.masks.text.TextDetector`): each
    image's text joins its mask in the decode step (``fastfill run --text``), each video's in its
    frames'."""

    needs_absolute_paths = False

    def __init__(self, inpainter, *, jobs: int = 2, text=None):
        if not 1 <= jobs <= MAX_JOBS:
            raise InputError(f"jobs must be in 1..{MAX_JOBS}, got {jobs}")
        self._open = inpainter if callable(inpainter) and not hasattr(inpainter, "stream") else None
        self.inpainter = None if self._open else inpainter
        self.jobs = jobs
        self.text = text
        self._owned = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._owned and self.inpainter is not None:
            self.inpainter.close()

    def start(self, echo: Callable[[str], None] | None = None) -> None:
        """Open the engine (when given an opener) and say what runs."""
        from ..inpainter import engine_line

        if self.inpainter is None:
            self.inpainter, self._owned = self._open(), True
        if echo:
            echo(engine_line(self.inpainter))
            if self.text is not None and hasattr(self.text, "describe"):
                echo(self.text.describe())

    def images(self, rows: list[dict], p: Worklist, opts: FileOptions) -> Iterator[Outcome]:
        from concurrent.futures import ThreadPoolExecutor

        depth = max(2, 2 * self.jobs)
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="fastfill-decode") as dec, \
                ThreadPoolExecutor(self.jobs, thread_name_prefix="fastfill-encode") as enc:
            yield from self._images(rows, p, opts, dec, enc, depth)

    def _images(self, rows, p: Worklist, opts: FileOptions, dec, enc, depth) -> Iterator[Outcome]:
        inp = self.inpainter
        failed: collections.deque = collections.deque()  # decode failures, said in order

        def read(row):
            src, mask = read_row(row, p.fs_images, p.fs_masks, opts, text=self.text)
            # checked here so that one file fails alone (e.g. a fixed-size model and an image of
            # another size); the model does not check it again
            return src, inp.check(src.rgb, mask)

        def write(row, result, src, mask) -> Outcome:
            try:
                write_row(row, result, src, mask, p.fs_out, opts, fs_images=p.fs_images)
                return Outcome(row["image"], row["mask"], note=src.note or "")
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
                return Outcome(row["image"], row["mask"], reason(e, "encode"), src.note or "")

        def tagged():  # (row, src) travel with each pair through the model
            for r, fut in pipeline.prefetch(dec, read, rows, depth):  # reads running ahead, in order
                try:
                    src, pair = fut.result()
                except Exception as e:  # noqa: BLE001
                    failed.append(Outcome(r["image"], r["mask"], reason(e, "decode")))
                    continue
                yield (r, src, pair.hole), pair

        writes: collections.deque = collections.deque()
        for (r, src, hole), result in inp.stream(tagged(), tagged=True):
            while failed:
                yield failed.popleft()
            writes.append(enc.submit(write, r, result, src, hole))
            while len(writes) > depth:  # bound the results waiting to be written
                yield writes.popleft().result()
        while failed:
            yield failed.popleft()
        for f in writes:
            yield f.result()

    def videos(self, rows: list[dict], p: Worklist, opts: FileOptions) -> Iterator[Outcome]:
        for r in rows:
            yield video_outcome(r, self.inpainter, p, opts, text=self.text)


class MaskExecutor:
    """``fastfill mask``: each image row's hole (found by ``text``, united with the row's mask
    file when MASKS is given, then ``opts.dilate``) written as a PNG mask, white = hole, by the
    run's rules (the worklist's names and skips, one failure line per unusable file, atomic
    writes). ``jobs`` rows at a time. Videos are refused one line each: their masks are frames.

    ``text``: a detector, or a zero-argument callable that opens one (at :meth:`start`)."""

    needs_absolute_paths = False

    def __init__(self, text, *, jobs: int = 2):
        if not 1 <= jobs <= MAX_JOBS:
            raise InputError(f"jobs must be in 1..{MAX_JOBS}, got {jobs}")
        self._open = text if callable(text) and not hasattr(text, "detect") else None
        self.text = None if self._open else text
        self.jobs = jobs

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._open is not None and self.text is not None:
            self.text.close()

    def start(self, echo: Callable[[str], None] | None = None) -> None:
        """Load the detector (a missing extra fails before anything is made) and say what runs."""
        if self.text is None:
            self.text = self._open()
        if echo and hasattr(self.text, "describe"):
            echo(self.text.describe())

    def images(self, rows: list[dict], p: Worklist, opts: FileOptions) -> Iterator[Outcome]:
        from concurrent.futures import ThreadPoolExecutor

        from PIL import Image

        def one(row) -> Outcome:
            try:
                src, hole = read_row(row, p.fs_images, p.fs_masks, opts, text=self.text)
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
                return Outcome(row["image"], row["mask"], reason(e, "decode"))
            try:
                png = fio.encode_image(Image.fromarray(hole.astype(np.uint8) * np.uint8(255)), "PNG")
                p.fs_out.write(row["out"], png, overwrite=opts.overwrite or bool(row.get("replace")))
                return Outcome(row["image"], row["mask"], note=src.note or "")
            except Exception as e:  # noqa: BLE001
                return Outcome(row["image"], row["mask"], reason(e, "write the mask"))

        with ThreadPoolExecutor(self.jobs, thread_name_prefix="fastfill-mask") as pool:
            for _, fut in pipeline.prefetch(pool, one, rows, max(2, 2 * self.jobs)):
                yield fut.result()

    def videos(self, rows: list[dict], p: Worklist, opts: FileOptions) -> Iterator[Outcome]:
        for r in rows:
            yield Outcome(r["video"], r["mask"], "a video: fastfill mask writes the masks of "
                          "images (fastfill video --text finds the text of every frame)")


__all__ = ["run", "drive", "find_work", "Worklist", "FileOptions", "LocalExecutor", "Outcome",
           "read_row", "write_row", "run_video", "video_outcome", "Report", "Summary", "start",
           "MaskExecutor",
           "reason", "FAILURES_FILE", "VIDEO_SUFFIXES", "MAX_JOBS"]
