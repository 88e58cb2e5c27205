"""The file runner: ``fastfill run`` on this machine (threads) and under ``--ray`` (Ray Data).

One planner, one read step, one write step, one report, whatever drives them::

    plan(IMAGES, MASKS, OUT) -> image rows + video rows   (pairing, output names, skip rules)
    read_row(row)  -> (Decoded, mask)                      (codecs decoding rules)  
    Inpainter                                              (the model)
    write_row(row, result, ...)                            (encode in memory, atomic write)
    Report: the summary, one line per failed file, OUT/fastfill-failures.jsonl

:func:`run_files` drives them with a decode pool, :meth:`Inpainter.stream` and an encode pool;
:mod:`fastfill.files.ray` drives the same functions with Ray Data ``map_batches``. Videos under IMAGES
are one :func:`run_video` each in both. Inputs and outputs are local paths or, through
:func:`resolve`, any pyarrow file system (``s3://``, ``gs://``, ``file://``...).
"""

from __future__ import annotations

import collections
import json
import os
import posixpath
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from . import codecs as fio
from .. import pipeline
from ..errors import EngineError, FastfillError, InputError, printable

FAILURES_FILE = "fastfill-failures.jsonl"
# The most decode / encode threads (-j) and data-loader processes a flag may ask for: past it a
# typo exhausts the machine instead of doing more work.
MAX_JOBS = 64
# Files under IMAGES with one of these suffixes are videos (one `run_video` each).
VIDEO_SUFFIXES = frozenset(".mp4 .m4v .mov .mkv .avi .webm .mpg .mpeg .ts .wmv .flv".split())


# -- file systems ---------------------------------------------------------------------------------

class LocalFS:
    """The local disk (paths are OS paths)."""

    remote = False

    def exists(self, p: str) -> bool:
        return os.path.exists(p)

    def is_file(self, p: str) -> bool:
        return os.path.isfile(p)

    def is_dir(self, p: str) -> bool:
        return os.path.isdir(p)

    def exists_many(self, paths: list[str]) -> set[str]:
        return {q for q in paths if os.path.exists(q)}

    def join(self, *parts: str) -> str:
        return str(Path(*parts))

    def dirname(self, p: str) -> str:
        return str(Path(p).parent)

    def list_files(self, root: str) -> list[tuple[str, str]]:
        """[(relative posix path, full path)] of the regular files under ``root`` (or ``root``)."""
        r = Path(root)
        if r.is_file():
            return [(r.name, str(r))]
        if not r.is_dir():
            return []
        return [(q.relative_to(r).as_posix(), str(q)) for q in fio.regular_files(r)]

    def images(self, root: str) -> list[tuple[str, str, str | None, str | None]]:
        """[(relative posix path, full path, Pillow format, error)] of the images under ``root``:
        found by content (:func:`fastfill.files.codecs.find_images`); a file with an image suffix that is
        not one comes with its error."""
        return [(c.rel.as_posix(), str(c.path), c.format, c.error) for c in fio.find_images(root)]

    def is_image(self, p: str) -> bool:
        return fio.sniff_image(Path(p)) is not None

    def key(self, p: str) -> str:
        """One name per file (two spellings of one output are one output)."""
        return os.path.realpath(os.path.abspath(p))  # (a symlink loop stays as it is, no error)

    def source(self, p: str):
        """What the decoders read: the path itself."""
        return p

    def write(self, p: str, data: bytes, *, overwrite: bool) -> None:
        fio.write_file(p, data, overwrite=overwrite)

    def delete(self, p: str) -> None:
        os.unlink(p)

    def local_copy(self, p: str, tmpdir: str) -> str:
        return p


