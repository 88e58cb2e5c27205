"""Model files that cannot be used are refused at load, in one line, before any output exists:
a path that is not a regular file (a FIFO, a link to /dev/zero), a file over the size limit, and
metadata out of range. Real files and real processes; each process runs under a memory and time
bound, so that a reader that does not stop fails the test instead of the machine."""

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_glcic.onnx"
MEMORY = 1536 << 20  # address space of each process: the CLI needs < 1 GB
OVER = 2 * 1024 ** 3 + 1  # one byte over the model size limit (a sparse file: no disk used)


def _bounded(args, timeout=90):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))

    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit)


def _bad_model(tmp_path, kind, suffix=".onnx") -> Path:
    model = tmp_path / f"model{suffix}"
    if kind == "link to /dev/zero":
        model.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(model)
    else:
        with open(model, "wb") as f:
            f.truncate(OVER)
    return model


def _expected(kind) -> str:
    if kind == "link to /dev/zero":
        return "not a regular file (a character device)"
    if kind == "fifo":
        return "not a regular file (a FIFO)"
    return f"{OVER} bytes, over the limit of {OVER - 1} bytes"


def _tree(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    m = np.zeros((16, 16), np.uint8)
    m[4:9, 4:9] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    return tmp_path / "images", tmp_path / "mask.png", tmp_path / "out"


def _run(model, images, mask, out):
    return _bounded([sys.executable, "-m", "fastfill.cli", "run", "-q", "--engine", model, images, mask,
                     "-o", out])


KINDS = ["link to /dev/zero", "fifo", "over the size limit"]


@pytest.mark.parametrize("kind", KINDS)
def test_cli_engine_that_is_not_a_bounded_regular_file_is_exit_2_at_load(tmp_path, kind):
    images, mask, out = _tree(tmp_path)
    model = _bad_model(tmp_path, kind)
    p = _run(model, images, mask, out)
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines() == [f"error: {model}: {_expected(kind)}"]
    assert not out.exists() and p.stdout == ""


_API = """
import sys
from pathlib import Path
from fastfill.errors import FastfillError
model, tmp = Path(sys.argv[1]), Path(sys.argv[2])

def opener(name, call):
    try:
        call()
        print(f"{name}: loaded")
    except FastfillError as e:
        print(f"{name}: {type(e).__name__}: {e}")
    sys.stdout.flush()

from fastfill.engines import load_engine, open_engine, read_meta, read_onnx_metadata
from fastfill.inpainter import Inpainter
from fastfill.build import build_engine
from fastfill.quantize import quantize
from fastfill.bench import make_targets
opener("read_meta", lambda: read_meta(model))
opener("read_onnx_metadata", lambda: read_onnx_metadata(model))
opener("load_engine", lambda: load_engine(model))
opener("load_engine onnxruntime", lambda: load_engine(model, backend="onnxruntime"))
opener("load_engine openvino", lambda: load_engine(model, backend="openvino"))
opener("open_engine", lambda: open_engine(model, device="cpu", threads=1))
opener("Inpainter", lambda: Inpainter(str(model)))
opener("bench", lambda: make_targets([str(model)], [None]))
opener("build", lambda: build_engine(model, tmp / "x.plan", log=lambda s: None))
opener("quantize", lambda: quantize(model, tmp / "q.onnx", tmp))
"""


@pytest.mark.parametrize("kind", KINDS)
def test_every_opener_of_a_model_path_refuses_it_in_one_line(tmp_path, kind):
    """The Python API, serve and bench (open_engine / Inpainter), build and quantize all open a
    model through the same check."""
    pytest.importorskip("openvino")
    model = _bad_model(tmp_path, kind)
    p = _bounded([sys.executable, "-c", _API, model, tmp_path])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 10, p.stdout
    for line in lines:
        assert re.fullmatch(r"[\w ]+: (EngineError|BuildError): " + re.escape(f"{model}: {_expected(kind)}"),
                            line), line


@pytest.mark.parametrize("kind", KINDS + ["fifo sidecar"])
def test_a_plan_that_is_not_a_bounded_regular_file_is_refused_before_tensorrt(tmp_path, kind):
    script = ("import sys; sys.modules['tensorrt'] = None\n"
              "from fastfill.engines import load_engine\n"
              "try:\n    load_engine(sys.argv[1])\n"
              "except Exception as e:\n    print(type(e).__name__ + ': ' + str(e))\n")
    if kind == "fifo sidecar":
        plan = tmp_path / "model.plan"
        plan.write_bytes(b"plan")
        os.mkfifo(tmp_path / "model.json")
        want = f"{tmp_path / 'model.json'}: not a regular file (a FIFO)"
    else:
        plan = _bad_model(tmp_path, kind, ".plan")
        want = f"{plan}: {_expected(kind)}"
    p = _bounded([sys.executable, "-c", script, plan])
    assert p.stdout.splitlines() == [f"EngineError: {want}"], p.stdout + p.stderr


# -- metadata out of range -------------------------------------------------------------------------

def _with_metadata(tmp_path, **changes) -> Path:
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(TINY))
    props = {p.key: p.value for p in m.metadata_props}
    props.update({f"fastfill.{k}": v for k, v in changes.items()})
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    path = tmp_path / "odd.onnx"
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("field,value,allowed", [
    ("multiple", "999999999", "1 to 256"),
    ("multiple", "0", "1 to 256"),
    ("channels", "5", "3 or 4"),
    ("input_size", "0,64", "each side 1 to 8192"),
    ("input_size", "100000,64", "each side 1 to 8192"),
    ("input_size", "62,64", "multiples of fastfill.multiple (4)"),
    ("receptive_field", "-1", "0 to 262144"),
    ("receptive_field", "999999999", "0 to 262144"),
    ("version", "0", "1 to 1"),
    ("mean", "0.5,2,0.5", "3 numbers in [0, 1]"),
])
def test_metadata_out_of_range_is_refused_at_load_naming_the_field(tmp_path, field, value, allowed):
    from fastfill.engines import load_engine, read_meta
    from fastfill.errors import EngineError

    path = _with_metadata(tmp_path, **{field: value})
    want = f"{path}: fastfill.{field} = {value} is out of range (allowed: {allowed})"
    for load in (read_meta, load_engine):
        with pytest.raises(EngineError) as e:
            load(path)
        assert str(e.value) == want


def test_cli_model_with_an_absurd_multiple_is_exit_2_before_any_output(tmp_path):
    images, mask, out = _tree(tmp_path)
    model = _with_metadata(tmp_path, multiple="999999999")
    p = _run(model, images, mask, out)
    assert p.returncode == 2, p.stderr
    assert p.stderr.splitlines() == [
        f"error: {model}: fastfill.multiple = 999999999 is out of range (allowed: 1 to 256)"]
    assert not out.exists()
