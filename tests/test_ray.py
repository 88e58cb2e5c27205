"""`fastfill run --ray` and `fastfill.files.ray.inpaint` on a local Ray (CPU, 2 logical CPUs).

One Ray session for the module (starting Ray takes seconds); every test compares against the
local code path run on the same files, not against the code under test.
"""

import filecmp
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'fastfill[ray]')")
pytest.importorskip("ray.data")

from fastfill.files import ray as fray  # noqa: E402
from conftest import invoke  # noqa: E402
from fastfill.errors import EngineError  # noqa: E402
from fastfill.inpainter import Inpainter  # noqa: E402

TINY = str(Path(__file__).parent / "data" / "tiny_glcic.onnx")
N_IMAGES = 30


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    if ray.is_initialized():  # someone else's session: use it as it is
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def _photo(h, w, seed):
    """A smooth gradient with texture: compresses like a photo, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    base = np.stack([200 * y + 30 * x, 180 * x + 40 * np.sin(8 * y), 120 + 100 * x * y], axis=2)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _make_tree(root: Path, n: int = N_IMAGES) -> Path:
    """images/ + masks/ with PNG, JPEG, grey, RGBA and 16-bit grey files, some in subfolders."""
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = int(rng.integers(36, 80)), int(rng.integers(36, 80))
        sub = ("sub/" if i % 3 == 0 else "") + ("deep/" if i % 9 == 0 else "")
        im = _photo(h, w, i)
        kind = i % 5
        name = f"{sub}img{i:02d}"
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        (root / "masks" / sub).mkdir(parents=True, exist_ok=True)
        if kind == 0:
            Image.fromarray(im).save(root / "images" / f"{name}.png")
        elif kind == 1:
            Image.fromarray(im).save(root / "images" / f"{name}.jpg", quality=90)
        elif kind == 2:
            Image.fromarray(im).convert("L").save(root / "images" / f"{name}.png")
        elif kind == 3:
            rgba = np.dstack([im, rng.integers(0, 256, (h, w), dtype=np.uint8)])
            Image.fromarray(rgba, "RGBA").save(root / "images" / f"{name}.png")
        else:
            g16 = (im[:, :, 0].astype(np.uint16) * 257)
            Image.fromarray(g16).save(root / "images" / f"{name}.png")
        m = np.zeros((h, w), np.uint8)
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        m[y0:y0 + h // 3, x0:x0 + w // 3] = 255
        Image.fromarray(m).save(root / "masks" / f"{name}.png")
    return root


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = _make_tree(tmp_path_factory.mktemp("ray-tree"))
    code, stdout, stderr = invoke("run", "-q", "--engine", TINY, root / "images", root / "masks",
                                  "-o", root / "local")
    assert code == 0, stderr
    return root


def test_ray_run_is_bit_identical_to_local_run(tree):
    out = tree / "ray"
    code, stdout, stderr = invoke("run", "-q", "--ray", "--concurrency", "2", "--engine", TINY,
                                  tree / "images", tree / "masks", "-o", out)
    assert code == 0, stderr
    assert f"done {N_IMAGES}, skipped 0, failed 0" in stdout
    assert _files(out) == _files(tree / "local") and len(_files(out)) == N_IMAGES
    _, mismatch, errors = filecmp.cmpfiles(tree / "local", out, _files(out), shallow=False)
    assert mismatch == [] and errors == []
    assert not (out / fray.FAILURES_FILE).exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_bad_files_fail_alone_then_resume_rewrites_only_missing(tree, tmp_path):
    root = tmp_path
    shutil.copytree(tree / "images", root / "images")
    shutil.copytree(tree / "masks", root / "masks")
    good = Path("sub/img06.jpg")
    data = (root / "images" / good).read_bytes()
    (root / "images" / "sub" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "masks" / "sub" / "truncated.png").write_bytes((root / "masks" / "sub" /
                                                             "img06.png").read_bytes())
    Image.fromarray(_photo(40, 40, 99)).save(root / "images" / "no_mask.png")
    out = root / "out"
    code, stdout, stderr = invoke("run", "-q", "--ray", "--engine", TINY, root / "images",
                                  root / "masks", "-o", out)
    assert code == 1, stderr
    assert f"done {N_IMAGES}, skipped 0, failed 2" in stdout
    assert "truncated.jpg" in stderr and "no_mask.png" in stderr
    lines = [json.loads(s) for s in (out / fray.FAILURES_FILE).read_text().splitlines()]
    assert sorted(Path(d["file"]).name for d in lines) == ["no_mask.png", "truncated.jpg"]
    assert all(d["error"] for d in lines)
    assert "no mask found" in next(d["error"] for d in lines if d["file"].endswith("no_mask.png"))
    written = [f for f in _files(out) if f != fray.FAILURES_FILE]
    assert written == _files(tree / "local")
    # the local run: the same outputs and the same failures file (paths as given: absolute here)
    local = root / "local-out"
    code, stdout, _ = invoke("run", "-q", "--engine", TINY, root / "images", root / "masks", "-o", local)
    assert code == 1 and f"done {N_IMAGES}, skipped 0, failed 2" in stdout
    assert _files(local) == _files(out)
    _, mismatch, errors = filecmp.cmpfiles(local, out, _files(out), shallow=False)
    assert mismatch == [fray.FAILURES_FILE] or mismatch == [], mismatch  # (order of lines may differ)
    assert sorted((local / fray.FAILURES_FILE).read_text().splitlines()) == \
        sorted((out / fray.FAILURES_FILE).read_text().splitlines())

    # Resume: every output gets an old mtime, three are deleted; only those three are written.
    old = 1_000_000_000
    for f in written:
        os.utime(out / f, (old, old))
    deleted = written[::11][:3]
    for f in deleted:
        (out / f).unlink()
    code, stdout, stderr = invoke("run", "-q", "--ray", "--engine", TINY, root / "images",
                                  root / "masks", "-o", out)
    assert code == 1, stderr
    assert f"done 3, skipped {N_IMAGES - 3}, failed 2" in stdout
    for f in written:
        changed = (out / f).stat().st_mtime != old
        assert changed == (f in deleted), f
        assert filecmp.cmp(out / f, tree / "local" / f, shallow=False)

    # Once the bad files are gone, the failures file goes too.
    (root / "images" / "sub" / "truncated.jpg").unlink()
    (root / "images" / "no_mask.png").unlink()
    code, stdout, _ = invoke("run", "-q", "--ray", "--engine", TINY, root / "images",
                             root / "masks", "-o", out)
    assert code == 0 and f"done 0, skipped {N_IMAGES}, failed 0" in stdout
    assert not (out / fray.FAILURES_FILE).exists()


def test_pyarrow_filesystem_and_file_uris(tree, tmp_path):
    """The generic file-system path (any pyarrow FileSystem) gives the local run's bytes."""
    import pyarrow.fs as pafs

    fs = pafs.SubTreeFileSystem(str(tree), pafs.LocalFileSystem())  # not a LocalFileSystem
    summary = fray.run_files("images", "masks", "fs-out", filesystem=fs, engine=TINY,
                             progress=False)
    assert (summary.done, summary.failed) == (N_IMAGES, 0)
    out = tree / "fs-out"
    assert _files(out) == _files(tree / "local")
    _, mismatch, errors = filecmp.cmpfiles(tree / "local", out, _files(out), shallow=False)
    assert mismatch == [] and errors == []

    # file:// URIs through the CLI (resolved to the local code path).
    one = tmp_path / "one.jpg"  # one image in: -o names the output file, as in the local run
    code, stdout, stderr = invoke("run", "-q", "--ray", "--engine", TINY,
                                  (tree / "images" / "img01.jpg").as_uri(),
                                  (tree / "masks" / "img01.png").as_uri(), "-o", one.as_uri())
    assert code == 0, stderr
    assert filecmp.cmp(one, tree / "local" / "img01.jpg", shallow=False)
    # Without --ray a URI is a usage error.
    code, _, stderr = invoke("run", "--engine", TINY, (tree / "images").as_uri(),
                             tree / "masks", "-o", tmp_path / "x")
    assert code == 2 and "--ray" in stderr


def test_single_file_output_spelled_with_dot_slash(tree, tmp_path, monkeypatch):
    """`-o ./out.png` names the output file (not a folder called out.png); a re-run skips it."""
    monkeypatch.chdir(tmp_path)
    args = ("run", "-q", "--ray", "--engine", TINY, tree / "images" / "img05.png",
            tree / "masks" / "img05.png", "-o", "./out.png")
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    assert "done 1, skipped 0, failed 0" in stdout
    assert (tmp_path / "out.png").is_file()
    assert filecmp.cmp(tmp_path / "out.png", tree / "local" / "img05.png", shallow=False)
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    assert "done 0, skipped 1, failed 0" in stdout
    # a trailing separator says "a folder", with or without --ray
    code, _, stderr = invoke(*args[:-1], "results.d/")
    assert code == 0, stderr
    assert (tmp_path / "results.d" / "img05.png").is_file()


def test_inpaint_dataset_api():
    rng = np.random.default_rng(5)
    rows, expected_in = [], []
    for i in range(10):
        h, w = int(rng.integers(30, 70)), int(rng.integers(30, 70))
        im = _photo(h, w, 100 + i)
        m = np.zeros((h, w), np.uint8)
        m[h // 3: h // 3 + 9, w // 4: w // 4 + 11] = 1
        rows.append({"id": i, "image": im, "mask": m})
        expected_in.append((im, m))
    ds = ray.data.from_items(rows)
    out = fray.inpaint(ds, engine=TINY, concurrency=2).take_all()
    expected = Inpainter(TINY).batch([a for a, _ in expected_in], [b for _, b in expected_in])
    got = {r["id"]: r for r in out}
    assert sorted(got) == list(range(10))
    for i, exp in enumerate(expected):
        assert np.array_equal(got[i]["inpainted"], exp)
        assert np.array_equal(got[i]["image"], expected_in[i][0])  # input columns kept

    # on_error="column": a bad row gets an error message, the others their result.
    bad = rows[:3] + [{"id": 3, "image": rows[3]["image"], "mask": np.zeros((5, 5), np.uint8)}]
    res = {r["id"]: r for r in fray.inpaint(ray.data.from_items(bad), engine=TINY,
                                             on_error="column").take_all()}
    assert res[3]["error"] and "mask is 5x5" in res[3]["error"]
    assert res[3]["inpainted"].shape == (0, 0, 3)
    for i in range(3):
        assert res[i]["error"] == "" and np.array_equal(res[i]["inpainted"], expected[i])


def test_video_folder_one_task_per_video(tmp_path):
    av = pytest.importorskip("av")
    vids, masks = tmp_path / "videos", tmp_path / "masks"
    vids.mkdir()
    masks.mkdir()
    for k in range(2):
        with av.open(str(vids / f"clip{k}.mkv"), "w") as c:
            s = c.add_stream("ffv1", rate=10)
            s.width, s.height, s.pix_fmt = 48, 40, "yuv444p"
            for i in range(4):
                f = av.VideoFrame.from_ndarray(_photo(40, 48, 10 * k + i), format="rgb24")
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode(None):
                c.mux(p)
        m = np.zeros((40, 48), np.uint8)
        m[10:22, 12:30] = 255
        Image.fromarray(m).save(masks / f"clip{k}.png")
    code, stdout, stderr = invoke("run", "-q", "--ray", "--engine", TINY, vids, masks,
                                  "-o", tmp_path / "out")
    assert code == 0, stderr
    assert "done 2, skipped 0, failed 0" in stdout
    # the local run takes videos under IMAGES too, with the same bytes
    code, stdout, stderr = invoke("run", "-q", "--engine", TINY, vids, masks, "-o", tmp_path / "out-local")
    assert code == 0 and "done 2, skipped 0, failed 0" in stdout, stderr
    def frames(p):
        with av.open(str(p)) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    for k in range(2):  # (frame by frame: Matroska files carry a random segment UID)
        a, b = frames(tmp_path / "out" / f"clip{k}.mkv"), frames(tmp_path / "out-local" / f"clip{k}.mkv")
        assert len(a) == len(b) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))
    # a video without a mask fails alone, in both modes, into the failures file
    (masks / "clip1.png").unlink()
    for extra in ((), ("--ray",)):
        out = tmp_path / f"out-nomask{len(extra)}"
        code, stdout, stderr = invoke("run", "-q", *extra, "--engine", TINY, vids, masks, "-o", out)
        assert code == 1 and "done 1, skipped 0, failed 1" in stdout, stderr
        (line,) = (out / fray.FAILURES_FILE).read_text().splitlines()
        assert json.loads(line)["file"].endswith("clip1.mkv") and "no mask found" in line
    Image.fromarray(m).save(masks / "clip1.png")
    for k in range(2):
        code, _, stderr = invoke("video", "-q", "--engine", TINY, vids / f"clip{k}.mkv",
                                 "--mask", masks / f"clip{k}.png", "-o",
                                 tmp_path / f"local{k}.mkv")
        assert code == 0, stderr
        a, b = frames(tmp_path / "out" / f"clip{k}.mkv"), frames(tmp_path / f"local{k}.mkv")
        assert len(a) == len(b) == 4
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_engine_error_stops_the_run_with_exit_2(tree, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    code, _, stderr = invoke("run", "-q", "--ray", "--engine", bad, tree / "images",
                             tree / "masks", "-o", tmp_path / "out")
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "not a valid ONNX model" in last
    with pytest.raises(EngineError, match="no such model file"):
        fray.run_files(tree / "images", tree / "masks", tmp_path / "o2",
                       engine=tmp_path / "missing.onnx")


def test_a_gpu_the_local_cluster_has_not_is_one_line(tree, tmp_path):
    """The actors asked Ray for a GPU it does not have and waited for it forever. (A process of
    its own with a time limit: a regression hangs, and fails here rather than hanging CI.)"""
    import os
    import subprocess
    import sys

    ray = fray._import_ray()
    if ray.is_initialized() and ray.cluster_resources().get("GPU", 0):
        pytest.skip("this machine's Ray cluster has a GPU")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-m", "fastfill.cli", "run", "-q", "--ray", "--device", "cuda",
                        "--gpus-per-worker", "1", "--engine", TINY, str(tree / "images"),
                        str(tree / "masks"), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=180, env=env)
    code, stderr = r.returncode, r.stderr
    assert code == 2 and "cluster has 0 GPUs" in stderr, stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.png"))


