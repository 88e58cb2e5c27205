"""Images and masks as bytes and files: finding images by content, decoding, conversion,
encoding and atomic writing.

Nothing here knows about models or runs; :mod:`fastfill.inpainter` takes the arrays this module
makes (uint8 ``[H, W, 3]`` RGB images, bool ``[H, W]`` masks with True = fill) and
:mod:`fastfill.runner` pairs files and drives a run.

Conventions (README "fastfill run"):

- Images are found by content (Pillow identifies the file), not only by suffix. A file with an
  image suffix that Pillow cannot identify is reported as a failure; other unidentifiable files
  (notes, sidecars) are ignored.
- EXIF orientation is applied to images and masks. Grey, palette, RGBA, 16-bit grey and CMYK
  inputs are converted to RGB for the model; on output, the input's mode is restored where the
  format allows (grey stays grey, 16-bit grey keeps its 16-bit values outside the hole, alpha
  is kept outside the hole and made opaque inside it).
- Masks: white = fill. Grey and colour masks are thresholded on their luma; a mask with
  transparency is read as if laid on black (transparent = keep). ``invert`` swaps the two.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from io import BytesIO  # (the standard library's: imports are absolute)
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, SizeLimitError

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

# The only formats fastfill decodes (Pillow's `formats=`): raster images. Pillow would otherwise
# pick a plugin from the content, and its EPS plugin runs Ghostscript on any PostScript file.
DECODE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "PPM", "TGA")  # JPEG includes MPO
_NOT_DECODABLE = f"not an image in a format fastfill reads ({', '.join(DECODE_FORMATS)})"

# Formats that store an alpha channel / 16-bit grey.
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "TGA", "GIF"})
_WIDE_FORMATS = frozenset({"PNG", "TIFF"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


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

def _open(path) -> Image.Image:
    """Image.open on the allowed formats, quietly: fastfill checks sizes itself (--max-pixels), and
    damaged metadata is reported by the decoder as one note, not as Pillow's warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Image.open(path, formats=DECODE_FORMATS)


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

    Only regular files: opening a FIFO or a device would block or read forever. A folder that
    cannot be listed is appended to ``unreadable`` as (path, reason) when it is given."""
    out = []

    def onerror(e: OSError) -> None:
        if unreadable is not None and e.filename is not None:
            unreadable.append((Path(e.filename), f"cannot read folder ({e.strerror or e})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and p.is_file():
                out.append(p)
    return out


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
        fmt = sniff_image(p)
        if fmt is not None:
            out.append(Candidate(p, rel, fmt))
        elif p.suffix.lower() in IMAGE_SUFFIXES or root.is_file():
            out.append(Candidate(p, rel, None, error=_why_not_image(p)))
    return out


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
        return _NOT_DECODABLE
    except OSError as e:
        return f"cannot read ({e})"
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
    note: str | None = None  # something about the file worth one line (e.g. metadata dropped)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return self.rgb.shape[0], self.rgb.shape[1]


def _source(src):
    """A path as a Path, encoded bytes as a file object: what Pillow opens."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return BytesIO(src)
    return src if hasattr(src, "read") else Path(src)


