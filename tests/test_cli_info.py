"""`fastfill info` and the top-level error handling of the CLI."""

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from fastfill.cli import cli


def test_info_reports_native_backends():
    res = CliRunner().invoke(cli, ["info"])
    assert res.exit_code == 0, res.output
    assert "native kernels: cpu" in res.output
    assert "onnxruntime:" in res.output


def test_unknown_command_exits_2():
    proc = subprocess.run([sys.executable, "-m", "fastfill.cli", "no-such-command"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "No such command" in proc.stderr


def test_runtime_import_does_not_pull_torch():
    code = "import sys, fastfill, fastfill.ops, fastfill.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_quality_metrics_import_without_torch():
    """train.evaluate's metrics (the texture distance) serve the benchmarks, which need only the
    runtime and the video extra."""
    code = "import sys, train.evaluate; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root)
    assert out.stdout.strip() == "False"


def test_info_names_the_providers_and_the_default_models_prefill():
    import onnxruntime as ort

    from fastfill.engines import default_model_path, read_meta

    res = CliRunner().invoke(cli, ["info"])
    assert res.exit_code == 0, res.output
    stdout = res.output
    assert f"onnxruntime providers: {', '.join(ort.get_available_providers())}" in stdout
    assert f"prefill {read_meta(default_model_path()).fill}" in stdout
    # which back-end the automatic choice takes for it, and why
    from fastfill.engines import load_engine

    assert f"the model on a back-end (--backend auto): {load_engine().selection}" in stdout
    # and what runs without model flags (it said the auto back-end, where the default fill runs)
    from fastfill import Inpainter

    with Inpainter() as inp:
        assert f"without --engine/--backend/--device/--threads/--method: {inp.engine.selection}" in stdout


def test_info_says_a_damaged_default_model_in_its_line(monkeypatch, tmp_path):
    from fastfill import engines

    bad = tmp_path / "default.onnx"
    bad.write_bytes(b"not a model")
    monkeypatch.setattr(engines, "default_model_path", lambda: bad)
    res = CliRunner().invoke(cli, ["info"])
    assert res.exit_code == 0 and "default model: default.onnx: " in res.output, res.output


def test_training_without_its_extra_says_what_to_install_and_its_help_still_shows():
    """Without torch `fastfill train --help` was the install message, exit 2; with torch but not
    safetensors or onnx, train, evaluate and export were "internal error" lines."""
    root = Path(__file__).resolve().parents[1]
    for blocked in ("torch", "safetensors", "onnx"):
        code = (f"import sys; sys.modules[{blocked!r}] = None; from fastfill.cli import main; "
                "main(sys.argv[1:])")
        help_ = subprocess.run([sys.executable, "-c", code, "train", "--help"], capture_output=True,
                               text=True, timeout=120, cwd=root)
        assert help_.returncode == 0 and "--batch-size" in help_.stdout, help_.stderr
        run = subprocess.run([sys.executable, "-c", code, "export", "--random", "-o", "x.onnx"],
                             capture_output=True, text=True, timeout=120, cwd=root)
        assert run.returncode == 2 and not run.stdout, run.stderr
        assert run.stderr.startswith(f"Error: training needs {blocked}: pip install torch --index-url "), run.stderr
        assert "internal error" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_a_train_module_of_the_users_is_named_not_run_as_fastfills(tmp_path, monkeypatch):
    """A `train.py` in the working folder came before fastfill's `train` package in a wheel
    install: fastfill imported it, and the error said to install the extra."""
    import types

    import pytest

    from fastfill.engines import import_train

    mine = types.ModuleType("train")
    mine.__file__ = str(tmp_path / "train.py")
    monkeypatch.setitem(sys.modules, "train", mine)
    with pytest.raises(ImportError, match=r"a module named 'train' \(.*train\.py\) hides fastfill's"):
        import_train("config")
    # through the command line: `fastfill train --help` and a run said "internal error"
    code = ("import sys, types; m = types.ModuleType('train'); m.__file__ = sys.argv[1]; "
            "sys.modules['train'] = m; from fastfill.cli import main; main(sys.argv[2:])")
    for args in (["train", "--help"], ["train", "glcic", "--data", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "train.py"), *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "hides fastfill's training package" in r.stderr, r.stderr
        assert "internal error" not in r.stderr
