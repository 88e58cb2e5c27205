"""train.loop: real tiny training runs on image files: phases, overfitting, exact resume, Ctrl-C,
sample grids, bad configs, and the `fastfill train` command."""

import json
import os
import signal
import sys


import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fastfill.cli import cli  # noqa: E402
from train.checkpoint import load_checkpoint, read_meta  # noqa: E402
from train.data import DataError  # noqa: E402
from fastfill.errors import InputError  # noqa: E402
from train.loop import TrainConfig, glcic_phase, train  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

COLORS = [(230, 20, 20), (20, 200, 40), (30, 30, 220), (240, 240, 30)]


@pytest.fixture(scope="module")
def solid(tmp_path_factory):
    """Four solid-colour photos: the right fill is the surrounding colour, learnable in a few steps."""
    d = tmp_path_factory.mktemp("solid")
    for i, c in enumerate(COLORS):
        Image.fromarray(np.full((40 + 4 * i, 44, 3), c, np.uint8)).save(d / f"{i}.png")
    return d


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    d = tmp_path_factory.mktemp("textured")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    return d


def tiny(kind, data, out, **kw):
    base = dict(kind=kind, data=str(data), out=str(out), batch_size=2, width=0.0625, d_width=0.0625,
                val_fraction=0.0, sample_every=0, progress=False, threads=1)
    if kind == "glcic":
        base.update(crop=32)
    base.update(kw)
    return TrainConfig(**base)


def test_phase_schedule():
    assert [glcic_phase(s, 2, 3) for s in range(7)] == ["completion"] * 2 + ["discriminator"] * 3 + ["joint"] * 2


def test_glcic_phases_switch_at_configured_steps(textured, tmp_path):
    r = train(tiny("glcic", textured, tmp_path, steps=6, tc=2, td=1))
    phases = [h["phase"] for h in r["history"]]
    assert phases == ["completion"] * 2 + ["discriminator"] + ["joint"] * 3
    assert set(r["history"][0]) >= {"g_rec"} and "d_loss" not in r["history"][0]
    assert "d_loss" in r["history"][2] and "g_rec" not in r["history"][2]
    assert {"d_loss", "g_adv", "g_rec", "g_loss"} <= set(r["history"][3])
    meta = read_meta(r["checkpoint"])
    assert meta["step"] == 6 and meta["phase"] == "joint" and meta["kind"] == "glcic"
    assert meta["train"]["tc"] == 2 and meta["train"]["alpha"] == 0.0004
    assert len(meta["mean"]) == 3 and all(0 <= v <= 1 for v in meta["mean"])
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(6))


def test_glcic_overfits(solid, tmp_path):
    r = train(tiny("glcic", solid, tmp_path, steps=60, batch_size=4, width=0.125, tc=1000, td=0))
    rec = [h["g_rec"] for h in r["history"]]
    assert np.mean(rec[-5:]) < 0.3 * np.mean(rec[:5])
    net, meta = load_checkpoint(r["checkpoint"])
    np.testing.assert_allclose(meta["mean"], np.mean(COLORS, 0) / 255, atol=0.03)


def test_ce_overfits(solid, tmp_path):
    r = train(tiny("ce", solid, tmp_path, steps=60, batch_size=4))
    rec = [h["g_rec"] for h in r["history"]]
    assert np.mean(rec[-5:]) < 0.6 * np.mean(rec[:5])
    assert all(h["phase"] == "joint" and "d_loss" in h for h in r["history"])