def test_ray_keeps_the_local_runs_file_rules(tmp_path):
    """--ray as the local run: an output folder inside IMAGES is not input, a killed run's temporary
    files are removed, an output cut short is redone, --max-pixels refuses from the header."""
    _make_tree(tmp_path, 4)
    out = tmp_path / "images" / "out"
    for _ in range(2):
        code, stdout, stderr = invoke("run", "--ray", "--engine", TINY, "-q", "--overwrite",
                                      tmp_path / "images", tmp_path / "masks", "-o", out)
        assert code == 0 and "done 4, skipped 0, failed 0" in stdout, stderr
    assert not (out / "out").exists()
    first = sorted(p for p in out.rglob("*.png"))[0]
    whole = first.read_bytes()
    first.write_bytes(whole[:100])  # cut short by something else
    stale = first.parent / f".{first.name}.k3j9x0q1.tmp"
    stale.write_bytes(b"half")
    code, stdout, stderr = invoke("run", "--ray", "--engine", TINY, "-q", tmp_path / "images",
                                  tmp_path / "masks", "-o", out)
    assert code == 0 and "done 1, skipped 3" in stdout, stderr
    assert first.read_bytes() == whole and not stale.exists()
    # the decoder's notes are said under Ray as in the local run
    exif = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff\x01\x02junk"
    Image.open(first).convert("RGB").save(tmp_path / "images" / "damaged.jpg", exif=exif)
    shutil.copy(tmp_path / "masks" / first.relative_to(out).with_suffix(".png"), tmp_path / "masks" / "damaged.png")
    code, stdout, stderr = invoke("run", "--ray", "--engine", TINY, "-q", tmp_path / "images",
                                  tmp_path / "masks", "-o", out)
    assert code == 0 and "done 1, skipped 4" in stdout, stderr
    assert "note: " in stderr and "damaged.jpg: damaged EXIF dropped, pixels kept" in stderr
    for f in (tmp_path / "images" / "damaged.jpg", out / "damaged.jpg", tmp_path / "masks" / "damaged.png"):
        f.unlink()
    code, stdout, stderr = invoke("run", "--ray", "--engine", TINY, "-q", "--overwrite", "--max-pixels", "100",
                                  tmp_path / "images", tmp_path / "masks", "-o", tmp_path / "o2")
    # (images/out now counts as input: -o is elsewhere)
    assert code == 1 and "done 0, skipped 0, failed 8" in stdout and "over the limit" in stderr


