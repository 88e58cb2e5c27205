"""The same work on a Ray Data cluster (extra ``ray``): ``fastfill run --ray`` and :func:`inpaint`.

No scheduler of its own: the driver lists and pairs the files exactly as the local ``fastfill run``
does (:func:`fastfill.io.plan_tasks`), then Ray Data streams them through three stages::

    rows (image, mask, out) ─► decode (Ray tasks) ─► fill (actor pool: one engine per actor)
                                                        ─► encode + write (Ray tasks) ─► driver

- decode and write are plain Ray tasks using :mod:`fastfill.io` (same conversions, same atomic
  no-clobber writes as the local run), so a laptop, a workstation and a cluster of GPU nodes run
  one code path;
- the fill stage is a ``map_batches`` callable class: the engine is loaded once per actor, the
  pool has ``concurrency`` actors, each with ``gpus_per_worker`` GPUs;
- a bad file fails that file only: it travels through the stages as a row with ``error`` set, is
  printed, counted in the summary and listed in ``OUT/fastfill-failures.jsonl``;
- outputs that already exist are skipped (unless ``overwrite``), so a re-run resumes a job that
  died; writes go to a temporary name and are renamed, so nothing half-written is left behind.

Inputs and outputs are local paths or URIs of any file system pyarrow knows (``s3://``, ``gs://``,
``abfs://``, ``hdfs://``, ``file://``). A folder of videos is one Ray task per video through
:func:`fastfill.video.inpaint_video` (which runs :meth:`Inpainter.stream`).

Ray is imported lazily: ``import fastfill.ray`` works without it, the first call says
``pip install 'fastfill[ray]'``.
"""

from __future__ import annotations

import json
import dataclasses
import os
import pickle
import posixpath
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from . import io as fio
from .errors import EngineError, FastfillError, InputError

FAILURES_FILE = "fastfill-failures.jsonl"
# Files under IMAGES with one of these suffixes are videos (one Ray task each).
VIDEO_SUFFIXES = frozenset(".mp4 .m4v .mov .mkv .avi .webm .mpg .mpeg .ts .wmv .flv".split())
_NO_RGB = np.zeros((0, 0, 3), np.uint8)
_NO_MASK = np.zeros((0, 0), np.uint8)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FastfillError("--ray needs Ray Data: pip install 'fastfill[ray]'") from None
    return ray


# -- file systems -------------------------------------------------------------------------------

def resolve(location: str | os.PathLike, filesystem=None):
    """(pyarrow FileSystem or None, path). None = the local disk, ``path`` a local path.

    ``location`` is a local path or a URI (``s3://bucket/x``, ``file:///data/x``); a URI on the
    local disk resolves to None so that the local code path (and its exact pairing) is used.
    """
    s = os.fspath(location)
    if filesystem is None and "://" not in s:
        return None, s
    import pyarrow.fs as pafs

    if filesystem is None:
        try:
            filesystem, s = pafs.FileSystem.from_uri(s)
        except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise InputError(f"{location}: not a file system pyarrow knows ({e})") from None
    if isinstance(filesystem, pafs.LocalFileSystem):
        return None, s
    return filesystem, s.rstrip("/") or s


def _is_object_store(fs) -> bool:
    return getattr(fs, "type_name", "") in ("s3", "gcs", "abfs")


