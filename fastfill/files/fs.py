"""Where a run's files live: this machine (:class:`LocalFS`) or any pyarrow file system
(:class:`ArrowFS`: ``s3://``, ``gs://``, ``file://``...), behind one small interface that the
worklist and the read / write steps use; :func:`resolve` picks one for a path or URI."""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from pathlib import Path, PurePosixPath

from . import codecs as fio
from ..errors import InputError

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

    def list_files(self, root: str, skipped: list | None = None) -> list[tuple[str, str]]:
        """[(relative posix path, full path)] of the regular files under ``root`` (or ``root``);
        links with an image's name leading out of ``root`` appended to ``skipped`` as (full
        path, reason) when it is given."""
        r = Path(root)
        if r.is_file():
            return [(r.name, str(r))]
        if not r.is_dir():
            return []
        unreadable: list = []
        files = [(q.relative_to(r).as_posix(), str(q)) for q in fio.regular_files(r, unreadable)]
        if skipped is not None:
            skipped.extend((str(q), why) for q, why in unreadable if why.startswith("a link"))
        return files

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

    def list_files(self, root: str, skipped: list | None = None) -> list[tuple[str, str]]:
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


__all__ = ["LocalFS", "ArrowFS", "resolve"]
