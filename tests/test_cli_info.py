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
        assert f"without --engine/--backend/--device/--method: {inp.engine.selection}" in stdout


def test_info_says_a_damaged_default_model_in_its_line(monkeypatch, tmp_path):
    from fastfill import engines

    bad = tmp_path / "default.onnx"
    bad.write_bytes(b"not a model")
    monkeypatch.setattr(engines, "default_model_path", lambda: bad)
    res = CliRunner().invoke(cli, ["info"])
    assert res.exit_code == 0 and "default model: default.onnx: " in res.output, res.output
