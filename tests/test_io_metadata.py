"""`fastfill run` on files whose depth, colour space, palette or metadata need care: each is
filled with nothing outside the hole changing beyond what the format forces, or refused with
one line (docs/RELIABILITY.md)."""

import struct
import subprocess
import sys
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from conftest import invoke
from fastfill.files import codecs as io

H, W = 30, 41


def _img(h=H, w=W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _hole(h=H, w=W):
    m = np.zeros((h, w), bool)
    m[8:20, 10:26] = True
    return m


def _run(imgs, mask, out, *args):
    """`fastfill run --method harmonic` (no model: fast) through the real CLI."""
    return invoke("run", "--method", "harmonic", "-q", *args, imgs, mask, "-o", out)


@pytest.fixture
def mask(tmp_path):
    p = tmp_path / "mask.png"
    Image.fromarray(_hole().astype(np.uint8) * 255).save(p)
    return p


# -- files Pillow cannot write: built byte by byte ----------------------------------------------

def _tiff(width, height, bits, photometric, data, *, compression=1, extra=(), sub_ifds=None):
    """A one-strip little-endian TIFF with its directory first (as most writers but libtiff put
    it). ``extra``: (tag, type, values) entries; ``sub_ifds``: {pointer tag: [(tag, type, values)]}."""
    types = {2: "s", 3: "H", 4: "I"}

    def pack(typ, values):
        if typ == 2:
            return values.encode() + b"\0"
        return struct.pack(f"<{len(values)}{types[typ]}", *values)

    def count(typ, values):
        return len(values) + 1 if typ == 2 else len(values)

    def directory(entries, at):  # [(tag, type, values)] -> the IFD's bytes, placed at `at`
        entries = sorted(entries)
        blob_at = at + 2 + 12 * len(entries) + 4
        head, blob = struct.pack("<H", len(entries)), b""
        for tag, typ, values in entries:
            raw = pack(typ, values)
            if len(raw) <= 4:
                head += struct.pack("<HHI", tag, typ, count(typ, values)) + raw.ljust(4, b"\0")
            else:
                head += struct.pack("<HHII", tag, typ, count(typ, values), blob_at + len(blob))
                blob += raw + b"\0" * (len(raw) & 1)
        return head + struct.pack("<I", 0) + blob

    spp = len(bits)
    subs_in = sub_ifds or {}
    entries = [(256, 3, (width,)), (257, 3, (height,)), (258, 3, tuple(bits)), (259, 3, (compression,)),
               (262, 3, (photometric,)), (277, 3, (spp,)), (278, 3, (height,)), (279, 4, (len(data),)),
               *extra]
    # the sizes do not depend on the offsets: lay out once with zeros, then with the real ones
    pointers = [(tag, 4, (0,)) for tag in subs_in]
    at = 8 + len(directory(entries + pointers + [(273, 4, (0,))], 8))
    subs, pointers = b"", []
    for tag, sub in subs_in.items():
        pointers.append((tag, 4, (at + len(subs),)))
        subs += directory(sub, at + len(subs))
    ifd0 = directory(entries + pointers + [(273, 4, (at + len(subs),))], 8)
    return b"II*\x00" + struct.pack("<I", 8) + ifd0 + subs + data


def _png(width, height, depth, colour_type, rows):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


# -- a truncated TIFF ---------------------------------------------------------------------------

def test_truncated_tiff_is_one_line_naming_it_and_libtiff_says_nothing(tmp_path, mask):
    """A TIFF cut short where its directory is (libtiff puts it last) or in its pixel data is
    one line saying so, and nothing else reaches stderr (libtiff prints its errors there)."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    rgb = _img()
    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format="TIFF", compression="tiff_lzw")  # directory last
    (imgs / "cut_directory.tif").write_bytes(buf.getvalue()[:-30])
    deflated = _tiff(W, H, (8, 8, 8), 2, zlib.compress(rgb.tobytes()), compression=8)
    (imgs / "cut_pixels.tif").write_bytes(deflated[: len(deflated) // 2])
    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format="TIFF", compression="jpeg")
    (imgs / "cut_jpeg.tiff").write_bytes(buf.getvalue()[:-20])
    Image.fromarray(rgb).save(imgs / "ok.png")
    r = subprocess.run([sys.executable, "-m", "fastfill.cli", "run", "--method", "harmonic", "-q", str(imgs),
                        str(mask), "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "done 1, skipped 0, failed 3" in r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3, r.stderr  # one per file, no libtiff line
    for name in ("cut_directory.tif", "cut_pixels.tif", "cut_jpeg.tiff"):
        (line,) = [ln for ln in lines if name in ln]
        assert line.startswith("failed: ") and "truncated or damaged TIFF" in line, line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fastfill-failures.jsonl", "ok.png"]


def test_a_damaged_netpbm_header_is_one_line_and_the_run_goes_on(tmp_path, mask):
    """Pillow's PPM reader fails on some damaged headers with a ValueError, not an OSError (a
    token that never ends, a size that is not a number): one line for that file, as for any
    damaged image, and the others are filled (it used to end the whole run as an internal error,
    before any image was read)."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "endless.ppm").write_bytes(b"P6\n2 2\n255" + b"\xf7" * 12)
    (imgs / "size.pgm").write_bytes(b"P5\n2x 2\n255\n\xf7\xf7\xf7\xf7")
    (imgs / "really_a_ppm.png").write_bytes(b"P6\n2 2\n255" + b"\xf7" * 12)
    (imgs / "notes.txt").write_bytes(b"P1 shopping list\nmilk\n")  # (text, no image: not looked at)
    Image.fromarray(_img()).save(imgs / "ok.png")
    r = subprocess.run([sys.executable, "-m", "fastfill.cli", "run", "--method", "harmonic", "-q", str(imgs),
                        str(mask), "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "done 1, skipped 0, failed 3" in r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3, r.stderr
    for name in ("endless.ppm", "size.pgm", "really_a_ppm.png"):
        (line,) = [ln for ln in lines if name in ln]
        assert line.startswith("failed: ") and "truncated or damaged PPM" in line, line
    assert (tmp_path / "out" / "ok.png").is_file()


# -- CMYK with a CMYK profile -------------------------------------------------------------------

_D50 = np.array([0.9642, 1.0, 0.8249])
_SRGB_D50 = np.array([[0.4360747, 0.3850649, 0.1430804], [0.2225045, 0.7168786, 0.0606169],
                      [0.0139322, 0.0971045, 0.7141733]])


def _lab(rgb):
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    t = (lin @ _SRGB_D50.T) / _D50
    f = np.where(t > 216 / 24389, np.cbrt(t), (24389 / 27 * t + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _rgb_of_lab(lab):
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    t = np.where(f ** 3 > 216 / 24389, f ** 3, (116 * f - 16) / (24389 / 27))
    lin = np.clip((t * _D50) @ np.linalg.inv(_SRGB_D50).T, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def _lut16(n_in, n_out, grid, table):
    ramp = (0, 65535)
    body = struct.pack(">4s4xBBBx9i2H", b"mft2", n_in, n_out, grid, 65536, 0, 0, 0, 65536, 0, 0, 0, 65536, 2, 2)
    body += struct.pack(f">{2 * n_in}H", *ramp * n_in)
    body += np.round(np.clip(table, 0, 1) * 65535).astype(">u2").tobytes()
    return body + struct.pack(f">{2 * n_out}H", *ramp * n_out)


def _cmyk_profile() -> bytes:
    """A small valid CMYK printer profile (ICC v2, Lab PCS, lut16 both ways; naive inks, full
    black replacement): no such profile ships with Pillow or the test machines."""
    g = np.linspace(0, 1, 3)
    cmyk = np.stack(np.meshgrid(g, g, g, g, indexing="ij"), -1).reshape(-1, 4)
    lab = _lab((1 - cmyk[:, :3]) * (1 - cmyk[:, 3:]))
    a2b = np.stack([lab[:, 0] / 100 * 0xFF00 / 0xFFFF, (lab[:, 1] + 128) * 256 / 65535,
                    (lab[:, 2] + 128) * 256 / 65535], -1)
    n = 9
    L, A, B = np.meshgrid(np.linspace(0, 0xFF00 / 0xFFFF, n), np.linspace(0, 1, n), np.linspace(0, 1, n),
                          indexing="ij")
    nodes = np.stack([L * 0xFFFF / 0xFF00 * 100, A * 65535 / 256 - 128, B * 65535 / 256 - 128], -1)
    cmy = 1 - _rgb_of_lab(nodes.reshape(-1, 3))
    k = cmy.min(-1, keepdims=True)
    b2a = np.concatenate([(cmy - k) / np.maximum(1 - k, 1e-6), k], -1)
    text = b"fastfill test CMYK\0"
    desc = struct.pack(">4s4xI", b"desc", len(text)) + text + struct.pack(">IIHB67x", 0, 0, 0, 0)
    white = struct.pack(">4s4x3i", b"XYZ ", *(round(v * 65536) for v in _D50))
    tags = [(b"desc", desc), (b"cprt", b"text\0\0\0\0public domain\0"), (b"wtpt", white),
            (b"A2B0", _lut16(4, 3, 3, a2b)), (b"B2A0", _lut16(3, 4, n, b2a))]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += struct.pack(">4sII", sig, start + len(data), len(body))
        data += body
    head = struct.pack(">I4sI4s4s4s12x4s4xI8x8xI3i48x", start + len(data), b"", 0x02100000, b"prtr", b"CMYK",
                       b"Lab ", b"acsp", 0, 0, *(round(v * 65536) for v in _D50))
    return head + struct.pack(">I", len(tags)) + table + data


def _icc_space(im):
    icc = im.info.get("icc_profile")
    return icc[16:20].decode().strip() if icc else None


def test_cmyk_keeps_its_profile_in_cmyk_and_is_converted_with_it_to_rgb(tmp_path, mask):
    """A CMYK JPEG with a CMYK profile: JPEG out stays CMYK with its profile (outside the hole
    only re-encoded); PNG out is RGB converted through the profile and carries no CMYK profile.
    No output ever carries a profile of another colour space than its pixels."""
    ImageCms = pytest.importorskip("PIL.ImageCms")
    imgs = tmp_path / "images"
    imgs.mkdir()
    icc = _cmyk_profile()
    cmyk = np.random.default_rng(1).integers(0, 256, (H, W, 4), dtype=np.uint8)
    cmyk[..., 3] //= 3
    Image.fromarray(cmyk, "CMYK").save(imgs / "profiled.jpg", quality=95, icc_profile=icc)
    Image.fromarray(cmyk, "CMYK").save(imgs / "plain.jpg", quality=95)
    hole = _hole()
    code, _, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 0, stderr
    code, _, stderr = _run(imgs, mask, tmp_path / "png", "--format", "png")
    assert code == 0, stderr
    png = {}
    for name, profile in (("profiled", icc), ("plain", None)):
        with Image.open(imgs / f"{name}.jpg") as im:
            src = np.asarray(im).astype(int)
        with Image.open(tmp_path / "out" / f"{name}.jpg") as im:
            assert im.mode == "CMYK" and im.info.get("icc_profile") == profile
            got = np.asarray(im).astype(int)
        assert np.abs(got - src)[~hole].mean() < 2.5  # JPEG re-encoding only
        with Image.open(tmp_path / "png" / f"{name}.png") as im:
            assert im.mode == "RGB" and _icc_space(im) in (None, "RGB")
            png[name] = np.asarray(im)
    with Image.open(imgs / "profiled.jpg") as im:
        srgb = ImageCms.createProfile("sRGB")
        want = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(BytesIO(icc)), srgb, outputMode="RGB")
    np.testing.assert_array_equal(png["profiled"][~hole], np.asarray(want)[~hole])
    with Image.open(tmp_path / "out" / "profiled.jpg") as im:  # the hole's inks: the fill's colours
        seen = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(BytesIO(icc)), srgb, outputMode="RGB")
    assert np.abs(np.asarray(seen).astype(int) - png["profiled"])[hole].mean() < 6
    with Image.open(imgs / "plain.jpg") as im:
        np.testing.assert_array_equal(png["plain"][~hole], np.asarray(im.convert("RGB"))[~hole])
    # the encoder itself never pairs pixels with a profile of another colour space
    data = io.encode_image(Image.fromarray(_img()), "JPEG", info={"icc_profile": icc})
    with Image.open(BytesIO(data)) as im:
        assert "icc_profile" not in im.info


# -- TIFF metadata ------------------------------------------------------------------------------

_MAKE, _MODEL, _ARTIST, _EXIF_IFD, _GPS_IFD, _TAKEN, _LAT_REF = 271, 272, 315, 0x8769, 0x8825, 0x9003, 1


def _tagged_tiff(rgb, compression):
    extra = [(_MAKE, 2, "Maker"), (_MODEL, 2, "Model X"), (_ARTIST, 2, "Someone"), (274, 3, (1,))]
    subs = {_EXIF_IFD: [(_TAKEN, 2, "2020:01:02 03:04:05")], _GPS_IFD: [(_LAT_REF, 2, "N")]}
    data = zlib.compress(rgb.tobytes()) if compression == 8 else rgb.tobytes()
    return _tiff(W, H, (8, 8, 8), 2, data, compression=compression, extra=extra, sub_ifds=subs)


def _assert_tags(exif, where):
    assert (exif.get(_MAKE), exif.get(_MODEL), exif.get(_ARTIST)) == ("Maker", "Model X", "Someone"), where
    assert exif.get_ifd(_EXIF_IFD).get(_TAKEN) == "2020:01:02 03:04:05", where
    assert exif.get_ifd(_GPS_IFD).get(_LAT_REF) == "N", where


def test_tiff_keeps_its_exif_and_tiff_tags(tmp_path, mask):
    """A TIFF's metadata (IFD0 tags, EXIF and GPS directories) reaches its TIFF output, whether
    Pillow (raw) or libtiff (deflate, LZW) writes it, and a JPEG made from it; the layout tags of
    the source (strip offsets, sample format) never do."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    rgb = _img()
    (imgs / "raw.tif").write_bytes(_tagged_tiff(rgb, 1))
    (imgs / "deflate.tif").write_bytes(_tagged_tiff(rgb, 8))
    with Image.open(imgs / "deflate.tif") as im:
        assert np.array_equal(np.asarray(im), rgb)
        _assert_tags(im.getexif(), "source")
    hole = _hole()
    code, _, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 0, stderr
    code, _, stderr = _run(imgs, mask, tmp_path / "jpg", "--format", "jpg")
    assert code == 0, stderr
    for path, compression in ((tmp_path / "out" / "raw.tif", "raw"),
                              (tmp_path / "out" / "deflate.tif", "tiff_adobe_deflate")):
        with Image.open(path) as im:
            assert im.info.get("compression") == compression
            _assert_tags(im.getexif(), path)
            assert im.getexif().get(274, 1) == 1
            np.testing.assert_array_equal(np.asarray(im)[~hole], rgb[~hole])
    with Image.open(tmp_path / "jpg" / "deflate.jpg") as im:
        exif = im.getexif()
        _assert_tags(exif, "jpg")
        assert not {256, 257, 258, 259, 262, 273, 277, 278, 279} & set(exif)
    # JPEG EXIF into a TIFF that libtiff writes (LZW): kept as well
    exif = Image.Exif()
    exif[_MAKE], exif[_MODEL], exif[_ARTIST] = "Maker", "Model X", "Someone"
    exif.get_ifd(_EXIF_IFD)[_TAKEN] = "2020:01:02 03:04:05"
    exif.get_ifd(_GPS_IFD)[_LAT_REF] = "N"
    data = io.encode_image(Image.fromarray(rgb), "TIFF", info={"exif": exif.tobytes(), "compression": "tiff_lzw"})
    with Image.open(BytesIO(data)) as im:
        assert im.info.get("compression") == "tiff_lzw"
        _assert_tags(im.getexif(), "lzw")
        np.testing.assert_array_equal(np.asarray(im), rgb)


# -- GIF palette --------------------------------------------------------------------------------

def test_gif_keeps_its_palette_indices_and_transparency_outside_the_hole(tmp_path, mask):
    """Outside the hole the indices as they were; inside, the transparent index where the alpha
    around the hole, filled, is transparent, else opaque colours."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    rng = np.random.default_rng(2)
    index = rng.integers(0, 16, (H, W), dtype=np.uint8)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    im = Image.fromarray(index, "P")
    im.putpalette(palette.tobytes())
    im.save(imgs / "a.gif", transparency=5)
    hole = _hole()
    code, _, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 0, stderr
    with Image.open(tmp_path / "out" / "a.gif") as out:
        assert out.mode == "P" and out.info.get("transparency") == 5
        got = np.asarray(out)
        got_palette = np.array(out.getpalette()[:48], np.uint8).reshape(16, 3)
        rgba = np.asarray(out.convert("RGBA"))
    np.testing.assert_array_equal(got[~hole], index[~hole])
    np.testing.assert_array_equal(got_palette, palette)
    # the hole transparent where the alpha around it, filled harmonically, is under half
    from fastfill import ops

    alpha = np.where(index == 5, 255.0, 0.0)[..., None].repeat(3, 2)
    clear = hole & (255 - ops.fill_reference(alpha, hole)[..., 0] * 255 < 127.5)
    assert 0 < clear.sum() < hole.sum() / 4
    assert (got[clear] == 5).all() and (got[hole & ~clear] != 5).all()
    assert (rgba[~hole, 3] == np.where(index[~hole] == 5, 0, 255)).all()


def test_a_hole_over_transparency_stays_transparent_and_takes_the_visible_colour(tmp_path):
    """A logo on a transparent canvas (its invisible pixels black): the hole's alpha is filled from
    the alpha around it, so the part over the canvas stays clear, and its colour is the visible
    pixels' (no dark halo from the black under the canvas); outside the hole every byte is kept,
    in PNG, BMP (32-bit with an alpha mask) and GIF (the transparent index)."""
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[:, :20] = (255, 200, 0, 255)  # the logo: left; the canvas: right, black and clear
    hole = np.zeros((H, W), bool)
    hole[10:20, 14:30] = True  # across the logo's edge
    for name in ("a.png", "a.bmp", "a.gif"):
        Image.fromarray(hole.astype(np.uint8) * 255).save(masks / (name[:-4] + "_" + name[-3:] + ".png"))
    Image.fromarray(rgba).save(imgs / "a_png.png")
    Image.fromarray(rgba).save(imgs / "a_bmp.bmp")  # (Pillow writes BI_RGB: read back opaque)
    (imgs / "a_bmp.bmp").write_bytes(io.encode_image(Image.fromarray(rgba), "BMP", info={"dpi": (72, 72)}))
    pal = Image.fromarray(rgba[:, :, :3]).quantize(4)
    index = np.asarray(pal).copy()
    clear_index = int(index[0, -1])
    pal.save(imgs / "a_gif.gif", transparency=clear_index)
    code, _, stderr = _run(imgs, masks, tmp_path / "out")
    assert code == 0, stderr
    for name in ("a_png.png", "a_bmp.bmp"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.mode == "RGBA", name
            got = np.asarray(im)
            if name.endswith(".bmp"):
                assert round(im.info["dpi"][0]) == 72
        np.testing.assert_array_equal(got[~hole], rgba[~hole], name)
        a = got[..., 3]
        assert (a[hole & (np.arange(W) >= 26)] <= 64).all(), name  # far over the canvas: clear
        assert (a[hole & (np.arange(W) < 16)] >= 160).all(), name  # inside the logo: nearly opaque
        seen = hole & (a > 0)
        np.testing.assert_array_equal(got[seen, :3], np.broadcast_to((255, 200, 0), (seen.sum(), 3)))
    with Image.open(tmp_path / "out" / "a_gif.gif") as im:
        got = np.asarray(im)
        assert im.info.get("transparency") == clear_index
    np.testing.assert_array_equal(got[~hole], index[~hole])
    assert (got[hole & (np.arange(W) >= 26)] == clear_index).all()
    assert (got[hole & (np.arange(W) < 16)] != clear_index).all()


def test_sixteen_bit_grey_is_filled_at_sixteen_bits(tmp_path):
    """A smooth 16-bit ramp filled harmonically is the harmonic fill of its 16-bit values (SciPy's
    solve), not a staircase of 257-level steps (an 8-bit fill x 257)."""
    from fastfill import ops

    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    g = (30000 + 7 * xx + 3 * yy + 2 * ((xx * yy) % 5)).astype(np.uint16)
    hole = _hole()
    Image.fromarray(g).save(imgs / "g.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(masks / "g.png")
    code, _, stderr = _run(imgs, masks, tmp_path / "out")
    assert code == 0, stderr
    got = np.asarray(Image.open(tmp_path / "out" / "g.png")).astype(np.int64)
    ref = ops.fill_reference(np.repeat(g[..., None].astype(np.float64) / 257, 3, 2), hole)[..., 0] * 65535
    np.testing.assert_array_equal(got[~hole], g[~hole])
    assert np.abs(got[hole] - ref[hole]).max() <= 2  # (an 8-bit fill: up to 128 off)
    # all hole: nothing around it; a white fill is 65535, not 128 below it
    src = io.decode_image(imgs / "g.png")
    white = np.full((H, W, 3), 255, np.uint8)
    everything = np.asarray(io.restore_mode(white, src, np.ones((H, W), bool), "PNG"))
    assert (everything == 65535).all()


def test_text_chunks_xmp_and_gamma_are_carried(tmp_path, mask):
    from PIL import PngImagePlugin

    imgs = tmp_path / "images"
    imgs.mkdir()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:rights>(c) Someone</dc:rights></x:xmpmeta>'
    Image.fromarray(_img()).save(imgs / "x.jpg", xmp=xmp, quality=95)
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("Copyright", "(c) Someone")
    chunks.add_itxt("Description", "caf\u00e9", "fr", "")
    chunks.add(b"gAMA", struct.pack(">I", 100000))
    Image.fromarray(_img()).save(imgs / "t.png", pnginfo=chunks)
    code, _, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 0, stderr
    with Image.open(tmp_path / "out" / "x.jpg") as im:
        assert im.info.get("xmp") == xmp
    with Image.open(tmp_path / "out" / "t.png") as im:
        im.load()
        assert im.text == {"Copyright": "(c) Someone", "Description": "caf\u00e9"}
        assert im.info.get("gamma") == 1.0
    code, _, stderr = _run(imgs / "x.jpg", mask, tmp_path / "x.png")  # XMP into PNG's own chunk
    assert code == 0, stderr
    with Image.open(tmp_path / "x.png") as im:
        assert im.info.get("xmp") == xmp


def test_metadata_a_format_cannot_hold_is_left_out_not_fatal(tmp_path, mask):
    """A PNG with a Photoshop-sized XMP packet (over one JPEG segment) written as JPEG failed
    ("XMP data is too long"); a BMP whose resolution field is -1 (1.09e8 dpi) could not be
    written back; an opaque RGBA image written as BMP stays a plain 24-bit BMP."""
    from PIL import PngImagePlugin

    imgs = tmp_path / "images"
    imgs.mkdir()
    chunks = PngImagePlugin.PngInfo()
    chunks.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>" + "a" * 70000 + "</x:xmpmeta>")
    Image.fromarray(_img()).save(imgs / "big.png", pnginfo=chunks)
    rgba = np.dstack([_img(seed=1), np.full((H, W), 255, np.uint8)])
    Image.fromarray(rgba).save(imgs / "opaque.png")
    code, _, stderr = _run(imgs, mask, tmp_path / "out", "--format", "jpeg")
    assert code == 0, stderr
    with Image.open(tmp_path / "out" / "big.jpg") as im:
        assert "xmp" not in im.info
    code, _, stderr = _run(imgs / "opaque.png", mask, tmp_path / "o.bmp")
    assert code == 0, stderr
    with Image.open(tmp_path / "o.bmp") as im:
        assert im.mode == "RGB"
    bmp = bytearray(io.encode_image(Image.fromarray(_img(seed=2)), "BMP", info={"dpi": (72, 72)}))
    bmp[38:46] = struct.pack("<ii", -1, -1)  # the resolution fields
    (imgs / "odd.bmp").write_bytes(bytes(bmp))
    code, _, stderr = _run(imgs / "odd.bmp", mask, tmp_path / "odd.bmp")
    assert code == 0, stderr
    with Image.open(tmp_path / "odd.bmp") as im:
        assert np.asarray(im)[~_hole()].tobytes() == _img(seed=2)[~_hole()].tobytes()


def test_photoshop_layers_are_not_carried_and_a_big_exif_does_not_stop_a_jpeg(tmp_path, mask):
    """A TIFF's Photoshop layers (37724) and image resources (34377, with its thumbnail) hold the
    picture as it was: carried into the output, Photoshop would show them over the filled
    pixels. A block of tags larger than one JPEG segment failed the image ("EXIF data is too
    long"): the JPEG is written without it, as a too-large XMP packet is."""
    from PIL import TiffImagePlugin

    imgs = tmp_path / "images"
    imgs.mkdir()
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[34377] = b"8BIM" + bytes(100_000)
    ifd.tagtype[34377] = 7  # (UNDEFINED: bytes)
    ifd[37724] = b"Adobe Photoshop Document Data Block" + bytes(5000)
    ifd.tagtype[37724] = 7
    ifd[305] = "an editor"  # (Software: carried)
    Image.fromarray(_img()).save(imgs / "layered.tif", tiffinfo=ifd)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x927C] = bytes(70_000)  # a camera's MakerNote
    Image.fromarray(_img(seed=1)).save(imgs / "maker.png", exif=exif)
    code, _, stderr = _run(imgs, mask, tmp_path / "tif")
    assert code == 0, stderr
    with Image.open(tmp_path / "tif" / "layered.tif") as im:
        assert 37724 not in im.tag_v2 and 34377 not in im.tag_v2 and im.tag_v2.get(305) == "an editor"
    code, _, stderr = _run(imgs, mask, tmp_path / "jpg", "--format", "jpeg")
    assert code == 0 and "failed" not in stderr, stderr
    with Image.open(tmp_path / "jpg" / "layered.jpg") as im:
        assert im.getexif().get(305) == "an editor"
    with Image.open(tmp_path / "jpg" / "maker.jpg") as im:
        assert not im.info.get("exif")


def _bmp_ppm(path) -> tuple[int, int]:
    return struct.unpack("<ii", path.read_bytes()[38:46])  # (the header's pixels a metre)


def test_a_resolution_the_file_never_had_is_not_written(tmp_path, mask):
    """Pillow reads a TIFF without resolution tags as 1 dpi, a JPEG whose EXIF has no
    XResolution as 72 dpi, and writes 96 dpi into a BMP that is given none: the outputs claimed
    a resolution the inputs never had (a 1-dpi page 80 inches wide in an editor). Resolutions the
    files do record are kept."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(imgs / "bare.tif"), _img())  # (no resolution tags)
    cv2.imwrite(str(imgs / "bare.bmp"), _img(seed=1))  # (0 pixels a metre)
    exif = Image.Exif()
    exif[0x010F] = "camera"  # (an EXIF without a resolution)
    Image.fromarray(_img(seed=2)).save(imgs / "bare.jpg", exif=exif)
    Image.fromarray(_img(seed=3)).save(imgs / "set.tif", dpi=(300, 300))
    Image.fromarray(_img(seed=4)).save(imgs / "set.jpg", dpi=(150, 150))
    Image.fromarray(_img(seed=5)).save(imgs / "set.bmp", dpi=(200, 200))
    exif = Image.Exif()
    exif[0x011A], exif[0x011B] = 300, 300  # (no unit: EXIF's default, inches; Pillow says 72)
    Image.fromarray(_img(seed=6)).save(imgs / "no_unit.jpg", exif=exif)
    code, _, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 0, stderr
    code, _, stderr = _run(imgs / "no_unit.jpg", mask, tmp_path / "no_unit.tif")
    assert code == 0, stderr
    with Image.open(tmp_path / "no_unit.tif") as im:
        assert (im.tag_v2.get(282), im.tag_v2.get(283)) == (300, 300)
    out = tmp_path / "out"
    with Image.open(out / "bare.tif") as im:
        assert not {282, 283, 296} & set(im.tag_v2), dict(im.tag_v2)
    with Image.open(out / "bare.jpg") as im:
        assert im.info.get("jfif_unit") == 0 and im.info.get("jfif_density") == (1, 1)
    assert _bmp_ppm(out / "bare.bmp") == (0, 0)
    with Image.open(out / "set.tif") as im:
        assert (im.tag_v2.get(282), im.tag_v2.get(283)) == (300, 300)
    with Image.open(out / "set.jpg") as im:
        assert im.info.get("jfif_unit") == 1 and im.info.get("jfif_density") == (150, 150)
    assert _bmp_ppm(out / "set.bmp") == _bmp_ppm(imgs / "set.bmp") != (0, 0)


# -- more than 8 bits per channel ---------------------------------------------------------------

def test_sixteen_bit_colour_is_refused_not_written_at_8_bits(tmp_path, mask):
    imgs = tmp_path / "images"
    imgs.mkdir()
    deep = np.random.default_rng(3).integers(0, 65536, (H, W, 4), dtype=np.uint16)

    def rows(ch):
        return [deep[y, :, :ch].astype(">u2").tobytes() for y in range(H)]

    (imgs / "rgb48.png").write_bytes(_png(W, H, 16, 2, rows(3)))
    (imgs / "rgba64.png").write_bytes(_png(W, H, 16, 6, rows(4)))
    (imgs / "grey_alpha32.png").write_bytes(_png(W, H, 16, 4, rows(2)))
    (imgs / "rgb48.tif").write_bytes(_tiff(W, H, (16, 16, 16), 2, deep[..., :3].astype("<u2").tobytes()))
    (imgs / "rgb48.ppm").write_bytes(b"P6\n%d %d\n65535\n" % (W, H) + deep[..., :3].astype(">u2").tobytes())
    Image.fromarray(deep[..., 0].astype(np.float32), "F").save(imgs / "float.tif")
    Image.fromarray(_img()).save(imgs / "ok.png")
    code, stdout, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 1 and "done 1, skipped 0, failed 6" in stdout, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 6, stderr
    for name in ("rgb48.png", "rgba64.png", "grey_alpha32.png", "rgb48.tif", "rgb48.ppm"):
        (line,) = [ln for ln in lines if f"{name}:" in ln]
        assert "16 bits per channel" in line and "8-bit" in line, line
    (line,) = [ln for ln in lines if "float.tif:" in ln]
    assert "32-bit floating point" in line, line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fastfill-failures.jsonl", "ok.png"]


def test_sixteen_bit_grey_keeps_its_depth_and_transparency(tmp_path, mask):
    """16-bit grey stays 16-bit outside the hole in PNG, TIFF and PGM, and a 16-bit grey PNG's
    transparent value stays transparent (the hole is opaque)."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    g = np.random.default_rng(4).integers(0, 65536, (H, W), dtype=np.uint16)
    g[0, :5] = 4242
    Image.fromarray(g).save(imgs / "t.png", transparency=4242)
    Image.fromarray(g).save(imgs / "g.tif")
    (imgs / "g.pgm").write_bytes(b"P5\n%d %d\n65535\n" % (W, H) + g.astype(">u2").tobytes())
    hole = _hole()
    code, _, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 0, stderr
    for name in ("t.png", "g.tif", "g.pgm"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.mode in ("I;16", "I;16B", "I"), (name, im.mode)
            got = np.asarray(im).astype(np.int64)
        np.testing.assert_array_equal(got[~hole], g[~hole], name)
    with Image.open(tmp_path / "out" / "t.png") as im:
        assert im.info.get("transparency") == 4242
        assert (np.asarray(im)[hole] != 4242).all()


# -- unreadable EXIF ----------------------------------------------------------------------------

@pytest.mark.parametrize("exif", [b"Exif\x00\x00XX\x00\x2a\x00\x00\x00\x08", b"Exif\x00\x00MM",
                                  b"Exif\x00\x00" + bytes(range(40))])
def test_exif_with_a_bad_tiff_header_costs_the_metadata_not_the_pixels(tmp_path, mask, exif):
    imgs = tmp_path / "images"
    imgs.mkdir()
    Image.fromarray(_img()).save(imgs / "a.jpg", exif=exif, quality=95)
    code, stdout, stderr = _run(imgs, mask, tmp_path / "out")
    assert code == 0 and "done 1" in stdout, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("note: ") and "a.jpg" in line and "damaged EXIF dropped, pixels kept" in line
    with Image.open(tmp_path / "out" / "a.jpg") as im:
        assert im.size == (W, H) and not im.info.get("exif")