@pytest.mark.parametrize("kind", ["glcic", "ce"])
def test_resume_continues_exactly(kind, textured, tmp_path):
    kw = dict(steps=6, tc=2, td=1) if kind == "glcic" else dict(steps=4)
    full = train(tiny(kind, textured, tmp_path / "full", **kw))
    half_steps = 4 if kind == "glcic" else 2
    first = train(tiny(kind, textured, tmp_path / "split", **{**kw, "steps": half_steps}))
    rest = train(tiny(kind, textured, tmp_path / "split", **kw, resume=str(first["checkpoint"])))
    assert [h["step"] for h in rest["history"]] == list(range(half_steps, kw["steps"]))
    assert first["history"] + rest["history"] == full["history"]  # identical losses, bit for bit
    a, b = load_file(str(full["checkpoint"])), load_file(str(rest["checkpoint"]))
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_saves_and_resumes(textured, tmp_path, sig, code):
    # A real Ctrl-C (or a scheduler's SIGTERM, which saved nothing) to a real `fastfill train`
    # process (in-process, a signal would also hit the threads of every library earlier tests
    # loaded).
    import subprocess
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastfill.cli", "train", "glcic", "--data", str(textured), "--out", str(out),
           "--steps", "100000", "--tc", "1", "--td", "1", "--crop", "32", "--batch-size", "2",
           "--width", "0.0625", "--d-width", "0.0625", "--val-fraction", "0", "--sample-every", "0",
           "--threads", "1", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    proc.send_signal(sig)  # as if the user pressed Ctrl-C, or a job scheduler ended the job
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "interrupted at step" in stderr and "--resume" in stderr
    step = read_meta(out / "last.safetensors")["step"]
    assert 2 <= step < 100000
    r2 = train(tiny("glcic", textured, out, steps=step + 2, tc=1, td=1, resume=str(out / "last.safetensors")))
    assert not r2["interrupted"] and [h["step"] for h in r2["history"]] == [step, step + 1]


def test_sample_grids(textured, tmp_path):
    train(tiny("glcic", textured, tmp_path, steps=4, tc=2, td=0, sample_every=2, n_samples=3, val_fraction=0.3))
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["step_0000002.png", "step_0000004.png"]
    with Image.open(tmp_path / "samples" / grids[0]) as im:
        assert im.size == (3 * 32, 3 * 32)  # input | output | truth, one row per sample


def test_bad_configs(textured, tmp_path):
    with pytest.raises(DataError, match="unknown model kind"):
        TrainConfig(kind="unet", data="x", out="y")
    with pytest.raises(DataError, match="128x128"):
        TrainConfig(kind="ce", data="x", out="y", crop=64)
    with pytest.raises(DataError, match="multiple of 4"):
        TrainConfig(kind="glcic", data="x", out="y", crop=30)
    with pytest.raises(DataError, match="no images"):
        train(tiny("glcic", tmp_path, tmp_path / "o", steps=1))
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        train(tiny("glcic", textured, tmp_path / "o", steps=1, adv="wgan"))
    # (internal errors before: an unknown device, CUDA in a CPU torch, an infinite scale)
    with pytest.raises(DataError, match="device must be cpu, cuda"):
        TrainConfig(kind="glcic", data="x", out="y", device="foo")
    with pytest.raises(DataError, match="scale must be LO:HI"):
        TrainConfig(kind="glcic", data="x", out="y", scale=(1.0, float("inf")))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            train(tiny("glcic", textured, tmp_path / "o2", steps=1, device="cuda"))
    # the widths and sizes are bounded on the command line (200 asked for 12 GB)
    r = CliRunner().invoke(cli, ["train", "glcic", "--data", str(textured), "--out", str(tmp_path / "o3"),
                                 "--width", "200"])
    assert r.exit_code == 2 and "--width" in r.output and not (tmp_path / "o3").exists()


def test_paper_defaults():
    g = TrainConfig(kind="glcic", data="x", out="y")
    assert (g.steps, g.batch_size, g.crop, g.tc, g.td, g.alpha, g.local_size, g.mask) == \
        (150_000, 96, 256, 90_000, 10_000, 0.0004, 128, "rect")
    c = TrainConfig(kind="ce", data="x", out="y")
    assert (c.batch_size, c.crop, c.lambda_rec, c.lambda_adv, c.overlap_weight, c.lr_ratio) == \
        (64, 128, 0.999, 0.001, 10.0, 10.0)


