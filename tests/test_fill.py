"""The harmonic fill kernel against a SciPy sparse direct solve, and its properties."""

import numpy as np
import pytest

from fastfill import Inpainter, ops
from fastfill.inpainter import roi_windows

pytest.importorskip("scipy")

MEAN = (0.41, 0.52, 0.63)
TOL = 1e-4  # the kernel stops at a relative residual of 1e-5 (csrc/harmonic.cpp kRelTol)


def harmonic(images, masks, window=None, device="cpu", dtype=np.float32):
    """The kernel's fill as float [N, h, w, 3] (prepare's RGB planes, no padding)."""
    x = ops.prepare(images, masks, MEAN, 1, mask_channel=False, window=window, fill="harmonic",
                    device=device, dtype=dtype)
    return x.transpose(0, 2, 3, 1).astype(np.float64)


def check_against_reference(image, mask):
    got = harmonic(image[None], mask[None])[0]
    want = ops.fill_reference(image, mask, MEAN)
    hole = mask != 0
    assert np.abs(got - want)[hole].max(initial=0) <= TOL
    # outside the hole, prepare's usual bytes / 255
    np.testing.assert_array_equal(got[~hole].astype(np.float32), (image[~hole] / np.float32(255)).astype(np.float32))


def random_blobs(rng, h, w, n):
    m = np.zeros((h, w), np.uint8)
    for _ in range(n):
        y, x = rng.integers(0, h), rng.integers(0, w)
        a, b = rng.integers(1, max(2, h // 3)), rng.integers(1, max(2, w // 3))
        m[max(0, y - a):y + a, max(0, x - b):x + b] = 255
    return m


@pytest.mark.parametrize("seed", range(8))
def test_random_masks_match_scipy(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 90, 2)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = (rng.random((h, w)) < rng.uniform(0.05, 0.95)).astype(np.uint8)
    check_against_reference(image, mask)


@pytest.mark.parametrize("shape,boxes", [
    ((40, 60), [(0, 0, 10, 10)]),                 # a corner
    ((40, 60), [(30, 50, 40, 60)]),               # the opposite corner
    ((40, 60), [(0, 20, 40, 30)]),                # top to bottom: two separate known parts
    ((40, 60), [(0, 0, 40, 59)]),                 # all but one column
    ((33, 1), [(5, 0, 20, 1)]),                   # one column
    ((1, 47), [(0, 3, 1, 40)]),                   # one row
    ((50, 50), [(20, 20, 21, 21)]),               # one pixel
    ((50, 50), [(10, 10, 11, 11), (11, 11, 12, 12), (30, 5, 45, 40)]),  # diagonal neighbours: two components
    ((64, 64), [(i, j, i + 3, j + 3) for i in range(0, 64, 8) for j in range(0, 64, 8)]),  # 64 components
])
def test_shapes_and_borders_match_scipy(shape, boxes):
    rng = np.random.default_rng(len(boxes))
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    mask = np.zeros(shape, np.uint8)
    for y0, x0, y1, x1 in boxes:
        mask[y0:y1, x0:x1] = 1
    check_against_reference(image, mask)


def test_large_irregular_hole_matches_scipy():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:300, 0:300]
    image = np.clip(np.stack([128 + 100 * np.sin(xx / 37), 128 + 100 * np.cos(yy / 23), (xx + yy) / 3], -1)
                    + rng.normal(0, 20, (300, 300, 3)), 0, 255).astype(np.uint8)
    mask = random_blobs(rng, 300, 300, 12)
    assert mask.mean() > 0.2
    check_against_reference(image, mask)


def test_empty_and_full_masks():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    empty = np.zeros((2, 20, 30), np.uint8)
    np.testing.assert_array_equal(ops.prepare(image, empty, MEAN, 1, fill="harmonic"),
                                  ops.prepare(image, empty, MEAN, 1, fill="mean"))
    full = np.ones((2, 20, 30), np.uint8)
    # no boundary: the mean colour, as the mean fill gives
    np.testing.assert_array_equal(ops.prepare(image, full, MEAN, 1, fill="harmonic"),
                                  ops.prepare(image, full, MEAN, 1, fill="mean"))
    np.testing.assert_array_equal(ops.fill(image[0], full[0], "harmonic", mean=MEAN),
                                  ops.fill(image[0], full[0], "mean", mean=MEAN))


def test_flat_and_linear_images_are_reproduced():
    # Laplace's equation is solved exactly by constants and by linear ramps (Neumann at the border
    # holds for a ramp along the other axis only, so the ramp runs left-right and the hole spans
    # no left/right border).
    flat = np.full((64, 80, 3), (128, 100, 200), np.uint8)
    mask = np.zeros((64, 80), np.uint8)
    mask[10:50, 20:60] = 1
    np.testing.assert_array_equal(ops.fill(flat, mask), flat)
    ramp = np.repeat(np.repeat(np.arange(80, dtype=np.uint8)[None, :, None] * 3, 64, 0), 3, 2)
    out = ops.fill(ramp, mask)
    assert np.abs(out.astype(int) - ramp).max() <= 1


def test_fill_is_local_to_each_component():
    """Changing the image far from a component (outside it and its boundary) leaves its fill."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
    mask = np.zeros((60, 60), np.uint8)
    mask[5:15, 5:15] = 1
    mask[40:50, 40:50] = 1
    a = harmonic(image[None], mask[None])[0]
    other = image.copy()
    other[30:, 30:] = 255 - other[30:, 30:]
    b = harmonic(other[None], mask[None])[0]
    np.testing.assert_array_equal(a[5:15, 5:15], b[5:15, 5:15])
    assert np.abs(a[40:50, 40:50] - b[40:50, 40:50]).max() > 0.1  # a negative control


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_window_is_the_crop(dtype):
    """A window fills as its own image would (window border = image border)."""
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (1, 70, 90, 3), dtype=np.uint8)
    mask = (random_blobs(rng, 70, 90, 6) > 0).astype(np.uint8)[None]
    t, l, h, w = 7, 13, 50, 61
    crop_i = np.ascontiguousarray(image[:, t:t + h, l:l + w])
    crop_m = np.ascontiguousarray(mask[:, t:t + h, l:l + w])
    np.testing.assert_array_equal(harmonic(image, mask, (t, l, h, w), dtype=dtype),
                                  harmonic(crop_i, crop_m, dtype=dtype))


def test_roi_windows_equal_full_frame():
    """The fill of each hole component inside its ROI window equals the full-frame fill."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)
    mask = np.zeros((300, 420), np.uint8)
    mask[20:50, 30:70] = 1
    mask[200:260, 300:330] = 1
    mask[250:300, 0:40] = 1  # on a border
    full = harmonic(image[None], mask[None])[0]
    hole = mask != 0
    wins = roi_windows(mask, margin=40, multiple=4)
    assert len(wins) >= 2
    for t, l, h, w in wins:
        got = harmonic(image[None], mask[None], (t, l, h, w))[0]
        sub = hole[t:t + h, l:l + w]
        assert np.abs(got[sub] - full[t:t + h, l:l + w][sub]).max(initial=0) <= 1e-5
    # negative control: a window that cuts a component fills it differently
    got = harmonic(image[None], mask[None], (0, 0, 35, 420))[0]
    assert np.abs(got[20:35, 30:70] - full[20:35, 30:70]).max() > 1e-3


def test_fill_uint8_output_and_threads_agree():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (120, 140, 3), dtype=np.uint8)
    mask = random_blobs(rng, 120, 140, 5)
    out = ops.fill(image, mask)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    want = np.clip(np.rint(ops.fill_reference(image, mask) * 255), 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - want).max() <= 1  # rounding ties only
    assert (out == want).mean() > 0.999
    # batch of two = each alone
    both = ops.fill(np.stack([image, image[::-1].copy()]), np.stack([mask, mask[::-1].copy()]))
    np.testing.assert_array_equal(both[0], out)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(method="telea"), ValueError, "fill: expected one of mean, harmonic"),
    (dict(mean=(1, 2)), ValueError, "mean: expected 3 values"),
    (dict(window=(0, 0, 0, 5)), ValueError, "window"),
])
def test_fill_bad_arguments(kwargs, exc, match):
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(exc, match=match):
        ops.fill(image, np.ones((8, 8), np.uint8), **kwargs)


