"""A run's worklist: every image and video under IMAGES paired with its mask and its output,
the output names and single-file rules, the refusals that must come before anything is made,
and the skip / redo rules for outputs that exist."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import codecs as fio
from ..errors import InputError
from .fs import resolve

FAILURES_FILE = "fastfill-failures.jsonl"
# The most decode / encode threads (-j) and data-loader processes a flag may ask for: past it a
# typo exhausts the machine instead of doing more work.
MAX_JOBS = 64
# Files under IMAGES with one of these suffixes are videos (one `run_video` each).
VIDEO_SUFFIXES = frozenset(".mp4 .m4v .mov .mkv .avi .webm .mpg .mpeg .ts .wmv .flv".split())


# -- the worklist -----------------------------------------------------------------------------------

@dataclass
class Worklist:
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


def find_work(images, masks, output, fmt: str | None = None, *, overwrite: bool = False,
         filesystem=None, absolute: bool = False) -> Worklist:
    """Pair every image and video under ``images`` with its mask and output.

    ``output`` is a folder that mirrors ``images``, or, when ``images`` is one file and
    ``output`` has a suffix, does not end with a separator and is not a folder, that file. Local
    images are found by content, images on other file systems by suffix (their content is
    checked when they are read); ``images/a/x.jpg`` pairs with ``masks/a/x.<any suffix>`` (or
    with MASKS itself when it is a file; ``masks`` None: no mask file, each row's ``mask`` is
    ""). Existing outputs are skipped unless ``overwrite`` (a local one cut short by something
    else is redone). ``absolute``: local paths made absolute (Ray workers do not share the
    driver's working directory). InputError when nothing can be done at all; a file that cannot
    be done has its row's ``error`` set.
    """
    fs_i, ipath = resolve(images, filesystem)
    # no MASKS: every row's mask is "" (the holes are found in the images: --text)
    fs_m, mpath = resolve(masks, filesystem) if masks is not None else (None, "")
    fs_o, opath = resolve(output, filesystem)
    if absolute:
        ipath, mpath, opath = (q if fs is None or fs.remote else os.path.abspath(q)
                               for fs, q in ((fs_i, ipath), (fs_m, mpath), (fs_o, opath)))
    if not fs_i.exists(ipath):
        raise InputError(f"{images}: no such file or folder")
    if not fs_i.is_file(ipath) and not fs_i.is_dir(ipath):
        raise InputError(f"{images}: not a regular file or folder")
    if not fs_o.remote:
        _check_local_output(opath)
    _refuse_output_folder(fs_o, opath, (fs_i, ipath, "IMAGES"),
                          *([(fs_m, mpath, "MASKS")] if fs_m is not None else []))
    videos = [(rel, full) for rel, full in fs_i.list_files(ipath)
              if posixpath.splitext(rel)[1].lower() in VIDEO_SUFFIXES]
    single = _single_output(output, fs_i.is_file(ipath), names_folder(output) or fs_o.is_dir(opath),
                            fmt, bool(videos))
    p = Worklist(single_file=single, fs_images=fs_i, fs_masks=fs_m, fs_out=fs_o, out=opath)
    find_mask = mask_finder(fs_m, mpath) if fs_m is not None else (lambda rel, video=False: "")
    try:
        p.images = _image_rows(fs_i, ipath, find_mask, fs_o, opath, fmt, single and not videos,
                               masks=(fs_m, mpath))
    except InputError:
        if not videos:
            raise
    p.videos = _video_rows(videos, find_mask, fs_o, opath, single)
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


def _refuse_inputs_as_outputs(p: Worklist) -> set[str]:
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


def _failures_path(p: Worklist, outputs: set[str]) -> str:
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
    """Whether ``path`` lies in ``folder``, symlinks followed (the output folder reached through
    a link into IMAGES is still inside it, and so is MASKS given by its real path while IMAGES
    is a link to the folder that holds it)."""
    if fs.remote:
        return path.startswith(folder.rstrip("/") + "/")
    return Path(fs.key(path)).is_relative_to(fs.key(folder))


def _image_rows(fs_i, ipath, find_mask, fs_o, opath, fmt, single, masks=(None, "")) -> list[dict]:
    """Image rows: ``image, mask, out, format, error``."""
    files = [f for f in fs_i.images(ipath)  # (videos are rows of their own)
             if posixpath.splitext(f[0])[1].lower() not in VIDEO_SUFFIXES]
    if fs_i.is_dir(ipath):
        # An output folder inside IMAGES is not input: otherwise every run re-fills the last one's
        # results (photos/out/out/out/...); nor is a MASKS folder inside it (each mask would be
        # an image without a mask).
        fs_m, mpath = masks
        apart = []
        if not single and type(fs_o) is type(fs_i):
            apart.append(opath)
        if (fs_m is not None and type(fs_m) is type(fs_i) and fs_m.is_dir(mpath)
                and not _inside(fs_i, ipath, mpath)):  # (MASKS strictly inside IMAGES)
            apart.append(mpath)
        one_mask = fs_m.key(mpath) if fs_m is not None and type(fs_m) is type(fs_i) \
            and fs_m.is_file(mpath) else None  # (MASKS one file: that file is no image either)
        # (symlinks followed, as _inside does; each folder's real path resolved once, not once
        # a file: a large tree has many)
        real = [fs_i.key(q).rstrip("/") + "/" for q in apart]

        def kept(f) -> bool:
            k = fs_i.key(f[1])
            return not any(k.startswith(r) for r in real) and (one_mask is None or k != one_mask)

        files = [f for f in files if kept(f)]
    if not files:
        raise InputError(f"no images found in {ipath}")
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


def mask_finder(fs_m, mpath) -> Callable[..., str]:
    """The one pairing rule, for images and videos: ``find(rel, video=False)`` -> the mask of the
    file at ``rel`` under IMAGES. MASKS itself when it is a file; else the file with the same
    folder and stem under MASKS (an image preferred when several match), or, for a video, the
    folder MASKS/<dir>/<stem>/ of per-frame masks (as `fastfill video` takes them)."""
    if not fs_m.exists(mpath):
        raise InputError(f"{mpath}: no such mask file or folder")
    if fs_m.is_file(mpath):
        return lambda rel, video=False: mpath
    if not fs_m.is_dir(mpath):
        raise InputError(f"{mpath}: not a regular file or folder")
    by_key: dict[tuple[str, str], list[str]] = {}
    skipped: list = []  # (links leading out of MASKS: named when they were the mask)
    for rel, full in fs_m.list_files(mpath, skipped=skipped):
        by_key.setdefault((posixpath.dirname(rel), _stem(rel)), []).append(full)
    links_out = {}
    for full, why in skipped:
        rel = posixpath.relpath(full, mpath)
        links_out.setdefault((posixpath.dirname(rel), _stem(rel)), f"mask {full}: {why}")

    def find(rel, video=False):
        key = (posixpath.dirname(rel), _stem(rel))
        base = fs_m.join(mpath, *[k for k in key if k])
        if video and fs_m.is_dir(base):
            return base
        found = sorted(by_key.get(key, []))
        if len(found) > 1:  # e.g. x.png over x.txt
            found = [f for f in found if fs_m.is_image(f)] or found
        if not found and key in links_out:
            raise InputError(links_out[key])
        if not found:
            raise InputError(f"no mask found (looked for {base}.*{f' and {base}/' if video else ''})")
        if len(found) > 1:
            raise InputError("several masks match: " + ", ".join(found))
        return found[0]

    return find


def _stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


def _video_rows(videos, find_mask, fs_o, opath, single: bool = False) -> list[dict]:
    """Video rows: ``video, mask, out, error``. ``single``: the one video's output is OUT itself."""
    rows = []
    for rel, full in videos:
        out = opath if single else fs_o.join(opath, rel) if fs_o.remote else str(Path(opath) / rel)
        row = {"video": full, "mask": "", "out": out, "error": ""}
        try:
            row["mask"] = find_mask(rel, video=True)
        except InputError as e:
            row["error"] = str(e)
        rows.append(row)
    return rows


def _skip_existing(p: Worklist) -> None:
    """Drop the rows whose output exists (a local output cut short by anything else is redone:
    fastfill renames only verified files into place; objects in a store are whole by
    construction)."""
    rows = [r for r in p.images + p.videos if not r["error"]]
    exist = p.fs_out.exists_many([r["out"] for r in rows])
    if not p.fs_out.remote:  # a FIFO or device there would block the check, and the write
        for r in rows:
            if r["out"] in exist and not _regular(r["out"]):
                r["error"] = f"its output {r['out']} exists and is not a regular file"
        for r in p.images:  # (a file of another kind under the output's name is not ours to redo)
            if r["out"] in exist and not r["error"] and fio.output_is_foreign(r["out"]):
                r["error"] = (f"its output {r['out']} exists and is not an image (left as it is; "
                              "--overwrite replaces it)")
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
        elif not p.fs_out.remote and not _video_is_whole(r["out"]):
            r["replace"] = True
            keep_v.append(r)
        else:
            p.skipped += 1
    p.images, p.videos = keep_i, keep_v


def _regular(path: str) -> bool:
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True  # (gone meanwhile, or unreadable: the write says what is wrong)


def _video_is_whole(path: str) -> bool:
    try:
        from ..video.stream import video_is_whole
    except ImportError:  # (no PyAV: the video fails later, saying how to install it)
        return True
    return video_is_whole(path)


__all__ = ["find_work", "Worklist", "mask_finder", "names_folder", "FAILURES_FILE", "MAX_JOBS",
           "VIDEO_SUFFIXES"]
