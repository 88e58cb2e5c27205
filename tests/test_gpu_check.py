"""scripts/gpu_check.sh where there is no GPU (every machine the tests run on): it stops at once with
one line and exit 2, and still writes its report; and the script is valid bash (shellcheck-clean
where shellcheck is installed). Its GPU steps run on a GPU machine only (README, Tests)."""

import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(tmp_path, nvidia_smi, *, out=True, cwd=None):
    """The script with NVIDIA_SMI=nvidia_smi (never the machine's own: no real GPU run starts
    here) and OUT=tmp_path/out (or unset): (process, seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "GPU_CHECK_BUDGET")}
    env["NVIDIA_SMI"] = str(nvidia_smi)
    if out:
        env["OUT"] = str(tmp_path / "out")
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env,
                       cwd=cwd or tmp_path)
    return p, time.monotonic() - t0


def _stub(tmp_path, body):
    stub = tmp_path / "bin" / "nvidia-smi"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\n" + body)
    stub.chmod(0o755)
    return stub


def _assert_no_gpu(tmp_path, p, seconds, why, report=None):
    line = f"gpu_check: no NVIDIA GPU: {why}"
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines() == [line] and p.stdout == ""
    assert seconds < 10  # at once: nothing built, installed or run
    text = (report or tmp_path / "out" / "gpu_report.txt").read_text()
    assert text.startswith("fastfill GPU check, ") and f"repository: {ROOT}" in text
    assert text.splitlines()[-2:] == [line, "result: NO GPU (nothing built or run)"]
    assert not (tmp_path / "out").exists() or sorted(os.listdir(tmp_path / "out")) == ["gpu_report.txt"]


def test_no_driver_is_one_line_exit_2_and_a_report(tmp_path):
    missing = tmp_path / "nowhere" / "nvidia-smi"
    p, seconds = _run(tmp_path, missing)
    _assert_no_gpu(tmp_path, p, seconds, f"{missing} not found (no NVIDIA driver on this machine)")


def test_a_driver_that_fails_is_named(tmp_path):
    stub = _stub(tmp_path, "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                           "driver.\" >&2\necho 'second line' >&2\nexit 9\n")
    p, seconds = _run(tmp_path, stub)
    _assert_no_gpu(tmp_path, p, seconds, f"{stub} -L failed: NVIDIA-SMI has failed because it couldn't "
                                         "communicate with the NVIDIA driver.")


def test_a_driver_that_lists_no_gpu(tmp_path):
    stub = _stub(tmp_path, "echo 'No devices found.'\nexit 0\n")
    p, seconds = _run(tmp_path, stub)
    _assert_no_gpu(tmp_path, p, seconds, f"{stub} lists no GPU")


def test_the_report_goes_to_gpu_report_under_the_callers_folder_when_out_is_unset(tmp_path):
    caller = tmp_path / "somewhere"
    caller.mkdir()
    missing = tmp_path / "nowhere" / "nvidia-smi"
    p, seconds = _run(tmp_path, missing, out=False, cwd=caller)
    _assert_no_gpu(tmp_path, p, seconds, f"{missing} not found (no NVIDIA driver on this machine)",
                   report=caller / "gpu_report" / "gpu_report.txt")


def test_the_script_is_valid_bash_and_shellcheck_clean():
    p = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert os.access(SCRIPT, os.X_OK)
    if shutil.which("shellcheck"):  # (not installed by `make test`: checked where it is)
        p = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout
