"""Images and masks as bytes and files: finding images by content, decoding, conversion,
encoding and atomic writing.

Nothing here knows about models or runs; :mod:`fastfill.inpainter` takes the arrays this module
makes (uint8 ``[H, W, 3]`` RGB images, bool ``[H, W]`` masks with True = fill) and
:mod:`fastfill.files.runner` pairs files and drives a run.

Conventions (README "fastfill run"):

- Images are found by content (Pillow identifies the file), not only by suffix. A file with an
  image suffix that Pillow cannot identify is reported as a failure; other unidentifiable files
  (notes, sidecars) are ignored.
- EXIF orientation is applied to images and masks. Grey, palette, RGBA, 16-bit grey and CMYK
  inputs are converted to RGB for the model (CMYK through its ICC profile); on output, the
  input's mode is restored where the format allows (grey stays grey, 16-bit grey keeps its
  16-bit values outside the hole, CMYK stays CMYK in JPEG and TIFF, a palette image written as
  GIF keeps its palette and indices outside the hole, alpha is kept outside the hole and filled
  from the alpha around it inside). 16-bit grey is filled at 16 bits. More than 8 bits per
  colour channel is refused, never written at 8 bits.
- Metadata: ICC profile (never with pixels of another colour space), EXIF (a TIFF's own tags
  too; damaged EXIF is dropped with a note, the pixels kept), dpi, XMP and a PNG's text, gamma
  and sRGB chunks are carried to the output.
- Masks: white = fill. Grey and colour masks are thresholded on their luma; a mask with
  transparency is read as if laid on black (transparent = keep). ``invert`` swaps the two.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import struct
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from io import BytesIO  # (the standard library's: imports are absolute)
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, SizeLimitError, file_kind

# Suffixes that announce an image; a file with one of them that is not an image is an error.
IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .gif .tif .tiff .webp .ppm .pgm .pbm .pnm .tga .jp2 "
    ".j2k .ico .avif .heic .qoi".split())
# Pillow format name -> file suffix used when --format changes the output format.
FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp",
                 "PPM": ".ppm", "TGA": ".tga", "GIF": ".gif"}
# Other names accepted for them (--format jpg).
FORMAT_ALIASES = {"JPG": "JPEG", "JPE": "JPEG", "TIF": "TIFF"}
# Images above this many pixels are refused before decoding (--max-pixels): a 285 kB PNG can hold
# 100 megapixels (1.2 GB decoded). Well under Pillow's own error limit (~179 M), which stays on.
DEFAULT_MAX_PIXELS = 50_000_000
# the largest image Pillow opens at all (twice its warning limit: past it, a decompression bomb
# whatever --max-pixels says), so the most any --max-pixels may be
PILLOW_MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 500_000_000)  # (None: an application turned it off)

# The only formats fastfill decodes (Pillow's `formats=`): raster images. Pillow would otherwise
# pick a plugin from the content, and its EPS plugin runs Ghostscript on any PostScript file.
DECODE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "PPM", "TGA")  # JPEG includes MPO
_NOT_DECODABLE = f"not an image in a format fastfill reads ({', '.join(DECODE_FORMATS)})"
# a mask of another size: how each caller (the CLI, the Python API) asks for it to be scaled; the
# server says it its own way
RESIZE_HINT = "use --resize-mask, or resize_mask=True from Python, to scale it"

# The largest XMP packet one JPEG APP1 segment holds (65535 less its length field and namespace),
# and the largest EXIF block (less its length field; the block starts with its "Exif" header).
_JPEG_XMP_MAX = 65535 - 2 - 29
_JPEG_EXIF_MAX = 65535 - 2
# Formats that store an alpha channel / 16-bit grey.
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "TGA", "GIF", "BMP"})
_WIDE_FORMATS = frozenset({"PNG", "TIFF", "PPM"})  # (PPM: 16-bit PGM)
_CMYK_FORMATS = frozenset({"JPEG", "TIFF"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# Magic numbers: a file that starts with one but that Pillow cannot open is a damaged image of
# that format, not "not an image".
_SIGNATURES = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"),
               (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"))
# TIFF tags that describe a file's pixel layout, not the picture, or hold the unfilled picture
# itself: never carried to an output
# (with the orientation: the pixels are upright by then; and the ICC profile, carried apart).
_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281, 284,
    288, 289, 290, 291, 292, 293, 301, 317, 320, 321, 322, 323, 324, 325, 330, 332, 334, 336, 338,
    339, 340, 341, 347, 512, 513, 514, 515, 517, 518, 519, 520, 521, 529, 530, 532, 32997, 32998,
    34675,
    # Photoshop's image resources and its layers: a thumbnail and layers of the picture as it
    # was, which Photoshop would show over the filled pixels
    34377, 37724})
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
# The colour space an ICC profile must describe for pixels of each mode (header bytes 16-20).
_ICC_SPACE = {"RGB": b"RGB ", "RGBA": b"RGB ", "RGBX": b"RGB ", "P": b"RGB ", "CMYK": b"CMYK",
              "L": b"GRAY", "LA": b"GRAY", "1": b"GRAY", "I": b"GRAY", "I;16": b"GRAY",
              "I;16B": b"GRAY", "I;16L": b"GRAY", "I;16N": b"GRAY", "LAB": b"Lab "}


def normalize_format(fmt: str | None) -> str | None:
    """'jpg' / '.JPEG' / 'png' -> Pillow's format name ('JPEG', 'PNG'); None stays None."""
    if fmt is None:
        return None
    f = fmt.strip().lstrip(".").upper()
    f = FORMAT_ALIASES.get(f, f)
    if f not in FORMAT_SUFFIX:
        raise InputError(f"unknown output format {fmt!r}; choose one of: "
                         + ", ".join(s.lstrip(".") for s in FORMAT_SUFFIX.values()))
    return f


# -- finding images -----------------------------------------------------------------------------

class _Caught:
    """The warnings raised in this thread while inside, collected (``with _Caught() as caught``)
    and shown nowhere; other threads' warnings are theirs. ``warnings.catch_warnings`` is one
    state for the whole process: with files decoded on two threads, one thread's note named the
    other's file, and a context left in the wrong order kept swallowing warnings after it.

    Put in once (again only where something replaced it): a ``warnings.showwarning`` that hands
    every warning raised outside such a context to the hook it replaced. While any thread is
    inside one, Pillow's EXIF warnings are shown every time rather than once a place (each
    file's damaged EXIF is said, not only the first's); outside, the filters are the user's."""

    local = threading.local()
    lock = threading.Lock()
    previous = None
    inside = 0  # threads' contexts open now
    shown = None  # the filter item of Pillow's EXIF warnings while any is open

    def __enter__(self) -> list:
        with self.lock:
            if warnings.showwarning is not _route_warning:
                _Caught.previous = warnings.showwarning
                warnings.showwarning = _route_warning
            if _Caught.inside == 0:
                warnings.filterwarnings("always", message=r".*exif", module=r"PIL(\.|$)")
                _Caught.shown = warnings.filters[0]
            _Caught.inside += 1
        self._outer = getattr(self.local, "sink", None)
        self.caught: list = []
        self.local.sink = self.caught
        return self.caught

    def __exit__(self, *exc) -> None:
        self.local.sink = self._outer
        with self.lock:
            _Caught.inside -= 1
            if _Caught.inside == 0 and _Caught.shown in warnings.filters:
                warnings.filters.remove(_Caught.shown)
                getattr(warnings, "_filters_mutated", lambda: None)()  # (the filters' cache)