def _fetch(fs, path: str, tmpdir: str) -> str:
    """A local file with the content of ``path`` (the path itself when it is local)."""
    if fs is None:
        return path
    dst = os.path.join(tmpdir, uuid.uuid4().hex[:8] + "-" + posixpath.basename(path))
    try:
        with fs.open_input_stream(path) as src, open(dst, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except OSError as e:
        raise InputError(f"cannot read ({e})") from None
    return dst


def _fetch_tree(fs, path: str, tmpdir: str) -> str:
    """A local copy of a file or folder on ``fs`` (the path itself when it is local)."""
    if fs is None:
        return path
    import pyarrow.fs as pafs

    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return _fetch(fs, path, tmpdir)
    root = os.path.join(tmpdir, uuid.uuid4().hex[:8] + "-" + posixpath.basename(path))
    for rel, full in _list_files(fs, path)[0]:
        dst = os.path.join(root, *PurePosixPath(rel).parts)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with fs.open_input_stream(full) as src, open(dst, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
    return root


def _upload(local: str, fs, path: str, overwrite: bool) -> None:
    """Copy a finished local file to ``path`` on ``fs`` without leaving a partial file there.

    Object stores make an object visible only when its upload completes; elsewhere the file is
    written under a temporary name and moved into place.
    """
    if not overwrite and _exists(fs, path):
        raise InputError(f"{path} exists (use --overwrite to replace it)")
    parent = posixpath.dirname(path)
    try:
        if parent and not _is_object_store(fs):
            fs.create_dir(parent, recursive=True)
        target = path if _is_object_store(fs) else posixpath.join(
            parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
        with open(local, "rb") as src, fs.open_output_stream(target) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if target != path:
            try:
                fs.move(target, path)
            except BaseException:
                try:
                    fs.delete_file(target)
                except OSError:
                    pass
                raise
    except OSError as e:
        raise InputError(f"cannot write {path}: {e}") from None


def _exists(fs, path: str) -> bool:
    if fs is None:
        return os.path.exists(path)
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _list_files(fs, root: str) -> tuple[list[tuple[str, str]], bool]:
    """([(relative posix path, full path)], root_is_file) for a file or folder on ``fs``."""
    import pyarrow.fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{root}: no such file or folder")
    if info.type == pafs.FileType.File:
        return [(posixpath.basename(root), root)], True
    out = []
    for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if i.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(i.path, root)
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        out.append((rel, i.path))
    return sorted(out), False


# -- planning on the driver ---------------------------------------------------------------------

@dataclass
class Plan:
    """What a run will do: image rows, video rows, and what was skipped or failed up front."""

    images: list[dict] = field(default_factory=list)  # rows: image, mask, out, format, error
    videos: list[dict] = field(default_factory=list)  # rows: video, mask, out
    skipped: int = 0
    # OUTPUT is the output file of the one image IMAGES names (decided before anything is
    # skipped, from the arguments as given: `-o ./out.png` and `-o out.png` alike).
    single_file: bool = False


def _format_of_suffix(path: str) -> str | None:
    return fio._format_for_suffix(posixpath.splitext(path)[1])


def _single_output(fs_i, ipath: str, fs_o, opath: str, output) -> bool:
    """:func:`fastfill.io.single_output` on any file system (``output``: the argument as given,
    whose trailing separator says "a folder")."""
    if fio.names_folder(output):
        return False
    if fs_i is None and fs_o is None:
        return fio.single_output(ipath, opath)
    if not posixpath.splitext(opath)[1] or not _is_file(fs_i, ipath):
        return False
    if fs_o is None:
        return not Path(opath).is_dir()
    import pyarrow.fs as pafs

    return fs_o.get_file_info(opath).type != pafs.FileType.Directory


def plan(images, masks, output, fmt: str | None = None, *, overwrite: bool = False,
         filesystem=None) -> Plan:
    """Pair every image (and video) under ``images`` with its mask and output, on the driver.

    Local paths go through :func:`fastfill.io.plan_tasks`, the local ``fastfill run``'s own
    pairing. On other file systems the same rules apply, except that images are recognised by
    suffix (content is checked when they are decoded, in the cluster). Existing outputs are
    skipped unless ``overwrite``.
    """
    fs_i, ipath = resolve(images, filesystem)
    fs_m, mpath = resolve(masks, filesystem)
    fs_o, opath = resolve(output, filesystem)
    # Local paths made absolute: Ray workers do not share the driver's working directory.
    ipath, mpath, opath = (q if fs is not None else os.path.abspath(q)
                           for fs, q in ((fs_i, ipath), (fs_m, mpath), (fs_o, opath)))
    p = Plan()
    videos = _find_videos(fs_i, ipath)
    single = _single_output(fs_i, ipath, fs_o, opath, output) and not videos
    p.single_file = single
    if fs_i is None and fs_m is None:
        # (an output on another file system: planned under a stand-in root, or file)
        stand_in = "/__out__" + (posixpath.splitext(opath)[1] if single else "")
        try:
            tasks = fio.plan_tasks(ipath, mpath, opath if fs_o is None else stand_in, fmt,
                                   single=single)
        except InputError:
            if not videos:
                raise
            tasks = []
        for t in tasks:
            if fs_o is None:
                out = str(t.out)
            elif single:
                out = opath
            else:
                out = posixpath.join(opath, Path(t.out).relative_to("/__out__").as_posix())
            p.images.append({"image": str(t.image), "mask": str(t.mask or ""), "out": out,
                             "format": t.format, "error": t.error or ""})
    else:
        p.images = _plan_remote(fs_i, ipath, fs_m, mpath, fs_o, opath, fmt, bool(videos), single)
    p.videos = _pair_videos(videos, fs_m, mpath, fs_o, opath)
    if not overwrite:
        keep = []
        outs = [r["out"] for r in p.images if not r["error"]] + [r["out"] for r in p.videos
                                                                   if not r.get("error")]
        exist = _exist_many(fs_o, outs)
        for r in p.images:
            if not r["error"] and r["out"] in exist:
                # a local output cut short by something else is redone (fastfill renames only
                # verified files into place); objects in a store are whole by construction
                if fs_o is None and not fio.output_is_whole(r["out"]):
                    r["replace"] = True
                    keep.append(r)
                else:
                    p.skipped += 1
            else:
                keep.append(r)
        p.images = keep
        kv = []
        for r in p.videos:
            if not r.get("error") and r["out"] in exist:
                p.skipped += 1
            else:
                kv.append(r)
        p.videos = kv
    return p


def _exist_many(fs, paths: list[str]) -> set[str]:
    if fs is None:
        return {q for q in paths if os.path.exists(q)}
    import pyarrow.fs as pafs

    return {q for q, i in zip(paths, fs.get_file_info(paths)) if i.type != pafs.FileType.NotFound}


def _plan_remote(fs_i, ipath, fs_m, mpath, fs_o, opath, fmt, have_videos,
                 single_out: bool) -> list[dict]:
    """plan_tasks' rules on any pyarrow file system (images recognised by suffix)."""
    if fs_i is None:
        files = [(c.rel.as_posix(), str(c.path), c.format, c.error) for c in fio.find_images(ipath)]
    else:
        listed, _ = _list_files(fs_i, ipath)
        inside = opath.rstrip("/") + "/"  # an output folder inside IMAGES is not input
        files = [(rel, full, _format_of_suffix(full), None) for rel, full in listed
                 if posixpath.splitext(full)[1].lower() in fio.IMAGE_SUFFIXES
                 and (single_out or fs_o is None or not full.startswith(inside))]
    if not files:
        if have_videos:
            return []
        raise InputError(f"no images found in {ipath}")
    if fs_m is None:
        index = fio.MaskIndex(mpath)

        def find_mask(rel):
            return str(index.find(Path(rel)))
    else:
        mfiles, msingle = _list_files(fs_m, mpath)
        by_key: dict[tuple[str, str], list[str]] = {}
        for rel, full in mfiles:
            stem = posixpath.splitext(posixpath.basename(rel))[0]
            by_key.setdefault((posixpath.dirname(rel), stem), []).append(full)

        def find_mask(rel):
            if msingle:
                return mpath
            key = (posixpath.dirname(rel), posixpath.splitext(posixpath.basename(rel))[0])
            found = sorted(by_key.get(key, []))
            if len(found) > 1:
                imgs = [f for f in found if posixpath.splitext(f)[1].lower() in fio.IMAGE_SUFFIXES]
                found = imgs or found
            if not found:
                where = posixpath.join(mpath, key[0], key[1] + ".*")
                raise InputError(f"no mask found (looked for {where})")
            if len(found) > 1:
                raise InputError("several masks match: " + ", ".join(found))
            return found[0]

    rows, seen = [], {}
    for rel, full, src_fmt, error in files:
        src_fmt = src_fmt or "PNG"
        out_fmt = fmt or (src_fmt if src_fmt in fio.FORMAT_SUFFIX else "PNG")
        if single_out:
            out = opath
            if fmt is None:
                out_fmt = _format_of_suffix(opath) or out_fmt
        else:
            out = fio.output_path(PurePosixPath(opath), PurePosixPath(rel), out_fmt,
                                  src_fmt).as_posix()
            if fs_o is None:
                out = str(Path(out))
        row = {"image": full, "mask": "", "out": out, "format": out_fmt, "error": error or ""}
        if not row["error"]:
            try:
                row["mask"] = find_mask(rel)
            except InputError as e:
                row["error"] = str(e)
        if not row["error"] and out in seen:
            row["error"] = f"its output {out} is also the output of {seen[out]}"
        elif not row["error"]:
            seen[out] = full
        rows.append(row)
    return rows


def _find_videos(fs, root: str) -> list[tuple[str, str]]:
    """[(relative posix path, full path)] of the video files under ``root``."""
    if fs is None:
        r = Path(root)
        if not r.exists():
            return []
        if r.is_file():
            files = [(r.name, str(r))]
        else:
            files = [(q.relative_to(r).as_posix(), str(q)) for q in fio.regular_files(r)]
    else:
        try:
            files = _list_files(fs, root)[0]
        except InputError:
            return []
    return [(rel, full) for rel, full in files
            if posixpath.splitext(rel)[1].lower() in VIDEO_SUFFIXES]


def _pair_videos(videos, fs_m, mpath, fs_o, opath) -> list[dict]:
    """A video's mask: MASKS itself when it is a file, else MASKS/<dir>/<stem>.<image> (one mask
    for every frame) or the folder MASKS/<dir>/<stem>/ (per-frame masks, as `fastfill video`)."""
    rows = []
    for rel, full in videos:
        d, stem = posixpath.dirname(rel), posixpath.splitext(posixpath.basename(rel))[0]
        out = posixpath.join(opath, rel) if fs_o is not None else str(Path(opath) / rel)
        row = {"video": full, "mask": "", "out": out, "error": ""}
        if _exists(fs_m, mpath) and _is_file(fs_m, mpath):
            row["mask"] = mpath
        else:
            base = posixpath.join(mpath, d, stem) if fs_m is not None else str(Path(mpath) / d / stem)
            if _exists(fs_m, base):
                row["mask"] = base
            else:
                cands = _siblings(fs_m, posixpath.join(mpath, d) if fs_m is not None
                                  else str(Path(mpath) / d), stem)
                if len(cands) == 1:
                    row["mask"] = cands[0]
                elif not cands:
                    row["error"] = f"no mask found (looked for {base}.* and {base}/)"
                else:
                    row["error"] = "several masks match: " + ", ".join(cands)
        rows.append(row)
    return rows


def _is_file(fs, path) -> bool:
    if fs is None:
        return os.path.isfile(path)
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type == pafs.FileType.File


def _siblings(fs, folder: str, stem: str) -> list[str]:
    """Image files named <stem>.<image suffix> in ``folder``."""
    if fs is None:
        if not os.path.isdir(folder):
            return []
        names = sorted(os.listdir(folder))
        paths = [os.path.join(folder, n) for n in names]
    else:
        import pyarrow.fs as pafs

        try:
            infos = fs.get_file_info(pafs.FileSelector(folder, recursive=False))
        except (FileNotFoundError, OSError):
            return []
        paths = sorted(i.path for i in infos if i.type == pafs.FileType.File)
    return [q for q in paths if posixpath.splitext(posixpath.basename(q))[0] == stem
            and posixpath.splitext(q)[1].lower() in fio.IMAGE_SUFFIXES]


# -- the stages (run in Ray workers) ------------------------------------------------------------

def _objects(items) -> np.ndarray:
    """A 1-d object array of arrays (never stacked, even when their shapes agree)."""
    a = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        a[i] = x
    return a


def _strings(batch, key) -> list[str]:
    return ["" if v is None else str(v) for v in batch[key]]


def _decode_batch(batch: dict, *, fs_image=None, fs_mask=None, invert=False, threshold=128,
                  resize_mask=False, dilate=0, max_pixels=None) -> dict:
    """Rows of paths -> rows with the decoded image (``rgb``), mask, and what writing needs."""
    errors = _strings(batch, "error")
    rgbs, masks, srcs = [], [], []
    with tempfile.TemporaryDirectory(prefix="fastfill-ray-") as tmp:
        for i, (img, msk) in enumerate(zip(_strings(batch, "image"), _strings(batch, "mask"))):
            rgb, mask, src = _NO_RGB, _NO_MASK, b""
            if not errors[i]:
                try:
                    local = _fetch(fs_image, img, tmp)
                    dec = fio.decode_image(local, max_pixels)
                    local_m = _fetch(fs_mask, msk, tmp)
                    try:
                        m = fio.decode_mask(local_m, dec.size, invert=invert, threshold=threshold,
                                            resize=resize_mask, dilate=dilate, image_name=img,
                                            max_pixels=max_pixels)
                    except InputError as e:
                        raise InputError(str(e).replace(local_m, msk)) from None
                    rgb, mask = dec.rgb, m.view(np.uint8)
                    # every field but the pixels, whatever fields Decoded has
                    src = pickle.dumps({f.name: getattr(dec, f.name) for f in dataclasses.fields(dec)
                                        if f.name != "rgb"}, protocol=pickle.HIGHEST_PROTOCOL)
                except InputError as e:
                    errors[i] = str(e)
                except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
                    errors[i] = f"cannot decode: {type(e).__name__}: {e}"
                finally:
                    for q in os.listdir(tmp):
                        os.unlink(os.path.join(tmp, q))
            rgbs.append(rgb)
            masks.append(mask)
            srcs.append(src)
    out = {k: batch[k] for k in ("image", "mask", "out", "format", "replace")}
    out.update(rgb=_objects(rgbs), hole=_objects(masks), src=_objects(srcs),
               error=np.array(errors, dtype=object))
    return out


def _make_inpainter(engine, options: dict):
    from .inpainter import Inpainter

    if callable(engine) and not isinstance(engine, (str, os.PathLike)):
        engine = engine()
    if isinstance(engine, Inpainter):
        return engine
    return Inpainter(engine, **options)


class _Filler:
    """The fill stage: one Inpainter (one loaded engine) per actor, reused for every batch."""

    def __init__(self, engine, options: dict, image_col="rgb", mask_col="hole",
                 out_col="rgb", keep_errors=True):
        self.inp = _make_inpainter(engine, options)
        self.cols = (image_col, mask_col, out_col)
        self.keep_errors = keep_errors

    def __call__(self, batch: dict) -> dict:
        image_col, mask_col, out_col = self.cols
        images, masks = batch[image_col], batch[mask_col]
        n = len(images)
        errors = _strings(batch, "error") if "error" in batch else [""] * n
        good, pairs = [], []
        for i in range(n):
            if errors[i]:
                continue
            try:
                pairs.append(self.inp.check(images[i], masks[i]))
                good.append(i)
            except InputError as e:
                if not self.keep_errors:
                    raise
                errors[i] = str(e)
        results = [_NO_RGB] * n
        # EngineError is not caught: an engine that fails would fail every file (local run: same).
        for i, r in zip(good, self.inp.batch([p[0] for p in pairs], [p[1] for p in pairs])):
            results[i] = r
        out = dict(batch)
        out[out_col] = _objects(results)
        if self.keep_errors:
            out["error"] = np.array(errors, dtype=object)
        return out


def _write_batch(batch: dict, *, fs_out=None, overwrite=False, quality=95) -> dict:
    """Encode each result in its source's mode and write it atomically; one status per row."""
    errors = _strings(batch, "error")
    status = []
    with tempfile.TemporaryDirectory(prefix="fastfill-ray-") as tmp:
        for i, out in enumerate(_strings(batch, "out")):
            if not errors[i]:
                try:
                    s = pickle.loads(batch["src"][i])
                    result = np.asarray(batch["rgb"][i])
                    src = fio.Decoded(rgb=result, **s)
                    fmt = str(batch["format"][i])
                    img = fio.restore_mode(result, src, np.asarray(batch["hole"][i]), fmt)
                    if fs_out is None:
                        fio.save_image(img, out, fmt, overwrite=overwrite or bool(batch["replace"][i]),
                                       quality=quality, info=src.info)
                    else:
                        local = os.path.join(tmp, uuid.uuid4().hex[:8] + "-" +
                                             posixpath.basename(out))
                        fio.save_image(img, local, fmt, overwrite=True, quality=quality,
                                       info=src.info)
                        _upload(local, fs_out, out, overwrite)
                        os.unlink(local)
                except InputError as e:
                    errors[i] = str(e)
                except Exception as e:  # noqa: BLE001
                    errors[i] = f"cannot encode: {type(e).__name__}: {e}"
            status.append("failed" if errors[i] else "done")
    return {"image": batch["image"], "mask": batch["mask"], "out": batch["out"],
            "status": np.array(status, dtype=object), "error": np.array(errors, dtype=object)}


def _video_task(row: dict, engine, options: dict, conv: dict, fs_v=None, fs_m=None, fs_o=None,
                overwrite=False) -> dict:
    """One video, start to end, in one Ray task (decode -> Inpainter.stream -> encode)."""
    from . import video as fvideo

    res = dict(row, status="done", frames=0)
    src = row["video"]
    try:
        with tempfile.TemporaryDirectory(prefix="fastfill-ray-") as tmp:
            src = _fetch(fs_v, row["video"], tmp)
            mask = _fetch_tree(fs_m, row["mask"], tmp)
            dst = row["out"] if fs_o is None else os.path.join(
                tmp, "out-" + posixpath.basename(row["out"]))
            with _make_inpainter(engine, options) as inp:
                stats = fvideo.inpaint_video(inp, src, dst, mask, overwrite=overwrite,
                                             progress=False, **conv)
            if fs_o is not None:
                _upload(dst, fs_o, row["out"], overwrite)
            res["frames"] = stats.frames
    except EngineError:
        raise
    except InputError as e:
        res.update(status="failed", error=str(e).replace(src, row["video"]))
    except Exception as e:  # noqa: BLE001
        res.update(status="failed", error=f"{type(e).__name__}: {e}")
    return res


# -- the driver ---------------------------------------------------------------------------------

def init(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True):
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one on
    this machine's cores. Returns True when this call started Ray (the caller shuts it down)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    import logging

    kw: dict[str, Any] = {"include_dashboard": False,
                          "logging_level": logging.WARNING if quiet else logging.INFO}
    if address:
        kw["address"] = address
    elif num_cpus is not None:
        kw["num_cpus"] = num_cpus
    try:
        ray.init(**kw)
    except ConnectionError as e:
        raise FastfillError(f"cannot reach the Ray cluster at {address}: {e}") from None
    return True


def _cluster_cpus() -> float:
    ray = _import_ray()
    return float(ray.cluster_resources().get("CPU", 1.0))


def _worker_resources(concurrency: int, gpus_per_worker: float, cpus_per_worker: float | None,
                      threads: int | None, local: bool):
    """(CPUs per fill actor, CPUs per decode/write task, engine threads)."""
    total = _cluster_cpus()
    if cpus_per_worker is None:
        # Leave room for the decode and write tasks, or a small cluster would run only actors.
        cpus_per_worker = 1.0 if gpus_per_worker else min(1.0, total / (concurrency + 1))
    io_cpus = min(0.5, max(0.05, (total - cpus_per_worker * concurrency) / 2))
    if threads is None and not gpus_per_worker and local:
        threads = max(1, (os.cpu_count() or 1) // max(1, concurrency))
    return cpus_per_worker, io_cpus, threads


def _configure_data(progress: bool | None):
    ray = _import_ray()
    import logging

    ctx = ray.data.DataContext.get_current()
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show:  # before the switch below, which itself logs a warning when bars are off
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx.enable_progress_bars = show
    if hasattr(ctx, "enable_operator_progress_bars"):
        ctx.enable_operator_progress_bars = show
    return ctx


def _unwrap(e: BaseException) -> BaseException | None:
    """The FastfillError inside a Ray error (RayTaskError, UserCodeException, ...), if any."""
    seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, FastfillError):
            return x
        cause = getattr(x, "cause", None)
        stack.extend([x.__cause__, x.__context__, cause if isinstance(cause, BaseException)
                      else None])
    return None


def _engine_failed(e: BaseException) -> FastfillError:
    """One clear FastfillError for a Ray error raised around a failure in a worker."""
    import re

    from . import errors

    inner = _unwrap(e)
    text = str(inner if inner is not None else e)
    # Ray re-raises worker errors with the remote traceback in the message: keep the last
    # `fastfill.errors.X: message` line, as the local run would have printed it.
    found = re.findall(r"(?:fastfill\.errors\.)?(EngineError|InputError|BuildError|FastfillError): "
                       r"(.+)", text)
    if found:
        name, msg = found[-1]
        return getattr(errors, name)(msg.strip())
    if isinstance(inner, FastfillError):
        return inner
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return EngineError("the Ray job failed: " + (lines[-1] if lines else type(e).__name__))


def run_files(images, masks, output, *, engine=None, backend: str | None = None,
              device: str | None = None, threads: int | None = None, roi: bool = True, batch_size: int = 4,
              fmt: str | None = None, overwrite: bool = False, invert: bool = False,
              threshold: int = 128, resize_mask: bool = False, dilate: int = 0,
              quality: int = 95, address: str | None = None, concurrency: int = 1,
              gpus_per_worker: float = 0, cpus_per_worker: float | None = None,
              rows_per_task: int = 8, progress: bool | None = None,
              echo: Callable[[str], None] | None = None, filesystem=None,
              max_pixels: int | None = None) -> fio.Summary:
    """``fastfill run --ray``: the local run's work on a Ray cluster; returns its Summary.

    ``images``/``masks``/``output``: local paths or URIs (see :func:`resolve`); ``filesystem``:
    a pyarrow FileSystem for all three instead. ``engine``: a model path (local to every worker)
    or None for the shipped model. ``concurrency`` fill actors, each with ``gpus_per_worker``
    GPUs. Failed files are printed through ``echo``, counted, and listed in
    ``OUTPUT/fastfill-failures.jsonl``. An engine error stops the run (EngineError).
    """
    echo = echo or (lambda msg: None)
    if concurrency < 1:
        raise InputError(f"concurrency must be >= 1, got {concurrency}")
    fmt = fio.normalize_format(fmt)
    if engine is not None and isinstance(engine, (str, os.PathLike)) and "://" not in str(engine) \
            and not os.path.exists(engine) and not address:
        raise EngineError(f"{engine}: no such model file")
    t0 = time.perf_counter()
    p = plan(images, masks, output, fmt, overwrite=overwrite, filesystem=filesystem)
    fs_i, _ = resolve(images, filesystem)
    fs_m, _ = resolve(masks, filesystem)
    fs_o, opath = resolve(output, filesystem)
    single_file = p.single_file
    if fs_o is None:
        fio.check_writable_dir(Path(opath).parent if single_file else opath)
    summary = fio.Summary(skipped=p.skipped)
    failures: list[dict] = []

    def fail(row: dict, key: str, reason: str):
        summary.failed += 1
        summary.failures.append((row[key], reason))
        failures.append({"file": row[key], "mask": row.get("mask") or None, "error": reason})
        echo(f"failed: {row[key]}: {reason}")

    def usable(rows, key):
        """The rows planning found nothing wrong with; the others are reported as failed."""
        for r in rows:
            if r["error"]:
                fail(r, key, r["error"])
        return [r for r in rows if not r["error"]]

    todo, vids = usable(p.images, "image"), usable(p.videos, "video")
    for r in todo:
        r.setdefault("replace", False)
    if fs_o is None:  # temporary files a killed run left for these outputs
        fio.remove_stale_temps(r["out"] for r in todo + vids)
    if todo or vids:
        started = init(address, quiet=not progress)
        try:
            _configure_data(progress)
            actor_cpus, io_cpus, threads = _worker_resources(
                concurrency, gpus_per_worker, cpus_per_worker, threads, local=not address)
            options = {"roi": roi, "batch_size": batch_size, "threads": threads,
                       "backend": backend, "device": device}
            conv = {"invert": invert, "threshold": threshold, "resize_mask": resize_mask,
                    "dilate": dilate}
            decode_kw = dict(conv, max_pixels=max_pixels)
            try:
                if vids:
                    for res in _run_videos(vids, engine, options, conv, fs_i, fs_m, fs_o,
                                           overwrite, gpus_per_worker, actor_cpus):
                        if res["status"] == "done":
                            summary.done += 1
                        else:
                            fail(res, "video", res["error"])
                if todo:
                    ds = _image_pipeline(todo, engine, options, decode_kw, fs_i, fs_m, fs_o,
                                         overwrite=overwrite, quality=quality,
                                         concurrency=concurrency, gpus=gpus_per_worker,
                                         actor_cpus=actor_cpus, io_cpus=io_cpus,
                                         rows_per_task=rows_per_task, batch_size=batch_size)
                    for b in ds.iter_batches(batch_size=64, batch_format="numpy"):
                        for img, msk, st, err in zip(b["image"], b["mask"], b["status"],
                                                     b["error"]):
                            if st == "done":
                                summary.done += 1
                            else:
                                fail({"image": str(img), "mask": str(msk)}, "image", str(err))
            except FastfillError:
                raise
            except Exception as e:  # a Ray error around an engine failure in an actor
                raise _engine_failed(e) from e
        finally:
            if started:
                _import_ray().shutdown()
    _write_failures(fs_o, opath, failures, single_file)
    summary.seconds = time.perf_counter() - t0
    return summary


def _image_pipeline(rows, engine, options, conv, fs_i, fs_m, fs_o, *, overwrite, quality,
                    concurrency, gpus, actor_cpus, io_cpus, rows_per_task, batch_size):
    ray = _import_ray()
    n_blocks = max(1, min(len(rows), -(-len(rows) // max(1, rows_per_task))))
    ds = ray.data.from_items(rows, override_num_blocks=n_blocks)  # Ray >= 2.10
    ds = ds.map_batches(_decode_batch, batch_size=rows_per_task, batch_format="numpy",
                        fn_kwargs=dict(fs_image=fs_i, fs_mask=fs_m, **conv), num_cpus=io_cpus)
    ds = ds.map_batches(_Filler, batch_size=max(batch_size, 1), batch_format="numpy",
                        fn_constructor_args=(engine, options),
                        compute=ray.data.ActorPoolStrategy(size=concurrency),
                        num_cpus=actor_cpus, num_gpus=gpus or None)
    ds = ds.map_batches(_write_batch, batch_size=rows_per_task, batch_format="numpy",
                        fn_kwargs=dict(fs_out=fs_o, overwrite=overwrite, quality=quality),
                        num_cpus=io_cpus)
    return ds


def _run_videos(rows, engine, options, conv, fs_v, fs_m, fs_o, overwrite, gpus, cpus):
    """One Ray task per video; yields each task's result row as it finishes."""
    ray = _import_ray()
    task = ray.remote(_video_task).options(num_cpus=cpus, num_gpus=gpus or 0, max_retries=0)
    pending = [task.remote(r, engine, options, conv, fs_v, fs_m, fs_o, overwrite) for r in rows]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])  # an EngineError in that task raises here
    finally:
        # An engine error (or the caller stopping early) ends the run: the other videos would
        # only fail the same way. A cancelled task is interrupted and removes its temporary file.
        for ref in pending:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass


def _write_failures(fs, opath: str, failures: list[dict], single_file: bool) -> None:
    """OUT/fastfill-failures.jsonl: one JSON object per failed file (removed when none failed)."""
    folder = (posixpath.dirname(opath) if fs is not None else str(Path(opath).parent)) \
        if single_file else opath
    path = posixpath.join(folder, FAILURES_FILE) if fs is not None else os.path.join(
        folder, FAILURES_FILE)
    if not failures:
        if _exists(fs, path):
            (os.unlink(path) if fs is None else fs.delete_file(path))
        return
    text = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
    if fs is None:
        fio.atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"),
                         overwrite=True)
    else:
        with tempfile.TemporaryDirectory() as tmpd:
            local = os.path.join(tmpd, FAILURES_FILE)
            with open(local, "w", encoding="utf-8") as f:
                f.write(text)
            _upload(local, fs, path, overwrite=True)


# -- the Dataset API ------------------------------------------------------------------------------

def inpaint(ds, engine=None, *, image_column: str = "image", mask_column: str = "mask",
            output_column: str = "inpainted", roi: bool = True, batch_size: int = 4,
            threads: int | None = None, backend: str | None = None, concurrency: int = 1,
            gpus_per_worker: float = 0, cpus_per_worker: float | None = None,
            on_error: str = "raise"):
    """Fill the holes of a Ray Dataset of images and masks; returns a (lazy) Dataset.

    ``ds`` has an ``image_column`` of uint8 ``[H, W, 3]`` RGB arrays and a ``mask_column`` of
    ``[H, W]`` masks (nonzero = fill); sizes may differ from row to row. The result has every input
    column plus ``output_column`` (uint8 ``[H, W, 3]``), so it composes with the caller's own
    reading and writing. ``engine``: None (the shipped model), a model path readable by every
    worker, or a zero-argument callable returning an Engine or an Inpainter (called once per
    actor). ``on_error``: "raise" (a bad row fails the job) or "column" (an ``error`` column,
    empty when the row went well; a failed row's output is an empty ``[0, 0, 3]`` array).
    """
    ray = _import_ray()
    if on_error not in ("raise", "column"):
        raise InputError(f"on_error must be 'raise' or 'column', got {on_error!r}")
    if concurrency < 1:
        raise InputError(f"concurrency must be >= 1, got {concurrency}")
    if cpus_per_worker is None:  # (asks the cluster: only when it has to)
        cpus_per_worker, _, _ = _worker_resources(concurrency, gpus_per_worker, None, threads,
                                                  local=False)
    options = {"roi": roi, "batch_size": batch_size, "threads": threads, "backend": backend}
    return ds.map_batches(_Filler, batch_size=max(1, batch_size), batch_format="numpy",
                          fn_constructor_args=(engine, options),
                          fn_constructor_kwargs=dict(image_col=image_column, mask_col=mask_column,
                                                     out_col=output_column,
                                                     keep_errors=on_error == "column"),
                          compute=ray.data.ActorPoolStrategy(size=concurrency),
                          num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None)


__all__ = ["inpaint", "run_files", "plan", "resolve", "init", "Plan", "FAILURES_FILE",
           "VIDEO_SUFFIXES"]
