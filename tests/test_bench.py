"""`fastfill bench`: runs on the tiny model, its JSON has every promised field, clear errors.

No test here asserts a speed (targets are measured in benchmarks/, never in tests).
"""

import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fastfill import bench as b
from fastfill.cli import cli

TINY = Path(__file__).parent / "data" / "tiny_glcic.onnx"
TINY_CE = Path(__file__).parent / "data" / "tiny_ce.onnx"


def _run(args):
    return CliRunner().invoke(cli, args, standalone_mode=False, catch_exceptions=True)


def _check_result(r):
    for key in ("target", "engine", "model", "device", "roi", "kind", "size", "batch",
                "iterations", "windows", "latency_ms", "throughput", "stages_ms",
                "gflop_per_image", "gflops_infer", "gflops_end_to_end"):
        assert key in r, key
    assert set(r["latency_ms"]) >= {"mean", "p50", "p90", "p99"}
    assert all(np.isfinite(v) and v > 0 for v in r["latency_ms"].values())
    assert set(r["throughput"]) == {"images_per_s", "megapixels_per_s"}
    assert all(v > 0 for v in r["throughput"].values())
    assert set(r["stages_ms"]) >= {"prepare", "infer", "composite"}
    assert r["iterations"] == 2


def test_bench_json_has_every_field(tmp_path):
    out = tmp_path / "bench.json"
    res = _run(["bench", "--engine", str(TINY), "--size", "64x48", "--size", "32", "--batch", "1",
                "--batch", "2", "--iters", "2", "--warmup", "1", "--threads", "1",
                "--json", str(out)])
    assert res.exception is None, res.output
    assert res.return_value == 0
    assert "p50" in res.output and "onnxruntime" in res.output and "device:" in res.output
    rep = json.loads(out.read_text())
    assert rep["fastfill_bench"] == 1
    env = rep["environment"]
    for key in ("date", "cpu", "cores", "threads", "versions"):
        assert key in env
    assert env["threads"] == 1 and env["versions"]["onnxruntime"]
    assert {"iters", "warmup", "threads", "hole_fraction", "batches", "sizes"} <= set(rep["settings"])
    rs = rep["results"]
    assert [(r["size"], r["batch"]) for r in rs] == [([64, 48], 1), ([64, 48], 2), ([32, 32], 1),
                                                      ([32, 32], 2)]
    for r in rs:
        _check_result(r)
    # GFLOP from the ONNX graph when onnx is installed, "n/a" (None) otherwise
    pytest.importorskip("onnx")
    assert all(r["gflop_per_image"] > 0 and r["gflops_infer"] > 0 for r in rs)
    # FLOPs scale with the pixels (a fully convolutional net)
    assert rs[0]["gflop_per_image"] / rs[2]["gflop_per_image"] == pytest.approx(64 * 48 / 32 ** 2,
                                                                                 rel=1e-6)


def test_bench_side_by_side_roi_and_backends(tmp_path):
    out = tmp_path / "b.json"
    args = ["bench", "--engine", str(TINY), "--backend", "onnxruntime", "--size", "640x480", "--iters", "2",
            "--warmup", "0", "--hole-fraction", "0.005", "--roi", "--json", str(out)]
    res = _run(args)
    assert res.exception is None, res.output
    rep = json.loads(out.read_text())
    labels = [r["target"] for r in rep["results"]]
    assert labels == ["onnxruntime full", "onnxruntime roi"]  # the baseline first
    full, roi = rep["results"]
    assert roi["roi"] and not full["roi"]
    assert full["windows"] == [[0, 0, 480, 640]]
    (c,) = rep["comparisons"]
    assert c["baseline"] == "onnxruntime full" and c["target"] == "onnxruntime roi"
    assert roi["windows"] != full["windows"]  # a small hole in a large frame: a crop
    # the ratio is what the two rows measured, not a number of its own
    assert c["speedup"] == pytest.approx(full["latency_ms"]["mean"] / roi["latency_ms"]["mean"], rel=1e-3)
    assert c["speedup_p50"] == pytest.approx(full["latency_ms"]["p50"] / roi["latency_ms"]["p50"], rel=1e-3)
    assert c["max_abs_diff_outside"] == 0  # outside the hole: the original bytes
    assert "ratios" in res.output


