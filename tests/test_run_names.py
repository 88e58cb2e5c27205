"""`fastfill run` and the names and paths it is given: outputs that would replace inputs, the
failures file among the outputs, names that are not UTF-8 or hold a newline, unreadable
folders, names at the file-name limit, a full disk under the report, symlink loops, mask
problems named as such. Real files and real processes (the harmonic fill: no model needed)."""

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import held_to_permissions, invoke

ROOT = Path(__file__).resolve().parents[1]


def _img(path, seed=0, size=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        path, format="PNG")


def _mask(path, size=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size, size), np.uint8)
    m[8:16, 8:16] = 255
    Image.fromarray(m).save(path, format="PNG")


def _run(*args, preexec_fn=None, cwd=None):
    """`fastfill run --method harmonic -q ARGS` in a real process; (code, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "fastfill.cli", "run", "--method", "harmonic", "-q"]
    cmd += [os.fsencode(a) if isinstance(a, (str, Path)) else a for a in args]
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=120, preexec_fn=preexec_fn, cwd=cwd)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


@pytest.fixture
def pair(tmp_path):
    _img(tmp_path / "images" / "a.png")
    _mask(tmp_path / "masks" / "a.png")
    return tmp_path


# -- 4: -o is, or is inside, MASKS; -o is IMAGES ---------------------------------------------------

@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_that_is_or_is_inside_the_masks_or_the_images_is_refused(pair, overwrite):
    flags = ["--overwrite"] if overwrite else []
    images, masks = pair / "images", pair / "masks"
    before = {p: p.read_bytes() for p in (images / "a.png", masks / "a.png")}
    cases = [  # (IMAGES, MASKS, -o, what the line says)
        (images, masks, masks, "is MASKS itself"),
        (images, masks, masks / "sub", "is inside MASKS"),
        (images, masks, images, "is IMAGES itself"),
        (images / "a.png", masks / "a.png", masks / "a.png", "is MASKS itself"),  # file mode
        (images / "a.png", masks / "a.png", images / "a.png", "is IMAGES itself"),
        (images, masks / "a.png", masks, "would replace the input"),  # MASKS one file in -o
    ]
    for i, m, o, want in cases:
        code, out, err = invoke("run", "--method", "harmonic", "-q", *flags, i, m, "-o", o)
        assert code == 2 and want in err and err.count("\n") == 1, (o, err)
        assert "no images found" not in err and "skipped" not in out
    assert {p: p.read_bytes() for p in before} == before
    assert not (masks / "sub").exists()
    # an output folder inside IMAGES stays allowed (it is left out of the search)
    code, out, _ = invoke("run", "--method", "harmonic", "-q", *flags, images, masks, "-o", images / "out")
    assert code == 0 and "done 1" in out


# -- 5: an image named like the failures file --------------------------------------------------------

def test_an_output_named_like_the_failures_file_is_kept(pair):
    _img(pair / "images" / "fastfill-failures.jsonl", seed=1)  # a PNG whatever its name
    _mask(pair / "masks" / "fastfill-failures.png")
    out = pair / "out"
    code, stdout, _ = _run(pair / "images", pair / "masks", "-o", out)
    assert code == 0 and "done 2, skipped 0, failed 0" in stdout
    with Image.open(out / "fastfill-failures.jsonl") as im:  # still the filled image
        assert im.format == "PNG" and im.size == (32, 32)
    # a run with a failure writes its report beside it, not over it, and says where
    (pair / "images" / "bad.png").write_bytes(b"not an image")
    code, stdout, err = _run("--overwrite", pair / "images", pair / "masks", "-o", out)
    assert code == 1 and "failed 1" in stdout
    assert "failures listed in" in err and "fastfill-failures-1.jsonl" in err
    with Image.open(out / "fastfill-failures.jsonl") as im:
        assert im.format == "PNG"
    rows = [json.loads(line) for line in (out / "fastfill-failures-1.jsonl").read_text().splitlines()]
    assert [Path(r["file"]).name for r in rows] == ["bad.png"]
    # a later clean run removes its own report only
    (pair / "images" / "bad.png").unlink()
    code, stdout, _ = _run("--overwrite", pair / "images", pair / "masks", "-o", out)
    assert code == 0
    with Image.open(out / "fastfill-failures.jsonl") as im:
        assert im.format == "PNG"


# -- 6: names that are not UTF-8, names with a newline -----------------------------------------------

def test_names_that_are_not_utf8_or_hold_a_newline_are_printed_and_recorded_safely(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _img(images / "good.png")
    _mask(masks / "good.png")
    raw = os.fsencode(str(images)) + b"/bad\xff.png"
    with open(raw, "wb") as f:
        f.write(b"not an image")
    _img(Path(os.fsdecode(os.fsencode(str(images)) + b"/two\nlines.png")), seed=2)  # no mask
    stale = tmp_path / "out" / "fastfill-failures.jsonl"
    stale.parent.mkdir()
    stale.write_text('{"file": "stale"}\n')
    code, stdout, err = _run(images, masks, "-o", tmp_path / "out")
    assert code == 1, err
    assert "done 1, skipped 0, failed 2" in stdout
    assert "internal error" not in err
    lines = err.splitlines()
    assert any(line.startswith("failed: ") and line.endswith("bad\\xff.png: not an image in a format "
                                                            "fastfill reads (PNG, JPEG, WEBP, TIFF, "
                                                            "BMP, GIF, PPM, TGA)") for line in lines), err
    assert any(line.startswith("failed: ") and "two\\nlines.png: no mask found" in line for line in lines), err
    assert len([ln for ln in lines if ln.startswith("failed: ")]) == 2 and len(lines) == 2, err
    rows = [json.loads(line) for line in stale.read_text(encoding="utf-8").splitlines()]
    assert sorted(Path(r["file"]).name for r in rows) == ["bad\\xff.png", "two\\nlines.png"]


# -- 7: an unreadable sub-folder ---------------------------------------------------------------------

def _tree_with_sub(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    _img(images / "a.png")
    _img(images / "sub" / "b.png", seed=1)
    _mask(masks / "a.png")
    _mask(masks / "sub" / "b.png")
    return images, masks


def _assert_the_sub_folder_failed(images, code, stdout, err):
    assert code == 1, err
    assert "done 1, skipped 0, failed 1" in stdout
    assert f"failed: {images / 'sub'}: cannot read folder (Permission denied)" in err.splitlines()


def test_an_unreadable_sub_folder_is_a_failure_line(tmp_path):
    """A real folder of mode 0 in a real process; as root, one held to file permissions
    (conftest.held_to_permissions)."""
    preexec = held_to_permissions()
    images, masks = _tree_with_sub(tmp_path)
    (images / "sub").chmod(0)
    try:
        code, stdout, err = _run(images, masks, "-o", tmp_path / "out", preexec_fn=preexec)
    finally:
        (images / "sub").chmod(0o755)
    _assert_the_sub_folder_failed(images, code, stdout, err)


def test_an_unreadable_sub_folder_is_a_failure_line_wherever_the_tests_run(tmp_path, monkeypatch):
    """The same refusal injected into this process (listing the folder raises the
    PermissionError a user without read permission gets), so that it runs even where nothing can
    be held to permissions."""
    images, masks = _tree_with_sub(tmp_path)
    denied, real = str(images / "sub"), os.scandir

    def scandir(path=".", *args):
        if isinstance(path, (str, os.PathLike)) and os.fspath(path) == denied:
            raise PermissionError(13, "Permission denied", denied)
        return real(path, *args)

    monkeypatch.setattr(os, "scandir", scandir)
    code, stdout, err = invoke("run", "--method", "harmonic", "-q", images, masks, "-o", tmp_path / "out")
    _assert_the_sub_folder_failed(images, code, stdout, err)


# -- 8: a file name at the limit ---------------------------------------------------------------------

def test_a_250_byte_name_is_written_and_its_stale_temporary_files_removed(tmp_path):
    from fastfill.files import codecs as fio

    name = "é" * 60 + "x" * 126 + ".png"  # 250 bytes in UTF-8
    assert len(os.fsencode(name)) == 250
    _img(tmp_path / "images" / name)
    _mask(tmp_path / "masks" / name)
    out = tmp_path / "out"
    out.mkdir()
    # what a killed run would have left for this output, and another file's that must stay
    fio.atomic_write(out / "other.png", lambda t: None, overwrite=False)
    stale = Path(tempfile.mkstemp(prefix="." + fio._temp_stem(name) + ".", suffix=".tmp", dir=out)[1])
    code, stdout, err = _run(tmp_path / "images", tmp_path / "masks", "-o", out)
    assert code == 0 and "done 1, skipped 0, failed 0" in stdout, err
    with Image.open(out / name) as im:
        assert im.size == (32, 32)
    assert not stale.exists() and (out / "other.png").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([name, "other.png"])


# -- 9: no room for the failures file ----------------------------------------------------------------

def test_the_summary_comes_first_when_the_failures_file_cannot_be_written(tmp_path):
    images = tmp_path / "images"
    _img(images / "a.png", size=64)  # ~12 kB: over the limit below, as is the failures file
    _mask(tmp_path / "m.png", size=64)

    def no_room():  # every file this process writes is cut at 100 bytes, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    out = tmp_path / "out"
    code, stdout, err = _run(images, tmp_path / "m.png", "-o", out, preexec_fn=no_room)
    assert code == 1, err
    assert "done 0, skipped 0, failed 1" in stdout
    lines = err.splitlines()
    assert lines[0].startswith(f"failed: {images / 'a.png'}: ")
    assert lines[-1].startswith(f"error: cannot write failures file {out / 'fastfill-failures.jsonl'}")
    assert list(out.iterdir()) == []  # made (and proved writable) at the start; nothing left in it


# -- 10: an output through a symlink loop -------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", "/", "/x.png"])
def test_an_output_through_a_symlink_loop_is_one_line(pair, suffix):
    (pair / "loop").symlink_to("loop")
    code, out, err = invoke("run", "--method", "harmonic", "-q", pair / "images" / "a.png",
                            pair / "masks" / "a.png", "-o", str(pair / "loop") + suffix)
    assert code == 2 and err.count("\n") == 1, err
    assert "Too many levels of symbolic links" in err and "internal error" not in err


# -- 11: mask problems name the mask ---------------------------------------------------------------------

def test_a_bad_mask_is_named_in_its_images_failure_line(pair):
    _img(pair / "images" / "b.png", seed=1)
    (pair / "masks" / "b.png").write_bytes(b"not an image")
    _img(pair / "images" / "c.png", seed=2, size=40)
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(pair / "masks" / "c.png")
    code, stdout, err = _run(pair / "images", pair / "masks", "-o", pair / "out")
    assert code == 1 and "done 1, skipped 0, failed 2" in stdout
    assert (f"failed: {pair / 'images' / 'b.png'}: mask {pair / 'masks' / 'b.png'}: not an image"
            in err), err
    assert f"failed: {pair / 'images' / 'c.png'}: mask {pair / 'masks' / 'c.png'} is 40x32" in err, err