def test_cli_train(textured, tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["train", "glcic", "--data", str(textured), "--out", str(tmp_path / "run"), "--steps", "2",
            "--batch-size", "2", "--crop", "32", "--width", "0.0625", "--d-width", "0.0625", "--tc", "1",
            "--td", "0", "--val-fraction", "0", "--sample-every", "0", "-q"]
    res = runner.invoke(cli, args, standalone_mode=False)
    assert res.exception is None, res.output
    assert res.return_value == 0 and "done: step 2" in res.output
    assert (tmp_path / "run" / "last.safetensors").exists()
    # resume to more steps
    res = runner.invoke(cli, args[:7] + ["4"] + args[8:] + ["--resume", str(tmp_path / "run" / "last.safetensors")],
                        standalone_mode=False)
    assert res.exception is None and "done: step 4" in res.output
    assert runner.invoke(cli, ["train", "glcic", "--out", str(tmp_path)]).exit_code == 2  # no --data
    assert runner.invoke(cli, ["train", "vae", "--data", str(textured), "--out", str(tmp_path)]).exit_code == 2
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    res = runner.invoke(cli, args)
    assert res.exit_code != 0 and "pip install 'fastfill[train]'" in res.output


def test_cli_train_options_are_built_from_the_config(textured, tmp_path):
    """`fastfill train`'s options are the TrainConfig fields made with opt(): each is in the help
    with its default, each bad value is a usage error, and listing the commands does not import
    train (the runtime's rule)."""
    import dataclasses
    import subprocess

    from train.config import TrainConfig

    runner = CliRunner()
    helptext = " ".join(runner.invoke(cli, ["train", "--help"]).output.split())
    exposed = [f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]
    assert len(exposed) >= 30
    for f in exposed:
        assert f"--{f.name.replace('_', '-')}" in helptext, f.name
        assert " ".join(f.metadata["help"].split())[:30] in helptext, f.name
    assert "[default: 0.0004]" in helptext and "(1.0:1.5)" in helptext
    base = ["train", "glcic", "--data", str(textured), "--out", str(tmp_path / "r")]
    for bad in (["--norm", "layer"], ["--steps", "-1"], ["--scale", "1.5"], ["--ema", "1"],
                ["--threads", "0"], ["--resume", str(tmp_path / "missing.safetensors")]):
        res = runner.invoke(cli, base + bad)
        assert res.exit_code == 2 and bad[0] in res.output, (bad, res.output)
    assert not (tmp_path / "r").exists()
    code = "import sys; from fastfill.cli import main; sys.argv = ['fastfill', '--help']\n" \
           "try:\n    main()\nexcept SystemExit:\n    pass\nprint('train' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr



def test_resume_after_a_kill_logs_each_step_once(textured, tmp_path):
    """Killed after its last checkpoint, a run had logged steps the resume runs again: log.jsonl
    read ...,4,5,4,5 (and a line cut short by the kill)."""
    first = train(tiny("glcic", textured, tmp_path, steps=4, tc=2, td=1))
    log = tmp_path / "log.jsonl"
    with open(log, "a") as f:  # what a kill at step 5, after the checkpoint at 4, leaves behind
        f.write(json.dumps({"step": 4, "phase": "joint", "g_rec": 1.0}) + "\n")
        f.write('{"step": 5, "pha')
    train(tiny("glcic", textured, tmp_path, steps=6, tc=2, td=1, resume=str(first["checkpoint"])))
    steps = [json.loads(x)["step"] for x in log.read_text().splitlines()]
    assert steps == list(range(6)), steps


def test_an_unreadable_training_photo_is_one_warning_line(textured, tmp_path):
    """Python's warning format printed the file and line of the library and its source line."""
    import shutil
    import subprocess
    import sys

    data = tmp_path / "photos"
    shutil.copytree(textured, data)
    (data / "bad.jpg").write_bytes((data / "0.jpg").read_bytes()[:200])
    r = subprocess.run([sys.executable, "-m", "fastfill.cli", "train", "glcic", "--data", str(data), "--steps", "1",
                        "--crop", "32", "--width", "0.0625", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "bad.jpg" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: skipping unreadable image"), r.stderr
    assert "UserWarning" not in r.stderr and "warn(" not in r.stderr


def test_resuming_a_run_with_nothing_left_is_refused_before_anything_is_made(textured, tmp_path):
    """It printed "done: step 6, 0.00 it/s" and made a new run folder."""
    first = train(tiny("glcic", textured, tmp_path / "a", steps=4, tc=2, td=1))
    with pytest.raises(InputError, match=r"is at step 4, and --steps is 3: nothing to run"):
        train(tiny("glcic", textured, tmp_path / "b", steps=3, tc=2, td=1, resume=str(first["checkpoint"])))
    assert not (tmp_path / "b").exists()


def test_a_run_folder_is_never_taken_over(textured, tmp_path):
    """--resume of one run with --out another run's folder replaced that run's checkpoint and cut
    its log to this one's steps; a folder whose run was stopped before its first save (a log, no
    checkpoint) was used again, the old log lines left in. Both are refused, the folder as it was;
    an --out that cannot be a folder is one line, not an internal error."""
    p = train(tiny("glcic", textured, tmp_path / "p", steps=4, tc=2, td=1))
    q = train(tiny("glcic", textured, tmp_path / "q", steps=2, tc=2, td=1))
    before = (tmp_path / "p" / "log.jsonl").read_bytes(), (tmp_path / "p" / "last.safetensors").read_bytes()
    with pytest.raises(InputError, match=r"holds another run .* than .*q.*last\.safetensors"):
        train(tiny("glcic", textured, tmp_path / "p", steps=5, tc=2, td=1, resume=str(q["checkpoint"])))
    assert ((tmp_path / "p" / "log.jsonl").read_bytes(), (tmp_path / "p" / "last.safetensors").read_bytes()) \
        == before
    assert p["step"] == 4
    killed = tmp_path / "k"
    killed.mkdir()
    (killed / "log.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(InputError, match="holds a run's log.jsonl and no checkpoint"):
        train(tiny("glcic", textured, killed, steps=2, tc=2, td=1))
    assert (killed / "log.jsonl").read_text() == '{"step": 0}\n'
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot create the folder"):
        train(tiny("glcic", textured, tmp_path / "file" / "run", steps=2, tc=2, td=1))


def test_damaged_checkpoint_metadata_is_one_line(tmp_path):
    """A .safetensors whose fastfill metadata is not JSON, or lists no models: a JSONDecodeError
    or KeyError surfaced as an internal error."""
    from safetensors.torch import save_file

    for name, md in (("text", "not json"), ("nomodels", json.dumps({"format": "fastfill-checkpoint"}))):
        path = tmp_path / f"{name}.safetensors"
        save_file({"x": torch.zeros(1)}, str(path), metadata={"fastfill": md})
        with pytest.raises(InputError, match="damaged fastfill metadata"):
            read_meta(path)


def test_validation_asked_for_with_nothing_held_out_is_refused(textured, tmp_path):
    """--val-every with no held-out photo (a small set's split holds none) validated nothing,
    saved no best checkpoint and said nothing."""
    with pytest.raises(InputError, match=r"--val-every 1: nothing to validate on .*holds none out"):
        train(tiny("glcic", textured, tmp_path / "r", steps=2, tc=2, td=1, val_every=1, val_fraction=0.0))
    assert not (tmp_path / "r").exists()


def test_a_resumed_run_clears_what_a_kill_while_saving_left(textured, tmp_path):
    """A run killed while it saved left a checkpoint-sized hidden temporary file (safetensors'
    own, beside atomic_write's) that no later run removed."""
    import tempfile

    first = train(tiny("glcic", textured, tmp_path / "r", steps=2, tc=2, td=1))
    fd, ours = tempfile.mkstemp(prefix=".last.safetensors.", suffix=".tmp", dir=tmp_path / "r")
    os.close(fd)
    theirs = tmp_path / "r" / ".tmpJ1JFvM"
    theirs.write_bytes(b"\0" * 1000)
    kept = tmp_path / "r" / ".tmp_notes_of_mine.txt"  # (not a temporary file's name: left alone)
    kept.write_text("x")
    train(tiny("glcic", textured, tmp_path / "r", steps=3, tc=2, td=1, resume=str(first["checkpoint"])))
    assert not os.path.exists(ours) and not theirs.exists() and kept.exists()