def test_prepare_bad_fill_name():
    with pytest.raises(ValueError, match="fill: expected one of"):
        ops.prepare(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), np.uint8), MEAN, fill="median")


@pytest.mark.gpu
def test_cuda_prepare_takes_the_cpu_fill():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    mask = (rng.random((2, 40, 52)) < 0.3).astype(np.uint8)
    for dtype in (np.float32, np.float16):
        np.testing.assert_array_equal(
            ops.prepare(image, mask, MEAN, 4, fill="harmonic", device="cuda", dtype=dtype),
            ops.prepare(image, mask, MEAN, 4, fill="harmonic", device="cpu", dtype=dtype))


def test_inpainter_feeds_a_harmonic_model_its_prefill(tmp_path):
    """A model that declares fastfill.fill=harmonic gets the harmonic prefill: an identity model
    (returns its input RGB) then reproduces ops.fill exactly, with ROI and without."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from fastfill.engines.base import ModelMeta

    meta = ModelMeta("glcic", MEAN, multiple=4, receptive_field=20, channels=4, fill="harmonic")
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, "H", "W"])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph([helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["output"])],
                              "identity", [inp], [out], [starts, ends, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in meta.to_onnx_metadata().items():
        model.metadata_props.add(key=k, value=v)
    path = tmp_path / "identity.onnx"
    onnx.save(model, path)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    mask[30:60, 40:90] = 1
    mask[180:200, 250:300] = 1
    want = ops.fill(image, mask)
    for roi in (False, True):
        with Inpainter(str(path), roi=roi) as ip:
            assert ip.meta.fill == "harmonic"
            np.testing.assert_array_equal(ip(image, mask), want)


@pytest.mark.parametrize("multiple,mask_channel", [(1, True), (4, True), (8, False)])
def test_prepare_harmonic_matches_its_reference_with_padding(multiple, mask_channel):
    rng = np.random.default_rng(multiple)
    images = rng.integers(0, 256, (2, 29, 43, 3), dtype=np.uint8)
    masks = (rng.random((2, 29, 43)) < 0.4).astype(np.uint8) * 7
    got = ops.prepare(images, masks, MEAN, multiple, mask_channel=mask_channel, fill="harmonic")
    want = ops.prepare_reference(images, masks, MEAN, multiple, mask_channel=mask_channel, fill="harmonic")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_the_result_does_not_depend_on_the_thread_count(tmp_path):
    """Large components run side by side or split by rows depending on the threads; the sums are
    added in row order either way, so one thread and two give the same bits."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (600, 700, 3), dtype=np.uint8)
    mask = np.zeros((600, 700), np.uint8)
    for y, x in ((10, 10), (300, 20), (20, 400), (320, 380)):
        mask[y:y + 270, x:x + 290] = 1  # four components of ~78k pixels: over the split threshold
    np.save(tmp_path / "im.npy", image)
    np.save(tmp_path / "m.npy", mask)
    code = ("import numpy as np, sys; from fastfill import ops; d = sys.argv[1]; "
            "np.save(d + '/out.npy', ops.prepare(np.load(d + '/im.npy'), np.load(d + '/m.npy'), "
            "(0.5, 0.5, 0.5), 1, fill='harmonic'))")
    outs = []
    for threads in ("1", "2"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120,
                       env=dict(os.environ, OMP_NUM_THREADS=threads))
        outs.append(np.load(tmp_path / "out.npy"))
    np.testing.assert_array_equal(outs[0], outs[1])
