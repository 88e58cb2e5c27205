"""`fastfill run` end to end on real files with the real tiny model (CliRunner and a subprocess)."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import held_to_permissions, invoke

from fastfill.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
TINY = str(Path(__file__).parent / "data" / "tiny_glcic.onnx")


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h, w, box=(4, 4, 12, 14)):
    m = np.zeros((h, w), np.uint8)
    m[box[0]:box[2], box[1]:box[3]] = 255
    return m


@pytest.fixture
def tree(tmp_path):
    """images/{a.png, sub/b.jpg, sub/deep/c.png} + masks mirroring them."""
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    for rel, fmt in [("a.png", "PNG"), ("sub/b.jpg", "JPEG"), ("sub/deep/c.png", "PNG")]:
        (imgs / rel).parent.mkdir(parents=True, exist_ok=True)
        (masks / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_img(30, 41, len(rel))).save(imgs / rel, format=fmt)
        Image.fromarray(_mask(30, 41)).save((masks / rel).with_suffix(".png"))
    return tmp_path


def test_folders_nested_paths_mirror_and_formats(tree):
    out = tree / "out"
    code, stdout, stderr = invoke("run", "--engine", TINY, tree / "images", tree / "masks", "-o", out)
    assert code == 0, stderr
    assert "done 3, skipped 0, failed 0" in stdout and "images/s" in stdout
    # the header names the model and the back-end the automatic choice took, with its reason
    assert f"model: {Path(TINY).name} (glcic, prefill mean) on " in stderr
    assert "on auto (measures openvino and onnxruntime" in stderr or " (auto: " in stderr
    assert ", running on OpenVINO CPU" in stderr or ", running on CPUExecutionProvider" in stderr
    for rel, fmt in [("a.png", "PNG"), ("sub/b.jpg", "JPEG"), ("sub/deep/c.png", "PNG")]:
        with Image.open(out / rel) as im:
            assert im.format == fmt and im.size == (41, 30)
    a_in = np.asarray(Image.open(tree / "images" / "a.png"))
    a_out = np.asarray(Image.open(out / "a.png"))
    hole = _mask(30, 41) != 0
    assert np.array_equal(a_in[~hole], a_out[~hole]) and not np.array_equal(a_in[hole], a_out[hole])
    assert not [p for p in out.rglob(".*")]  # no temporary files left

    # a second run skips everything; --overwrite redoes it
    code, stdout, _ = invoke("run", "--engine", TINY, tree / "images", tree / "masks", "-o", out)
    assert code == 0 and "done 0, skipped 3" in stdout
    code, stdout, _ = invoke("run", "--engine", TINY, "--overwrite", tree / "images", tree / "masks",
                             "-o", out)
    assert code == 0 and "done 3, skipped 0" in stdout

    # --format changes the output format and suffix
    code, stdout, stderr = invoke("run", "--engine", TINY, "--format", "webp", "-q", tree / "images",
                                  tree / "masks", "-o", tree / "webp")
    assert code == 0 and "model:" not in stderr  # -q: no header
    assert sorted(p.relative_to(tree / "webp").as_posix() for p in (tree / "webp").rglob("*.webp")) \
        == ["a.webp", "sub/b.webp", "sub/deep/c.webp"]


def test_bad_inputs_fail_one_line_each_and_keep_going(tree):
    imgs, masks = tree / "images", tree / "masks"
    Image.fromarray(_img(30, 41)).save(imgs / "nomask.png")  # missing mask
    (imgs / "text.png").write_text("I am not a PNG")  # a text file named .png
    full = imgs / "trunc.jpg"
    Image.fromarray(_img(64, 64)).save(full, quality=95)
    full.write_bytes(full.read_bytes()[:900])  # truncated
    Image.fromarray(_mask(64, 64)).save(masks / "trunc.png")
    (imgs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))  # corrupt
    Image.fromarray(_mask(64, 64)).save(masks / "corrupt.png")
    Image.fromarray(_img(30, 41)).save(imgs / "wrongsize.png")
    Image.fromarray(_mask(10, 10)).save(masks / "wrongsize.png")
    out = tree / "out"
    out.mkdir()
    Image.fromarray(_img(5, 5)).save(out / "a.png")  # an existing output
    before = (out / "a.png").read_bytes()

    code, stdout, stderr = invoke("run", "--engine", TINY, imgs, masks, "-o", out)
    assert code == 1
    assert "done 2, skipped 1, failed 5" in stdout
    lines = [ln for ln in stderr.splitlines() if ln.startswith("failed: ")]
    assert len(lines) == 5, stderr
    msg = {Path(ln.split(": ")[1]).name: ln for ln in lines}
    assert "no mask found" in msg["nomask.png"]
    assert "not an image" in msg["text.png"]
    assert "truncated" in msg["trunc.jpg"]
    assert "corrupt" in msg["corrupt.png"]
    assert "is 10x10 but image" in msg["wrongsize.png"] and "--resize-mask" in msg["wrongsize.png"]
    assert (out / "a.png").read_bytes() == before  # an existing output is not touched
    assert (out / "sub" / "b.jpg").exists() and (out / "sub" / "deep" / "c.png").exists()
    assert not (out / "wrongsize.png").exists() and not list(out.rglob(".*"))

    # --resize-mask fixes the size mismatch; the rest stays as it was
    code, stdout, _ = invoke("run", "--engine", TINY, "--resize-mask", imgs, masks, "-o", out)
    assert code == 1 and "done 1, skipped 3, failed 4" in stdout
    assert (out / "wrongsize.png").exists()


def test_single_mask_single_image_and_options(tmp_path):
    Image.fromarray(_img(40, 40)).save(tmp_path / "x.jpg", quality=95)
    m = np.full((40, 40), 255, np.uint8)
    m[10:20, 10:20] = 0  # black = fill with --invert
    Image.fromarray(m).save(tmp_path / "m.png")
    code, stdout, stderr = invoke("run", "--engine", TINY, "--invert", "--dilate", "2",
                                  tmp_path / "x.jpg", tmp_path / "m.png", "-o", tmp_path / "res.png")
    assert code == 0, stderr
    with Image.open(tmp_path / "res.png") as im:
        assert im.format == "PNG"
        res = np.asarray(im)
    src = np.asarray(Image.open(tmp_path / "x.jpg"))
    hole = np.zeros((40, 40), bool)
    hole[8:22, 8:22] = True  # the 10x10 hole grown by 2
    assert np.array_equal(res[~hole], src[~hole])
    assert (res[hole] != src[hole]).any(axis=-1).mean() > 0.5


def test_modes_round_trip(tmp_path):
    imgs = tmp_path / "i"
    imgs.mkdir()
    rgb = _img(24, 32)
    Image.fromarray(np.dstack([rgb, np.full((24, 32), 90, np.uint8)])).save(imgs / "rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(imgs / "grey.png")
    Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 250)).save(imgs / "g16.png")
    Image.fromarray(rgb).convert("P").save(imgs / "pal.png")
    im = Image.fromarray(_img(24, 32))
    exif = im.getexif()
    exif[0x0112] = 8  # rotated: displayed as 32 high, 24 wide
    im.save(imgs / "rot.jpg", exif=exif.tobytes())
    masks = tmp_path / "m"
    masks.mkdir()
    for n in ("rgba", "grey", "g16", "pal"):
        Image.fromarray(_mask(24, 32)).save(masks / f"{n}.png")
    Image.fromarray(_mask(32, 24)).save(masks / "rot.png")
    code, stdout, stderr = invoke("run", "--engine", TINY, imgs, masks, "-o", tmp_path / "o")
    assert code == 0, stderr
    o = tmp_path / "o"
    hole = _mask(24, 32) != 0
    a = np.asarray(Image.open(o / "rgba.png"))
    # the hole takes the alpha around it (90 all round), the fill's colour as it is
    assert a.shape == (24, 32, 4) and (a[~hole, 3] == 90).all() and (a[hole, 3] == 90).all()
    assert Image.open(o / "grey.png").mode == "L"
    g = np.asarray(Image.open(o / "g16.png"))
    assert g.dtype == np.uint16
    assert np.array_equal(g[~hole], rgb[:, :, 0].astype(np.uint16)[~hole] * 250)
    assert Image.open(o / "pal.png").mode == "RGB"
    with Image.open(o / "rot.jpg") as r:
        assert r.size == (24, 32) and r.getexif().get(0x0112, 1) == 1


def test_usage_errors_exit_2(tmp_path):
    Image.fromarray(_img(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(_mask(16, 16)).save(tmp_path / "m.png")
    (tmp_path / "empty").mkdir()
    code, _, err = invoke("run", "--engine", TINY, tmp_path / "empty", tmp_path / "m.png", "-o",
                          tmp_path / "o")
    assert code == 2 and "no images found" in err
    code, _, err = invoke("run", "--engine", tmp_path / "missing.onnx", tmp_path / "x.png",
                          tmp_path / "m.png", "-o", tmp_path / "o.png")
    assert code == 2 and "not found" in err
    # an output folder that cannot be created (a file is in the way)
    (tmp_path / "blocker").write_text("a file")
    code, _, err = invoke("run", "--engine", TINY, tmp_path / "empty", tmp_path / "m.png", "-o",
                          tmp_path / "blocker" / "out")
    assert code == 2
    Image.fromarray(_img(16, 16)).save(tmp_path / "empty" / "y.png")
    code, _, err = invoke("run", "--engine", TINY, tmp_path / "empty", tmp_path / "m.png", "-o",
                          tmp_path / "blocker" / "out")
    assert code == 2 and "not writable" in err and "blocker" in err
    # the flags of the other mode are errors, not silently ignored; nothing is written
    for args, want in ((("--concurrency", "2"), "--concurrency needs --ray"),
                       (("--gpus-per-worker", "1"), "--gpus-per-worker needs --ray"),
                       (("--ray", "-j", "2"), "-j/--jobs sets the local run's"),
                       (("--ray", "--device", "cuda"), "with --ray needs --gpus-per-worker")):
        code, _, err = invoke("run", "--engine", TINY, *args, tmp_path / "x.png", tmp_path / "m.png",
                              "-o", tmp_path / "flags")
        assert code == 2 and want in err, err
        assert not (tmp_path / "flags").exists()


def test_unwritable_output_folder(tmp_path):
    """A read-only output folder: one line, exit 2, nothing written. A real folder with real
    permissions in a real process; as root, one held to them (conftest.held_to_permissions).
    test_unwritable_output_folder_simulated injects the same error into this process."""
    preexec = held_to_permissions()
    Image.fromarray(_img(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(_mask(16, 16)).save(tmp_path / "m.png")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        p = subprocess.run([sys.executable, "-m", "fastfill.cli", "run", "-q", "--engine", TINY,
                            str(tmp_path / "x.png"), str(tmp_path / "m.png"), "-o", str(ro)],
                           capture_output=True, text=True, timeout=120, preexec_fn=preexec,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        ro.chmod(0o700)
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines() == [f"error: output folder {ro} is not writable: Permission denied"]
    assert list(ro.iterdir()) == []


def test_real_process_exit_codes(tree):
    """The installed entry point path: python -m fastfill.cli, exit codes from main()."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    (tree / "images" / "bad.png").write_text("nope")
    cmd = [sys.executable, "-m", "fastfill.cli", "run", "--engine", TINY, "-q",
           str(tree / "images"), str(tree / "masks"), "-o", str(tree / "out")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "failed: " in p.stderr and "bad.png" in p.stderr and "done 3" in p.stdout
    p = subprocess.run(cmd[:5] + ["/nonexistent.onnx"] + cmd[6:], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") <= 2, p.stderr


def test_unwritable_output_folder_simulated(tmp_path, monkeypatch):
    import fastfill.files.runner

    Image.fromarray(_img(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(_mask(16, 16)).save(tmp_path / "m.png")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fastfill.files.codecs.tempfile, "mkstemp", denied)
    code, _, err = invoke("run", "--engine", TINY, tmp_path / "x.png", tmp_path / "m.png", "-o",
                          tmp_path / "out")
    assert code == 2 and "not writable: Permission denied" in err


def test_single_image_into_a_folder(tmp_path):
    Image.fromarray(_img(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(_mask(16, 16)).save(tmp_path / "m.png")
    code, stdout, _ = invoke("run", "--engine", TINY, tmp_path / "x.png", tmp_path / "m.png", "-o",
                             tmp_path / "outdir")
    assert code == 0 and (tmp_path / "outdir" / "x.png").is_file()


def test_internal_error_is_one_line_and_exit_2(tmp_path, monkeypatch):
    """A bug (not a FastfillError) is not "some inputs failed" (1): one line, exit 2; the
    traceback only with FASTFILL_DEBUG=1."""
    import fastfill.files.worklist

    Image.fromarray(_img(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(_mask(16, 16)).save(tmp_path / "m.png")

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero in a bug")

    monkeypatch.setattr(fastfill.files.worklist, "_image_rows", broken)
    args = ("run", "--engine", TINY, tmp_path / "x.png", tmp_path / "m.png", "-o", tmp_path / "o")
    code, stdout, err = invoke(*args, internal_ok=True)
    assert code == 2, err
    assert err.strip().splitlines() == [
        "error: internal error: ZeroDivisionError: division by zero in a bug "
        "(set FASTFILL_DEBUG=1 for the traceback)"]
    with pytest.raises(ZeroDivisionError):
        invoke(*args, env={"FASTFILL_DEBUG": "1"}, internal_ok=True)


def test_outputs_are_not_private(tmp_path):
    """`fastfill run` outputs get 0o666 & ~umask (tempfile.mkstemp alone would give 0600)."""
    u = os.umask(0o022)
    os.umask(u)
    Image.fromarray(_img(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(_mask(16, 16)).save(tmp_path / "m.png")
    code, _, err = invoke("run", "--engine", TINY, "-q", tmp_path / "x.png", tmp_path / "m.png",
                          "-o", tmp_path / "o.png")
    assert code == 0, err
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o666 & ~u


def test_output_with_trailing_slash_is_a_folder(tmp_path):
    Image.fromarray(_img(16, 16)).save(tmp_path / "x.png")
    Image.fromarray(_mask(16, 16)).save(tmp_path / "m.png")
    code, _, err = invoke("run", "--engine", TINY, "-q", tmp_path / "x.png", tmp_path / "m.png",
                          "-o", str(tmp_path / "results.d") + "/")
    assert code == 0, err
    assert (tmp_path / "results.d" / "x.png").is_file()


def test_every_format_choice_writes_that_format(tmp_path):
    """Each --format the CLI offers produces a file Pillow reads back in that format, with the
    outside of the hole kept where the format is lossless."""
    from fastfill import cli as fcli
    from fastfill.files import codecs as fio

    img = tmp_path / "a.png"
    Image.fromarray(_img(30, 41)).save(img)
    Image.fromarray(_mask(30, 41)).save(tmp_path / "m.png")
    hole = _mask(30, 41) != 0
    for f in fcli._OUT_FORMATS:
        want = fio.normalize_format(f)
        out = tmp_path / f"out-{f}"
        code, _, stderr = invoke("run", "--method", "harmonic", "--format", f, img, tmp_path / "m.png", "-o", out)
        assert code == 0, (f, stderr)
        (written,) = list(out.iterdir())
        with Image.open(written) as im:
            assert im.format == want, f
            if want in ("PNG", "TIFF", "BMP", "PPM", "TGA"):
                np.testing.assert_array_equal(np.asarray(im.convert("RGB"))[~hole], _img(30, 41)[~hole])


def test_method_harmonic_needs_no_model(tree):
    from fastfill import ops

    out = tree / "out"
    code, stdout, stderr = invoke("run", "--method", "harmonic", tree / "images", tree / "masks", "-o", out)
    assert code == 0, stderr
    assert "done 3, skipped 0, failed 0" in stdout
    a_in = np.asarray(Image.open(tree / "images" / "a.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), ops.fill(a_in, _mask(30, 41)))
    # --method replaces the model (under --ray too: tests/test_engine_contract.py)
    code, _, stderr = invoke("run", "--method", "harmonic", "--engine", TINY, tree / "images", tree / "masks",
                             "-o", tree / "o2")
    assert code == 2 and "--method replaces the model" in stderr
    assert not (tree / "o2").exists()


def test_postscript_is_never_handed_to_ghostscript(tmp_path):
    """A file whose content is PostScript (whatever its name) is refused as not an image of a
    format fastfill reads; a `gs` first on PATH records any call, and there must be none."""
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    Image.fromarray(_img(30, 41)).save(imgs / "ok.png")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"
    for name in ("evil.eps", "evil.png"):
        (imgs / name).write_bytes(eps)
    Image.fromarray(_mask(30, 41)).save(masks / "mask.png")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    called = tmp_path / "gs-was-called"
    (bindir / "gs").write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    (bindir / "gs").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run([sys.executable, "-m", "fastfill.cli", "run", "--method", "harmonic", str(imgs),
                        str(masks / "mask.png"), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    # evil.png (an image name) is one failed line; evil.eps is not taken for an image at all
    assert "done 1" in r.stdout and "failed 1" in r.stdout
    assert r.stderr.count("not an image in a format fastfill reads") == 1 and "evil.png" in r.stderr
    assert not called.exists() and not (tmp_path / "out" / "evil.eps").exists()
    # the same for the Python API's decoder
    from fastfill.files import codecs as io
    with pytest.raises(Exception, match="not an image|cannot identify"):
        io.decode_image(imgs / "evil.png")
    assert not called.exists()


@pytest.mark.parametrize("flag,value", [("--threads", "100000"), ("-j", "1000"), ("--batch-size", "100000"),
                                        ("--concurrency", "100000"), ("--dilate", "99999999999999999999")])
def test_resource_flags_are_bounded(tree, flag, value):
    code, _, stderr = invoke("run", "--engine", TINY, flag, value, tree / "images", tree / "masks",
                             "-o", tree / "out")
    assert code == 2 and "is not in the range" in stderr
    assert not (tree / "out").exists()


# The signal tests: `fastfill run` in a real process whose reading is held after the first image
# until the test has sent its signal, so the signal always arrives while work is in progress (a
# run that finished first would prove nothing) and one that is ignored lets the run finish: the
# test then fails instead of skipping.
_GATED_RUN = """
import os, sys, threading, time
from fastfill.files import codecs
started, go = sys.argv[1], sys.argv[2]
real, lock, calls = codecs.decode_image, threading.Lock(), [0]

def gated(*args, **kwargs):
    with lock:
        calls[0] += 1
        first = calls[0] == 1
    if not first:  # the first image goes through; the rest wait for the test
        open(started, "a").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)
    return real(*args, **kwargs)

codecs.decode_image = gated
from fastfill.cli import main
main(sys.argv[3:])
"""
GATED_IMAGES = 12


def _gated_tree(tmp_path):
    imgs, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    imgs.mkdir(), masks.mkdir()
    for i in range(GATED_IMAGES):
        Image.fromarray(_img(64, 80, i)).save(imgs / f"{i:03d}.png")
    Image.fromarray(_mask(64, 80, (10, 10, 40, 50))).save(masks / "m.png")
    return imgs, masks, out


def _start_gated_run(tmp_path, *run_args):
    """`fastfill run RUN_ARGS` held as above, once it has written its first output and the next
    image is waiting: (process, the file that lets it go on)."""
    import time

    started, go = tmp_path / "started", tmp_path / "go"
    p = subprocess.Popen([sys.executable, "-c", _GATED_RUN, str(started), str(go), "run", *map(str, run_args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    out = Path(run_args[-1])
    deadline = time.monotonic() + 60
    while not (started.exists() and out.is_dir() and any(out.glob("*.png"))):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            stdout, stderr = p.communicate()
            pytest.fail(f"the run did not start (exit {p.returncode}): {stdout}{stderr}")
        time.sleep(0.01)
    return p, go


def _finish(p, go, pause=0.3):
    """Let the held images go on (after ``pause`` s, time for the signal to be handled), then wait
    for the end: (stdout, stderr). A run that neither ends nor answers is killed and fails."""
    import time

    time.sleep(pause)
    go.touch()
    try:
        return p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        stdout, stderr = p.communicate()
        pytest.fail(f"the run did not end after the signal: {stdout}{stderr}")


def test_sigterm_cleans_up_and_exits_143_and_a_rerun_finishes(tmp_path):
    import signal

    imgs, masks, out = _gated_tree(tmp_path)
    args = ["--method", "harmonic", "-j", "1", "-q", imgs, masks / "m.png", "-o", out]
    p, go = _start_gated_run(tmp_path, *args)
    p.send_signal(signal.SIGTERM)
    _, err = _finish(p, go)
    written = sorted(q.name for q in out.glob("*.png"))
    assert p.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert 1 <= len(written) < GATED_IMAGES  # stopped mid-way
    assert not [q for q in out.iterdir() if q.name.startswith(".")]  # no temporary files left
    for name in written:  # every output that exists is whole
        with Image.open(out / name) as im:
            im.load()
    r = subprocess.run([sys.executable, "-m", "fastfill.cli", "run", *map(str, args)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"done {GATED_IMAGES - len(written)}, skipped {len(written)}" in r.stdout


def test_stale_temporary_files_of_a_killed_run_are_removed(tree):
    out = tree / "out"
    out.mkdir()
    stale = out / ".a.png.k3j9x0q1.tmp"
    stale.write_bytes(b"half")
    unrelated = out / ".notes.txt.k3j9x0q1.tmp"
    unrelated.write_bytes(b"not ours")
    code, stdout, _ = invoke("run", "--engine", TINY, tree / "images", tree / "masks", "-o", out)
    assert code == 0 and "done 3" in stdout
    assert not stale.exists() and unrelated.exists()


def test_output_inside_the_images_tree_is_not_input(tree):
    out = tree / "images" / "out"
    for _ in range(3):
        code, stdout, _ = invoke("run", "--engine", TINY, "--overwrite", tree / "images", tree / "masks", "-o", out)
        assert code == 0 and "done 3, skipped 0, failed 0" in stdout
    assert not (out / "out").exists()
    # -o IMAGES itself with --overwrite would replace the originals: refused, nothing touched
    before = (tree / "images" / "a.png").read_bytes()
    code, _, stderr = invoke("run", "--engine", TINY, "--overwrite", tree / "images", tree / "masks",
                             "-o", tree / "images")
    assert code == 2 and "would replace the originals" in stderr
    assert (tree / "images" / "a.png").read_bytes() == before


def test_masks_inside_the_images_folder_are_not_images(tmp_path):
    """photos/ and photos/masks/: each mask was taken for an image without a mask (exit 1)."""
    photos = tmp_path / "photos"
    (photos / "masks").mkdir(parents=True)
    Image.fromarray(_img(30, 41)).save(photos / "a.png")
    Image.fromarray(_mask(30, 41)).save(photos / "masks" / "a.png")
    code, stdout, err = invoke("run", "--method", "harmonic", photos, photos / "masks", "-o", tmp_path / "o")
    assert code == 0 and "done 1, skipped 0, failed 0" in stdout, err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]


def test_folders_inside_images_reached_through_links_are_still_inside(tmp_path):
    """The output folder inside IMAGES given as a link to it (a second run read its outputs as
    images and stopped: "would replace the input"), and MASKS given by its real path inside a
    folder that IMAGES links to (each mask was taken for an image without a mask)."""
    photos = tmp_path / "photos"
    (photos / "res").mkdir(parents=True)
    (photos / "masks").mkdir()
    Image.fromarray(_img(30, 41)).save(photos / "a.png")
    Image.fromarray(_mask(30, 41)).save(photos / "masks" / "a.png")
    (tmp_path / "res_link").symlink_to(photos / "res")
    (tmp_path / "photos_link").symlink_to(photos)
    for expected in ("done 1, skipped 0", "done 0, skipped 1"):  # (the second run: nothing new)
        code, stdout, err = invoke("run", "--method", "harmonic", photos, photos / "masks", "-o",
                                   tmp_path / "res_link")
        assert code == 0 and f"{expected}, failed 0" in stdout, err
    assert "skipped: its output exists, kept (--overwrite replaces it)" in stdout  # (the second)
    assert sorted(p.name for p in (photos / "res").iterdir()) == ["a.png"]
    shutil.rmtree(photos / "res")  # (last runs' outputs: images of the next run's IMAGES)
    code, stdout, err = invoke("run", "--method", "harmonic", tmp_path / "photos_link", photos / "masks",
                               "-o", tmp_path / "o")
    assert code == 0 and "done 1, skipped 0, failed 0" in stdout, err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]


def test_a_mask_that_marks_pixels_below_the_threshold_says_nothing_was_filled(tmp_path):
    """A 0/1 label image or dark red strokes mark pixels that --threshold does not take: the
    output is the input and the run is "done", so a note says why; a black mask says nothing."""
    photos = tmp_path / "ph"
    photos.mkdir()
    Image.fromarray(_img(30, 41)).save(photos / "a.png")
    labels = (_mask(30, 41) > 0).astype(np.uint8)  # 0 and 1
    Image.fromarray(labels).save(tmp_path / "labels.png")
    Image.fromarray(np.zeros((30, 41), np.uint8)).save(tmp_path / "black.png")
    code, stdout, err = invoke("run", "--method", "harmonic", photos / "a.png", tmp_path / "labels.png",
                               "-o", tmp_path / "o.png")
    assert code == 0 and "done 1" in stdout, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert "labels.png" in line and "--threshold 128" in line and "brightest is 1" in line, line
    code, stdout, err = invoke("run", "--method", "harmonic", "--threshold", "1", photos / "a.png",
                               tmp_path / "labels.png", "-o", tmp_path / "o1.png", "--overwrite")
    assert code == 0 and "note:" not in err, err
    code, stdout, err = invoke("run", "--method", "harmonic", photos / "a.png", tmp_path / "black.png",
                               "-o", tmp_path / "o2.png")
    assert code == 0 and "note:" not in err, err
    noise = np.zeros((30, 41), np.uint8)
    noise[3, 4], noise[10, 11] = 2, 1  # (a black JPEG mask's compression noise: no note)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    code, stdout, err = invoke("run", "--method", "harmonic", photos / "a.png", tmp_path / "noise.png",
                               "-o", tmp_path / "o3.png")
    assert code == 0 and "note:" not in err, err


def test_a_masks_file_inside_the_images_folder_is_not_an_image(tmp_path):
    """`run photos photos/mask.png`: the mask was filled with itself as a second image."""
    photos = tmp_path / "ph"
    photos.mkdir()
    Image.fromarray(_img(30, 41)).save(photos / "a.png")
    Image.fromarray(_mask(30, 41)).save(photos / "mask.png")
    code, stdout, err = invoke("run", "--method", "harmonic", photos, photos / "mask.png", "-o", tmp_path / "o")
    assert code == 0 and "done 1, skipped 0, failed 0" in stdout, err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]


def test_links_are_followed_only_inside_the_folder(tmp_path):
    """A link in IMAGES to a file elsewhere (another user's photo, /etc/passwd) is not read."""
    imgs, masks, elsewhere = tmp_path / "i", tmp_path / "m", tmp_path / "elsewhere"
    for d in (imgs / "sub", masks, elsewhere):
        d.mkdir(parents=True)
    Image.fromarray(_img(30, 41)).save(imgs / "sub" / "real.png")
    Image.fromarray(_img(30, 41, 1)).save(elsewhere / "private.png")
    (imgs / "inner.png").symlink_to(Path("sub") / "real.png")
    (imgs / "leak.png").symlink_to(elsewhere / "private.png")
    for name in ("sub/real.png", "inner.png", "leak.png"):
        (masks / name).parent.mkdir(exist_ok=True)
        Image.fromarray(_mask(30, 41)).save(masks / name)
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks, "-o", tmp_path / "o")
    assert code == 1 and "done 2, skipped 0, failed 1" in stdout, (stdout, err)
    assert f"failed: {imgs / 'leak.png'}: a link to a file outside the folder" in err
    assert (tmp_path / "o" / "inner.png").is_file() and not (tmp_path / "o" / "leak.png").exists()


def test_a_fifo_or_a_folder_link_leading_out_is_a_line_not_a_silent_skip(tmp_path):
    imgs, masks, elsewhere = tmp_path / "i", tmp_path / "m", tmp_path / "elsewhere"
    for d in (imgs, masks, elsewhere):
        d.mkdir()
    Image.fromarray(_img(30, 41)).save(imgs / "a.png")
    Image.fromarray(_img(30, 41)).save(elsewhere / "b.png")
    os.mkfifo(imgs / "fifo.png")
    (imgs / "more").symlink_to(elsewhere, target_is_directory=True)
    (imgs / "again").symlink_to(imgs, target_is_directory=True)  # (inside: its files are found)
    Image.fromarray(_mask(30, 41)).save(masks / "m.png")
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks / "m.png", "-o", tmp_path / "o")
    assert code == 1 and "done 1, skipped 0, failed 2" in stdout, (stdout, err)
    assert f"failed: {imgs / 'fifo.png'}: not a regular file (a FIFO)" in err
    assert f"failed: {imgs / 'more'}: a link to a folder outside the folder: not followed" in err
    assert sorted(q.name for q in (tmp_path / "o").iterdir()) == ["a.png", "fastfill-failures.jsonl"]


def test_a_mask_that_cannot_be_used_is_named_with_why(tmp_path):
    """A mask that is a link out of MASKS is named as such (it was "no mask found" although the
    file is there); an empty mask file is "empty file", as an empty image is."""
    imgs, masks, elsewhere = tmp_path / "i", tmp_path / "m", tmp_path / "elsewhere"
    for d in (imgs, masks, elsewhere):
        d.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(_img(30, 41)).save(imgs / name)
    Image.fromarray(_mask(30, 41)).save(elsewhere / "m.png")
    Image.fromarray(_mask(30, 41)).save(masks / "a.png")
    (masks / "b.png").symlink_to(elsewhere / "m.png")
    (masks / "c.png").write_bytes(b"")
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks, "-o", tmp_path / "o")
    assert code == 1 and "done 1, skipped 0, failed 2" in stdout, (stdout, err)
    assert f"failed: {imgs / 'b.png'}: mask {masks / 'b.png'}: a link to a file outside the folder" in err
    assert f"failed: {imgs / 'c.png'}: mask {masks / 'c.png'}: empty file, not an image" in err


def test_an_output_with_bytes_after_its_end_is_whole(tmp_path):
    """A phone's JPEG trailer (or any bytes after IEND) made a whole file look cut short: it was
    replaced without --overwrite. Files really cut short are still redone."""
    from fastfill.files.codecs import output_is_whole

    im = Image.fromarray(_img(40, 52))
    png, jpg = tmp_path / "a.png", tmp_path / "b.jpg"
    im.save(png)
    exif = Image.Exif()
    exif[0x010F] = "maker"
    im.save(jpg, quality=90, exif=exif, progressive=True)
    whole = {p: p.read_bytes() for p in (png, jpg)}
    for p, data in whole.items():
        assert output_is_whole(p)
        p.write_bytes(data + b"SEFH trailer \xff\xd8 data 12345" + bytes(100))
        assert output_is_whole(p)
        for cut in (len(data) - 20, len(data) // 2, 200):
            p.write_bytes(data[:cut])
            assert not output_is_whole(p), (p, cut)
    # a JPEG whose EXIF holds a thumbnail (with its own end marker), cut in its scan
    buf = tmp_path / "t.jpg"
    im.save(buf, quality=90, exif=exif)
    data = buf.read_bytes()
    app1 = data[:2] + b"\xff\xe1" + (2 + 6 + 4).to_bytes(2, "big") + b"Exif\x00\x00" + b"\xff\xd9\x00\x00"
    buf.write_bytes(app1 + data[2:len(data) - 30])
    assert not output_is_whole(buf)
    buf.write_bytes(app1 + data[2:])
    assert output_is_whole(buf)
    # and the run keeps them
    imgs, masks, out = tmp_path / "i", tmp_path / "m", tmp_path / "o"
    for d in (imgs, masks, out):
        d.mkdir()
    im.save(imgs / "p.png")
    Image.fromarray(_mask(40, 52)).save(masks / "p.png")
    mine = whole[png] + b"user trailer"
    (out / "p.png").write_bytes(mine)
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks, "-o", out)
    assert code == 0 and "done 0, skipped 1" in stdout and (out / "p.png").read_bytes() == mine, err


def test_animations_and_multipage_files_are_refused_not_truncated(tmp_path):
    imgs, out = tmp_path / "images", tmp_path / "out"
    imgs.mkdir()
    frames = [Image.fromarray(_img(30, 41, k)) for k in range(3)]
    frames[0].save(imgs / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(imgs / "pages.tiff", save_all=True, append_images=frames[1:])
    frames[0].save(imgs / "one.gif")
    Image.fromarray(_mask(30, 41)).save(tmp_path / "m.png")
    code, stdout, stderr = invoke("run", "--engine", TINY, imgs, tmp_path / "m.png", "-o", out)
    assert code == 1 and "done 1, skipped 0, failed 2" in stdout
    assert "3 frames (GIF): fastfill fills single images only" in stderr
    assert "3 pages (TIFF)" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["fastfill-failures.jsonl", "one.gif"]
    import json

    failed = [json.loads(ln) for ln in (out / "fastfill-failures.jsonl").read_text().splitlines()]
    assert sorted(Path(f["file"]).name for f in failed) == ["anim.gif", "pages.tiff"]
    assert all(f["mask"] == str(tmp_path / "m.png") and f["error"] for f in failed)


def _tiff_with_pages(path, pages, dims=True):
    """A 160x120 TIFF whose first page points to ``pages`` more minimal ones (1x1, or with no
    dimensions at all)."""
    import io
    import struct

    b = io.BytesIO()
    Image.new("RGB", (160, 120), (10, 20, 30)).save(b, "TIFF")
    d = bytearray(b.getvalue())
    ifd0 = struct.unpack_from("<I", d, 4)[0]
    struct.pack_into("<I", d, ifd0 + 2 + 12 * struct.unpack_from("<H", d, ifd0)[0], len(d))
    tags = ([(256, 4, 1, 1), (257, 4, 1, 1)] if dims else []) + [(262, 3, 1, 1), (273, 4, 1, 8),
                                                                 (279, 4, 1, 1)]
    size = 2 + 12 * len(tags) + 4
    start = len(d)
    for i in range(pages):
        nxt = start + (i + 1) * size if i < pages - 1 else 0
        d += struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags)
        d += struct.pack("<I", nxt)
    path.write_bytes(bytes(d))


def test_tiffs_of_many_or_broken_pages_are_one_line(tmp_path):
    """Pillow counts a TIFF's pages by walking all of them, slower per page the more there are
    (a 6 MB file of 100,000 empty pages held a server's decoder for 80 s), and a page without
    dimensions raised a TypeError (a server's 500)."""
    from fastfill.files.codecs import decode_image

    _tiff_with_pages(tmp_path / "many.tif", 20_000)
    _tiff_with_pages(tmp_path / "nodims.tif", 1, dims=False)
    with pytest.raises(InputError, match="over 100 pages"):
        decode_image(tmp_path / "many.tif")
    with pytest.raises(InputError, match="Missing dimensions|corrupt"):
        decode_image(tmp_path / "nodims.tif")
    _tiff_with_pages(tmp_path / "two.tif", 1)
    with pytest.raises(InputError, match="^2 pages"):
        decode_image(tmp_path / "two.tif")


def test_an_empty_hole_writes_the_source_bytes(tmp_path):
    """A JPEG with nothing to fill was re-encoded: its pixels moved for nothing."""
    imgs, masks = tmp_path / "i", tmp_path / "m"
    imgs.mkdir(), masks.mkdir()
    Image.fromarray(_img(40, 52)).save(imgs / "a.jpg", quality=80)
    Image.fromarray(_img(40, 52, 1)).save(imgs / "b.jpg", quality=80)
    Image.fromarray(np.zeros((40, 52), np.uint8)).save(masks / "a.png")
    Image.fromarray(_mask(40, 52)).save(masks / "b.png")
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks, "-o", tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o" / "a.jpg").read_bytes() == (imgs / "a.jpg").read_bytes()
    assert (tmp_path / "o" / "b.jpg").read_bytes() != (imgs / "b.jpg").read_bytes()  # (filled)
    code, _, err = invoke("run", "--method", "harmonic", "--format", "png", imgs, masks, "-o", tmp_path / "p")
    assert code == 0 and Image.open(tmp_path / "p" / "a.png").format == "PNG", err


def test_a_size_just_over_the_limit_says_by_how_much(tmp_path):
    """1001x1000 against 1 megapixel read "1.0 megapixels, over the limit of 1"."""
    from fastfill.files.codecs import decode_image

    Image.fromarray(_img(1000, 1001)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match=r"= 1\.001 megapixels, over the limit of 1 "):
        decode_image(tmp_path / "a.png", max_pixels=1_000_000)
    from fastfill.files.codecs import megapixels

    assert megapixels(10_000_001, 10_000_000) == "10.000001"  # (not "10", over the limit of 10)


def test_the_subpackages_the_docs_call_come_with_import_fastfill():
    code = ("import fastfill, numpy as np; m = np.zeros((8, 8), np.uint8); m[3:5, 3:5] = 1; "
            "fastfill.ops.fill(np.zeros((8, 8, 3), np.uint8), m); fastfill.fills.FILLS['patch']; "
            "fastfill.serve.create_app")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_lossless_in_stays_lossless_out(tmp_path):
    """A lossless WebP comes back lossless: no pixel outside the hole changes (lossy VP8 would
    change almost all of them)."""
    from fastfill.files import codecs as io

    imgs, out = tmp_path / "images", tmp_path / "out"
    imgs.mkdir()
    src = _img(40, 56, 3)
    Image.fromarray(src).save(imgs / "a.webp", lossless=True)
    Image.fromarray(src).save(imgs / "b.tiff", compression="tiff_lzw")
    Image.fromarray(src).save(imgs / "c.webp", quality=80)  # lossy stays lossy
    # transparent pixels keep their colours too (libwebp rewrites them unless told `exact`)
    rgba = np.dstack([src, np.where(np.arange(56)[None, :] % 3 == 0, 0, 255).repeat(40, 0)]).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(imgs / "d.webp", lossless=True, exact=True)
    Image.fromarray(src).save(imgs / "e.tga", compression="tga_rle")  # (run-length: stays so)
    Image.fromarray(_mask(40, 56)).save(tmp_path / "m.png")
    code, stdout, stderr = invoke("run", "--engine", TINY, imgs, tmp_path / "m.png", "-o", out)
    assert code == 0, stderr
    hole = _mask(40, 56) != 0
    for name in ("a.webp", "b.tiff"):
        got = np.asarray(Image.open(out / name).convert("RGB"))
        np.testing.assert_array_equal(got[~hole], src[~hole])
    with Image.open(imgs / "d.webp") as im:  # (what libwebp itself keeps of the input)
        assert im.mode == "RGBA" and (np.asarray(im) == rgba).all()
    np.testing.assert_array_equal(np.asarray(Image.open(out / "d.webp"))[~hole], rgba[~hole])
    assert io.webp_is_lossless(out / "a.webp") and not io.webp_is_lossless(out / "c.webp")
    with Image.open(out / "b.tiff") as im:
        assert im.info.get("compression") == "tiff_lzw"
    with Image.open(out / "e.tga") as im:
        assert im.info.get("compression") == "tga_rle"
        np.testing.assert_array_equal(np.asarray(im.convert("RGB"))[~hole], src[~hole])


def test_a_write_cut_short_is_a_failure_and_a_cut_output_is_redone(tree):
    """Under a file-size limit (RLIMIT_FSIZE in the child) a short write is never renamed into
    place or counted done: the file fails, nothing is left, and a re-run does it."""
    import resource

    out = tree / "big"
    imgs = tree / "bigimgs"
    imgs.mkdir()
    yy, xx = np.mgrid[0:400, 0:400]
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(imgs / "a.png")  # ~480 kB: over the limit below
    Image.fromarray(_mask(400, 400, (10, 10, 50, 50))).save(tree / "bm.png")
    cmd = [sys.executable, "-m", "fastfill.cli", "run", "--method", "harmonic", "-q", str(imgs),
           str(tree / "bm.png"), "-o", str(out)]

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert r.returncode == 1, r.stderr
    assert "failed 1" in r.stdout and "a.png" in r.stderr
    # no output, no temporary file (the list of failures, when the limit let it be written)
    assert not out.exists() or [p.name for p in out.iterdir()] in ([], ["fastfill-failures.jsonl"])
    # a truncated output left by something else is not trusted: redone
    out.mkdir(exist_ok=True)
    good = subprocess.run(cmd[:-2] + ["-o", str(tree / "ref")], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0
    (out / "a.png").write_bytes((tree / "ref" / "a.png").read_bytes()[:4096])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "done 1, skipped 0" in r.stdout and "incomplete" in r.stderr
    assert (out / "a.png").read_bytes() == (tree / "ref" / "a.png").read_bytes()


def test_max_pixels_refuses_from_the_header_with_one_line(tmp_path):
    """A small PNG of many pixels (a decompression bomb) is refused before decoding, without
    Pillow's warning; the limit is an option."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    Image.new("L", (9000, 9000)).save(imgs / "bomb.png")  # 81 megapixels, ~80 kB
    Image.fromarray(_img(30, 41)).save(imgs / "ok.png")
    Image.fromarray(_mask(30, 41)).save(tmp_path / "m.png")
    r = subprocess.run([sys.executable, "-W", "default", "-m", "fastfill.cli", "run", "--method", "harmonic",
                        "--resize-mask", "-q", str(imgs), str(tmp_path / "m.png"), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "done 1, skipped 0, failed 1" in r.stdout
    assert "9000x9000 = 81.0 megapixels, over the limit of 50 (--max-pixels)" in r.stderr
    assert "Warning" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    code, stdout, stderr = invoke("run", "--method", "harmonic", "--max-pixels", "1000", imgs / "ok.png",
                                  tmp_path / "m.png", "-o", tmp_path / "o2.png")
    assert code == 1 and "over the limit of 0.001" in stderr


def test_damaged_exif_costs_the_metadata_not_the_pixels(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    Image.fromarray(_img(30, 41)).save(imgs / "a.jpg", exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff\x01\x02junk")
    Image.fromarray(_mask(30, 41)).save(tmp_path / "m.png")
    r = subprocess.run([sys.executable, "-W", "default", "-m", "fastfill.cli", "run", "--method", "harmonic", "-q",
                        str(imgs), str(tmp_path / "m.png"), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "done 1" in r.stdout
    assert "note: " in r.stderr and "damaged EXIF dropped, pixels kept" in r.stderr
    assert "Warning" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with Image.open(tmp_path / "out" / "a.jpg") as im:
        assert im.size == (41, 30)


def test_ctrl_c_twice_is_not_a_traceback(tmp_path):
    import signal
    import time

    imgs, masks, out = _gated_tree(tmp_path)
    p, go = _start_gated_run(tmp_path, "--method", "harmonic", "-j", "2", "-q", imgs, masks / "m.png", "-o", out)
    p.send_signal(signal.SIGINT)
    time.sleep(0.1)  # the second one comes during the clean-up (which waits for the held image)
    p.send_signal(signal.SIGINT)
    _, err = _finish(p, go)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.split() == "interrupted: finishing the clean-up (Ctrl-C again to quit at once) aborted".split()
    assert 1 <= len(list(out.glob("*.png"))) < GATED_IMAGES  # stopped mid-way
    assert not [q for q in out.iterdir() if q.name.startswith(".")]


def test_sigterm_twice_lets_the_clean_up_finish(tmp_path):
    """A job scheduler's second SIGTERM came during the clean-up: raised again, it cut short the
    wait for the worker threads, and the interpreter shut down under a thread in native code
    (`terminate called without an active exception`, exit 134, in 4 of 6 tries)."""
    import signal
    import time

    imgs, masks, out = _gated_tree(tmp_path)
    p, go = _start_gated_run(tmp_path, "--method", "harmonic", "-j", "2", "-q", imgs, masks / "m.png", "-o", out)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = _finish(p, go)
    assert p.returncode == 143, err
    assert err.split() == "terminated: finishing the clean-up (SIGTERM again to quit at once) terminated".split()
    assert not [q for q in out.iterdir() if q.name.startswith(".")]


@pytest.mark.parametrize("closed", ["stderr", "stdout"])
def test_a_reader_that_goes_away_does_not_stop_the_run(tmp_path, closed):
    """stderr piped to `head -1`: the next failure line hit a closed pipe and the run stopped
    there (9 of 45 images done, no summary, no failures file); stdout closed: a run that did
    everything exited 1 (its summary could not be flushed)."""
    imgs, masks, out = tmp_path / "i", tmp_path / "m", tmp_path / "o"
    imgs.mkdir(), masks.mkdir()
    for i in range(6):
        Image.fromarray(_img(30, 41, i)).save(imgs / f"{i}.png")
    for i in (0, 1):
        (imgs / f"bad{i}.png").write_bytes(b"not an image")
    Image.fromarray(_mask(30, 41)).save(masks / "m.png")
    p = subprocess.Popen([sys.executable, "-m", "fastfill.cli", "run", "--method", "harmonic", str(imgs),
                          str(masks / "m.png"), "-o", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    getattr(p, closed).close()  # nobody reads it: the first write to it fails (EPIPE)
    kept = p.stdout if closed == "stderr" else p.stderr
    said = kept.read().decode()
    assert p.wait(timeout=120) == 1, said  # (two inputs failed)
    assert sorted(q.name for q in out.iterdir()) == [f"{i}.png" for i in range(6)] + ["fastfill-failures.jsonl"]
    if closed == "stderr":
        assert said.startswith("done 6, skipped 0, failed 2"), said
    else:
        assert "failed: " in said and "Traceback" not in said and "Exception" not in said, said


def test_device_that_is_not_there_is_one_line_and_nothing_written(tree):
    """No silent CPU fallback: --device cuda on a machine without CUDA in onnxruntime stops."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal cannot be shown here")
    out = tree / "out"
    code, _, stderr = invoke("run", "--engine", TINY, "--device", "cuda", tree / "images", tree / "masks", "-o", out)
    assert code == 2 and "device cuda: this onnxruntime has no CUDAExecutionProvider" in stderr
    assert "CPUExecutionProvider" in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()
    code, _, stderr = invoke("run", "--engine", TINY, "--device", "gpu", tree / "images", tree / "masks", "-o", out)
    assert code == 2 and "unknown device 'gpu'" in stderr
    code, stdout, _ = invoke("run", "--engine", TINY, "--device", "cpu", tree / "images", tree / "masks", "-o", out)
    assert code == 0 and "done 3" in stdout
    code, stdout, stderr = invoke("run", "--engine", TINY, "--device", "openvino", "--overwrite", tree / "images",
                                  tree / "masks", "-o", out)
    if importlib.util.find_spec("openvino") is None:
        assert code == 2 and "openvino" in stderr.lower()
    else:  # the header says what picked the back-end and where it runs
        assert code == 0 and "on openvino (--device openvino), running on OpenVINO CPU" in stderr


def test_device_for_a_plan_and_the_api(tmp_path):
    from fastfill import Inpainter
    from fastfill.engines import device_options
    from fastfill.errors import EngineError

    assert device_options("m.plan", "cuda:1") == ("tensorrt", {"device_id": 1})
    assert device_options("m.onnx", "cuda:1") == ("onnxruntime", {"device": "cuda", "device_id": 1, "strict": True})
    assert device_options("m.onnx", None) == (None, {}) and device_options("m.onnx", "auto") == (None, {})
    with pytest.raises(EngineError, match="runs on an NVIDIA GPU only"):
        device_options("m.plan", "cpu")
    with pytest.raises(EngineError, match="runs on the onnxruntime back-end, not openvino"):
        Inpainter(TINY, device="cuda", backend="openvino")


def test_an_output_that_is_a_fifo_is_a_failure_line_not_a_hang(tmp_path):
    """The check that an existing output is whole opened it: a FIFO there blocked the run before
    any work started (and a stop signal during the wait was taken for "not whole")."""
    imgs, out = tmp_path / "i", tmp_path / "o"
    imgs.mkdir(), out.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(_img(30, 41)).save(imgs / name)
    Image.fromarray(_mask(30, 41)).save(tmp_path / "m.png")
    os.mkfifo(out / "b.png")
    r = subprocess.run([sys.executable, "-m", "fastfill.cli", "run", "--method", "harmonic", "-q",
                        str(imgs), str(tmp_path / "m.png"), "-o", str(out)],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 1 and "done 1, skipped 0, failed 1" in r.stdout, (r.stdout, r.stderr)
    assert f"its output {out / 'b.png'} exists and is not a regular file" in r.stderr


def test_a_file_of_another_kind_under_an_outputs_name_is_left_alone(tmp_path):
    """A text file named like an output was taken for a PNG cut short and replaced without
    --overwrite: it is one failure line now, the file untouched. An empty file or a PNG cut
    short is still redone; an image of another format under the name is kept as done (an output
    keeps its input's name: a JPEG named .png is written as a JPEG, and a re-run skips it)."""
    imgs, masks, out = tmp_path / "i", tmp_path / "m", tmp_path / "o"
    for d in (imgs, masks, out):
        d.mkdir()
    for name in ("notes", "empty", "cut"):
        Image.fromarray(_img(30, 41)).save(imgs / f"{name}.png")
        Image.fromarray(_mask(30, 41)).save(masks / f"{name}.png")
    Image.fromarray(_img(30, 41)).save(imgs / "photo.png", format="JPEG")  # a JPEG named .png
    Image.fromarray(_mask(30, 41)).save(masks / "photo.png")
    (out / "notes.png").write_text("my notes\n")
    (out / "empty.png").write_bytes(b"")
    Image.fromarray(_img(30, 41)).save(out / "cut.png")
    (out / "cut.png").write_bytes((out / "cut.png").read_bytes()[:100])
    kept = (out / "notes.png").read_bytes()
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks, "-o", out)
    assert code == 1 and "done 3, skipped 0, failed 1" in stdout, (stdout, err)
    assert f"its output {out / 'notes.png'} exists and is not an image" in err
    assert (out / "notes.png").read_bytes() == kept
    for n in ("empty.png", "cut.png"):
        assert Image.open(out / n).size == (41, 30)
    assert Image.open(out / "photo.png").format == "JPEG"  # fastfill's own, in its input's format
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks, "-o", out)
    assert code == 1 and "done 0, skipped 3, failed 1" in stdout, (stdout, err)  # a re-run
    code, stdout, err = invoke("run", "--method", "harmonic", imgs, masks, "-o", out, "--overwrite")
    assert code == 0 and "done 4" in stdout, (stdout, err)
    assert Image.open(out / "notes.png").format == "PNG"


def test_a_damaged_exif_note_names_its_own_file_when_decoding_on_threads(tmp_path):
    """Decoded on two threads (`run -j 2`), one file's damaged-EXIF note was given to another
    file, or lost: the warnings were caught in a state the whole process shares. Each decode
    now keeps the warnings of its own thread."""
    from concurrent.futures import ThreadPoolExecutor

    from fastfill.files.codecs import decode_image

    bad = tmp_path / "bad.jpg"
    Image.fromarray(_img(300, 400)).save(bad, exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff\x01\x02junk")
    clean = []
    for k in range(6):
        p = tmp_path / f"clean{k}.png"
        Image.fromarray(_img(300, 400, seed=k)).save(p)
        clean.append(p)
    paths = ([bad] + clean) * 15

    def notes(p):
        note = decode_image(p).note or ""
        return p, note if "EXIF" in note else ""

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(notes, paths))
    assert all(bool(n) == (p == bad) for p, n in got), [(p.name, n) for p, n in got if bool(n) != (p == bad)]
    import warnings

    with pytest.warns(UserWarning, match="still shown"):  # (and other warnings still reach their hooks)
        warnings.warn("still shown")


def test_a_warning_hook_that_calls_the_one_it_replaced_is_not_a_recursion():
    """A hook put in after the decoder's own, calling the one it replaced (as logging's
    captureWarnings does, which Ray turns on), then replaced by the decoder's again: a warning
    went round the two until Python's recursion limit (every Ray run failed)."""
    import warnings

    from fastfill.files import codecs

    with warnings.catch_warnings(record=True) as shown:  # (and puts the hooks back after)
        warnings.simplefilter("always")
        with codecs._Caught():
            pass
        inner = warnings.showwarning

        def hook(message, category, filename, lineno, file=None, line=None):
            return inner(message, category, filename, lineno, file, line)

        warnings.showwarning = hook
        with codecs._Caught():
            pass
        warnings.warn("went round once")
    assert [str(w.message) for w in shown] == ["went round once"]


def test_an_applications_warning_hook_and_filters_outlive_a_decode(tmp_path):
    """After one decode, a warning went past the hook the application (or the CLI's one-line
    `warning:`) had set, and the decoder's filter stayed in the process's filters."""
    import warnings

    from fastfill.files.codecs import decode_image

    bad = tmp_path / "bad.jpg"
    Image.fromarray(_img(30, 41)).save(bad, exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff\x01\x02junk")
    seen = []
    with warnings.catch_warnings():  # (puts the hook and the filters back after the test)
        warnings.simplefilter("default")
        before = list(warnings.filters)
        warnings.showwarning = lambda message, *a, **k: seen.append(str(message))
        for _ in range(2):
            assert "damaged EXIF" in (decode_image(bad).note or "")
        warnings.warn("after two decodes")
        assert warnings.filters == before
    assert seen == ["after two decodes"]
