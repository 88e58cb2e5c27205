"""The FLOP count behind `fastfill bench`: every layer of the ONNX graph, checked against counts
made without it (torch's FlopCounterMode on the same architecture, and a hand count from the
architecture table), and "n/a" with the reason, never a partial number, when it cannot be made."""

import json
from pathlib import Path

import numpy as np
import pytest

from fastfill import bench as b

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

DATA = Path(__file__).parent / "data"
SHIPPED = Path(b.__file__).parent / "models" / "default.onnx"
# (model, the side it is counted at: 512 for the fully convolutional nets, the CE's fixed 128)
MODELS = [(SHIPPED, 512), (DATA / "tiny_glcic.onnx", 512), (DATA / "tiny_ce.onnx", 128)]


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _config(path):
    return json.loads(_meta(path)["fastfill.provenance"])["config"]


def _glcic_hand_gflop(cfg, h, w):
    """2 x MACs of CompletionNet's convolutions (its docstring's layer table), from the config."""
    ch = lambda c: max(1, int(round(c * cfg["width"])))  # noqa: E731 - train.models._ch
    c64, c128, c256, c32 = ch(64), ch(128), ch(256), ch(32)
    h2, w2, h4, w4 = h // 2, w // 2, h // 4, w // 4
    macs = (h * w * c64 * 4 * 25                                  # 5x5 conv
            + h2 * w2 * (c128 * c64 * 9 + c128 * c128 * 9)        # 3x3/2, 3x3
            + h4 * w4 * (c256 * c128 * 9 + 8 * c256 * c256 * 9)   # 3x3/2, 2 + 4 dilated + 2
            + h4 * w4 * c256 * c128 * 16                          # 4x4 deconv/2 (per input px)
            + h2 * w2 * c128 * c128 * 9
            + h2 * w2 * c128 * c64 * 16                           # 4x4 deconv/2
            + h * w * (c32 * c64 * 9 + 3 * c32 * 9))
    return 2 * macs / 1e9


@pytest.mark.parametrize("path,side", MODELS, ids=[p.name for p, _ in MODELS])
def test_onnx_flops_agree_with_torch_flop_counter(path, side):
    """The exported module (kind.export_net: what torch.onnx.export traces, the CE's paste
    included) rebuilt from the file's config, counted by torch on the meta device."""
    pytest.importorskip("torch")
    from train.kinds import KINDS
    from train.models import build_model
    from train.torch_engine import torch_flops

    cfg = _config(path)
    net = KINDS[cfg["kind"]].export_net(build_model(cfg).eval())[0]
    ref = torch_flops(net, int(_meta(path)["fastfill.channels"]), side, side)
    ours = b.onnx_flops(path, side, side)
    assert ours["gflop"] == pytest.approx(ref, rel=0.05), ours["by_op"]


@pytest.mark.parametrize("path", [SHIPPED, DATA / "tiny_glcic.onnx"], ids=["default", "tiny_glcic"])
def test_onnx_flops_agree_with_a_hand_count(path):
    cfg = _config(path)
    assert cfg["kind"] == "glcic"
    for h, w in ((512, 512), (256, 384)):
        ours = b.onnx_flops(path, h, w)
        assert ours["gflop"] == pytest.approx(_glcic_hand_gflop(cfg, h, w), rel=0.05)
        assert len(ours["layers"]) == 17  # 15 convolutions, 2 transposed


def test_shipped_model_counts_about_17_gflop_at_512():
    f = b.onnx_flops(SHIPPED, 512, 512)
    assert f["gflop"] == pytest.approx(16.99, rel=0.01)
    assert f["by_op"]["ConvTranspose"] > 0


# -- "n/a" with the reason, never a partial number ----------------------------------------------

def _conv_model(tmp_path, middle, extra_inputs=(), name="m.onnx", opset=17):
    """input [N,4,H,W] -> Conv 3x3 (4->8) -> ``middle`` nodes -> Conv 3x3 (8->8) on 'mid'."""
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [8, 4, 3, 3], rng.random(288).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [8, 8, 3, 3], rng.random(576).astype(np.float32))
    nodes = [helper.make_node("Conv", ["input", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
             *middle,
             helper.make_node("Conv", ["mid", "w2"], ["output"], pads=[1, 1, 1, 1], name="conv2")]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, "H", "W"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "g", [x, *extra_inputs], [y], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def test_flops_of_a_plain_two_conv_graph(tmp_path):
    p = _conv_model(tmp_path, [helper.make_node("Relu", ["a"], ["mid"])])
    f = b.onnx_flops(p, 16, 16)
    assert f["gflop"] == pytest.approx(2 * 16 * 16 * (8 * 4 * 9 + 8 * 8 * 9) / 1e9)


def test_shapes_that_cannot_be_inferred_are_na_not_partial(tmp_path):
    """The second conv's input comes through a Reshape to a shape given at run time: its size
    cannot be known, so there is no count (the first conv alone would be a wrong number)."""
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [4])
    p = _conv_model(tmp_path, [helper.make_node("Reshape", ["a", "shape"], ["mid"])], [shape])
    with pytest.raises(b.FlopCountError, match="cannot count FLOPs of .*m.onnx.*conv2.*shape"):
        b.onnx_flops(p, 16, 16)


def test_an_op_with_multiply_adds_the_counter_does_not_know_is_na(tmp_path):
    """An Einsum between the convs does multiply-adds the counter does not count: "n/a"."""
    e = helper.make_tensor("e", TensorProto.FLOAT, [8, 8], np.eye(8, dtype=np.float32).ravel())
    middle = [helper.make_node("Constant", [], ["eye"], value=e),
              helper.make_node("Einsum", ["a", "eye"], ["mid"], equation="nchw,cd->ndhw")]
    p = _conv_model(tmp_path, middle, name="einsum.onnx")
    with pytest.raises(b.FlopCountError, match="einsum.onnx.*Einsum"):
        b.onnx_flops(p, 16, 16)


def test_a_custom_domain_op_is_na(tmp_path):
    """An op from another domain (here ONNX Runtime's FusedConv): whether and how many
    multiply-adds it does is not known here, so no number."""
    middle = [helper.make_node("FusedConv", ["a", "w2"], ["mid"], domain="com.microsoft",
                               activation="Relu", pads=[1, 1, 1, 1])]
    p = tmp_path / "fused.onnx"
    m = onnx.load(str(_conv_model(tmp_path, middle)))
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(m, str(p))
    with pytest.raises(b.FlopCountError, match="com.microsoft.*FusedConv"):
        b.onnx_flops(p, 16, 16)


def test_bench_row_says_na_with_the_reason(tmp_path):
    """Through the bench: the row's GFLOP is None and the note says why (never the partial sum)."""
    from fastfill.engines import load_engine
    from fastfill.inpainter import Inpainter

    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [4])
    p = _conv_model(tmp_path, [helper.make_node("Reshape", ["a", "shape"], ["mid"])], [shape])
    t = b.Target("t", Inpainter(load_engine(DATA / "tiny_glcic.onnx", threads=1)), model_path=str(p))
    (r,) = b.bench([t], sizes=[(32, 32)], iters=1, warmup=0)["results"]
    assert r["gflop_per_image"] is None and r["gflops_infer"] is None
    assert "conv2" in r["gflop_note"]