def test_bench_openvino_interleaved(tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "b.json"
    res = _run(["bench", "--engine", str(TINY), "--backend", "onnxruntime", "--backend", "openvino",
                "--size", "32x32", "--iters", "2", "--warmup", "0", "--json", str(out)])
    assert res.exception is None, res.output
    rep = json.loads(out.read_text())
    assert [r["engine"] for r in rep["results"]] == ["onnxruntime", "openvino"]
    assert rep["comparisons"][0]["max_abs_diff_in_hole"] <= 1


def test_bench_files_time_decode_and_encode(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    m = np.zeros((40, 56), np.uint8)
    m[10:20, 10:30] = 255
    Image.fromarray(m).save(tmp_path / "a_mask.png")
    out = tmp_path / "b.json"
    res = _run(["bench", "--engine", str(TINY), "--image", str(tmp_path / "a.png"), "--mask",
                str(tmp_path / "a_mask.png"), "--iters", "2", "--warmup", "0", "--json", str(out)])
    assert res.exception is None, res.output
    (r,) = json.loads(out.read_text())["results"]
    _check_result(r)
    assert r["size"] == [56, 40]
    assert r["stages_ms"]["decode"] > 0 and r["stages_ms"]["encode"] > 0


def test_bench_never_writes_over_its_inputs_and_refuses_a_fifo(tmp_path):
    """--json named as the image (or the model) replaced it with the report; a FIFO as --mask
    blocked the decode until killed; --torch on a device it does not run on measured the CPU."""
    import os

    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((40, 56), 255, np.uint8)).save(tmp_path / "m.png")
    before = (tmp_path / "a.png").read_bytes()
    for target in (tmp_path / "a.png", Path(TINY)):
        res = _run(["bench", "--engine", str(TINY), "--image", str(tmp_path / "a.png"), "--mask",
                    str(tmp_path / "m.png"), "--iters", "1", "--warmup", "0", "--json", str(target)])
        assert isinstance(res.exception, click.UsageError), res.output
        assert "is one of the benchmark's inputs" in str(res.exception)
    assert (tmp_path / "a.png").read_bytes() == before
    res = _run(["bench", "--iters", "1", "--json", str(tmp_path / "nodir" / "x.json")])
    assert isinstance(res.exception, click.UsageError) and "does not exist" in str(res.exception)
    (tmp_path / "mine.json").write_text('{"mine": 1}')  # (it was replaced without a word)
    res = _run(["bench", "--iters", "1", "--json", str(tmp_path / "mine.json")])
    assert isinstance(res.exception, click.UsageError) and "exists (use --overwrite" in str(res.exception)
    assert (tmp_path / "mine.json").read_text() == '{"mine": 1}'
    os.mkfifo(tmp_path / "fifo.png")
    res = _run(["bench", "--engine", str(TINY), "--image", str(tmp_path / "a.png"), "--mask",
                str(tmp_path / "fifo.png"), "--iters", "1"])
    assert isinstance(res.exception, click.UsageError) and "not a regular file" in str(res.exception)


def test_bench_sizes_have_a_pixel_budget():
    """16384x16384 passed the size check and the synthetic input alone asked for ~23 GB."""
    res = _run(["bench", "--size", "16384x16384", "--iters", "1"])
    assert "over 50 megapixels" in str(res.exception)
    res = _run(["bench", "--size", "4000x4000", "--batch", "8", "--iters", "1", "--warmup", "0"])
    assert "megapixels a call, over 64" in str(res.exception)


@pytest.mark.parametrize("size", ["abc", "512x", "0x10", "12x-3", "5x5x5"])
def test_bench_bad_size_is_a_usage_error(size):
    res = _run(["bench", "--engine", str(TINY), "--size", size])
    assert res.exception is not None
    assert "WIDTHxHEIGHT" in str(res.exception) or "must be >= 1" in str(res.exception)


def test_bench_bad_size_message_through_main(capsys):
    from fastfill.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--engine", str(TINY), "--size", "big"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "bad size 'big'" in err and "512x512" in err


def test_bench_bad_engine_path(tmp_path, capsys):
    from fastfill.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--engine", str(tmp_path / "nope.onnx"), "--size", "32"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not found" in err and "nope.onnx" in err
    assert "Traceback" not in err

    bad = tmp_path / "model.txt"
    bad.write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["bench", "--engine", str(bad), "--size", "32"])
    assert e.value.code == 2
    assert "unknown model format" in capsys.readouterr().err


