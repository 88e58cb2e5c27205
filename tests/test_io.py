"""fastfill.files.codecs: discovery, pairing, decoding (modes, EXIF), mask conversion, atomic writes."""

import os

import numpy as np
import pytest
from PIL import Image

from fastfill.files import codecs as io, runner, worklist
from fastfill.files.fs import LocalFS
from fastfill.errors import InputError


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- discovery and pairing ----------------------------------------------------------------------

def test_find_images_by_content_and_suffix(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(_rgb()).save(tmp_path / "a" / "b" / "x.jpg")
    Image.fromarray(_rgb()).save(tmp_path / "noext", format="PNG")  # image without a suffix
    (tmp_path / "fake.png").write_text("not an image")  # image suffix, not an image
    (tmp_path / "notes.txt").write_text("ignored")  # neither
    (tmp_path / ".hidden.png").write_bytes(b"ignored too")
    found = {c.rel.as_posix(): c for c in io.find_images(tmp_path)}
    assert set(found) == {"a/b/x.jpg", "noext", "fake.png"}
    assert found["a/b/x.jpg"].format == "JPEG" and found["noext"].format == "PNG"
    assert found["fake.png"].format is None and "not an image" in found["fake.png"].error


def test_find_images_missing_root(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.find_images(tmp_path / "nope")


def _masks(root):
    """The runner's mask lookup for a local MASKS argument."""
    return worklist.mask_finder(LocalFS(), str(root))


def test_masks_pair_by_relative_path_and_stem(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "a" / "x.png")
    Image.new("L", (4, 4)).save(tmp_path / "x.png")
    (tmp_path / "a" / "x.txt").write_text("a note with the same stem")
    find = _masks(tmp_path)
    assert find("a/x.jpg") == str(tmp_path / "a" / "x.png")
    assert find("x.tif") == str(tmp_path / "x.png")
    with pytest.raises(InputError, match="no mask found"):
        find("b/x.jpg")
    single = _masks(tmp_path / "x.png")
    assert single("any/thing.jpg") == str(tmp_path / "x.png")


def test_masks_ambiguous(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "x.png")
    Image.new("L", (4, 4)).save(tmp_path / "x.bmp")
    with pytest.raises(InputError, match="several masks"):
        _masks(tmp_path)("x.jpg")


# -- decoding -----------------------------------------------------------------------------------

def test_decode_modes(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    d = io.decode_image(tmp_path / "rgb.png")
    assert d.rgb.dtype == np.uint8 and d.rgb.shape == (24, 32, 3) and np.array_equal(d.rgb, rgb)
    assert d.format == "PNG" and d.alpha is None

    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    d = io.decode_image(tmp_path / "grey.png")
    assert d.mode == "L" and np.array_equal(d.rgb[:, :, 1], rgb[:, :, 0])

    rgba = np.dstack([rgb, np.arange(24 * 32).reshape(24, 32).astype(np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    d = io.decode_image(tmp_path / "rgba.png")
    assert np.array_equal(d.alpha, rgba[:, :, 3]) and np.array_equal(d.rgb, rgb)

    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    d = io.decode_image(tmp_path / "pal.png")
    assert d.mode == "P" and d.rgb.shape == (24, 32, 3)

    g16 = (np.arange(24 * 32).reshape(24, 32) * 80).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    d = io.decode_image(tmp_path / "g16.png")
    assert d.gray16 is not None and np.array_equal(d.gray16, g16)
    assert abs(int(d.rgb[-1, -1, 0]) - round(int(g16[-1, -1]) / 257)) <= 1


def test_decode_applies_exif_orientation(tmp_path):
    rgb = _rgb(20, 30)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    exif[0x010F] = "Camera maker"  # a tag that is carried
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    d = io.decode_image(tmp_path / "rot.jpg")
    assert d.rgb.shape == (30, 20, 3)  # displayed orientation
    np.testing.assert_array_equal(d.rgb, np.rot90(np.asarray(Image.open(tmp_path / "rot.jpg")), -1))
    ex = Image.Exif()  # carried to the output without the orientation tag
    ex.load(d.info["exif"])
    assert dict(ex) == {0x010F: "Camera maker"}


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_an_upright_photos_exif_says_its_upright_size(tmp_path, fmt):
    """A phone photo stored sideways (orientation 6) is turned upright: the EXIF pixel
    dimensions it carries said the stored size, the wrong way round."""
    im = Image.fromarray(_rgb(20, 30))  # stored 30 wide, 20 high
    exif = im.getexif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769).update({0xA002: 30, 0xA003: 20})
    path = tmp_path / f"rot.{fmt.lower()}"
    im.save(path, exif=exif.tobytes())
    d = io.decode_image(path)
    assert d.rgb.shape == (30, 20, 3)
    ex = Image.Exif()
    ex.load(d.info["exif"])
    sub = ex.get_ifd(0x8769)
    assert (sub[0xA002], sub[0xA003]) == (20, 30) and 0x0112 not in ex


def test_decode_errors(tmp_path):
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        io.decode_image(tmp_path / "t.png")
    buf = tmp_path / "full.jpg"
    Image.fromarray(_rgb(64, 64)).save(buf, quality=90)
    data = buf.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        io.decode_image(tmp_path / "trunc.jpg")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(InputError):
        io.decode_image(tmp_path / "corrupt.png")


def test_decompression_bomb_limit_kept(tmp_path, monkeypatch):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px > 2 * 1000 -> error
    with pytest.raises(InputError, match="Pillow.s guard against decompression bombs"):
        io.decode_image(tmp_path / "big.png")


# -- masks --------------------------------------------------------------------------------------

def test_mask_conversions(tmp_path):
    g = np.zeros((8, 10), np.uint8)
    g[2:4, 3:6] = 200
    g[5, 5] = 100  # below the threshold
    Image.fromarray(g).save(tmp_path / "g.png")
    m = io.decode_mask(tmp_path / "g.png", (8, 10))
    assert m.dtype == bool and m.sum() == 6
    assert io.decode_mask(tmp_path / "g.png", (8, 10), invert=True).sum() == 80 - 6
    assert io.decode_mask(tmp_path / "g.png", (8, 10), threshold=100).sum() == 7

    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[1, 1] = (255, 255, 255)
    rgb[2, 2] = (255, 0, 0)  # red: luma 76 -> keep
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert io.decode_mask(tmp_path / "rgb.png", (8, 10)).sum() == 1

    # white strokes on a transparent layer: opaque white = fill, transparent = keep
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[3, 4:7, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert io.decode_mask(tmp_path / "a.png", (8, 10)).sum() == 3

    Image.fromarray(g > 0).save(tmp_path / "one.png")  # mode "1"
    assert io.decode_mask(tmp_path / "one.png", (8, 10)).sum() == 7


def test_mask_size_mismatch_and_resize(tmp_path):
    g = np.zeros((8, 10), np.uint8)
    g[:4] = 255
    Image.fromarray(g).save(tmp_path / "m.png")
    with pytest.raises(InputError, match=r"mask .*m.png is 10x8 but image x.jpg is 20x16 .*--resize-mask"):
        io.decode_mask(tmp_path / "m.png", (16, 20), image_name="image x.jpg")
    m = io.decode_mask(tmp_path / "m.png", (16, 20), resize=True)
    assert m.shape == (16, 20) and m[:7].all() and not m[9:].any()


def test_dilate():
    m = np.zeros((20, 30), bool)
    m[5, 7] = True
    d = io.dilate_mask(m, 2)
    assert d.sum() == 25 and d[3:8, 5:10].all()
    edge = np.zeros((5, 5), bool)
    edge[0, 0] = True
    assert io.dilate_mask(edge, 10).all()
    assert np.array_equal(io.dilate_mask(m, 0), m)


# -- writing ------------------------------------------------------------------------------------

def test_restore_mode_keeps_alpha_and_16bit_outside_hole(tmp_path):
    rgb = _rgb(8, 8)
    alpha = np.full((8, 8), 77, np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    src = io.decode_image(tmp_path / "a.png")
    hole = np.zeros((8, 8), bool)
    hole[2:4, 2:4] = True
    out = io.restore_mode(rgb, src, hole, "PNG")
    a = np.asarray(out)
    # the hole's alpha is the alpha around it, filled: 77 all round
    assert out.mode == "RGBA" and (a[hole, 3] == 77).all() and (a[~hole, 3] == 77).all()
    assert np.array_equal(a[~hole, :3], rgb[~hole])
    assert np.array_equal(a[hole, :3], rgb[hole])  # even alpha around: the fill's colour as it is
    assert io.restore_mode(rgb, src, hole, "JPEG").mode == "RGB"
    everything = np.asarray(io.restore_mode(rgb, src, np.ones((8, 8), bool), "PNG"))
    assert (everything[..., 3] == 255).all()  # all hole: nothing to take the alpha from, opaque

    g16 = np.full((8, 8), 12345, np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    src = io.decode_image(tmp_path / "g16.png")
    res = np.full((8, 8, 3), 200, np.uint8)
    o = np.asarray(io.restore_mode(res, src, hole, "PNG"))
    # 200 x 257 plus what the 16-bit surroundings have below their 8-bit level (12345 - 48 x 257)
    assert o.dtype == np.uint16 and (o[~hole] == 12345).all() and (o[hole] == 200 * 257 + 9).all()


def test_save_atomic_no_overwrite(tmp_path):
    img = Image.fromarray(_rgb())
    p = tmp_path / "sub" / "o.png"
    io.save_image(img, p, "PNG")
    assert p.exists() and not [f for f in p.parent.iterdir() if f.name.startswith(".")]
    before = p.read_bytes()
    with pytest.raises(InputError, match="exists"):
        io.save_image(Image.fromarray(_rgb(seed=5)), p, "PNG")
    assert p.read_bytes() == before
    io.save_image(Image.fromarray(_rgb(seed=5)), p, "PNG", overwrite=True)
    assert p.read_bytes() != before
    assert not [f for f in p.parent.iterdir() if f.name.startswith(".")]  # no temp files left


def test_check_writable_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        io.check_writable_dir(tmp_path / "file")
    with pytest.raises(InputError, match="not writable"):
        io.check_writable_dir(tmp_path / "file" / "sub")
    assert io.check_writable_dir(tmp_path / "new" / "dir").is_dir()


_CHECK_WRITABLE = """
import sys
from fastfill.errors import InputError
from fastfill.files import codecs
try:
    codecs.check_writable_dir(sys.argv[1])
    print("writable")
except InputError as e:
    print(f"InputError: {e}")
"""


def test_check_writable_dir_permissions(tmp_path):
    """A real read-only folder, checked in a real process; as root, one held to file permissions
    (conftest.held_to_permissions). test_permission_denied_is_reported injects the same error
    into this process."""
    import subprocess
    import sys

    from conftest import held_to_permissions

    preexec = held_to_permissions()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        p = subprocess.run([sys.executable, "-c", _CHECK_WRITABLE, str(ro)], capture_output=True, text=True,
                           timeout=120, preexec_fn=preexec)
        ok = subprocess.run([sys.executable, "-c", _CHECK_WRITABLE, str(tmp_path)], capture_output=True,
                            text=True, timeout=120, preexec_fn=preexec)
    finally:
        ro.chmod(0o700)
    want = f"InputError: output folder {ro} is not writable: Permission denied"
    assert p.stdout.splitlines() == [want], p.stderr
    assert ok.stdout.splitlines() == ["writable"], ok.stderr  # the same process, a folder it may write
    assert list(ro.iterdir()) == [] and list(tmp_path.iterdir()) == [ro]  # no probe left behind


def test_normalize_format():
    assert io.normalize_format("jpg") == "JPEG" and io.normalize_format(".PNG") == "PNG"
    assert io.normalize_format(None) is None
    with pytest.raises(InputError, match="unknown output format"):
        io.normalize_format("xyz")


def test_frame_number():
    assert io.frame_number(io.Path("frame_0012.png")) == 12
    assert io.frame_number(io.Path("v2_0007.png")) == 7
    assert io.frame_number(io.Path("mask.png")) is None


def test_permission_denied_is_reported(tmp_path, monkeypatch):
    """What a read-only folder does for a non-root user, simulated so that it runs as root too."""
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io.tempfile, "mkstemp", denied)
    with pytest.raises(InputError, match="not writable: Permission denied"):
        io.check_writable_dir(tmp_path)
    with pytest.raises(InputError, match="cannot write to .*Permission denied"):
        io.save_image(Image.fromarray(_rgb()), tmp_path / "x.png", "PNG")
    assert not (tmp_path / "x.png").exists()


def _umask():
    u = os.umask(0o022)
    os.umask(u)
    return u


def test_outputs_get_the_usual_mode_not_mkstemp_0600(tmp_path):
    """Every file fastfill writes has the mode open() would give: 0o666 & ~umask."""
    want = 0o666 & ~_umask()
    io.save_image(Image.fromarray(_rgb()), tmp_path / "a.png", "PNG")
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == want
    io.save_image(Image.fromarray(_rgb()), tmp_path / "a.png", "PNG", overwrite=True)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == want
    io.atomic_write(tmp_path / "sub" / "b.bin", lambda t: open(t, "wb").write(b"x"), overwrite=False)
    assert (tmp_path / "sub" / "b.bin").stat().st_mode & 0o777 == want


def test_atomic_write_failure_and_no_clobber_leave_no_temp_file(tmp_path):
    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError, match="encoder died"):
        io.atomic_write(tmp_path / "x.png", boom, overwrite=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "x.png").write_bytes(b"precious")
    with pytest.raises(FileExistsError):  # appeared while writing: never replaced
        io.atomic_write(tmp_path / "x.png", lambda t: open(t, "wb").write(b"new"), overwrite=False)
    assert (tmp_path / "x.png").read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    io.atomic_write(tmp_path / "x.png", lambda t: open(t, "wb").write(b"new"), overwrite=True)
    assert (tmp_path / "x.png").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_output_with_trailing_separator_is_a_folder(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "x.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "m.png")
    for sep in {"/", os.sep}:
        p = runner.find_work(tmp_path / "x.png", tmp_path / "m.png", str(tmp_path / "results.d") + sep)
        assert [r["out"] for r in p.images] == [str(tmp_path / "results.d" / "x.png")]
        assert not p.single_file
    # no separator: a file, whose suffix must name a format fastfill writes
    with pytest.raises(InputError, match=r"\.d is not a format fastfill writes"):
        runner.find_work(tmp_path / "x.png", tmp_path / "m.png", tmp_path / "results.d")
    p = runner.find_work(tmp_path / "x.png", tmp_path / "m.png", tmp_path / "results.tif")
    assert [r["out"] for r in p.images] == [str(tmp_path / "results.tif")] and p.single_file
    assert p.images[0]["format"] == "TIFF"


def test_only_regular_files_are_candidates(tmp_path):
    """A FIFO in the images or masks tree is not opened (reading one blocks for ever)."""
    import threading

    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(imgs / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "a.png")
    os.mkfifo(imgs / "b.png")
    os.mkfifo(masks / "b.png")
    result = {}
    t = threading.Thread(target=lambda: result.update(
        found=[(c.rel.as_posix(), c.error) for c in io.find_images(imgs)], mask=_masks(masks)("a.png")))
    t.daemon = True
    t.start()
    t.join(20)
    assert not t.is_alive(), "discovery blocked on a FIFO"
    # the FIFO with an image's name is a failure line, never opened
    assert sorted(result["found"]) == [("a.png", None), ("b.png", "not a regular file (a FIFO)")]
    assert os.path.basename(result["mask"]) == "a.png"
    with pytest.raises(InputError, match="not a regular file or folder"):
        io.find_images(imgs / "b.png")


def test_sha256_of_a_file_and_of_a_folder(tmp_path):
    import hashlib

    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.bin").write_bytes(b"bee")
    (tmp_path / "d" / "sub" / "a.bin").write_bytes(b"ay")
    assert io.sha256_file(tmp_path / "d" / "b.bin") == hashlib.sha256(b"bee").hexdigest()
    want = hashlib.sha256(b"b.bin\0bee" + b"sub/a.bin\0ay").hexdigest()  # sorted names, then bytes
    assert io.sha256_file(tmp_path / "d") == want
    (tmp_path / "d" / "sub" / "a.bin").rename(tmp_path / "d" / "sub" / "c.bin")  # a rename changes it
    assert io.sha256_file(tmp_path / "d") != want


def test_an_image_past_pillows_bomb_guard_names_the_limit():
    """A header claiming 10 gigapixels: Pillow refuses it before its size is read; the refusal says
    which limit (it quoted Pillow's 178956970 pixels alone, on a server set to 50 megapixels)."""
    import struct
    import zlib

    from fastfill.errors import SizeLimitError
    from fastfill.files import codecs

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(SizeLimitError, match=r"over the limit of 50 megapixels \(--max-pixels\); Pillow's guard"):
        codecs.read_item(png, png, codecs.FileOptions())
    assert codecs.PILLOW_MAX_PIXELS == 2 * __import__("PIL.Image").Image.MAX_IMAGE_PIXELS


def test_importing_the_codecs_with_pillows_guard_turned_off():
    """``Image.MAX_IMAGE_PIXELS = None`` (how applications turn Pillow's guard off) made importing
    fastfill's codecs a TypeError."""
    import subprocess
    import sys

    code = ("from PIL import Image; Image.MAX_IMAGE_PIXELS = None; "
            "from fastfill.files import codecs; print(codecs.PILLOW_MAX_PIXELS)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and int(r.stdout) > 0, r.stderr