def test_a_worker_with_no_model_flags_runs_what_the_local_run_runs(tmp_path):
    """Ray hands each worker its share of the cores (``auto_threads``); with no model flags that
    share must not ask for the net: the worker runs the default fill, as the local run does."""
    from fastfill.engines.classical import ClassicalEngine
    from fastfill.inpainter import Inpainter

    opts = {"roi": True, "batch_size": 1, "threads": None, "backend": None, "device": None,
            "method": None}
    with Inpainter() as local:
        worker = fray._make_inpainter(None, {**opts, "auto_threads": 1})
        assert isinstance(worker.engine, ClassicalEngine)
        assert worker.engine.label == local.engine.label
        rng = np.random.default_rng(3)
        image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:30, 12:36] = 1
        np.testing.assert_array_equal(worker(image, mask), local(image, mask))
        worker.close()
    # a model named, or threads asked for, still opens that model with them
    named = fray._make_inpainter(None, {**opts, "threads": 1, "auto_threads": 1})
    assert not isinstance(named.engine, ClassicalEngine)
    named.close()


def test_sigterm_during_a_ray_run_stops_it_cleanly(tmp_path):
    """A real process stopped by SIGTERM once its first output is written: "terminated", exit
    143, whole outputs only (Ray's crash handler took SIGTERM over: a stack dump, exit 134)."""
    import signal
    import subprocess
    import sys
    import time

    images, masks, out = tmp_path / "i", tmp_path / "m", tmp_path / "o"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(5)
    m = np.zeros((320, 320), np.uint8)
    m[60:260, 80:240] = 255
    for k in range(60):
        Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)).save(images / f"{k:02d}.png")
        Image.fromarray(m).save(masks / f"{k:02d}.png")
    proc = subprocess.Popen([sys.executable, "-m", "fastfill.cli", "run", "--ray", "--concurrency",
                             "1", "-q", "--method", "patch", str(images), str(masks), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no output in 120 s"
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be stopped: give it more work"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    assert "terminated" in stderr and "SIGTERM received" not in stderr
    written = sorted(out.glob("*.png"))
    assert 0 < len(written) < 60
    for p in written:
        assert Image.open(p).size == (320, 320)  # whole files only
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