def _open_oriented(src, max_pixels: int | None = None) -> Image.Image:
    """Open, fully decode and apply EXIF orientation; errors become InputError with the reason.
    Images over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) are refused from their header
    (:class:`SizeLimitError`). ``src``: a path or a binary file object."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    try:
        with _open(src) as im:
            w, h = im.size
            if w * h > limit:
                raise SizeLimitError(f"{w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of "
                                     f"{limit / 1e6:g} (--max-pixels)")
            frames = getattr(im, "n_frames", 1)
            # An MPO (a phone's JPEG) carries previews after its photo: the first frame is the image.
            if frames > 1 and im.format != "MPO":
                kind = "pages" if im.format == "TIFF" else "frames"
                raise InputError(f"{frames} {kind} ({im.format}): fastfill fills single images only; "
                                 f"split it first (every {kind[:-1]} would otherwise be lost but the first)")
            im.load()
            fmt = im.format
            out = ImageOps.exif_transpose(im)  # a copy (or the same image when no tag)
            if out is im:
                out = im.copy()
            out.format = fmt
            return out
    except InputError:
        raise  # (an InputError is a ValueError: not to be re-worded as a corrupt file below)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except Image.DecompressionBombError as e:
        raise SizeLimitError(f"refused: {e}") from None
    except UnidentifiedImageError:
        raise InputError(_NOT_DECODABLE) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            msg = f"truncated or corrupt image ({msg})"
        else:
            msg = f"corrupt or unreadable image ({msg})"
        raise InputError(msg) from None


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
    import warnings

    src = _source(src)
    with warnings.catch_warnings(record=True) as caught:
        # Damaged metadata must not cost the pixels: Pillow warns and decodes; the EXIF is dropped.
        warnings.simplefilter("always")
        im = _open_oriented(src, max_pixels)
        exif = im.getexif()
        exif_bytes = exif.tobytes() if len(exif) else None
    damaged = [str(w.message).strip() for w in caught if "exif" in str(w.message).lower()]
    fmt, mode = im.format, im.mode
    info = {k: im.info[k] for k in ("icc_profile", "dpi") if k in im.info}
    if fmt == "WEBP" and webp_is_lossless(src):
        info["lossless"] = True  # written back lossless: the pixels outside the hole stay exact
    if fmt == "TIFF" and im.info.get("compression"):
        info["compression"] = im.info["compression"]
    note = None
    if damaged:
        note = f"damaged EXIF dropped, pixels kept ({damaged[0]})"
    elif exif_bytes:
        info["exif"] = exif_bytes
    alpha = gray16 = None
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(im)
        if a.dtype != np.uint16:
            a = np.clip(a, 0, 65535).astype(np.uint16)
        gray16 = np.ascontiguousarray(a)
        g8 = ((gray16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        rgb = np.repeat(g8[:, :, None], 3, axis=2)
    else:
        has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            mode == "P" and "transparency" in im.info) or (
            mode in ("L", "RGB") and "transparency" in im.info)
        if has_alpha:
            rgba = im.convert("RGBA")
            a = np.asarray(rgba)
            alpha = np.ascontiguousarray(a[:, :, 3])
            rgb = np.ascontiguousarray(a[:, :, :3])
        elif mode == "RGB":
            rgb = np.asarray(im)
        else:  # L, 1, P, CMYK, YCbCr, LAB, F, ...
            rgb = np.asarray(im.convert("RGB"))
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return Decoded(rgb=rgb, format=fmt, mode=mode, alpha=alpha, gray16=gray16, info=info, note=note)


def decode_mask(path, size: tuple[int, int] | None = None, *, invert: bool = False,
                threshold: int = 128, resize: bool = False, dilate: int = 0,
                image_name: str | None = None, max_pixels: int | None = None,
                name: str | None = None) -> np.ndarray:
    """Read a mask (a path, or the file's bytes) into bool ``[H, W]`` (True = fill).

    ``size`` = the image's (height, width): a mask of another size is an InputError unless
    ``resize`` (then it is resized smoothly and thresholded). ``dilate`` grows the hole by that
    many pixels in every direction. ``name``: what messages call the mask (default: its path).
    """
    src = _source(path)
    name = f"mask {name}" if name else (f"mask {path}" if isinstance(src, Path) else "the mask")
    try:
        im = _open_oriented(src, max_pixels)
    except InputError as e:  # reported against the image: say that it is the mask's fault
        raise type(e)(f"{name}: {e}") from None
    g = mask_to_gray(im)
    if size is not None and g.shape != tuple(size):
        h, w = size
        if not resize:
            what = image_name or "the image"
            raise InputError(f"{name} is {g.shape[1]}x{g.shape[0]} but {what} is {w}x{h} "
                             "(use --resize-mask to scale it)")
        g = np.asarray(Image.fromarray(g).resize((w, h), Image.Resampling.BILINEAR))
    m = g >= threshold
    if invert:
        m = ~m
    if dilate:
        m = dilate_mask(m, dilate)
    return m


def mask_to_gray(im: Image.Image) -> np.ndarray:
    """A mask image as uint8 grey: luma for colour, laid on black where transparent."""
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
    if has_alpha:
        a = np.asarray(im.convert("LA"), dtype=np.uint16)
        return ((a[:, :, 0] * a[:, :, 1] + 127) // 255).astype(np.uint8)
    if mode == "L":
        return np.asarray(im)
    return np.asarray(im.convert("L"))


def dilate_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Grow the True region by ``px`` pixels (a square of side 2*px+1), pure NumPy."""
    if px < 0:
        raise InputError(f"dilate must be >= 0, got {px}")
    m = np.asarray(mask, dtype=bool)
    if px == 0 or not m.any():
        return m.copy()
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


# -- encoding and writing -----------------------------------------------------------------------

def restore_mode(result: np.ndarray, src: Decoded, mask: np.ndarray, fmt: str) -> Image.Image:
    """The uint8 RGB result as a Pillow image in the source's mode (as far as ``fmt`` allows)."""
    hole = np.asarray(mask, dtype=bool)
    if src.gray16 is not None and fmt in _WIDE_FORMATS:
        g8 = np.asarray(Image.fromarray(result).convert("L"))
        out16 = src.gray16.copy()
        out16[hole] = g8[hole].astype(np.uint16) * 257
        return Image.fromarray(out16)  # mode I;16
    gray = src.mode in ("L", "LA", "1", "La") or src.gray16 is not None
    img = Image.fromarray(result)
    if gray:
        img = img.convert("L")
    if src.alpha is not None and fmt in _ALPHA_FORMATS:
        a = src.alpha.copy()
        a[hole] = 255
        img.putalpha(Image.fromarray(a))
    return img


def output_is_whole(path: str | Path) -> bool:
    """Cheap check that an existing output is a complete file: the end marker of PNG (IEND) and
    JPEG (EOI), the RIFF length of WebP, a full decode for the other formats. fastfill itself
    only ever renames verified files into place; this catches files cut short by anything else."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(12)
            f.seek(max(0, size - 16))
            tail = f.read()
    except OSError:
        return False
    if head.startswith(b"\x89PNG"):
        return b"IEND" in tail
    if head.startswith(b"\xff\xd8"):
        return tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return int.from_bytes(head[4:8], "little") + 8 <= size
    try:
        with _open(p) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any failure to decode means: not whole
        return False


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
    if fmt in ("BMP", "PPM") and img.mode not in ("RGB", "L", "1"):
        img = img.convert("RGB")
    if fmt == "GIF" and img.mode not in ("P", "L"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    if fmt in ("WEBP",) and img.mode in ("I;16", "I"):
        img = img.convert("L")
    for k in ("icc_profile", "exif", "dpi"):
        if k in info and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
            kw[k] = info[k]
    if fmt == "WEBP" and info.get("lossless"):
        kw = {k: v for k, v in kw.items() if k != "quality"} | {"lossless": True, "quality": 100}
    if fmt == "TIFF" and info.get("compression") in ("tiff_lzw", "tiff_adobe_deflate", "packbits", "raw"):
        kw["compression"] = info["compression"]  # a lossless TIFF keeps its own compression
    buf = BytesIO()
    img.save(buf, format=fmt, **kw)
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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    "normalize_format", "frame_number", "IMAGE_SUFFIXES", "FORMAT_SUFFIX", "FORMAT_ALIASES",
    "atomic_write", "UMASK", "FILE_MODE",
]
