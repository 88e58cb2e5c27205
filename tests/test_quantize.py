"""`fastfill quantize`: a tiny real model quantized on generated photos, loaded and run by both CPU
back-ends; the float parts stay float; the self-check refuses; bad inputs give one clear line."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import invoke

torch = pytest.importorskip("torch", reason="PyTorch (the 'train' extra) makes the test model")
onnx = pytest.importorskip("onnx", reason="onnx (the 'quantize' extra) is not installed")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photos(folder, n=6, size=80, seed=0):
    """Smooth colour fields with edges and grain: something to calibrate on."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        a, b = rng.uniform(5, 30, 2)
        img = np.stack([128 + 100 * np.sin(xx / a + i), 128 + 100 * np.cos(yy / b), (xx > size // 2) * 180 + 30], -1)
        img = img + rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny residual GLCIC over the harmonic prefill whose correction is not zero."""
    from train import export as ex
    from train.models import CompletionNet

    torch.manual_seed(0)
    net = CompletionNet(0.125, head="residual", norm="group").eval()
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("q") / "tiny.onnx"
    ex.export_model(net, path, mean=(0.4, 0.45, 0.5), fill="harmonic", log=lambda *_: None)
    return path


def test_quantize_writes_a_model_both_back_ends_run(model, tmp_path):
    from fastfill import Inpainter
    from fastfill.engines import read_meta, read_onnx_metadata
    from fastfill.quantize import quantize

    cal = photos(tmp_path / "cal")
    out = tmp_path / "tiny.int8.onnx"
    lines = []
    r = quantize(model, out, cal, images=8, size=64, held_out=4, log=lines.append)
    assert out.exists() and r.calibration_crops == 8 and r.held_out_crops == 4
    assert abs(r.loss_db) < 1.0 and r.max_abs_diff < 0.1, r
    assert any("kept in float" in ln for ln in lines) and any("self-check" in ln for ln in lines)

    # the metadata: the model's own, plus precision and provenance of the calibration
    props = read_onnx_metadata(out)
    assert props["fastfill.precision"] == "int8"
    prov = json.loads(props["fastfill.quantization"])
    assert prov["calibration_crops"] == 8 and prov["format"] == "QDQ" and prov["source"] == "tiny.onnx"
    assert len(prov["calibration_photos"]) == 5 and prov["held_out_photos"] == ["p5.png"]
    assert read_meta(out) == read_meta(model)  # the runtime sees the same contract

    # really quantized, and the head stays float: the graph input feeds the Slice directly, the
    # output comes from a float Clip, and the convolutions' weights are int8
    g = onnx.load(str(out)).graph
    ops = [n.op_type for n in g.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 5
    producer = {o: n for n in g.node for o in n.output}
    assert producer[g.output[0].name].op_type == "Clip"
    assert any(n.op_type == "Slice" and g.input[0].name in n.input for n in g.node)
    assert any(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4 for t in g.initializer)

    # it runs where an .onnx runs, with outputs near the float model's
    rng = np.random.default_rng(1)
    image = np.asarray(Image.open(cal / "p5.png"))
    mask = np.zeros(image.shape[:2], bool)
    mask[20:50, 25:60] = True
    ref = Inpainter(str(model), backend="onnxruntime")(image, mask)
    for backend in ("onnxruntime", "openvino"):
        if backend == "openvino":
            pytest.importorskip("openvino")
        got = Inpainter(str(out), backend=backend)(image, mask)
        np.testing.assert_array_equal(got[~mask], image[~mask])
        assert np.abs(got.astype(int) - ref.astype(int))[mask].mean() < 3.0, backend
    del rng


def test_the_self_check_refuses_and_writes_nothing(model, tmp_path):
    from fastfill.errors import EngineError
    from fastfill.quantize import quantize

    cal = photos(tmp_path / "cal", n=3)
    out = tmp_path / "refused.onnx"
    with pytest.raises(EngineError, match="nothing written"):
        quantize(model, out, cal, images=4, size=64, held_out=2, max_loss_db=-100.0)
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "cal"]
    # --force writes it anyway
    quantize(model, out, cal, images=4, size=64, held_out=2, max_loss_db=-100.0, force=True)
    assert out.exists()


def test_cli_quantize_and_its_errors(model, tmp_path):
    cal = photos(tmp_path / "cal", n=3)
    out = tmp_path / "m.int8.onnx"
    code, stdout, err = invoke("quantize", model, "-o", out, "--calibration", cal, "--images", 4,
                               "--size", 64, "--held-out", 2)
    assert code == 0, err
    assert out.exists() and "INT8" in stdout and "loss" in stdout
    # the output exists
    code, _, err = invoke("quantize", model, "-o", out, "--calibration", cal)
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1
    # an output that is not a .onnx (a calibration photo was replaced with the model)
    code, _, err = invoke("quantize", model, "-o", cal / "p0.png", "--calibration", cal, "--overwrite")
    assert code == 2 and "written as a .onnx file" in err
    # all the crops are held at once: a budget, said before any work
    code, _, err = invoke("quantize", model, "-o", tmp_path / "big.onnx", "--calibration", cal,
                          "--images", 100000, "--size", 512)
    assert code == 2 and "megapixels of calibration crops" in err
    # and the held-out crops too (a MemoryError, not a line)
    code, _, err = invoke("quantize", model, "-o", tmp_path / "big.onnx", "--calibration", cal,
                          "--images", 1, "--size", 4096, "--held-out", 100000)
    assert code == 2 and "megapixels of held-out crops" in err and len(err.strip().splitlines()) == 1
    # no calibration images
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    code, _, err = invoke("quantize", model, "-o", tmp_path / "x.onnx", "--calibration", empty)
    assert code == 2 and "no calibration images" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
    # not a fastfill model
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["input"], ["output"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(g), str(plain))
    code, _, err = invoke("quantize", plain, "-o", tmp_path / "y.onnx", "--calibration", cal)
    assert code == 2 and "no fastfill metadata" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y.onnx").exists()
    # already quantized
    code, _, err = invoke("quantize", out, "-o", tmp_path / "z.onnx", "--calibration", cal)
    assert code == 2 and "already quantized" in err
