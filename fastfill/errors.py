"""Exceptions raised by fastfill.

Everything the package raises on purpose derives from :class:`FastfillError`, so callers (and the
CLI's single error handler) can tell a known failure from a bug.
"""

import stat


class FastfillError(Exception):
    """Base class of every error fastfill raises on purpose."""


class InputError(FastfillError, ValueError):
    """An image, mask or argument that cannot be used (bad file, size mismatch, wrong dtype).

    ``part``: which input of a pair it is about (``"image"`` or ``"mask"``), when known."""

    part: str | None = None


class SizeLimitError(InputError):
    """An input over a size limit (pixels, bytes): refused before it is decoded."""


class EngineError(FastfillError, RuntimeError):
    """An engine that cannot be loaded or run (missing back-end, bad model file, shape outside profile)."""


class BuildError(FastfillError, RuntimeError):
    """A TensorRT engine that cannot be built (no GPU, no TensorRT, unsupported graph)."""


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is (``os.stat``'s ``st_mode``), for its one line:
    "a FIFO", "a character device", …"""
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a file")


def printable(text) -> str:
    """``text`` as one printable line: a file name's undecodable bytes as ``\\xNN`` and control
    characters (a newline in a name) as escapes, so that no name can split or forge a line,
    write terminal escapes, or fail to encode."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


__all__ = ["printable", "FastfillError", "InputError", "SizeLimitError", "EngineError", "BuildError"]
