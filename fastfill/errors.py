"""Exceptions raised by fastfill.

Everything the package raises on purpose derives from :class:`FastfillError`, so callers (and the
CLI's single error handler) can tell a known failure from a bug.
"""


class FastfillError(Exception):
    """Base class of every error fastfill raises on purpose."""


class InputError(FastfillError, ValueError):
    """An image, mask or argument that cannot be used (bad file, size mismatch, wrong dtype)."""


class SizeLimitError(InputError):
    """An input over a size limit (pixels, bytes): refused before it is decoded."""


class EngineError(FastfillError, RuntimeError):
    """An engine that cannot be loaded or run (missing back-end, bad model file, shape outside profile)."""


class BuildError(FastfillError, RuntimeError):
    """A TensorRT engine that cannot be built (no GPU, no TensorRT, unsupported graph)."""


__all__ = ["FastfillError", "InputError", "SizeLimitError", "EngineError", "BuildError"]