def test_bench_without_default_model_is_clear(monkeypatch, tmp_path, capsys):
    import fastfill.engines as engines
    from fastfill.cli import main

    monkeypatch.setattr(engines, "default_model_path", lambda: tmp_path / "default.onnx")
    with pytest.raises(SystemExit) as e:
        main(["bench", "--size", "32", "--iters", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "default model" in err and "Traceback" not in err


def test_bench_fixed_size_model_says_which_size():
    res = _run(["bench", "--engine", str(TINY_CE), "--size", "64x64", "--iters", "1"])
    assert res.exception is not None and "takes 128x128 images only, got 64x64" in str(res.exception)
    assert "--size" in str(res.exception)


def test_parse_size_and_percentiles():
    assert b.parse_size("1920x1080") == (1920, 1080)
    assert b.parse_size(" 64 ") == (64, 64)
    assert b.parse_size("64X32") == (64, 32)
    p = b.percentiles([0.001, 0.002, 0.003, 0.004])
    assert p["p50"] == pytest.approx(2.5) and p["min"] == pytest.approx(1.0)


def test_onnx_flops_counts_convs():
    pytest.importorskip("onnx")
    f = b.onnx_flops(TINY, 64, 64)
    assert len(f["layers"]) == 17 and all(g > 0 for _, _, g in f["layers"])  # 15 convolutions, 2 transposed
    total = pytest.approx(f["gflop"])
    assert sum(g for _, _, g in f["layers"]) == total and sum(f["by_op"].values()) == total
    assert set(f["by_op"]) <= {"Conv", "ConvTranspose", "Gemm", "MatMul"}
    assert "Conv" in f["by_op"] and "ConvTranspose" in f["by_op"]
    f2 = b.onnx_flops(TINY, 128, 64, batch=2)
    assert f2["gflop"] == pytest.approx(4 * f["gflop"])


def test_onnx_flops_matches_torch_count():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from train.models import CompletionNet
    from train.torch_engine import torch_flops

    torch.manual_seed(0)
    net = CompletionNet(width=0.0625).eval()
    assert torch_flops(net, 4, 64, 64) == pytest.approx(b.onnx_flops(TINY, 64, 64)["gflop"],
                                                         rel=0.02)


def test_torch_target_runs_the_exported_graphs_computation(tmp_path):
    """The torch target runs what the export computes (checked against ONNX Runtime on the exported
    file), including a harmonic, residual checkpoint's prefill contract."""
    pytest.importorskip("torch")
    from train import export as ex
    from train.models import CompletionNet
    from train.torch_engine import TorchEngine

    from fastfill.engines import load_engine

    net = CompletionNet(width=0.0625, head="residual", norm="group").eval()
    ex.export_model(net, tmp_path / "n.onnx", fill="harmonic", log=lambda *_: None)
    eng = TorchEngine.from_model(net, threads=1, fill="harmonic")
    assert eng.meta.fill == "harmonic"
    x = np.random.default_rng(0).random((1, 4, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(eng.infer(x), load_engine(tmp_path / "n.onnx").infer(x), atol=1e-5)
    from fastfill.errors import InputError
    with pytest.raises(InputError, match="takes 4 channels, got 3"):  # the contract, as every engine
        eng.infer(x[:, :3].copy())


def test_bench_torch_checkpoint_side_by_side(tmp_path):
    torch = pytest.importorskip("torch")
    from train.checkpoint import save_checkpoint
    from train.models import CompletionNet

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "g", models={"G": CompletionNet(width=0.0625).eval()},
                           meta={"kind": "glcic", "mean": [0.5, 0.5, 0.5], "step": 0,
                                 "phase": "completion"})
    out = tmp_path / "b.json"
    res = _run(["bench", "--engine", str(TINY), "--backend", "onnxruntime", "--torch", str(ckpt), "--size", "32x32",
                "--iters", "2", "--warmup", "0", "--threads", "1", "--json", str(out)])
    assert res.exception is None, res.output
    rep = json.loads(out.read_text())
    assert [r["engine"] for r in rep["results"]] == ["onnxruntime", "torch"]
    for r in rep["results"]:
        _check_result(r)
    assert rep["results"][1]["gflop_per_image"] > 0  # counted by torch's FlopCounterMode
    assert rep["comparisons"][0]["target"] == "torch"
    # --device for a checkpoint that runs on the CPU only: refused (it measured the CPU, saying cpu)
    res = _run(["bench", "--torch", str(ckpt), "--device", "cuda", "--size", "32x32", "--iters", "1"])
    assert "runs on the CPU only, not on device 'cuda'" in str(res.exception)


def test_bench_numbers_come_from_the_inpainter_path(monkeypatch):
    """The stage times are the Inpainter's own (Inpainter.batch(timings=...)); there is no copy of
    its logic in bench. Same-size whole frames go through one engine call of the whole batch."""
    from fastfill.engines import load_engine
    from fastfill.inpainter import Inpainter

    eng = load_engine(TINY, threads=1)
    shapes = []

    class Rec:
        meta, name, device = eng.meta, "rec", "cpu"

        def infer(self, x):
            shapes.append(x.shape)
            return eng.infer(x)

    calls = []
    real_batch = Inpainter.batch

    def spy(self, images, masks, *, timings=None):
        calls.append(timings is not None)
        return real_batch(self, images, masks, timings=timings)

    monkeypatch.setattr(Inpainter, "batch", spy)
    t = b.Target("rec", Inpainter(Rec(), roi=False, batch_size=2))
    rep = b.bench([t], sizes=[(40, 24)], batches=[2], iters=3, warmup=2)
    (r,) = rep["results"]
    assert calls == [False, False, True, True, True]  # 2 warm-up runs, then 3 timed ones
    assert shapes and all(s == (2, 4, 24, 40) for s in shapes)  # one call for the batch of 2
    st = r["stages_ms"]
    assert all(st[k] > 0 for k in ("check", "prepare", "infer", "composite"))
    assert sum(st.values()) <= r["latency_ms"]["mean"] * 1.001


def test_gflop_na_says_why(tmp_path):
    pytest.importorskip("onnx")
    from fastfill.engines import load_engine
    from fastfill.inpainter import Inpainter

    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x07 not a model")
    for _ in range(2):  # the second time from the cache, with the same reason
        with pytest.raises(b.FlopCountError, match="cannot count FLOPs of .*garbage.onnx"):
            b.onnx_flops(bad, 32, 32)
    t = b.Target("t", Inpainter(load_engine(TINY, threads=1)), model_path=str(bad))
    rep = b.bench([t], sizes=[(32, 32)], iters=1, warmup=0)
    (r,) = rep["results"]
    assert r["gflop_per_image"] is None and "cannot count FLOPs" in r["gflop_note"]
    assert "GFLOP n/a: cannot count FLOPs" in b.format_report(rep)


def test_write_json_replaces_atomically(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("old")
    b.write_json({"a": np.int64(1), "b": (1.5, Path("x"))}, p)
    assert json.loads(p.read_text()) == {"a": 1, "b": [1.5, "x"]}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json"]  # no temporary file left
    with pytest.raises(TypeError):
        b.write_json({"a": object()}, p)
    assert json.loads(p.read_text())["a"] == 1  # a failed write leaves the old report
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json"]
    from fastfill.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        b.write_json({}, tmp_path / "nope" / "r.json")


def test_bench_passes_threads_only_to_backends_that_take_them(tmp_path, monkeypatch):
    """`fastfill bench --engine x.plan --threads N` gives the plan no threads (it takes none):
    here TensorRT cannot load, so the one error is TensorRT's own, named."""
    import sys

    from fastfill.errors import EngineError

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan = tmp_path / "glcic.plan"
    plan.write_bytes(b"x")
    (tmp_path / "glcic.json").write_text(json.dumps({"format": "nothing"}))
    with pytest.raises(EngineError) as ei:
        b.make_targets([str(plan)], threads=2)
    assert "takes no" not in str(ei.value) and "bad sidecar" in str(ei.value)
    (t,) = b.make_targets([None], threads=1)  # the shipped .onnx still gets its threads
    engines = getattr(t.engine, "engines", [t.engine])  # auto: each back-end it measures
    ort = next(e for e in engines if e.name == "onnxruntime")
    assert t.runs_a_net and ort.session.get_session_options().intra_op_num_threads == 1


def _run_defaults():
    """What `fastfill run IMAGES MASKS -o OUT` uses when given no other option: run's own option
    defaults, read from the command, through the same helper run calls."""
    import click

    run_cmd = cli.commands["run"]
    ctx = click.Context(run_cmd)
    return {p.name: p.get_default(ctx) for p in run_cmd.params}


def test_bench_default_measures_what_run_does_by_default(tmp_path):
    """No options: the engine (the shipped model, or its prefill alone where the model adds
    nothing), back-end, threads, ROI and batch size that `fastfill run` uses by default, and the
    header says so in run's own words."""
    from conftest import invoke

    from fastfill.cli import _inpainter
    from fastfill.inpainter import engine_line

    out = tmp_path / "b.json"
    code, stdout, stderr = invoke("bench", "--size", "64", "--iters", "1", "--warmup", "0",
                                  "--json", out)
    assert code == 0, stderr
    d = _run_defaults()
    with _inpainter(d["engine_path"], d["backend"], d["threads"], d["batch_size"], d["no_roi"],
                    d["method"], d["device"]) as inp:
        line, name = engine_line(inp), inp.engine.name
        roi, batch_size = inp.roi, inp.batch_size
    rep = json.loads(out.read_text())
    (r,) = rep["results"]
    assert (r["engine"], r["roi"], r.get("batch_size")) == (name, roi, batch_size)
    assert rep["settings"]["threads"] == d["threads"]  # None: the back-end's choice, as run
    assert line in stdout
    header = stdout[:stdout.index("target ")]  # what it measures is said above the table
    assert line in header and f"ROI {'on' if roi else 'off'}" in header
    assert f"batch size {batch_size}" in header


def test_bench_header_comes_before_progress_lines(tmp_path):
    """stdout and stderr into one pipe (as `fastfill bench 2>&1 | tee log`): the header first,
    every progress line after it."""
    import subprocess
    import sys

    code = "import sys; from fastfill.cli import main; main(sys.argv[1:])"
    p = subprocess.run([sys.executable, "-c", code, "bench", "--engine", str(TINY), "--size", "32",
                        "--size", "48", "--iters", "1", "--warmup", "0", "--threads", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                       cwd=Path(__file__).parent.parent)
    assert p.returncode == 0, p.stdout
    lines = p.stdout.splitlines()
    header = [i for i, s in enumerate(lines) if s.startswith("fastfill bench")]
    progress = [i for i, s in enumerate(lines) if "ms (n=" in s]
    assert header and len(progress) == 2, p.stdout
    assert header[0] < progress[0], p.stdout
    measures = [i for i, s in enumerate(lines) if "tiny_glcic.onnx" in s]
    assert measures and measures[0] < progress[0], p.stdout  # what it measures, before the run


@pytest.mark.parametrize("args, flag", [
    (["--max-seconds", "nan"], "--max-seconds"), (["--max-seconds", "inf"], "--max-seconds"),
    (["--hole-fraction", "nan"], "--hole-fraction"), (["--seed", "-1"], "--seed"),
    (["--resize-mask"], "--resize-mask"), (["--max-pixels", "9"], "--max-pixels")])
def test_bench_refuses_flags_it_cannot_use_naming_them(args, flag):
    """nan passed click's ranges (a time bound that bounded nothing, NaN in the JSON); a
    negative seed was an internal error; the file flags without --image were ignored."""
    from conftest import invoke

    code, stdout, stderr = invoke("bench", "--size", "16x16", "--iters", "1", "--warmup", "0", *args)
    assert code == 2 and flag in stderr and "internal error" not in stderr, stderr
    assert "fastfill bench" not in stdout  # refused before anything ran


def test_bench_json_never_over_the_shipped_model(tmp_path, monkeypatch):
    """--json is refused over the model that runs with no --engine (the shipped one; a copy of
    it stands in here, so that a broken check overwrites the copy)."""
    import shutil

    from conftest import invoke

    from fastfill import engines

    shipped = tmp_path / "default.onnx"
    shutil.copy(engines.default_model_path(), shipped)
    monkeypatch.setattr(engines, "default_model_path", lambda: shipped)
    before = shipped.read_bytes()
    code, _, stderr = invoke("bench", "--size", "16x16", "--iters", "1", "--warmup", "0",
                             "--json", shipped, "--overwrite")
    assert code == 2 and "is one of the benchmark's inputs" in stderr
    assert shipped.read_bytes() == before


def test_bench_file_input_decodes_each_image_of_a_batch(tmp_path, monkeypatch):
    """A batch of N files costs N decodes, as in `fastfill run` (one decode repeated N times
    made --batch N look cheaper), with run's --resize-mask and --max-pixels."""
    from fastfill.errors import InputError
    from fastfill.files import codecs as fio

    img, mask = tmp_path / "i.png", tmp_path / "m.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(img)
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(mask)
    calls = []
    real = fio.read_item
    monkeypatch.setattr(fio, "read_item", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(InputError, match="--resize-mask"):
        b.FileInput(img, mask).decode(3)
    calls.clear()
    src, images, masks = b.FileInput(img, mask, resize_mask=True).decode(3)
    assert len(calls) == 3 and images.shape == (3, 40, 60, 3) and masks.shape == (3, 40, 60)
    assert masks.all()
    with pytest.raises(InputError, match=r"over the limit of 0\.000001 \(--max-pixels\)"):
        b.FileInput(img, mask, max_pixels=1).decode(1)