class ArrowFS:
    """A pyarrow file system (paths are posix paths on it)."""

    remote = True

    def __init__(self, fs):
        self.fs = fs

    def _info(self, p):
        return self.fs.get_file_info(p)

    def exists(self, p: str) -> bool:
        import pyarrow.fs as pafs

        return self._info(p).type != pafs.FileType.NotFound

    def is_file(self, p: str) -> bool:
        import pyarrow.fs as pafs

        return self._info(p).type == pafs.FileType.File

    def is_dir(self, p: str) -> bool:
        import pyarrow.fs as pafs

        return self._info(p).type == pafs.FileType.Directory

    def exists_many(self, paths: list[str]) -> set[str]:
        import pyarrow.fs as pafs

        return {q for q, i in zip(paths, self.fs.get_file_info(paths)) if i.type != pafs.FileType.NotFound}

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def dirname(self, p: str) -> str:
        return posixpath.dirname(p)

    def list_files(self, root: str) -> list[tuple[str, str]]:
        import pyarrow.fs as pafs

        info = self._info(root)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type == pafs.FileType.File:
            return [(posixpath.basename(root), root)]
        out = []
        for i in self.fs.get_file_info(pafs.FileSelector(root, recursive=True)):
            rel = posixpath.relpath(i.path, root)
            if i.type == pafs.FileType.File and not any(s.startswith(".") for s in rel.split("/")):
                out.append((rel, i.path))
        return sorted(out)

    def images(self, root: str) -> list[tuple[str, str, str | None, str | None]]:
        """The files under ``root`` with an image suffix (their content is checked when read)."""
        return [(rel, full, fio.format_for_suffix(posixpath.splitext(full)[1]), None)
                for rel, full in self.list_files(root)
                if self.is_image(full)]

    def is_image(self, p: str) -> bool:
        return posixpath.splitext(p)[1].lower() in fio.IMAGE_SUFFIXES

    def key(self, p: str) -> str:
        return p

    def source(self, p: str) -> bytes:
        """What the decoders read: the file's bytes."""
        try:
            with self.fs.open_input_stream(p) as f:
                return f.read()
        except FileNotFoundError:
            raise InputError("file not found") from None
        except OSError as e:
            raise InputError(f"cannot read ({e})") from None

    def _object_store(self) -> bool:
        return getattr(self.fs, "type_name", "") in ("s3", "gcs", "abfs")

    def write(self, p: str, data: bytes, *, overwrite: bool) -> None:
        """Write without leaving a partial file: object stores show an object only when its upload
        completes; elsewhere a temporary name is written and moved into place."""
        if not overwrite and self.exists(p):
            raise InputError(f"{p} exists (use --overwrite to replace it)")
        parent = posixpath.dirname(p)
        try:
            if parent and not self._object_store():
                self.fs.create_dir(parent, recursive=True)
            target = p if self._object_store() else posixpath.join(
                parent, f".{posixpath.basename(p)}.{uuid.uuid4().hex[:8]}.tmp")
            with self.fs.open_output_stream(target) as dst:
                dst.write(data)
            if target != p:
                try:
                    self.fs.move(target, p)
                except BaseException:
                    try:
                        self.fs.delete_file(target)
                    except OSError:
                        pass
                    raise
        except OSError as e:
            raise InputError(f"cannot write {p}: {e}") from None

    def delete(self, p: str) -> None:
        self.fs.delete_file(p)

    def local_copy(self, p: str, tmpdir: str) -> str:
        """A local copy of a file or folder (a video and its masks: PyAV reads local files)."""
        root = os.path.join(tmpdir, uuid.uuid4().hex[:8] + "-" + posixpath.basename(p))
        if self.is_file(p):
            Path(root).write_bytes(self.source(p))
            return root
        for rel, full in self.list_files(p):
            dst = os.path.join(root, *PurePosixPath(rel).parts)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with self.fs.open_input_stream(full) as src, open(dst, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
        return root

    def put(self, local: str, p: str, *, overwrite: bool) -> None:
        self.write(p, Path(local).read_bytes(), overwrite=overwrite)


def resolve(location: str | os.PathLike, filesystem=None):
    """(file system, path) for a local path or a URI (``s3://bucket/x``, ``file:///data/x``).

    A URI on the local disk resolves to the local file system, so the local pairing rules apply.
    """
    s = os.fspath(location)
    if filesystem is None and "://" not in s:
        return LocalFS(), s
    import pyarrow.fs as pafs

    if filesystem is None:
        try:
            filesystem, s = pafs.FileSystem.from_uri(s)
        except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise InputError(f"{location}: not a file system pyarrow knows ({e})") from None
    if isinstance(filesystem, pafs.LocalFileSystem):
        return LocalFS(), s
    return ArrowFS(filesystem), s.rstrip("/") or s


# -- planning -----------------------------------------------------------------------------------

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
        return (f"done {self.done}, skipped {self.skipped}, failed {self.failed} "
                f"in {self.seconds:.1f} s ({rate:.2f} images/s)")


@dataclass
class Plan:
    """What a run will do: image rows, video rows, what was skipped, where the failures go.

    Image rows: ``image, mask, out, format, error, replace``; video rows: ``video, mask, out,
    error``. ``error`` set = the file fails without being read."""

    images: list[dict] = field(default_factory=list)
    videos: list[dict] = field(default_factory=list)
    skipped: int = 0
    single_file: bool = False  # OUT is the output file of the one image or video IMAGES names
    fs_images: object = None
    fs_masks: object = None
    fs_out: object = None
    out: str = ""  # OUT as resolved
    failures_path: str = ""  # where the list of failed files goes: never one of the outputs


def plan(images, masks, output, fmt: str | None = None, *, overwrite: bool = False,
         filesystem=None, absolute: bool = False) -> Plan:
    """Pair every image and video under ``images`` with its mask and output.

    ``output`` is a folder that mirrors ``images``, or, when ``images`` is one file and
    ``output`` has a suffix, does not end with a separator and is not a folder, that file. Local
    images are found by content, images on other file systems by suffix (their content is
    checked when they are read); ``images/a/x.jpg`` pairs with ``masks/a/x.<any suffix>`` (or
    with MASKS itself when it is a file). Existing outputs are skipped unless ``overwrite`` (a
    local one cut short by something else is redone). ``absolute``: local paths made absolute
    (Ray workers do not share the driver's working directory). InputError when nothing can be
    done at all; a file that cannot be done has its row's ``error`` set.
    """
    fs_i, ipath = resolve(images, filesystem)
    fs_m, mpath = resolve(masks, filesystem)
    fs_o, opath = resolve(output, filesystem)
    if absolute:
        ipath, mpath, opath = (q if fs.remote else os.path.abspath(q)
                               for fs, q in ((fs_i, ipath), (fs_m, mpath), (fs_o, opath)))
    if not fs_i.exists(ipath):
        raise InputError(f"{images}: no such file or folder")
    if not fs_i.is_file(ipath) and not fs_i.is_dir(ipath):
        raise InputError(f"{images}: not a regular file or folder")
    if not fs_o.remote:
        _check_local_output(opath)
    _refuse_output_folder(fs_o, opath, (fs_i, ipath, "IMAGES"), (fs_m, mpath, "MASKS"))
    videos = [(rel, full) for rel, full in fs_i.list_files(ipath)
              if posixpath.splitext(rel)[1].lower() in VIDEO_SUFFIXES]
    single = _single_output(output, fs_i.is_file(ipath), names_folder(output) or fs_o.is_dir(opath),
                            fmt, bool(videos))
    p = Plan(single_file=single, fs_images=fs_i, fs_masks=fs_m, fs_out=fs_o, out=opath)
    try:
        p.images = _plan_images(fs_i, ipath, fs_m, mpath, fs_o, opath, fmt, single and not videos)
    except InputError:
        if not videos:
            raise
    p.videos = _pair_videos(videos, fs_m, mpath, fs_o, opath, single)
    p.failures_path = _failures_path(p, _refuse_inputs_as_outputs(p))
    if not overwrite:
        _skip_existing(p)
    return p


def _single_output(output, file_in: bool, folder_out: bool, fmt: str | None, video: bool) -> bool:
    """Whether -o is one output file, by the rules: a folder in gives a folder out; one file in
    gives one file out when -o has a suffix (else a folder), and that suffix must be a format
    fastfill writes (a video container for a video) and agree with --format. What breaks them
    is refused now, not found out after the model ran."""
    shown = os.fspath(output)
    suffix = posixpath.splitext(shown.rstrip("/" + os.sep))[1].lower()
    looks_like_file = bool(suffix) and (suffix in VIDEO_SUFFIXES or fio.format_for_suffix(suffix))
    if not file_in:
        if looks_like_file and not folder_out:
            raise InputError(f"-o {shown}: IMAGES is a folder, so the output is a folder, and this "
                             "looks like a file name; give a folder (end it with / to use this name)")
        return False
    if folder_out or not suffix:
        return False
    if video:
        if suffix not in VIDEO_SUFFIXES:
            raise InputError(f"-o {shown}: the output of a video is a video file ("
                             + " ".join(sorted(VIDEO_SUFFIXES)) + "), or a folder ending with /")
        return True
    written = fio.writable_format(suffix)
    if written is None:
        raise InputError(f"-o {shown}: {suffix} is not a format fastfill writes ("
                         + " ".join(fio.FORMAT_SUFFIX.values()) + "), or a folder ending with /")
    if fmt and fmt != written:
        raise InputError(f"--format {fmt.lower()} disagrees with -o {shown} ({written}): drop "
                         "--format, or give -o the suffix of that format")
    return True


def _check_local_output(opath: str) -> None:
    """An output path the OS cannot even look up (a symlink loop, a name too long) is one line
    now, not an error deep in the run."""
    try:
        os.stat(opath)
    except (FileNotFoundError, NotADirectoryError):  # (made later, or "not writable" then)
        pass
    except OSError as e:
        raise InputError(f"-o {opath}: cannot be used as the output ({e.strerror or e})") from None


def _refuse_output_folder(fs_o, opath: str, *inputs) -> None:
    """-o must not be IMAGES or MASKS, nor inside MASKS: ``--overwrite`` would replace the
    originals or the masks, and without it results would be skipped or taken for input. (An
    output folder *inside* IMAGES is allowed: it is left out of the search.)"""
    for fs, path, what in inputs:
        if type(fs) is not type(fs_o):
            continue
        out, loc = fs_o.key(opath), fs.key(path)
        if out == loc:
            replaced = "the originals" if what == "IMAGES" else "the masks"
            raise InputError(f"-o {opath} is {what} itself: outputs would replace {replaced}; "
                             "choose another output")
        if what == "MASKS" and fs.is_dir(path) and _inside(fs, out, loc):
            raise InputError(f"-o {opath} is inside MASKS ({path}): outputs would replace the "
                             "masks or be taken for masks; choose another output")


def _refuse_inputs_as_outputs(p: Plan) -> set[str]:
    """No output file may be an input file (e.g. MASKS one file inside the output folder).
    Returns the outputs' keys (each file's name resolved once: a large run has many)."""
    fs_o, rows, sources = p.fs_out, p.images + p.videos, {}
    for fs, names in ((p.fs_images, {r.get("image") or r.get("video") for r in rows}),
                      (p.fs_masks, {r["mask"] for r in rows})):  # (one MASKS file: one name)
        for name in names - {"", None}:
            sources[fs.key(name)] = name
    outputs = set()
    for r in rows:
        key = fs_o.key(r["out"])
        if not r["error"] and key in sources:
            raise InputError(f"-o {p.out}: the output {r['out']} would replace the input "
                             f"{sources[key]}; choose another output")
        outputs.add(key)
    return outputs


def _failures_path(p: Plan, outputs: set[str]) -> str:
    """OUT/fastfill-failures.jsonl, or the first free ``fastfill-failures-N.jsonl`` when one of
    ``outputs`` (keys) has that name: the report never deletes or replaces an output."""
    fs = p.fs_out
    folder = fs.dirname(p.out) if p.single_file else p.out
    stem, ext = posixpath.splitext(FAILURES_FILE)
    path, n = fs.join(folder, FAILURES_FILE), 1
    while fs.key(path) in outputs:
        path, n = fs.join(folder, f"{stem}-{n}{ext}"), n + 1
    return path


def names_folder(output: str | os.PathLike) -> bool:
    """True when the OUTPUT argument ends with a path separator (``-o results.d/``).

    Read from the argument as given: ``Path`` drops a trailing separator."""
    s = os.fspath(output)
    return s.endswith("/") or s.endswith(os.sep)


def _inside(fs, path: str, folder: str) -> bool:
    if fs.remote:
        return path.startswith(folder.rstrip("/") + "/")
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def _plan_images(fs_i, ipath, fs_m, mpath, fs_o, opath, fmt, single) -> list[dict]:
    """Image rows: ``image, mask, out, format, error``."""
    files = [f for f in fs_i.images(ipath)  # (videos are rows of their own)
             if posixpath.splitext(f[0])[1].lower() not in VIDEO_SUFFIXES]
    if not single and type(fs_o) is type(fs_i) and fs_i.is_dir(ipath):
        # An output folder inside IMAGES is not input: otherwise every run re-fills the last one's
        # results (photos/out/out/out/...).
        files = [f for f in files if not _inside(fs_i, f[1], opath)]
    if not files:
        raise InputError(f"no images found in {ipath}")
    find_mask = mask_finder(fs_m, mpath)
    rows, seen = [], {}
    for rel, full, src_fmt, error in files:
        src_fmt = src_fmt or "PNG"
        out_fmt = fio.output_format(src_fmt, fmt)
        if single:
            out = opath
            out_fmt = fio.writable_format(posixpath.splitext(opath)[1])
        else:
            out = fs_o.join(opath, _output_name(rel, out_fmt, src_fmt))
        row = {"image": full, "mask": "", "out": out, "format": out_fmt, "error": error or ""}
        if not row["error"]:
            try:
                row["mask"] = find_mask(rel)
            except InputError as e:
                row["error"] = str(e)
        key = fs_o.key(out)
        if not row["error"] and key in seen:
            row["error"] = f"its output {out} is also the output of {seen[key]}"
        elif not row["error"]:
            seen[key] = full
        rows.append(row)
    return rows


def _output_name(rel: str, fmt: str, src_format: str | None) -> str:
    """The output's path under OUT: the image's own, with the suffix of --format when it differs."""
    if fmt != src_format:
        return posixpath.splitext(rel)[0] + fio.FORMAT_SUFFIX[fmt]
    return rel


def mask_finder(fs_m, mpath) -> Callable[[str], str]:
    """rel path of an image -> its mask: MASKS itself when a file, else the file with the same
    folder and stem under MASKS (an image preferred when several match)."""
    if not fs_m.exists(mpath):
        raise InputError(f"{mpath}: no such mask file or folder")
    if fs_m.is_file(mpath):
        return lambda rel: mpath
    if not fs_m.is_dir(mpath):
        raise InputError(f"{mpath}: not a regular file or folder")
    by_key: dict[tuple[str, str], list[str]] = {}
    for rel, full in fs_m.list_files(mpath):
        by_key.setdefault((posixpath.dirname(rel), _stem(rel)), []).append(full)

    def find(rel):
        key = (posixpath.dirname(rel), _stem(rel))
        found = sorted(by_key.get(key, []))
        if len(found) > 1:  # e.g. x.png over x.txt
            found = [f for f in found if fs_m.is_image(f)] or found
        if not found:
            raise InputError(f"no mask found (looked for {fs_m.join(mpath, key[0], key[1] + '.*')})")
        if len(found) > 1:
            raise InputError("several masks match: " + ", ".join(found))
        return found[0]

    return find


def _stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


def _pair_videos(videos, fs_m, mpath, fs_o, opath, single: bool = False) -> list[dict]:
    """A video's mask: MASKS itself when it is a file, else MASKS/<dir>/<stem>.<image> (one mask
    for every frame) or the folder MASKS/<dir>/<stem>/ (per-frame masks, as `fastfill video`).
    ``single``: the one video's output is OUT itself."""
    rows = []
    for rel, full in videos:
        d, stem = posixpath.dirname(rel), _stem(rel)
        out = opath if single else fs_o.join(opath, rel) if fs_o.remote else str(Path(opath) / rel)
        row = {"video": full, "mask": "", "out": out, "error": ""}
        if fs_m.is_file(mpath):
            row["mask"] = mpath
        else:
            base = fs_m.join(mpath, d, stem) if d else fs_m.join(mpath, stem)
            if fs_m.exists(base):
                row["mask"] = base
            else:
                folder = fs_m.join(mpath, d) if d else mpath
                cands = [f for r, f in fs_m.list_files(folder) if "/" not in r and _stem(r) == stem
                         and posixpath.splitext(r)[1].lower() in fio.IMAGE_SUFFIXES] \
                    if fs_m.is_dir(folder) else []
                if len(cands) == 1:
                    row["mask"] = cands[0]
                elif not cands:
                    row["error"] = f"no mask found (looked for {base}.* and {base}/)"
                else:
                    row["error"] = "several masks match: " + ", ".join(cands)
        rows.append(row)
    return rows


def _skip_existing(p: Plan) -> None:
    """Drop the rows whose output exists (a local output cut short by anything else is redone:
    fastfill renames only verified files into place; objects in a store are whole by
    construction)."""
    rows = [r for r in p.images + p.videos if not r["error"]]
    exist = p.fs_out.exists_many([r["out"] for r in rows])
    keep_i, keep_v = [], []
    for r in p.images:
        if r["error"] or r["out"] not in exist:
            keep_i.append(r)
        elif not p.fs_out.remote and not fio.output_is_whole(r["out"]):
            r["replace"] = True
            keep_i.append(r)
        else:
            p.skipped += 1
    for r in p.videos:
        if r["error"] or r["out"] not in exist:
            keep_v.append(r)
        else:
            p.skipped += 1
    p.images, p.videos = keep_i, keep_v


# -- reading and writing one image --------------------------------------------------------------

@dataclass(frozen=True)
class FileOptions:
    """How each file of a run is read and written (`fastfill run`'s flags): one object from the
    CLI to the read and write steps, on local threads and in Ray tasks alike."""

    invert: bool = False  # the mask's black is the hole
    threshold: int = 128  # mask pixels >= it are hole (after invert)
    resize_mask: bool = False  # scale a mask of another size to its image
    dilate: int = 0  # grow the hole by this many pixels
    max_pixels: int | None = None  # refuse larger images and masks (None: io's default)
    quality: int = 95  # JPEG / lossy WebP quality
    overwrite: bool = False  # replace existing outputs

    @property
    def mask_opts(self) -> dict:
        """The mask options as :func:`fastfill.video.stream.inpaint_video` takes them."""
        return {"invert": self.invert, "threshold": self.threshold, "resize_mask": self.resize_mask,
                "dilate": self.dilate}


def read_row(row: dict, fs_images, fs_masks, opts: FileOptions = FileOptions()) -> tuple[fio.Decoded, object]:
    """Decode a row's image and mask (bool [H, W]) with the CLI's rules; InputError on a bad file."""
    src = fio.decode_image(fs_images.source(row["image"]), opts.max_pixels)
    mask = fio.decode_mask(fs_masks.source(row["mask"]), src.size, invert=opts.invert,
                           threshold=opts.threshold, resize=opts.resize_mask, dilate=opts.dilate,
                           image_name=f"image {row['image']}", max_pixels=opts.max_pixels,
                           name=row["mask"])
    return src, mask


def write_row(row: dict, result, src: fio.Decoded, mask, fs_out, opts: FileOptions = FileOptions()) -> None:
    """Encode a result in its source's mode (as far as the row's format allows) and write it
    atomically; InputError on failure."""
    fmt = row["format"]
    img = fio.restore_mode(result, src, mask, fmt)
    data = fio.encode_image(img, fmt, quality=opts.quality, info=src.info)
    fs_out.write(row["out"], data, overwrite=opts.overwrite or bool(row.get("replace")))


def run_video(row: dict, inpainter, fs_videos, fs_masks, fs_out, opts: FileOptions = FileOptions()) -> int:
    """One video row, start to end (decode -> Inpainter.stream -> encode); returns its frames."""
    from ..video import stream as fvideo

    with tempfile.TemporaryDirectory(prefix="fastfill-") as tmp:
        src = fs_videos.local_copy(row["video"], tmp)
        mask = fs_masks.local_copy(row["mask"], tmp)
        dst = os.path.join(tmp, "out-" + posixpath.basename(row["out"])) if fs_out.remote else row["out"]
        try:
            stats = fvideo.inpaint_video(inpainter, src, dst, mask, overwrite=opts.overwrite,
                                         progress=False, **opts.mask_opts)
        except InputError as e:
            raise InputError(str(e).replace(src, row["video"])) from None
        if fs_out.remote:
            fs_out.put(dst, row["out"], overwrite=opts.overwrite)
    return stats.frames


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
        self.say = echo or (lambda msg: None)
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

    def finish(self, p: Plan) -> Summary:
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


def start(p: Plan, report: Report) -> tuple[list[dict], list[dict]]:
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
    for r in images:
        if r["replace"]:
            report.say(f"redoing {printable(r['out'])}: the existing file is incomplete")
    return images, videos


# -- this machine -------------------------------------------------------------------------------

def run_files(inpainter, p: Plan, opts: FileOptions = FileOptions(), *, jobs=2,
              progress: bool | None = None, echo=None) -> Summary:
    """Do a plan here: decoding on ``jobs`` threads ahead of the model (bounded), inference in
    :meth:`Inpainter.stream`, encoding on ``jobs`` threads, then the videos one by one. A bad file
    fails alone; an engine error stops the run (it would fail every file) and is raised."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    report = Report(echo, skipped=p.skipped)
    images, videos = start(p, report)
    bar = tqdm(total=len(images) + len(videos), unit="file", dynamic_ncols=True, file=sys.stderr,
               disable=(not progress) if progress is not None else None)
    if not bar.disable:
        report.say = lambda line: bar.write(line, file=sys.stderr)
    depth = max(2, 2 * jobs)
    try:
        with ThreadPoolExecutor(jobs, thread_name_prefix="fastfill-decode") as dec, \
                ThreadPoolExecutor(jobs, thread_name_prefix="fastfill-encode") as enc:
            _run_images(inpainter, p, images, dec, enc, depth, report, bar, opts)
        for r in videos:
            try:
                run_video(r, inpainter, p.fs_images, p.fs_masks, p.fs_out, opts)
                report.done()
            except EngineError:
                raise
            except Exception as e:  # noqa: BLE001 - one bad video must not stop the run
                report.fail(r["video"], reason(e, "fill the video"), r["mask"])
            bar.update(1)
    finally:
        bar.close()
    return report.finish(p)


def _run_images(inpainter, p: Plan, rows, dec, enc, depth, report, bar, opts: FileOptions) -> None:
    in_flight: collections.deque = collections.deque()  # (row, src, mask) fed to the model

    def read(row):
        src, mask = read_row(row, p.fs_images, p.fs_masks, opts)
        if src.note:
            report.note(row["image"], src.note)
        # checked here so that one file fails alone (e.g. a fixed-size model and an image of
        # another size); the model does not check it again
        return src, inpainter.check(src.rgb, mask)

    def write(row, result, src, mask):
        try:
            write_row(row, result, src, mask, p.fs_out, opts)
            report.done()
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
            report.fail(row["image"], reason(e, "encode"), row["mask"])
        finally:
            bar.update(1)

    def pairs():
        for r, fut in pipeline.prefetch(dec, read, rows, depth):  # reads running ahead, in order
            try:
                src, pair = fut.result()
            except Exception as e:  # noqa: BLE001
                report.fail(r["image"], reason(e, "decode"), r["mask"])
                bar.update(1)
                continue
            in_flight.append((r, src, pair.hole))
            yield pair

    writes: collections.deque = collections.deque()
    for result in inpainter.stream(pairs()):
        r, src, mask = in_flight.popleft()
        writes.append(enc.submit(write, r, result, src, mask))
        while len(writes) > depth:  # bound the results waiting to be written
            writes.popleft().result()
    for f in writes:
        f.result()


__all__ = ["plan", "Plan", "FileOptions", "resolve", "read_row", "write_row", "run_video", "run_files", "Report", "start",
           "LocalFS", "ArrowFS", "FAILURES_FILE", "VIDEO_SUFFIXES", "reason"]