def _route_warning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` while :class:`_Caught` is in: into this thread's collector, else
    to the hook it replaced (once: a hook that calls the one it replaced, and replaced this one,
    as logging's captureWarnings does, is not sent round again)."""
    local = _Caught.local
    sink = getattr(local, "sink", None)
    if sink is not None:
        sink.append(message)
        return
    previous = _Caught.previous
    if getattr(local, "forwarding", False) or previous is None:
        warnings._showwarning_orig(message, category, filename, lineno, file, line)
        return
    local.forwarding = True
    try:
        previous(message, category, filename, lineno, file, line)
    finally:
        local.forwarding = False


def _open(path) -> Image.Image:
    """Image.open on the allowed formats, quietly: fastfill checks sizes itself (--max-pixels), and
    damaged metadata is reported by the decoder as one note, not as Pillow's warnings."""
    _quiet_libtiff()
    try:
        with _Caught():
            return Image.open(path, formats=DECODE_FORMATS)
    except (ValueError, SyntaxError, struct.error, IndexError, EOFError) as e:
        # (some of Pillow's header parsers fail this way on damaged bytes: a PPM's token that
        # never ends is a ValueError; the callers report a damaged file, one line, as for OSError;
        # a DecompressionBombError is none of these, and passes through)
        raise OSError(f"damaged header: {e}") from None


def _libtiff_candidates() -> list[str]:
    """Libraries through which libtiff's handlers are reached: Pillow's _imaging (dlsym searches
    its dependencies too) and any libtiff mapped into this process (Linux)."""
    from PIL import _imaging

    paths = [_imaging.__file__]
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            fields = [ln.split(None, 5) for ln in f if "libtiff" in ln]
        found = {f[5].strip() for f in fields if len(f) == 6}
        paths += sorted(p for p in found if os.path.basename(p).startswith("libtiff"))
    except OSError:
        pass
    return paths


@functools.cache
def _quiet_libtiff() -> None:
    """Switch off libtiff's error printer: Pillow silences libtiff's warnings but not its errors,
    which go to the C stderr, while fastfill reports a damaged TIFF in one line of its own. A
    process-wide handler (no fd 2 redirection: other threads write there meanwhile)."""
    import ctypes

    for path in _libtiff_candidates():
        try:
            lib = ctypes.CDLL(path)  # a library already loaded: the same handle
            for name in ("TIFFSetErrorHandler", "TIFFSetErrorHandlerExt"):
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
                fn(None)
        except (OSError, AttributeError):
            pass


def _signature(src) -> str | None:
    """The format a file's first bytes announce (TIFF, PNG, JPEG, GIF, WEBP, PPM), or None."""
    try:
        if hasattr(src, "read"):
            src.seek(0)
            head = src.read(12)
            src.seek(0)
        else:
            with open(src, "rb") as f:
                head = f.read(12)
    except (OSError, ValueError):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) > 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        rest = head[3:].lstrip()  # (a width or a comment next: a text starting "P1 " is no image)
        if rest[:1].isdigit() or rest[:1] == b"#":
            return "PPM"  # (Pillow's name for the whole Netpbm family)
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


def _unidentified(src) -> str:
    """Why Pillow could not open ``src``: a damaged file of a format it reads, or another file."""
    fmt = _signature(src)
    if fmt is None:
        try:
            if hasattr(src, "seek"):
                pos = src.tell()
                empty = src.seek(0, 2) == 0
                src.seek(pos)
            else:
                empty = os.path.getsize(src) == 0
        except (OSError, ValueError, TypeError):
            empty = False
        return "empty file, not an image" if empty else _NOT_DECODABLE
    part = "tag directory" if fmt == "TIFF" else "header"
    return f"truncated or damaged {fmt} (its {part} cannot be read)"


def sniff_image(path: Path) -> str | None:
    """Pillow's format name if ``path`` is an image it can open (header only), else None."""
    try:
        with _open(path) as im:
            return im.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return None


@dataclass
class Candidate:
    """A file found under an IMAGES folder: a usable image, or one to report as a failure."""

    path: Path
    rel: Path  # path relative to the root it was found under
    format: str | None  # Pillow format name; None = not an image
    error: str | None = None


def regular_files(root: Path, unreadable: list | None = None) -> list[Path]:
    """The regular files under folder ``root``, recursively, sorted, hidden names skipped.

    Only regular files: opening a FIFO or a device would block or read forever. A link is
    followed only to a file inside ``root``; links to folders are not followed (one inside
    ``root`` shows files already found). A folder that cannot be listed, a link to a folder
    outside ``root``, and a link or a FIFO, socket or device with an image's name, are appended
    to ``unreadable`` as (path, reason) when it is given."""
    out = []

    def onerror(e: OSError) -> None:
        if unreadable is not None and e.filename is not None:
            unreadable.append((Path(e.filename), f"cannot read folder ({e.strerror or e})"))

    inside = folder_prefix(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if unreadable is not None:
            for d in dirnames:
                q = Path(dirpath) / d
                if links_out(q, inside):
                    unreadable.append((q, "a link to a folder outside the folder: not followed"))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                continue
            named_image = p.suffix.lower() in IMAGE_SUFFIXES  # (else: no concern of ours)
            if links_out(p, inside):
                if unreadable is not None and named_image:
                    unreadable.append((p, "a link to a file outside the folder: not followed"))
                continue
            if p.is_file():
                out.append(p)
            elif unreadable is not None and named_image and p.exists():
                unreadable.append((p, f"not a regular file ({file_kind(p.stat().st_mode)})"))
    return out


def folder_prefix(folder) -> str:
    """The real path of ``folder`` with a trailing separator: what :func:`links_out` compares to."""
    return os.path.join(os.path.realpath(folder), "")


def links_out(p: Path, prefix: str) -> bool:
    """Whether ``p`` is a link to a file outside the folder of :func:`folder_prefix` ``prefix``
    (an input is not followed out of where it was given)."""
    return p.is_symlink() and not os.path.join(os.path.realpath(p), "").startswith(prefix)


def find_images(root: str | Path) -> list[Candidate]:
    """Every image under ``root`` (a file or a folder, recursive), sorted by relative path.

    Files that Pillow identifies are images whatever their suffix; files with an image suffix
    that it cannot identify come back with ``error`` set, as do (first) sub-folders that cannot
    be listed; anything else is ignored.
    """
    root = Path(root)
    out: list[Candidate] = []
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    if root.is_file():
        files = [(root, Path(root.name))]
    elif not root.is_dir():
        raise InputError(f"{root}: not a regular file or folder")
    else:
        unreadable: list = []
        files = [(p, p.relative_to(root)) for p in regular_files(root, unreadable)]
        # a folder that cannot be listed is a failure line, not images silently left out
        for p, why in unreadable:
            out.append(Candidate(p, p.relative_to(root), None, error=why))
    for p, rel in files:
        fmt, error = classify_image(p, named=root.is_file())
        if fmt is not None or error is not None:
            out.append(Candidate(p, rel, fmt, error=error))
    return out


def classify_image(p: Path, named: bool = False) -> tuple[str | None, str | None]:
    """(Pillow's format name, None) for an image it can open; (None, why) for a file that should
    be one and cannot be read (an image suffix or signature, or ``named``: given by name);
    (None, None) for anything else (a file that is no concern of an image folder)."""
    fmt = sniff_image(p)
    if fmt is not None:
        return fmt, None
    if named or p.suffix.lower() in IMAGE_SUFFIXES or _signature(p):
        return None, _why_not_image(p)
    return None, None


def _why_not_image(p: Path) -> str:
    try:
        size = p.stat().st_size
    except OSError as e:
        return f"cannot read ({e.strerror})"
    if size == 0:
        return "empty file, not an image"
    try:
        with _open(p):
            pass
    except Image.DecompressionBombError as e:
        return f"refused: {e}"
    except UnidentifiedImageError:
        return _unidentified(p)
    except OSError as e:
        fmt = _signature(p)  # (None when the file itself cannot be read)
        return f"truncated or damaged {fmt} ({e})" if fmt else f"cannot read ({e})"
    return "not an image"


# -- decoding -----------------------------------------------------------------------------------

@dataclass
class Decoded:
    """An image ready for the model, plus what is needed to write it back in its own mode."""

    rgb: np.ndarray  # uint8 [H, W, 3]
    format: str | None  # Pillow format name of the source (PNG, JPEG, ...)
    mode: str  # Pillow mode of the source after EXIF orientation
    alpha: np.ndarray | None = None  # uint8 [H, W] if the source had transparency
    gray16: np.ndarray | None = None  # uint16 [H, W] if the source was 16-bit grey
    info: dict = field(default_factory=dict)  # icc_profile / exif / dpi carried to the output
    cmyk: np.ndarray | None = None  # uint8 [H, W, 4] if the source was CMYK
    # A palette image's indices and palette ([r, g, b, ...]), or a grey image's values (palette
    # None) when it has a transparent value: a GIF output keeps them outside the hole.
    index: np.ndarray | None = None  # uint8 [H, W]
    palette: list | None = None
    transparent: int | None = None  # the transparent index / grey value
    note: str | None = None  # something about the file worth one line (e.g. metadata dropped)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return self.rgb.shape[0], self.rgb.shape[1]


# TIFF pages counted at most: Pillow's own count (n_frames) walks every page, in time that grows
# faster than their number (minutes for a 6 MB file of 100,000 empty pages).
_PAGE_CAP = 100


def megapixels(n: int, limit: int) -> str:
    """``n`` pixels in megapixels, one decimal, or as many as tell it from ``limit``'s."""
    shown = f"{n / 1e6:.1f}"
    return shown if float(shown) > limit / 1e6 else f"{n / 1e6:.12g}"


def _pages(im) -> int:
    """The pages of a TIFF, counted up to _PAGE_CAP + 1; the file left at its first."""
    if not getattr(im, "is_animated", False):  # (read from the first page's header)
        return 1
    n = 1
    try:
        while n <= _PAGE_CAP:
            im.seek(n)
            n += 1
    except EOFError:
        pass
    im.seek(0)
    return n


def _source(src):
    """A path as a Path, encoded bytes as a file object: what Pillow opens."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return BytesIO(src)
    return src if hasattr(src, "read") else Path(src)


def _open_oriented(src, max_pixels: int | None = None, *, notes: list | None = None,
                   depth: bool = False) -> Image.Image:
    """Open, fully decode and apply EXIF orientation; errors become InputError with the reason.
    Images over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) are refused from their header
    (:class:`SizeLimitError`). ``src``: a path or a binary file object. With ``notes`` (an
    image's), the EXIF to carry is left in ``info["exif"]`` (:func:`_carried_exif`) and EXIF that
    cannot be read costs only itself, said in ``notes``; without (a mask), the EXIF is dropped.
    ``depth``: refuse more than 8 bits per colour channel (images; a mask is only thresholded)."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    try:
        with _open(src) as im:
            w, h = im.size
            if w * h > limit:
                raise SizeLimitError(f"{w}x{h} = {megapixels(w * h, limit)} megapixels, over the limit of "
                                     f"{_limit(limit)} (--max-pixels)")
            frames = _pages(im) if im.format == "TIFF" else getattr(im, "n_frames", 1)
            # An MPO (a phone's JPEG) carries previews after its photo: the first frame is the image.
            if frames > 1 and im.format != "MPO":
                kind = "pages" if im.format == "TIFF" else "frames"
                count = f"over {_PAGE_CAP}" if frames > _PAGE_CAP else f"{frames}"
                raise InputError(f"{count} {kind} ({im.format}): fastfill fills single images only; "
                                 f"split it first (every {kind[:-1]} would otherwise be lost but the first)")
            if depth and (why := _too_deep(im)):
                raise InputError(why)
            fmt = im.format
            damage = exif = None
            keep = notes is not None
            if keep and fmt == "TIFF":  # its tags are read from the file, before loading closes it
                try:
                    exif = _carried_exif(im.getexif())
                except Exception as e:  # noqa: BLE001 - any failure to parse it: damaged metadata
                    damage = e
            try:
                im.load()
            except (OSError, ValueError, SyntaxError, EOFError, struct.error, TypeError) as e:
                # (TypeError: Pillow's TIFF reader on tags of the wrong kind)
                if fmt == "TIFF":
                    raise InputError(_tiff_damage(im, src, e)) from None
                raise
            try:
                out = ImageOps.exif_transpose(im)  # a copy (or the same image when no tag)
            except Exception as e:  # noqa: BLE001 - EXIF Pillow cannot parse: the pixels as stored
                damage, out = e, im
            if out is im:
                out = im.copy()
            out.format = fmt
            if "dpi" in out.info:  # (Pillow's default where the file has none: not written as its)
                dpi = _file_dpi(im)
                if dpi is None:
                    del out.info["dpi"]
                else:
                    out.info["dpi"] = dpi
            if keep and fmt != "TIFF" and damage is None and out.info.get("exif"):
                try:
                    exif = _carried_exif(out.getexif(), out.size)
                except Exception as e:  # noqa: BLE001
                    damage = e
            out.info.pop("exif", None)
            if damage is not None:
                if notes is not None:
                    why = str(damage) or type(damage).__name__
                    notes.append(f"damaged EXIF dropped, pixels kept ({why})")
            elif exif:
                out.info["exif"] = _sized_exif(exif, out.size) if fmt == "TIFF" else exif
            return out
    except InputError:
        raise  # (an InputError is a ValueError: not to be re-worded as a corrupt file below)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except Image.DecompressionBombError as e:  # (Pillow refuses it before its size is read)
        cap = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        said = (f"over the limit of {_limit(limit)} megapixels (--max-pixels)" if limit <= cap
                else f"over {cap} pixels, the most Pillow opens whatever --max-pixels says")
        raise SizeLimitError(f"{said}; Pillow's guard against decompression bombs: {e}") from None
    except UnidentifiedImageError:
        raise InputError(_unidentified(src)) from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, struct.error) as e:
        # (TypeError: Pillow's TIFF reader on a page without dimensions, or tags of the wrong kind)
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            msg = f"truncated or corrupt image ({msg})"
        else:
            msg = f"corrupt or unreadable image ({msg})"
        raise InputError(msg) from None


def _exif_parts(exif: Image.Exif) -> tuple[dict, dict]:
    """``exif``'s tags less those that describe the source file's layout and the orientation
    (the pixels are upright by now), and its EXIF and GPS directories as dicts (the interop
    directory inside the EXIF one). Raises what Pillow raises on damaged data."""
    tags = {t: v for t, v in exif.items() if t not in _LAYOUT_TAGS and t not in (_EXIF_IFD, _GPS_IFD)}
    groups = {}
    for tag in (_EXIF_IFD, _GPS_IFD):
        sub = dict(exif.get_ifd(tag)) if tag in exif else {}
        if _INTEROP_IFD in sub and not isinstance(sub[_INTEROP_IFD], dict):
            interop = exif.get_ifd(_INTEROP_IFD)
            if interop:
                sub[_INTEROP_IFD] = dict(interop)
            else:
                del sub[_INTEROP_IFD]
        if sub:
            groups[tag] = sub
    return tags, groups


def _carried_exif(exif: Image.Exif, size: tuple[int, int] | None = None) -> bytes | None:
    """The EXIF block an output carries (:func:`_exif_parts` of ``exif``; for a TIFF, of its
    own directory), as a new block: the image's ``exif`` stays as it is. ``size``: the upright
    image's (width, height), which its pixel dimensions say where it has them (a photo turned
    upright from orientation 5-8 had them the wrong way round)."""
    tags, groups = _exif_parts(exif)
    sub = groups.get(_EXIF_IFD)
    if size is not None and sub:
        for tag, value in ((0xA002, size[0]), (0xA003, size[1])):
            if tag in sub:
                sub[tag] = int(value)
    out = Image.Exif()
    for tag, value in (tags | groups).items():
        out[tag] = value
    return out.tobytes() if len(out) else None


def _sized_exif(block: bytes, size: tuple[int, int]) -> bytes:
    """A carried EXIF block (ours: nothing read from a file) with the upright image's pixel
    dimensions, where it has them."""
    ex = Image.Exif()
    ex.load(block)
    sub = ex.get_ifd(_EXIF_IFD)
    if not any(t in sub for t in (0xA002, 0xA003)):
        return block
    return _carried_exif(ex, size) or block


def _tiff_add_directories(data: bytes, groups: dict) -> bytes:
    """``data``, a one-page TIFF, with EXIF/GPS directories (``groups``: {pointer tag: dict}).
    Pillow's libtiff writer (every compressed TIFF) cannot write them, and its own writer leaves
    the interop pointer dangling: they are added after the file, with a copy of its first
    directory that points to them; the header points to that copy. Every offset in the file
    stays valid (the old directory stays, unused)."""
    from PIL import TiffImagePlugin

    endian = "<" if data[:2] == b"II" else ">"
    (first,) = struct.unpack(endian + "I", data[4:8])
    (n,) = struct.unpack(endian + "H", data[first:first + 2])
    entries = {}
    for pos in range(first + 2, first + 2 + 12 * n, 12):
        (tag,) = struct.unpack(endian + "H", data[pos:pos + 2])
        entries[tag] = data[pos:pos + 12]
    out = bytearray(data)
    for tag, sub in sorted(groups.items()):
        out += b"\0" * (len(out) & 1)  # directories start on a word boundary
        ifd = TiffImagePlugin.ImageFileDirectory_v2(data[:8], group=tag)
        for k, v in sub.items():
            ifd[k] = v
        entries[tag] = struct.pack(endian + "HHII", tag, 4, 1, len(out))  # LONG: its offset
        out += ifd.tobytes(len(out))
    out += b"\0" * (len(out) & 1)
    at = len(out)
    out += struct.pack(endian + "H", len(entries)) + b"".join(entries[t] for t in sorted(entries))
    out += struct.pack(endian + "I", 0)
    out[4:8] = struct.pack(endian + "I", at)
    return bytes(out)


def _file_size(src) -> int | None:
    try:
        if hasattr(src, "seek"):
            return src.seek(0, os.SEEK_END)
        return os.stat(src).st_size
    except (OSError, ValueError):
        return None


def _tiff_damage(im, src, e: BaseException) -> str:
    """One line for a TIFF whose pixel data cannot be decoded: cut short when its strips or
    tiles run past the end of the file, else damaged."""
    tags = getattr(im, "tag_v2", {})
    offsets, counts = tags.get(273) or tags.get(324), tags.get(279) or tags.get(325)
    size = _file_size(src)
    try:
        end = max(int(o) + int(c) for o, c in zip(offsets, counts))
    except (TypeError, ValueError):
        end = None
    if size is not None and end is not None and end > size:
        return (f"truncated or damaged TIFF (cut short: its pixel data runs to byte {end}, "
                f"the file has {size})")
    return f"truncated or damaged TIFF (its pixel data cannot be decoded: {str(e) or type(e).__name__})"


def _too_deep(im) -> str | None:
    """Why an image cannot be filled without losing depth, or None: fastfill fills 8-bit images
    and 16-bit grey; Pillow would read deeper colour as 8 bits, silently."""
    tile = im.tile[0] if im.tile else None
    args = tile[3] if tile is not None and len(tile) > 3 else None
    raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
    raw = raw if isinstance(raw, str) else ""
    bits, what = 8, None
    if im.mode == "F":
        return ("32-bit floating point samples: fastfill fills 8-bit images and 16-bit grey only; "
                "convert it to 8 bits per channel first")
    if im.format == "PNG" and ";16" in raw and im.mode not in _SIXTEEN_BIT_MODES:
        bits = 16
        what = {"LA": "grey with alpha", "RGBA": "colour with alpha"}.get(raw.split(";")[0], "colour")
    elif im.format == "TIFF":
        b = getattr(im, "tag_v2", {}).get(258, (1,))
        bits = max(b) if isinstance(b, tuple) and b else (b if isinstance(b, int) else 1)
        signed = getattr(im, "tag_v2", {}).get(339) in (2, (2,))
        if bits > 8 and im.mode in ("I;16", "I;16B", "I;16L", "I;16N") and not signed:
            bits = 8  # 16-bit grey: filled, its values kept outside the hole
        elif im.mode in ("I", "I;16S", "I;32S", "I;32"):
            what = "grey (signed integers)" if signed else "grey (integers)"
        else:
            what = "colour with alpha" if "A" in im.mode else "colour"
    elif im.format == "PPM" and isinstance(args, tuple) and len(args) > 1 and im.mode != "I":
        if isinstance(args[-1], int) and args[-1] > 255:
            bits, what = 16, f"colour (maxval {args[-1]})"
    if bits <= 8:
        return None
    return (f"{bits} bits per channel {what}: fastfill fills 8-bit images and 16-bit grey only; "
            "convert it to 8 bits per channel first")


def webp_is_lossless(src) -> bool:
    """True when the WebP file's image is VP8L (lossless); reads the RIFF chunk headers only.
    ``src``: a path or a seekable binary file object (read from its start)."""
    import contextlib
    import struct

    try:
        if hasattr(src, "read"):
            src.seek(0)
            ctx = contextlib.nullcontext(src)
        else:
            ctx = open(src, "rb")
        with ctx as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return False
            for _ in range(64):  # VP8X files put ICC/EXIF/ANIM chunks before the image
                h = f.read(8)
                if len(h) < 8:
                    return False
                fourcc, size = h[:4], struct.unpack("<I", h[4:])[0]
                if fourcc in (b"VP8L", b"VP8 "):
                    return fourcc == b"VP8L"
                f.seek(size + (size & 1), 1)
    except OSError:
        return False
    return False


def decode_image(src, max_pixels: int | None = None) -> Decoded:
    """Read an image (a path, or the file's bytes) into RGB uint8 (see the module docstring for
    the conversions); one over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) is a
    :class:`SizeLimitError` (an InputError)."""
    src = _source(src)
    notes: list[str] = []
    with _Caught() as caught:
        # Damaged metadata must not cost the pixels: Pillow warns and decodes; the EXIF is dropped.
        im = _open_oriented(src, max_pixels, notes=notes, depth=True)
    damaged = [str(w).strip() for w in caught if "exif" in str(w).lower()]
    fmt, mode = im.format, im.mode
    info = {k: im.info[k] for k in ("icc_profile", "dpi") if k in im.info}
    if fmt == "WEBP" and webp_is_lossless(src):
        info["lossless"] = True  # written back lossless: the pixels outside the hole stay exact
    if fmt in ("TIFF", "TGA") and im.info.get("compression"):
        info["compression"] = im.info["compression"]  # (a TGA's run-length coding: lossless)
    if isinstance(im.info.get("xmp"), (bytes, str)):  # (its orientation already taken out)
        info["xmp"] = im.info["xmp"]
    if fmt == "PNG":  # text chunks (Copyright, XMP, a generator's parameters) and gamma / sRGB
        info["png_text"] = {k: v for k, v in im.info.items() if isinstance(v, str)}
        info.update({k: im.info[k] for k in ("gamma", "srgb") if k in im.info})
    if damaged and not notes:
        notes.append(f"damaged EXIF dropped, pixels kept ({damaged[0]})")
    elif not notes and im.info.get("exif"):
        info["exif"] = im.info["exif"]
    alpha = gray16 = cmyk = index = palette = None
    t = im.info.get("transparency")
    transparent = t if isinstance(t, int) and not isinstance(t, bool) else None
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(im)
        if a.dtype != np.uint16:
            a = np.clip(a, 0, 65535).astype(np.uint16)
        gray16 = np.ascontiguousarray(a)
        g8 = ((gray16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        rgb = np.repeat(g8[:, :, None], 3, axis=2)
        if transparent is not None:  # a 16-bit grey PNG's transparent value
            alpha = np.where(gray16 == transparent, 0, 255).astype(np.uint8)
    else:
        has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            mode == "P" and "transparency" in im.info) or (
            mode in ("L", "RGB") and "transparency" in im.info)
        if mode == "P" and (transparent is not None or "transparency" not in im.info):
            index, palette = np.ascontiguousarray(np.asarray(im)), im.getpalette()
        elif mode == "L" and transparent is not None:
            index = np.ascontiguousarray(np.asarray(im))
        if has_alpha:
            rgba = im.convert("RGBA")
            a = np.asarray(rgba)
            alpha = np.ascontiguousarray(a[:, :, 3])
            rgb = np.ascontiguousarray(a[:, :, :3])
        elif mode == "RGB":
            rgb = np.asarray(im)
        elif mode == "CMYK":
            cmyk = np.ascontiguousarray(np.asarray(im))
            rgb = _cmyk_to_rgb(im, info.get("icc_profile"))
        else:  # L, 1, P, YCbCr, LAB, ...
            rgb = np.asarray(im.convert("RGB"))
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return Decoded(rgb=rgb, format=fmt, mode=mode, alpha=alpha, gray16=gray16, info=info,
                   note="; ".join(notes) or None, cmyk=cmyk, index=index, palette=palette,
                   transparent=transparent if index is not None or gray16 is not None else None)


# -- colour management --------------------------------------------------------------------------

def _icc_space(icc) -> bytes | None:
    """The colour space an ICC profile describes (b"RGB ", b"CMYK", b"GRAY", ...), from its header."""
    return bytes(icc[16:20]) if isinstance(icc, (bytes, bytearray)) and len(icc) >= 128 else None


@functools.lru_cache(maxsize=8)
def _cms_transform(icc: bytes, to_rgb: bool):
    """An lcms transform between a CMYK profile and sRGB (either way), or None when Pillow has no
    lcms or the profile cannot be used. NOCACHE: one transform is shared by the decode threads."""
    try:
        from PIL import ImageCms
    except ImportError:
        return None
    try:
        cmyk = ImageCms.ImageCmsProfile(BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        src, dst = (cmyk, srgb) if to_rgb else (srgb, cmyk)
        modes = ("CMYK", "RGB") if to_rgb else ("RGB", "CMYK")
        return ImageCms.buildTransform(src, dst, *modes, flags=0x0040)  # cmsFLAGS_NOCACHE
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _cmyk_to_rgb(im: Image.Image, icc) -> np.ndarray:
    """CMYK pixels as sRGB: through the image's CMYK profile when there is a usable one, else
    Pillow's plain formula (what viewers assume for a CMYK file without a profile)."""
    t = _cms_transform(bytes(icc), True) if _icc_space(icc) == b"CMYK" else None
    if t is not None:
        from PIL import ImageCms

        return np.asarray(ImageCms.applyTransform(im, t))
    return np.asarray(im.convert("RGB"))


def _rgb_to_cmyk(rgb: np.ndarray, icc) -> np.ndarray:
    """The inverse of :func:`_cmyk_to_rgb` for filled pixels, uint8 [H, W, 4]."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    t = _cms_transform(bytes(icc), False) if _icc_space(icc) == b"CMYK" else None
    if t is not None:
        from PIL import ImageCms

        return np.asarray(ImageCms.applyTransform(img, t))
    return np.asarray(img.convert("CMYK"))


def decode_mask(path, size: tuple[int, int] | None = None, *, invert: bool = False,
                threshold: int = 128, resize: bool = False, dilate: int = 0,
                image_name: str | None = None, max_pixels: int | None = None,
                name: str | None = None, alpha: str = "black",
                notes: list | None = None) -> np.ndarray:
    """Read a mask (a path, or the file's bytes) into bool ``[H, W]`` (True = fill).

    ``size`` = the image's (height, width): a mask of another size is an InputError unless
    ``resize`` (then it is resized smoothly and thresholded). ``dilate`` grows the hole by that
    many pixels in every direction. ``name``: what messages call the mask (default: its path).
    ``alpha``: ``"black"`` (fastfill's rule: a transparent pixel is laid on black, so it keeps)
    or ``"ignore"`` (IOPaint's and lama-cleaner's: the grey of the colour, alpha dropped, so a
    stroke painted on a transparent canvas is hole wherever it touched, its faint rim included).
    ``notes``: where a mask that marks pixels, none of them at ``threshold`` or above, says so
    (a 0/1 label image, dark red strokes: nothing is filled, which is otherwise silent).
    """
    src = _source(path)
    name = f"mask {name}" if name else (f"mask {path}" if isinstance(src, Path) else "the mask")
    try:
        im = _open_oriented(src, max_pixels)
    except InputError as e:  # reported against the image: say that it is the mask's fault
        raise type(e)(f"{name}: {e}") from None
    g = mask_to_gray(im, alpha)
    if size is not None and g.shape != tuple(size):
        h, w = size
        if not resize:
            what = image_name or "the image"
            raise InputError(f"{name} is {g.shape[1]}x{g.shape[0]} but {what} is {w}x{h} "
                             f"({RESIZE_HINT})")
        g = np.asarray(Image.fromarray(g).resize((w, h), Image.Resampling.BILINEAR))
    m = g >= threshold
    # (at least 16 pixels at its brightest: a label image's hole, not a black JPEG's few
    # compression-noise pixels)
    if notes is not None and not invert and not m.any() and np.count_nonzero(g == g.max()) >= 16 \
            and g.max() > 0:
        notes.append(f"{name} marks pixels, none of them at --threshold {threshold} or brighter "
                     f"(the brightest is {int(g.max())}): nothing filled")
    if invert:
        m = ~m
    if dilate:
        m = dilate_mask(m, dilate)
    return m


def mask_to_gray(im: Image.Image, alpha: str = "black") -> np.ndarray:
    """A mask image as uint8 grey: luma for colour, laid on black where transparent (``alpha``
    ``"black"``) or with the alpha channel dropped (``"ignore"``, as Pillow's ``convert("L")``)."""
    if alpha not in ("black", "ignore"):
        raise ValueError(f"alpha must be 'black' or 'ignore', got {alpha!r}")
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.uint8) * np.uint8(255)
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(im).astype(np.int64)
        return (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        scale = 255.0 if a.size and float(np.nanmax(a)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(a) * scale, 0, 255).astype(np.uint8)
    has_alpha = "A" in mode or "a" in mode or "transparency" in im.info
    if has_alpha and alpha == "ignore":
        try:
            return np.asarray(im.convert("L"))
        except ValueError:  # a mode Pillow cannot take to L directly (La): through RGBA
            return np.asarray(im.convert("RGBA").convert("L"))
    if has_alpha:
        a = np.asarray(im.convert("LA"), dtype=np.uint16)
        return ((a[:, :, 0] * a[:, :, 1] + 127) // 255).astype(np.uint8)
    if mode == "L":
        return np.asarray(im)
    return np.asarray(im.convert("L"))


# The most --dilate takes, px: past any image's side (a larger value would only be a typo).
MAX_DILATE = 65535


def dilate_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Grow the True region by ``px`` pixels (a square of side 2*px+1), pure NumPy."""
    if px < 0:
        raise InputError(f"dilate must be >= 0, got {px}")
    m = np.asarray(mask, dtype=bool)
    if px == 0 or not m.any():
        return m.copy()
    px = min(int(px), max(m.shape))  # (any more covers no more)
    for axis in (0, 1):
        m = _max_filter_1d(m, px, axis)
    return m


def _max_filter_1d(m: np.ndarray, r: int, axis: int) -> np.ndarray:
    """OR over the window [i-r, i+r] along ``axis``, from a running count (O(n) per line)."""
    n = m.shape[axis]
    c = np.cumsum(m, axis=axis, dtype=np.int32)
    zero_shape = list(m.shape)
    zero_shape[axis] = 1
    c = np.concatenate([np.zeros(zero_shape, np.int32), c], axis=axis)  # c[k] = sum m[:k]
    idx = np.arange(n)
    hi = np.minimum(idx + r + 1, n)
    lo = np.maximum(idx - r, 0)
    return (np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)) > 0


# -- one item: read with the run's rules, written back in its own mode ----------------------------

@dataclass(frozen=True)
class FileOptions:
    """How each file of a run is read and written (`fastfill run`'s flags): one object from the
    CLI to the read and encode steps of the local run, Ray tasks and the server alike."""

    invert: bool = False  # the mask's black is the hole
    threshold: int = 128  # mask pixels >= it are hole (after invert)
    resize_mask: bool = False  # scale a mask of another size to its image
    dilate: int = 0  # grow the hole by this many pixels
    max_pixels: int | None = None  # refuse larger images and masks (None: the default limit)
    quality: int = 95  # JPEG / lossy WebP quality
    overwrite: bool = False  # replace existing outputs
    mask_alpha: str = "black"  # a mask's transparency: laid on black, or "ignore"d (decode_mask)

    @property
    def mask_opts(self) -> dict:
        """The mask options as :func:`decode_mask` takes them."""
        return {"invert": self.invert, "threshold": self.threshold, "resize": self.resize_mask,
                "dilate": self.dilate, "alpha": self.mask_alpha}


def _limit(pixels: int) -> str:
    """A --max-pixels limit in megapixels as a refusal says it: exact and never in exponent
    form (1 pixel is "0.000001", not "1e-06")."""
    return f"{pixels / 1e6:f}".rstrip("0").rstrip(".")


def read_item(image, mask, opts: FileOptions = FileOptions(), *, image_name: str | None = None,
              mask_name: str | None = None, text=None) -> tuple[Decoded, np.ndarray]:
    """An image and its mask (paths, file objects or bytes) decoded with a run's rules:
    ``(Decoded, bool [H, W] hole)``; InputError naming the file on anything unusable, its
    ``part`` saying which of the two.

    ``mask`` None: no mask file (the hole is what ``text`` finds). ``text``: a callable that
    finds the hole in the decoded RGB (:class:`fastfill.masks.text.TextDetector`); its mask is
    united with the file's, and ``opts.dilate`` grows the union (the file's mask alone else)."""
    try:
        src = decode_image(image, opts.max_pixels)
    except InputError as e:
        e.part = "image"
        raise
    mask_opts = opts.mask_opts if text is None else {**opts.mask_opts, "dilate": 0}
    hole = np.zeros(src.size, bool)
    if mask is not None:
        notes: list[str] = []
        try:
            hole = decode_mask(mask, src.size, **mask_opts, max_pixels=opts.max_pixels,
                               image_name=f"image {image_name}" if image_name else None,
                               name=mask_name, notes=notes)
        except InputError as e:
            e.part = "mask"
            raise
        if notes:
            src.note = "; ".join(([src.note] if src.note else []) + notes)
    if text is not None:
        hole |= text(src.rgb)
        if opts.dilate:
            hole = dilate_mask(hole, opts.dilate)
    return src, hole


def encode_result(result: np.ndarray, src: Decoded, hole: np.ndarray, fmt: str,
                  opts: FileOptions = FileOptions()) -> bytes:
    """A filled image's file bytes in format ``fmt``, in its source's mode (as far as the format
    allows) with its metadata. Only the source's write-back fields are read, never ``src.rgb``."""
    img = restore_mode(result, src, hole, fmt)
    return encode_image(img, fmt, quality=opts.quality, info=src.info)


# -- encoding and writing -----------------------------------------------------------------------

def restore_mode(result: np.ndarray, src: Decoded, mask: np.ndarray, fmt: str) -> Image.Image:
    """The uint8 RGB result as a Pillow image in the source's mode (as far as ``fmt`` allows)."""
    hole = np.asarray(mask, dtype=bool)
    if fmt == "GIF" and src.index is not None:
        return _indexed(result, src, hole)
    if src.cmyk is not None and fmt in _CMYK_FORMATS:
        out = src.cmyk.copy()  # outside the hole: the source's own ink values
        if hole.any():
            out[hole] = _rgb_to_cmyk(result, src.info.get("icc_profile"))[hole]
        return Image.frombytes("CMYK", (out.shape[1], out.shape[0]), out.tobytes())
    if src.gray16 is not None and fmt in _WIDE_FORMATS:
        g8 = np.asarray(Image.fromarray(result).convert("L"))
        out16 = src.gray16.copy()
        if hole.any():
            out16[hole] = _sixteen_bit_fill(g8, src.gray16, hole)
        t = src.transparent
        if t is not None and fmt == "PNG":  # its transparent value: inside the hole only where
            clear = hole & (_hole_alpha(src.alpha, hole) < 128)  # the filled alpha is clear
            out16[hole & ~clear & (out16 == t)] = t + 1 if t < 65535 else t - 1
            out16[clear] = t
        img = Image.fromarray(out16)  # mode I;16
        if t is not None and fmt == "PNG":
            img.info["transparency"] = t
        return img
    gray = src.mode in ("L", "LA", "1", "La") or src.gray16 is not None
    alpha = None
    if src.alpha is not None and fmt in _ALPHA_FORMATS:
        result, alpha = _hole_rgba(result, src.alpha, hole)
    img = Image.fromarray(result)
    if gray:
        img = img.convert("L")
    if alpha is not None:
        img.putalpha(Image.fromarray(alpha))
    return img


def _hole_rgba(result: np.ndarray, alpha: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The colour and alpha of an image with transparency. The hole's alpha is filled from the
    alpha around it (:func:`_hole_alpha`). Its colour is the fill's with the fill's smooth base
    (the harmonic fill of the colours around the hole) swapped for the alpha-weighted one, so that
    the colour of invisible pixels (often black under a transparent canvas) does not pull the
    hole towards it as a dark halo. Only where a fully transparent pixel meets the hole: the
    colours of pixels that show at all are what the fill should continue."""
    border = _border(hole)
    if not border.any() or alpha[border].min() > 0:  # (no invisible colour meets the hole)
        return result, _hole_alpha(alpha, hole)
    y0, x0, y1, x1 = _box(hole)
    box_hole = hole[y0:y1, x0:x1]
    rgb = result[y0:y1, x0:x1].astype(np.uint32)
    weight = alpha[y0:y1, x0:x1].astype(np.uint32)[..., None]
    pre = ((rgb * weight + 127) // 255).astype(np.uint8).transpose(2, 0, 1)  # premultiplied
    weighted = _harmonic_planes(np.ascontiguousarray(pre), box_hole, 0.0)
    plain = _harmonic_planes(np.ascontiguousarray(rgb.transpose(2, 0, 1), np.uint8), box_hole, 0.0)
    cover = _harmonic_planes(alpha[None, y0:y1, x0:x1], box_hole, 0.0)[0]  # the filled alpha
    a = alpha.copy()
    a[y0:y1, x0:x1][box_hole] = np.clip(np.rint(cover[box_hole]), 0, 255).astype(np.uint8)
    fix = box_hole & (cover > 0.5)  # (covered by nothing: invisible whatever it is)
    out = result.copy()
    v = rgb[fix].T + weighted[:, fix] * (255 / cover[fix]) - plain[:, fix]
    out[y0:y1, x0:x1][fix] = np.clip(np.rint(v.T), 0, 255).astype(np.uint8)
    return out, a


def _hole_alpha(alpha: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``alpha`` with the hole's values filled from the alpha around it (harmonic): a hole over a
    transparent background stays transparent, one inside an opaque object opaque; a hole that
    meets no known pixel is opaque."""
    a = alpha.copy()
    if not hole.any():
        return a
    border = _border(hole)
    if not border.any() or alpha[border].min() == alpha[border].max():  # (an opaque image)
        a[hole] = alpha[border][0] if border.any() else 255
        return a
    y0, x0, y1, x1 = _box(hole)
    f = _harmonic_planes(alpha[None], hole, 1.0)[0]
    inside = hole[y0:y1, x0:x1]
    a[y0:y1, x0:x1][inside] = np.clip(np.rint(f[inside]), 0, 255).astype(np.uint8)
    return a


def _harmonic_planes(planes: np.ndarray, hole: np.ndarray, mean: float) -> np.ndarray:
    """The harmonic fill of up to three uint8 planes ``[k, H, W]`` inside ``hole``, unrounded
    (float64, in levels), in the hole's bounding box grown by 1 px (the same per-component solve
    the fills start from); ``mean`` (0-1) where a component meets no known pixel. Returns the
    box's ``[k, h, w]``."""
    from .. import ops

    y0, x0, y1, x1 = _box(hole)
    k = planes.shape[0]
    img = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    img[:, :, :k] = planes[:, y0:y1, x0:x1].transpose(1, 2, 0)
    out = ops.prepare(img, np.ascontiguousarray(hole[y0:y1, x0:x1]), (mean,) * 3, 1,
                      mask_channel=False, fill="harmonic")[0, :k]
    return out.astype(np.float64) * 255


def _border(hole: np.ndarray) -> np.ndarray:
    from ..roi import hole_border

    return hole_border(hole)


def _box(hole: np.ndarray) -> tuple[int, int, int, int]:
    from ..roi import bounding_box

    return bounding_box(hole, pad=1)


def _sixteen_bit_fill(g8: np.ndarray, gray16: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The hole's 16-bit values from an 8-bit fill ``g8`` of the image: each value ×257 plus what
    the harmonic fill of the 16-bit image has below the 8-bit levels (its difference to the
    harmonic fill of the 8-bit image, rounded), so that a smooth ramp filled harmonically comes
    back as exact as at 16 bits, not as a staircase of 257-level steps. The harmonic fill is
    linear: that of the 16-bit values is 256 × that of their high bytes + that of their low."""
    y0, x0, y1, x1 = _box(hole)
    if not _border(hole).any():  # all hole: nothing below the 8-bit levels to carry
        return g8[hole].astype(np.uint16) * 257
    g16, inside = gray16[y0:y1, x0:x1], hole[y0:y1, x0:x1]  # (the solve reads the box alone)
    g8_source = ((g16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    planes = np.stack([(g16 >> 8).astype(np.uint8), (g16 & 255).astype(np.uint8), g8_source])
    hi, lo, h8 = _harmonic_planes(planes, inside, 0.5)
    below = (256 * hi + lo) - 257 * np.rint(h8)
    v = g8[y0:y1, x0:x1][inside].astype(np.float64) * 257 + np.rint(below[inside])
    return np.clip(v, 0, 65535).astype(np.uint16)


def _png_chunks(info: dict) -> dict:
    """``pnginfo=`` for a PNG output: a PNG source's text chunks, gamma and sRGB intent (how its
    pixels are meant to be shown), or another source's XMP as PNG's XMP chunk; {} if none."""
    from PIL import PngImagePlugin

    text = dict(info.get("png_text") or {})
    xmp = info.get("xmp")
    if xmp and "XML:com.adobe.xmp" not in text:
        text["XML:com.adobe.xmp"] = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
    chunks = PngImagePlugin.PngInfo()
    for k, v in text.items():
        if isinstance(v, PngImagePlugin.iTXt) or k == "XML:com.adobe.xmp" or not v.isascii():
            chunks.add_itxt(k, v, getattr(v, "lang", "") or "", getattr(v, "tkey", "") or "")
        else:
            chunks.add_text(k, v)
    if isinstance(info.get("gamma"), (int, float)) and 0 < info["gamma"] < 42949:
        chunks.add(b"gAMA", struct.pack(">I", int(round(info["gamma"] * 100000))))
    if isinstance(info.get("srgb"), int) and 0 <= info["srgb"] <= 3:
        chunks.add(b"sRGB", bytes([info["srgb"]]))
    return {"pnginfo": chunks} if chunks.chunks else {}


def _file_dpi(im: Image.Image):
    """The resolution the file itself records, for the ``info["dpi"]`` Pillow reports, or None:
    Pillow fills in its own where it has none (a TIFF without resolution tags reads as 1 dpi, a
    JPEG whose EXIF resolution it cannot use, without one or without its unit, as 72), and an
    output must not claim it. A JPEG's EXIF resolution without its unit is in inches, EXIF's
    default."""
    dpi = im.info.get("dpi")
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        return dpi if 282 in tags and 283 in tags else None
    if im.format in ("JPEG", "MPO"):
        if im.info.get("jfif_unit") in (1, 2):
            return dpi
        try:
            exif = im.getexif()
            x = float(exif[0x011A])
            y = float(exif.get(0x011B, x))
            unit = exif.get(0x0128, 2)
        except Exception:  # noqa: BLE001 - none, or EXIF Pillow cannot parse: nothing usable
            return None
        scale = {2: 1.0, 3: 2.54}.get(unit)
        if scale is None or not _sane_dpi((x * scale, y * scale)):
            return None
        return (x * scale, y * scale)
    return dpi


def _sane_dpi(dpi) -> bool:
    """Whether a dpi pair can be written (finite, positive, under a million: a BMP field of -1
    reads as 1.09e8 dpi)."""
    import math

    try:
        return len(dpi) >= 2 and all(math.isfinite(float(d)) and 0 < float(d) < 1e6 for d in dpi[:2])
    except (TypeError, ValueError):
        return False


def _bmp_with_alpha(img: Image.Image, dpi=None) -> bytes:
    """A 32-bit BMP with its alpha channel (a BITMAPV4HEADER, BI_BITFIELDS with an alpha mask:
    what GIMP and ImageMagick write). Pillow writes RGBA as 32-bit BI_RGB, whose fourth byte
    readers (Pillow's own) take for padding, so the transparency would be lost."""
    w, h = img.size
    bgra = np.asarray(img)[::-1][:, :, [2, 1, 0, 3]].tobytes()  # bottom-up rows
    ppm = [int(round(float(d) * 39.3701)) for d in (dpi or (0, 0))[:2]]  # dots a metre (0: none)
    header = (struct.pack("<IiiHHIIiiII", 108, w, h, 1, 32, 3, len(bgra), ppm[0], ppm[1], 0, 0)
              + struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)
              + b"BGRs" + bytes(48))  # sRGB: no endpoints or gamma to give
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(bgra), 0, 0, offset) + header + bgra


def _indexed(result: np.ndarray, src: Decoded, hole: np.ndarray) -> Image.Image:
    """A GIF's pixels: the source's palette indices (or grey values) outside the hole; inside it
    the transparent index where the alpha filled from around the hole is clear, else the nearest
    opaque palette colour; the same palette and transparent index. Pillow
    would otherwise quantise the whole image again and move colours outside the hole."""
    idx = src.index.copy()
    t = src.transparent
    h, w = idx.shape
    clear = np.zeros_like(hole)  # hole pixels whose filled alpha is transparent
    if t is not None and src.alpha is not None and hole.any():
        clear = hole & (_hole_alpha(src.alpha, hole) < 128)
    opaque = hole & ~clear
    if clear.any():
        idx[clear] = t
    if src.palette is None:  # grey with a transparent value
        if opaque.any():
            g = np.asarray(Image.fromarray(result).convert("L"))[opaque]
            if t is not None:
                g[g == t] = t + 1 if t < 255 else t - 1
            idx[opaque] = g
        img = Image.frombytes("L", (w, h), idx.tobytes())
    else:
        if opaque.any():
            idx[opaque] = _nearest_colour(result[opaque], src.palette, t)
        img = Image.frombytes("P", (w, h), idx.tobytes())
        img.putpalette(src.palette)
    if t is not None:
        img.info["transparency"] = t
    return img


def _nearest_colour(colours: np.ndarray, palette: list, exclude: int | None) -> np.ndarray:
    """The index of the nearest palette colour (squared RGB distance) for each of ``colours``
    (uint8 [N, 3]), never ``exclude`` (the transparent index) while there is another."""
    pal = np.asarray(palette, np.int32).reshape(-1, 3)
    allowed = np.ones(len(pal), bool)
    if exclude is not None and 0 <= exclude < len(pal) and len(pal) > 1:
        allowed[exclude] = False
    cand, cand_idx = pal[allowed], np.flatnonzero(allowed)
    c = colours.astype(np.int32)
    packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    uniq, inverse = np.unique(packed, return_inverse=True)  # each distinct colour once
    u = np.stack([uniq >> 16, (uniq >> 8) & 255, uniq & 255], axis=1)
    best = np.empty(len(u), np.uint8)
    for s in range(0, len(u), 4096):  # ~12 MB of distances at a time
        d = ((u[s:s + 4096, None, :] - cand[None, :, :]) ** 2).sum(axis=2)
        best[s:s + 4096] = cand_idx[d.argmin(axis=1)]
    return best[inverse.reshape(-1)]


# the first bytes of every format fastfill writes but TGA (cut short: a prefix of one of them)
_MAGIC = tuple(m for m, _ in _SIGNATURES) + (b"RIFF", b"BM", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7")


def output_is_foreign(path: str | Path) -> bool:
    """Whether an existing output at ``path`` is a file of another kind: not empty, and its
    first bytes are no image format's magic number (an output keeps its input's name, so a JPEG
    under ``.png`` may be fastfill's own). Formats without a magic number (TGA) are not judged:
    False. A file of another kind under an output's name is left alone, never redone."""
    p = Path(path)
    if Image.registered_extensions().get(p.suffix.lower()) == "TGA":
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if not head or any(head.startswith(sig[:len(head)]) for sig in _MAGIC):
        return False
    return True


def output_is_whole(path: str | Path) -> bool:
    """Cheap check that an existing output is a complete file: the end marker of PNG (IEND) and
    JPEG (EOI), the RIFF length of WebP, a full decode for the other formats. fastfill itself
    only ever renames verified files into place; this catches files cut short by anything else.
    Bytes after the end marker (a phone's trailer) do not make a file incomplete: the marker is
    looked for at the end first, then by walking the file's structure."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(12)
            f.seek(max(0, size - 16))
            tail = f.read()
            if head.startswith(b"\x89PNG"):
                return b"IEND" in tail or _png_reaches_iend(f, size)
            if head.startswith(b"\xff\xd8"):
                return tail.rstrip(b"\x00").endswith(b"\xff\xd9") or _jpeg_reaches_eoi(f)
    except OSError:
        return False
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return int.from_bytes(head[4:8], "little") + 8 <= size
    try:
        with _open(p) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any failure to decode means: not whole
        return False


def _png_reaches_iend(f, size: int) -> bool:
    """Whether the chunks of the PNG file ``f``, walked by their lengths, reach IEND whole."""
    pos = 8
    while pos + 12 <= size:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return False
        n = int.from_bytes(head[:4], "big")
        if head[4:8] == b"IEND":
            return True
        pos += 12 + n
    return False


def _jpeg_reaches_eoi(f) -> bool:
    """Whether the JPEG file ``f`` has its end marker (EOI) after its first scan: its marker
    segments walked by their lengths (an EXIF thumbnail's own EOI lies inside one), then the
    scan searched (entropy-coded data holds no EOI: a 0xFF byte there is stuffed or a restart)."""
    f.seek(2)
    while True:
        b = f.read(2)
        if len(b) < 2 or b[0] != 0xFF:
            return False
        marker = b[1]
        while marker == 0xFF:  # (fill bytes)
            one = f.read(1)
            if not one:
                return False
            marker = one[0]
        if marker == 0xD9:
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        n = f.read(2)
        if len(n) < 2:
            return False
        f.seek(int.from_bytes(n, "big") - 2, 1)
        if marker == 0xDA:
            break
    carry = b""
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return False
        if b"\xff\xd9" in carry + chunk:
            return True
        carry = chunk[-1:]


def output_format(src_format: str | None, fmt: str | None = None) -> str:
    """The format a result is written in: ``fmt`` when given, else the source's own where fastfill
    writes it, else PNG (e.g. an MPO photo)."""
    if fmt is not None:
        return fmt
    return src_format if src_format in FORMAT_SUFFIX else "PNG"


def encode_image(img: Image.Image, fmt: str, *, quality: int = 95, info: dict | None = None) -> bytes:
    """Encode in memory as ``fmt``, keeping what the format can hold of ``info`` (ICC profile,
    EXIF, dpi; lossless WebP and lossless TIFF compression stay lossless)."""
    info = info or {}
    kw: dict = {}
    if fmt in ("JPEG", "WEBP"):
        kw["quality"] = quality
    if fmt == "JPEG":
        if img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
        kw["subsampling"] = 0 if quality >= 90 else 2
    dpi = info.get("dpi")
    if dpi is not None and not _sane_dpi(dpi):
        info = {k: v for k, v in info.items() if k != "dpi"}  # (a damaged field: not carried)
    if fmt == "BMP" and img.mode in ("RGBA", "LA"):
        if img.getextrema()[-1][0] < 255:  # (opaque: a plain 24-bit BMP, as before)
            return _bmp_with_alpha(img.convert("RGBA"), info.get("dpi"))
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    if fmt in ("BMP", "PPM") and img.mode not in ("RGB", "L", "1") and not (
            fmt == "PPM" and img.mode in ("I;16", "I")):  # (16-bit PGM)
        img = img.convert("RGB")
    if fmt == "GIF" and img.mode not in ("P", "L"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    if fmt == "GIF" and img.mode == "P":
        kw["optimize"] = False  # the palette and indices as they are (restore_mode's)
    if fmt in ("WEBP",) and img.mode in ("I;16", "I"):
        img = img.convert("L")
    for k in ("icc_profile", "exif", "dpi"):
        if k in info and (fmt in ("JPEG", "PNG", "WEBP", "TIFF") or (fmt, k) == ("BMP", "dpi")):
            kw[k] = info[k]
    if fmt == "BMP" and "dpi" not in kw:
        kw["dpi"] = (0, 0)  # (0 pixels a metre: none recorded; Pillow would write 96 dpi)
    if "icc_profile" in kw and _icc_space(kw["icc_profile"]) != _ICC_SPACE.get(img.mode):
        del kw["icc_profile"]  # a profile for other pixels (CMYK on RGB) would misrender them
    if fmt == "JPEG" and len(kw.get("exif") or b"") > _JPEG_EXIF_MAX:
        del kw["exif"]  # (one segment holds it: a larger block is left out, as XMP is; Pillow
        # refused the whole image: "EXIF data is too long")
    if fmt in ("JPEG", "WEBP") and info.get("xmp") and (fmt != "JPEG" or len(info["xmp"]) <= _JPEG_XMP_MAX):
        kw["xmp"] = info["xmp"]  # (a JPEG holds XMP in one segment: a larger packet is left out)
    if fmt == "PNG":
        kw.update(_png_chunks(info))
    groups: dict = {}
    if fmt == "TIFF" and kw.get("exif"):
        ex = Image.Exif()
        ex.load(kw.pop("exif"))
        tags, groups = _exif_parts(ex)
        if tags:
            kw["exif"] = Image.Exif()
            for tag, value in tags.items():
                kw["exif"][tag] = value
    if fmt == "WEBP" and info.get("lossless"):
        # (exact: libwebp otherwise rewrites the colour under alpha 0, which is still a pixel)
        kw = {k: v for k, v in kw.items() if k != "quality"} | {"lossless": True, "quality": 100,
                                                                "exact": True}
    if fmt == "TIFF" and info.get("compression") in ("tiff_lzw", "tiff_adobe_deflate", "packbits", "raw"):
        kw["compression"] = info["compression"]  # a lossless TIFF keeps its own compression
    if fmt == "TGA" and info.get("compression") == "tga_rle":
        kw["compression"] = "tga_rle"
    buf = BytesIO()
    img.save(buf, format=fmt, **kw)
    if groups:
        return _tiff_add_directories(buf.getvalue(), groups)
    return buf.getvalue()


def save_image(img: Image.Image, path: str | Path, fmt: str, *, overwrite: bool = False,
               quality: int = 95, info: dict | None = None) -> None:
    """Encode in memory (:func:`encode_image`) and write with :func:`write_file`."""
    path = Path(path)
    if not overwrite and path.exists():
        raise InputError(f"{path} exists (use --overwrite to replace it)")
    write_file(path, encode_image(img, fmt, quality=quality, info=info), overwrite=overwrite)


def write_file(path: str | Path, data: bytes, *, overwrite: bool = False,
               error: type[Exception] = InputError, force: str = "--overwrite") -> None:
    """:func:`atomic_write_bytes` (its folder made first) with every failure one ``error``
    naming the path; an existing file's message names the ``force`` flag. Every writer of a
    finished file's bytes uses it: the file runner, ``save_image``, export, build, quantize.

    Without ``overwrite``, an existing file is never replaced, even one that appeared meanwhile.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"cannot create folder {path.parent}: {e.strerror or e}") from None
    try:
        atomic_write_bytes(path, data, overwrite=overwrite)
    except FileExistsError:
        raise error(f"{path} exists (use {force} to replace it)") from None
    except OSError as e:
        raise error(f"cannot write to {path}: {e.strerror or e}") from None


def _read_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    u = os.umask(0o022)  # elsewhere: read it once, at import, before any writer thread starts
    os.umask(u)
    return u


UMASK = _read_umask()
# The mode of every file fastfill writes: what open() would give (tempfile.mkstemp gives 0600).
FILE_MODE = 0o666 & ~UMASK


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, or, for a folder, of every file under it (each file's
    relative name and bytes, in sorted order); read in 1 MiB chunks."""
    p = Path(path)
    h = hashlib.sha256()
    if not p.is_dir():
        _hash_into(h, p)
        return h.hexdigest()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode() + b"\0")
        _hash_into(h, f)
    return h.hexdigest()


def _hash_into(h, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


# The longest file name most file systems take (bytes); a temporary name must fit as well.
NAME_MAX = 255
# the dots, mkstemp's 8 characters and a suffix of up to 16 bytes (".tmp", a video's ".webm")
_TEMP_EXTRA = len("..") + 8 + 16


def _temp_stem(name: str) -> str:
    """The part of a temporary name that stands for the output ``name``: the name itself, or,
    when the temporary name would be too long for the file system, its start and a hash of it
    (a 250-byte name is valid; "." + it + ".XXXXXXXX.tmp" is not)."""
    raw = os.fsencode(name)
    if len(raw) + _TEMP_EXTRA <= NAME_MAX:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[:NAME_MAX - _TEMP_EXTRA - len(digest) - 1]
    return os.fsdecode(head.decode("utf-8", "ignore").encode("utf-8")) + "~" + digest


def _temp_pattern(name: str) -> "re.Pattern[str]":
    # atomic_write's temporary names: "." + stem + "." + mkstemp's 8 random characters + suffix
    return re.compile(r"\." + re.escape(_temp_stem(name)) + r"\.[A-Za-z0-9_]{8}\.[A-Za-z0-9]+$")


def remove_stale_temps(outputs) -> int:
    """Remove the temporary files that an interrupted write to one of ``outputs`` left behind
    (a run killed between write and rename); returns how many. Only names of atomic_write's own
    pattern for these outputs are touched."""
    by_dir: dict[Path, dict[str, str]] = {}  # folder -> temporary stem -> output name
    for out in outputs:
        out = Path(out)
        by_dir.setdefault(out.parent, {})[_temp_stem(out.name)] = out.name
    removed = 0
    for folder, names in by_dir.items():
        try:
            entries = [e for e in os.listdir(folder) if e.startswith(".")]
        except OSError:
            continue
        for e in entries:
            stem = e[1:].rsplit(".", 2)[0] if e.count(".") >= 3 else None
            if stem in names and _temp_pattern(names[stem]).match(e) and (folder / e).is_file():
                try:
                    (folder / e).unlink()
                    removed += 1
                except OSError:
                    pass
    return removed


def atomic_write_bytes(path: str | Path, data: bytes, *, overwrite: bool) -> Path:
    """``data`` to ``path`` through :func:`atomic_write`, its length checked on disk before the
    rename: a full disk or a file-size limit can leave a file short without an error, and a short
    file must never be renamed in (FileExistsError when it exists and not ``overwrite``; OSError
    on a failed or short write)."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
        size = os.stat(tmp).st_size
        if size != len(data):
            raise OSError(f"short write: {size} of {len(data)} bytes on disk")

    return atomic_write(path, write, overwrite=overwrite)


def atomic_write(path: str | Path, write_fn, *, overwrite: bool, suffix: str = ".tmp") -> Path:
    """Write ``path`` atomically: ``write_fn(tmp)`` fills a temporary file in the same folder,
    which is then given the usual mode (0o666 & ~umask), synced to disk and moved into place.

    ``overwrite=False``: an existing ``path`` is never replaced, even one that appears while
    ``write_fn`` runs (hard link = atomic no-clobber; FileExistsError). ``overwrite=True``:
    ``os.replace``. On any failure the temporary file is removed and the error propagates.
    ``suffix`` ends the temporary name (writers such as PyAV pick the format from it).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where its folder should be: not "the output exists"
        raise NotADirectoryError(errno.ENOTDIR, "a file where its folder should be",
                                 str(path.parent)) from None
    fd, tmp = tempfile.mkstemp(prefix="." + _temp_stem(path.name) + ".", suffix=suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        # Reopen: the writer may have replaced the file, and fchmod/fsync must reach what is there.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, FILE_MODE)
            else:  # pragma: no cover - Windows before Python 3.13
                os.chmod(tmp, FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, path, overwrite)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _commit(tmp: str, path: Path, overwrite: bool) -> None:
    """Move the finished temporary file into place (no-clobber unless ``overwrite``)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails with FileExistsError if the target exists: atomic no-clobber
    except FileExistsError:
        raise
    except OSError:  # file systems without hard links
        if path.exists():
            raise FileExistsError(str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def check_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove that files can be written in it (InputError if not)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".fastfill-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"output folder {folder} is not writable: {e.strerror or e}") from None
    return folder


_INT_RE = re.compile(r"(\d+)")


def frame_number(path: Path) -> int | None:
    """The last integer in a file's stem (``frame_0012.png`` -> 12), or None."""
    nums = _INT_RE.findall(path.stem)
    return int(nums[-1]) if nums else None


# -- formats ------------------------------------------------------------------------------------

def writable_format(suffix: str) -> str | None:
    """The output format a file suffix names ('.jpeg' -> 'JPEG'), None when fastfill does not
    write that format (or Pillow knows no format by that suffix)."""
    fmt = format_for_suffix(suffix)
    return fmt if fmt in FORMAT_SUFFIX else None


def format_for_suffix(suffix: str) -> str | None:
    """Pillow's format name for a file suffix ('.jpg' -> 'JPEG'), None when it has none."""
    suffix = suffix.lower()
    Image.init()
    return Image.EXTENSION.get(suffix)


__all__ = [
    "Candidate", "Decoded", "find_images", "sniff_image", "decode_image", "decode_mask",
    "mask_to_gray", "dilate_mask", "output_format", "restore_mode", "encode_image",
    "save_image", "write_file", "format_for_suffix", "check_writable_dir",
    "normalize_format", "frame_number", "classify_image", "MAX_DILATE", "IMAGE_SUFFIXES", "FORMAT_SUFFIX", "FORMAT_ALIASES",
    "atomic_write", "UMASK", "FILE_MODE", "FileOptions", "read_item", "encode_result",
]
