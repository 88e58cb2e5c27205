"""fastfill: image completion (object removal) with GLCIC and Context Encoder models.

The public API::

    import fastfill
    inp = fastfill.Inpainter()            # the default: the shipped model, or the default fill in its place
    out = inp(image, mask)                # uint8 HxWx3 RGB + HxW mask (nonzero = fill) -> uint8 HxWx3

Heavy modules are imported on first use so that ``import fastfill`` stays cheap.
"""

from importlib import import_module

from .errors import BuildError, EngineError, FastfillError, InputError

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__ below.
_LAZY = {
    "Inpainter": ".inpainter",
    "load_engine": ".engines",
}

__all__ = [
    "Inpainter",
    "load_engine",
    "FastfillError",
    "InputError",
    "EngineError",
    "BuildError",
    "__version__",
]


# Subpackages the docs call through ``fastfill.`` (``fastfill.ops.fill``), imported on first use.
_SUBMODULES = frozenset({"ops", "fills", "serve", "video", "files", "masks"})


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)  # (which binds it here too)
    raise AttributeError(f"module 'fastfill' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
