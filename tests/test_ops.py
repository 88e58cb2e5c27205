"""The native pixel kernels against their NumPy reference (uint8 exact, float within 1e-6)."""

import numpy as np
import pytest

from fastfill import ops

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
MEAN = (0.41, 0.52, 0.63)


def make(rng, n, h, w, hole=0.3):
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    masks = (rng.random((n, h, w)) < hole).astype(np.uint8) * rng.integers(1, 256, dtype=np.uint8)
    return images, masks


def assert_float_equal(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype == np.float16:  # both round to nearest even: bit-identical halves
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


# sizes: tiny, odd widths, already aligned, one row/column (reflect of a size-1 axis)
SIZES = [(1, 1, 1), (1, 5, 7), (2, 17, 33), (3, 32, 64), (2, 1, 9), (1, 9, 1), (2, 61, 47)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mask_channel", [True, False])
@pytest.mark.parametrize("n,h,w", SIZES)
@pytest.mark.parametrize("multiple", [1, 4, 8])
def test_prepare_matches_reference(device, dtype, mask_channel, n, h, w, multiple):
    rng = np.random.default_rng(n * 1000 + h * 10 + w)
    images, masks = make(rng, n, h, w)
    got = ops.prepare(images, masks, MEAN, multiple, dtype=dtype, mask_channel=mask_channel, device=device)
    want = ops.prepare_reference(images, masks, MEAN, multiple, dtype=dtype, mask_channel=mask_channel)
    assert got.shape == (n, 4 if mask_channel else 3) + ops.padded_size(h, w, multiple)
    assert_float_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n,h,w", SIZES)
def test_composite_matches_reference(device, dtype, n, h, w):
    rng = np.random.default_rng(7 + n + h + w)
    images, masks = make(rng, n, h, w)
    hp, wp = ops.padded_size(h, w, 4)
    # Values beyond [0, 1], exact .5 steps (rounding ties) and NaN exercise the clamp and rint.
    pred = rng.uniform(-0.2, 1.2, (n, 3, hp, wp)).astype(dtype)
    pred.flat[::7] = (np.arange(pred.size)[::7] % 256 + 0.5) / 255
    pred.flat[::11] = np.nan
    got = ops.composite(pred, images, masks, device=device)
    want = ops.composite_reference(pred, images, masks)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fill", [0, 1])
def test_empty_and_full_masks(device, fill):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 13, 22, 3), dtype=np.uint8)
    masks = np.full((2, 13, 22), fill, np.uint8)
    x = ops.prepare(images, masks, MEAN, 4, device=device)
    assert_float_equal(x, ops.prepare_reference(images, masks, MEAN, 4))
    assert x[:, 3].sum() == (fill * 13 * 22 * 2)
    pred = rng.random((2, 3, 16, 24), dtype=np.float32)
    out = ops.composite(pred, images, masks, device=device)
    np.testing.assert_array_equal(out, ops.composite_reference(pred, images, masks))
    if fill == 0:
        np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("window", [(0, 0, 40, 50), (3, 5, 17, 21), (39, 49, 1, 1), (10, 0, 30, 50)])
def test_window_equals_cropped_copy(device, dtype, window):
    rng = np.random.default_rng(11)
    images, masks = make(rng, 2, 40, 50)
    t, l, h, w = window
    got = ops.prepare(images, masks, MEAN, 4, dtype=dtype, window=window, device=device)
    crop = ops.prepare(np.ascontiguousarray(images[:, t:t + h, l:l + w]),
                       np.ascontiguousarray(masks[:, t:t + h, l:l + w]), MEAN, 4, dtype=dtype)
    assert_float_equal(got, crop)
    assert_float_equal(got, ops.prepare_reference(images, masks, MEAN, 4, dtype=dtype, window=window))
    pred = rng.random((2, 3) + ops.padded_size(h, w, 4), dtype=np.float32).astype(dtype)
    np.testing.assert_array_equal(ops.composite(pred, images, masks, window=window, device=device),
                                  ops.composite_reference(pred, images, masks, window=window))


@pytest.mark.parametrize("device", DEVICES)
def test_composite_into_frame_view_and_in_place(device):
    rng = np.random.default_rng(5)
    images, masks = make(rng, 2, 30, 40)
    window = (4, 8, 12, 20)
    t, l, h, w = window
    pred = rng.random((2, 3, 12, 20), dtype=np.float32)
    frame = images.copy()
    res = ops.composite(pred, images, masks, window=window, out=frame[:, t:t + h, l:l + w], device=device)
    assert res.base is frame and res.shape == (2, h, w, 3)  # the view into the frame came back
    want = images.copy()
    want[:, t:t + h, l:l + w] = ops.composite_reference(pred, images, masks, window=window)
    np.testing.assert_array_equal(frame, want)
    # in place: the output is the images' own window
    ops.composite(pred, images, masks, window=window, out=images[:, t:t + h, l:l + w], device=device)
    np.testing.assert_array_equal(images, want)


def test_single_image_shapes():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (9, 10, 3), dtype=np.uint8)
    mask = rng.random((9, 10)) < 0.5
    x = ops.prepare(image, mask, MEAN, 4)
    assert x.shape == (1, 4, 12, 12)
    out = ops.composite(x[:, :3], image, mask)
    assert out.shape == (9, 10, 3)
    np.testing.assert_array_equal(out, ops.composite_reference(x[:, :3], image, mask))


def test_hole_pixels_never_leak_into_padding():
    # The reflect padding mirrors the hole-filled image, not the original bytes under the hole.
    images = np.full((1, 5, 5, 3), 200, np.uint8)
    masks = np.zeros((1, 5, 5), np.uint8)
    masks[0, 3:, 3:] = 1
    x = ops.prepare(images, masks, (0.0, 0.0, 0.0), 8)
    assert np.all(x[0, :3, 5, 5] == 0.0)           # mirrors (3, 3), a hole pixel -> mean colour
    assert np.all(x[0, :3, 6, 6] == np.float32(200) / np.float32(255))  # mirrors (2, 2), context
    assert np.all(x[0, 3, 5:, :] == 0) and np.all(x[0, 3, :, 5:] == 0)  # padding is not hole


# ---- bad arguments: clear errors naming the argument, never a crash ----------------------------

GOOD_IMG = np.zeros((1, 8, 8, 3), np.uint8)
GOOD_MASK = np.zeros((1, 8, 8), np.uint8)
GOOD_PRED = np.zeros((1, 3, 8, 8), np.float32)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(images=GOOD_IMG.astype(np.float32)), TypeError, "images: expected uint8"),
    (dict(images=[[1, 2, 3]]), TypeError, "images: expected a numpy array"),
    (dict(images=np.zeros((1, 8, 8, 4), np.uint8)), ValueError, r"images: expected shape \[N, H, W, 3\]"),
    (dict(images=np.zeros((8, 8), np.uint8)), ValueError, "images: expected shape"),
    (dict(images=np.zeros((0, 8, 8, 3), np.uint8), masks=np.zeros((0, 8, 8), np.uint8)), ValueError, "images: is empty"),
    (dict(images=np.zeros((1, 8, 16, 3), np.uint8)[:, :, ::2]), ValueError, "images: must be C-contiguous"),
    (dict(masks=GOOD_MASK.astype(np.int32)), TypeError, "masks: expected uint8 or bool"),
    (dict(masks=np.zeros((1, 8, 9), np.uint8)), ValueError, "masks: shape .* does not match images"),
    (dict(masks=np.zeros((1, 8, 8, 1), np.uint8)), ValueError, r"masks: expected shape \[N, H, W\]"),
    (dict(masks=np.zeros((1, 8, 16), np.uint8)[:, :, ::2]), ValueError, "masks: must be C-contiguous"),
    (dict(mean=(0.5, 0.5)), ValueError, "mean: expected 3"),
    (dict(mean=(0.5, float("nan"), 0.5)), ValueError, "mean: values must be finite"),
    (dict(multiple=0), ValueError, "multiple: must be in"),
    (dict(multiple=2.5), TypeError, "multiple: expected an int"),
    (dict(dtype=np.int8), TypeError, "dtype: expected float32 or float16"),
    (dict(window=(0, 0, 9, 8)), ValueError, "window: .* is not a non-empty crop"),
    (dict(window=(-1, 0, 4, 4)), ValueError, "window:"),
    (dict(window=(0, 0, 0, 4)), ValueError, "window:"),
    (dict(window=(0, 0, 4)), ValueError, "window: expected 4 values"),
    (dict(device="tpu"), ValueError, "device: expected 'cpu' or 'cuda'"),
])
def test_prepare_bad_arguments(kwargs, exc, match):
    args = dict(images=GOOD_IMG, masks=GOOD_MASK, mean=MEAN, multiple=4)
    args.update(kwargs)
    images, masks, mean, multiple = (args.pop(k) for k in ("images", "masks", "mean", "multiple"))
    with pytest.raises(exc, match=match):
        ops.prepare(images, masks, mean, multiple, **args)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(pred=GOOD_PRED.astype(np.float64)), TypeError, "pred: expected float32 or float16"),
    (dict(pred=np.zeros((1, 4, 8, 8), np.float32)), ValueError, r"pred: expected shape \[N, 3, H, W\]"),
    (dict(pred=np.zeros((1, 3, 4, 8), np.float32)), ValueError, "pred: shape .* does not cover"),
    (dict(pred=np.zeros((2, 3, 8, 8), np.float32)), ValueError, "pred: shape .* does not cover"),
    (dict(pred=np.zeros((1, 3, 8, 16), np.float32)[..., ::2]), ValueError, "pred: must be C-contiguous"),
    (dict(out=np.zeros((1, 8, 8, 3), np.float32)), TypeError, "out: expected uint8"),
    (dict(out=np.zeros((1, 8, 7, 3), np.uint8)), ValueError, "out: expected shape"),
    (dict(out=np.zeros((1, 8, 8, 6), np.uint8)[..., ::2]), ValueError, "out: pixels must be contiguous"),
    (dict(out=np.zeros((1, 8, 8, 3), np.uint8)[:, ::-1]), ValueError, "out: pixels must be contiguous"),
    (dict(images=GOOD_IMG[:, :, :, :2]), ValueError, "images: expected shape"),
    (dict(masks=np.zeros((1, 7, 8), np.uint8)), ValueError, "masks: shape"),
    (dict(window=(4, 4, 8, 8)), ValueError, "window:"),
])
def test_composite_bad_arguments(kwargs, exc, match):
    args = dict(pred=GOOD_PRED, images=GOOD_IMG, masks=GOOD_MASK)
    args.update(kwargs)
    pred, images, masks = args.pop("pred"), args.pop("images"), args.pop("masks")
    with pytest.raises(exc, match=match):
        ops.composite(pred, images, masks, **args)


def test_arrays_from_pickle_or_other_processes_are_accepted():
    """An unpickled array (multiprocessing, Ray, shared memory) has an equal but distinct dtype
    object: the kernels compare dtypes by value, so it is taken; a byte order that is not native
    is still refused."""
    import pickle

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    masks = np.zeros((2, 20, 24), np.uint8)
    masks[:, 5:9, 6:12] = 1
    sent_images, sent_masks = pickle.loads(pickle.dumps((images, masks)))
    assert sent_images.dtype is not np.dtype(np.uint8)  # what this test is about
    for dtype in (np.float32, np.float16):
        want = ops.prepare(images, masks, (0.4, 0.5, 0.6), 4, dtype=dtype)
        np.testing.assert_array_equal(ops.prepare(sent_images, sent_masks, (0.4, 0.5, 0.6), 4, dtype=dtype), want)
        pred = pickle.loads(pickle.dumps(want[:, :3].copy()))
        np.testing.assert_array_equal(ops.composite(pred, sent_images, sent_masks),
                                      ops.composite(want[:, :3].copy(), images, masks))
    np.testing.assert_array_equal(ops.fill(sent_images[0], sent_masks[0]), ops.fill(images[0], masks[0]))
    with pytest.raises(TypeError, match="pred: expected float32 or float16"):
        ops.composite(want[:, :3].astype(">f4"), images, masks)


def test_read_only_out_is_refused():
    out = np.zeros((1, 8, 8, 3), np.uint8)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out: is read-only"):
        ops.composite(GOOD_PRED, GOOD_IMG, GOOD_MASK, out=out)


def test_build_info_matches_what_the_module_has():
    """A build that claims CUDA has the CUDA entry points, and one that does not has none; the
    device count is what ops.cuda_available() decides on."""
    from fastfill import _C

    info = ops.build_info()
    assert info["backends"][0] == "cpu" and set(info["backends"]) <= {"cpu", "cuda"}
    has_cuda = "cuda" in info["backends"]
    assert hasattr(_C, "prepare_cuda") == has_cuda and hasattr(_C, "composite_cuda") == has_cuda
    assert ops.cuda_available() == (has_cuda and info["cuda_device_count"] > 0)
    assert info["omp_max_threads"] >= 1
    if not has_cuda:
        with pytest.raises(ValueError, match="no CUDA kernels"):
            ops.prepare(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8), MEAN, device="cuda")


class _CudaMemory:
    """Device memory through the CUDA driver API (ctypes on libcuda: no package needed), in the
    device's primary context: the one the CUDA runtime inside fastfill._C uses."""

    def __init__(self):
        import ctypes

        self.ct, self.lib, self.ptrs = ctypes, ctypes.CDLL("libcuda.so.1"), []
        u64, size_t = ctypes.c_uint64, ctypes.c_size_t
        self.lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(u64), size_t]
        self.lib.cuMemcpyHtoD_v2.argtypes = [u64, ctypes.c_void_p, size_t]
        self.lib.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, u64, size_t]
        self.lib.cuMemFree_v2.argtypes = [u64]
        self.dev, ctx = ctypes.c_int(0), ctypes.c_void_p()
        self._check(self.lib.cuInit(0), "cuInit")
        self._check(self.lib.cuDeviceGet(ctypes.byref(self.dev), 0), "cuDeviceGet")
        self._check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), self.dev), "cuDevicePrimaryCtxRetain")
        self._check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

    @staticmethod
    def _check(rc, what):
        assert rc == 0, f"{what}: CUDA driver error {rc}"

    def alloc(self, nbytes: int) -> int:
        p = self.ct.c_uint64()
        self._check(self.lib.cuMemAlloc_v2(self.ct.byref(p), nbytes), "cuMemAlloc")
        self.ptrs.append(p.value)
        return p.value

    def put(self, a: np.ndarray) -> int:
        a = np.ascontiguousarray(a)
        p = self.alloc(a.nbytes)
        self._check(self.lib.cuMemcpyHtoD_v2(p, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")
        return p

    def get(self, p: int, shape, dtype) -> np.ndarray:
        out = np.empty(shape, dtype)
        self._check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize")  # the kernels queued on stream 0
        self._check(self.lib.cuMemcpyDtoH_v2(out.ctypes.data, p, out.nbytes), "cuMemcpyDtoH")
        return out

    def close(self):
        for p in self.ptrs:
            self.lib.cuMemFree_v2(p)
        self.lib.cuDevicePrimaryCtxRelease_v2(self.dev)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_cuda_pointer_entry_points_match_the_reference(dtype):
    """_C.prepare_cuda / _C.composite_cuda, the entry points a GPU engine's device path calls with
    device pointers (TensorRT's run_uint8), here without TensorRT: whole frames and windows (the
    output written into a whole frame through its strides), float32 and float16, the flat mean
    prefill and an uploaded harmonic one, each against the NumPy reference byte for byte."""
    from fastfill import _C

    half = dtype == np.float16
    rng = np.random.default_rng(21)
    n, H, W = 2, 37, 50
    images, masks = make(rng, n, H, W)
    mem = _CudaMemory()
    try:
        d_img, d_msk = mem.put(images), mem.put(masks)
        for window in (None, (3, 5, 30, 41)):
            t, l, h, w = window or (0, 0, H, W)
            hp, wp = ops.padded_size(h, w, 4)
            d_x = mem.alloc(n * 4 * hp * wp * np.dtype(dtype).itemsize)
            _C.prepare_cuda(d_img, d_msk, d_x, n, H, W, window, hp, wp, list(MEAN), True, half, 0)
            assert_float_equal(mem.get(d_x, (n, 4, hp, wp), dtype),
                               ops.prepare_reference(images, masks, MEAN, 4, dtype=dtype, window=window))
            pred = rng.uniform(-0.2, 1.2, (n, 3, hp, wp)).astype(dtype)
            d_frame = mem.put(images)  # the window's result lands in a whole frame
            _C.composite_cuda(mem.put(pred), half, hp, wp, d_img, d_msk, n, H, W, window,
                              d_frame + (t * W + l) * 3, H * W * 3, W * 3, 0)
            want = images.copy()
            want[:, t:t + h, l:l + w] = ops.composite_reference(pred, images, masks, window=window)
            np.testing.assert_array_equal(mem.get(d_frame, (n, H, W, 3), np.uint8), want)
        # the harmonic prefill solved on the CPU and uploaded ([n, h, w, 3] floats of the window)
        fill = ops.prepare(images, masks, MEAN, 1, mask_channel=False, fill="harmonic").transpose(0, 2, 3, 1)
        hp, wp = ops.padded_size(H, W, 4)
        d_x = mem.alloc(n * 4 * hp * wp * np.dtype(dtype).itemsize)
        _C.prepare_cuda(d_img, d_msk, d_x, n, H, W, None, hp, wp, list(MEAN), True, half, 0,
                        mem.put(fill.astype(np.float32)))
        assert_float_equal(mem.get(d_x, (n, 4, hp, wp), dtype),
                           ops.prepare(images, masks, MEAN, 4, dtype=dtype, fill="harmonic"))
    finally:
        mem.close()


# --- an all-hole frame: nothing known, so every fill is the constant mean colour ----------------

def _mean_bytes(mean):
    """What the kernels write for a hole with no boundary: rint(float32(mean) * 255) clamped."""
    v = np.float32(np.asarray(mean, np.float64)) * np.float32(255)
    return np.where(~(v > 0), 0, np.where(v >= 255, 255, np.rint(v))).astype(np.uint8)


ALL_HOLE_OPTIONS = [("mean", {}), ("harmonic", {}), ("patch", {}), ("patch", {"thin": 0}),
                    ("patch", {"thin": 0, "patch": 3, "blend": 0, "radius": 1, "seed": 7}),
                    ("patch", {"patch": 15, "thin": 0, "levels": 1, "iterations": 1, "passes": 1,
                               "blend": 64})]


@pytest.mark.parametrize("method,options", ALL_HOLE_OPTIONS)
@pytest.mark.parametrize("mean", [None, (0.1, 0.7, 0.33), (0.0, 1.0, 0.5), (-0.3, 2.0, 0.50196),
                                  (0.5 / 255, 1.5 / 255, 2.5 / 255)])
def test_all_hole_fill_is_the_mean_colour_byte_for_byte(method, options, mean):
    from fastfill import _C

    rng = np.random.default_rng(5)
    for n, h, w in [(1, 1, 1), (1, 7, 9), (2, 40, 50), (3, 33, 65)]:
        images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        for masks in (np.ones((n, h, w), np.bool_), rng.integers(1, 256, (n, h, w), dtype=np.uint8)):
            got = ops.fill(images, masks, method, mean=mean, **options)
            want = np.broadcast_to(_mean_bytes(mean or (0.5, 0.5, 0.5)), (n, h, w, 3))
            np.testing.assert_array_equal(got, want)
            assert got.dtype == np.uint8 and got.flags.c_contiguous and got.flags.writeable
            # the native kernel's own bytes for the same call
            native = _C.fill(images, masks, list(ops._seq3(mean or (0.5, 0.5, 0.5))), None,
                             *ops._fill(method, options), None)
            np.testing.assert_array_equal(got, native)
            np.testing.assert_array_equal(ops.fill(images[0], masks[0], method, mean=mean, **options),
                                          want[0])
        if h > 4 and w > 4:  # a window that is all hole in a frame that is not
            masks = np.ones((n, h, w), np.uint8)
            masks[:, 0, 0] = 0
            got = ops.fill(images, masks, method, mean=mean, window=(1, 1, h - 2, w - 2), **options)
            np.testing.assert_array_equal(got, np.broadcast_to(want[:, :h - 2, :w - 2], got.shape))


def test_all_hole_fill_keeps_the_checks_and_the_patch_state():
    images = np.zeros((1, 8, 8, 3), np.uint8)
    full = np.ones((1, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="patch: must be odd"):
        ops.fill(images, full, "patch", patch=4)
    with pytest.raises(ValueError, match="takes no option"):
        ops.fill(images, full, "harmonic", radius=3)
    with pytest.raises(ValueError, match="mean: values must be finite"):
        ops.fill(images, full, "harmonic", mean=(np.nan, 0, 0))
    with pytest.raises(ValueError, match="window"):
        ops.fill(images, full, "harmonic", window=(0, 0, 9, 8))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.fill(np.zeros((1, 8, 16, 3), np.uint8)[:, :, ::2], full, "harmonic")
    with pytest.raises(TypeError, match="masks: expected uint8 or bool"):
        ops.fill(images, full.astype(np.int32), "harmonic")
    # an all-hole frame between two frames leaves the video's patch state as it was
    rng = np.random.default_rng(1)
    im = rng.integers(0, 256, (1, 60, 80, 3), dtype=np.uint8)
    mk = np.zeros((1, 60, 80), np.uint8)
    mk[:, 20:40, 30:50] = 1
    s1, s2 = ops.PatchState(), ops.PatchState()
    ops.fill(im, mk, "patch", state=s1)
    ops.fill(im, np.ones_like(mk), "patch", state=s1)
    ops.fill(im, mk, "patch", state=s2)
    np.testing.assert_array_equal(ops.fill(im, mk, "patch", state=s1), ops.fill(im, mk, "patch", state=s2))


_RSS_SCRIPT = """
import resource, sys
import numpy as np
from fastfill import ops
method = sys.argv[1]
im = np.full((2160, 3840, 3), 7, np.uint8)
mk = np.ones((2160, 3840), np.uint8)
ops.fill(im[:8, :8].copy(), mk[:8, :8].copy(), method)  # imports and first-call set-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = ops.fill(im, mk, method)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert out.shape == (2160, 3840, 3) and (out == 128).all()
print((after - before) * 1024)
"""


@pytest.mark.parametrize("method", ["harmonic", "patch"])
def test_all_hole_4k_frame_costs_its_output_not_a_solve(method):
    """A 4K all-hole frame through the solvers took +539 MB (harmonic) / +590 MB (patch) of peak
    memory to paint one colour; the result itself is 24 MB."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, method], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    grown = int(p.stdout.strip().splitlines()[-1])
    assert grown < 64 << 20, f"peak RSS grew by {grown >> 20} MB"


@pytest.mark.parametrize("h,w,c", [(1, 1, 3), (7, 13, 3), (40, 61, 3), (9, 11, 1), (5, 300, 4),
                                   (31, 97, 1)])
def test_masked_difference_matches_reference(h, w, c):
    """Exact against NumPy: C-contiguous arrays, views into a larger frame (what a held video
    fill passes), strides that break the contiguous runs, bool and uint8 masks of any nonzero
    value, an empty and a full mask, masks of long runs (a box, a hole in a box: the runs found
    eight bytes and a vector scan at a time), and a plane given as plane[:, :, None] (NumPy's new
    axis has stride 0, the still hole's call)."""
    rng = np.random.default_rng(h * 100 + w + c)
    frame = rng.integers(0, 256, (h + 6, w + 10, c), dtype=np.uint8)
    a = frame[3:3 + h, 4:4 + w]  # a view: rows w + 10 pixels apart
    b = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    wide = rng.integers(0, 256, (h, 2 * w, c), dtype=np.uint8)
    masks = [(rng.random((h, w)) < 0.6).astype(np.uint8) * rng.integers(1, 256, dtype=np.uint8),
             rng.random((h, w)) < 0.3, np.zeros((h, w), bool), np.ones((h, w), np.uint8),
             np.asfortranarray(rng.random((h, w)) < 0.5)]
    box = np.zeros((h, w), bool)
    box[h // 4:h - h // 4 + 1, w // 5:w - w // 7] = True
    masks += [box, ~box, np.ascontiguousarray(box[:, ::-1]).view(np.uint8) * 7]
    pairs = [(a, b), (np.ascontiguousarray(a), b), (a, wide[:, ::2]), (a[..., ::-1], b)]
    if c == 1:
        pairs.append((a[:, :, 0][:, :, None], b[:, :, 0][:, :, None]))
        assert pairs[-1][0].strides[2] == 0
    for x, y in pairs:
        for m in masks:
            assert ops.masked_difference(x, y, m) == ops.masked_difference_reference(x, y, m)
    assert ops.masked_difference(a, b, masks[2]) == 0
    assert ops.masked_difference(b, b, masks[3]) == 0


def test_masked_difference_refuses_what_it_cannot_compare():
    a = np.zeros((4, 5, 3), np.uint8)
    m = np.ones((4, 5), bool)
    with pytest.raises(ValueError, match="same"):
        ops.masked_difference(a, np.zeros((4, 6, 3), np.uint8), m)
    with pytest.raises(ValueError, match="same"):
        ops.masked_difference(a, a, np.ones((5, 4), bool))
    with pytest.raises(ValueError, match="b: expected uint8"):
        ops.masked_difference(a, a.astype(np.int16), m)
    with pytest.raises(ValueError, match="a: expected uint8"):
        ops.masked_difference(a[..., 0], a[..., 0], m)
    with pytest.raises(ValueError, match="mask: expected"):
        ops.masked_difference(a, a, m.astype(np.float32))


@pytest.mark.parametrize("h, w", [(4, 4), (8, 12), (36, 60), (1080, 1920)])
def test_area_reduce4_matches_reference_and_opencv(h, w):
    """Exact against NumPy and, where OpenCV is installed, against cv2.resize's INTER_AREA (whose
    bytes the motion estimate's reduced frames had): random planes, a view into a wider frame
    (a decoded luma plane's padded rows), and blocks whose mean is exactly half-way (rounded to
    even, not up)."""
    rng = np.random.default_rng(h + w)
    wide = rng.integers(0, 256, (h, w + 32), dtype=np.uint8)
    halves = np.zeros((h, w), np.uint8)
    halves[::4, ::4] = 8  # 8 / 16 = 0.5 -> 0; 24 / 16 = 1.5 -> 2 (half to even)
    odd = rng.random((h // 4, w // 4)) < 0.5
    halves[1::4, 1::4] = np.where(odd, 16, 0).astype(np.uint8)
    for plane in (wide[:, :w], np.ascontiguousarray(wide[:, :w]), halves):
        got = ops.area_reduce4(plane)
        assert got.shape == (h // 4, w // 4) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, ops.area_reduce4_reference(plane))
    np.testing.assert_array_equal(ops.area_reduce4(halves), np.where(odd, 2, 0))
    cv2 = pytest.importorskip("cv2")
    for plane in (wide[:, :w], halves):
        np.testing.assert_array_equal(ops.area_reduce4(plane),
                                      cv2.resize(plane, (w // 4, h // 4), interpolation=cv2.INTER_AREA))


def test_area_reduce4_refuses_what_it_cannot_reduce():
    with pytest.raises(ValueError, match="multiples of 4"):
        ops.area_reduce4(np.zeros((8, 10), np.uint8))
    with pytest.raises(ValueError, match="expected uint8"):
        ops.area_reduce4(np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match="expected uint8"):
        ops.area_reduce4(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="contiguous"):
        ops.area_reduce4(np.zeros((8, 16), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="contiguous"):
        ops.area_reduce4(np.zeros((8, 8), np.uint8)[::-1])


def _seamless_scipy(image, hole, values):
    """Poisson's equation with the Laplacian of ``values`` as guidance over the hole (no flux
    across the array's edge), the image's known pixels as boundary: a sparse SciPy solve."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    h, w = hole.shape
    idx = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(hole)
    idx[ys, xs] = np.arange(len(ys))
    a = lil_matrix((len(ys), len(ys)))
    b = np.zeros((len(ys), 3))
    v = values.astype(np.float64)
    for k, (y, x) in enumerate(zip(ys, xs)):
        for qy, qx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if not (0 <= qy < h and 0 <= qx < w):
                continue
            a[k, k] += 1
            b[k] += v[y, x] - v[qy, qx]
            if hole[qy, qx]:
                a[k, idx[qy, qx]] -= 1
            else:
                b[k] += image[qy, qx]
    out = image.astype(np.float64).copy()
    out[ys, xs] = spsolve(a.tocsr(), b)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_seamless_matches_a_sparse_poisson_solve(seed):
    """ops.seamless (a moved video fill laid into its hole): within a level of SciPy's solve of
    the same equation, on a hole that touches the array's edge; values that equal the image up to
    a constant come back as the image (the offset goes, the detail stays); outside the hole the
    image is untouched."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    hole = np.zeros((23, 31), bool)
    hole[4:15, 6:20] = True
    hole[0:3, 25:] = True  # (on the edge: no flux out)
    values = rng.normal(120, 40, (23, 31, 3))
    got = ops.seamless(image, hole, values)
    want = _seamless_scipy(image, hole, values)
    assert np.array_equal(got[~hole], image[~hole])
    assert np.abs(got[hole].astype(float) - np.clip(want[hole], 0, 255)).max() <= 1.0
    shifted = image.astype(float) + 37.0
    assert np.abs(ops.seamless(image, hole, shifted).astype(int) - image).max() <= 1
    with pytest.raises(ValueError):
        ops.seamless(image, hole[:, :-1], values)


def test_the_cuda_kernels_without_a_gpu_are_one_clear_error():
    """Without a usable GPU, device="cuda" names why (the CUDA runtime's own words spoke of a
    driver version on a machine with no GPU at all)."""
    if ops.cuda_available() or "cuda" not in ops.build_info()["backends"]:
        pytest.skip("a usable GPU is present, or no CUDA kernels were built (tested above)")
    img, m = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    with pytest.raises(RuntimeError, match=r"device='cuda': .*use device='cpu'"):
        ops.prepare(img, m, (0.5, 0.5, 0.5), device="cuda")
    with pytest.raises(RuntimeError, match=r"device='cuda': "):
        ops.composite(np.zeros((1, 3, 8, 8), np.float32), img, m, device="cuda")


def test_a_window_of_non_integers_and_a_seamless_image_of_floats_are_refused():
    """Floats were truncated (a window) or cast with wrap-around (300 became 44 outside the hole)."""
    img = np.zeros((16, 16, 3), np.uint8)
    m = np.zeros((16, 16), np.uint8)
    m[4:8, 4:8] = 1
    with pytest.raises(TypeError, match="window: expected"):
        ops.fill(img, m, window=(0.9, 0.9, 2.9, 2.9))
    with pytest.raises(TypeError, match="window: expected"):
        ops.fill(img, m, window=(0, 0, True, 16))
    assert ops.fill(img, m, window=(np.int64(2), 2, 10, 10)).shape == (10, 10, 3)
    f = np.full((8, 8, 3), 300.0, np.float32)
    hole = np.zeros((8, 8), bool)
    hole[3:5, 3:5] = True
    with pytest.raises(TypeError, match="seamless: image must be uint8, got float32"):
        ops.seamless(f, hole, f)
    assert "seamless" in ops.__all__


@pytest.mark.parametrize("h, w, sy, sx", [(1, 1, 2, 2), (2, 3, 2, 2), (7, 9, 2, 2), (64, 96, 2, 2),
                                          (9, 10, 1, 2), (5, 6, 1, 1), (9, 13, 2, 1), (7, 13, 1, 4),
                                          (9, 14, 4, 4), (1080, 1920, 2, 2)])
def test_yuv_to_rgb_matches_reference_and_the_formula(h, w, sy, sx):
    """Exact against the NumPy reference (the same integer arithmetic) for every matrix and
    range, odd sizes, views into wider planes (a decoded frame's padded rows) and a strided
    `out`; within half a level (plus the 16.16 coefficients' rounding) of the real-valued
    conversion, so unbiased."""
    rng = np.random.default_rng(h * w)
    ch, cw = -(-h // sy), -(-w // sx)
    y = rng.integers(0, 256, (h, w + 16), dtype=np.uint8)[:, :w]
    u = rng.integers(0, 256, (ch, cw + 8), dtype=np.uint8)[:, :cw]
    v = rng.integers(0, 256, (ch, cw), dtype=np.uint8)
    for colorspace, (kr, kb) in ((1, (0.2126, 0.0722)), (2, (0.299, 0.114)), (9, (0.2627, 0.0593))):
        for full in (False, True):
            c = ops.yuv_coefficients(colorspace, full)
            got = ops.yuv_to_rgb(y, u, v, c)
            assert got.shape == (h, w, 3) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, ops.yuv_to_rgb_reference(y, u, v, c))
            big = np.zeros((h, w + 5, 4), np.uint8)[:, 2:w + 2, :3]  # (rows and pixels strided)
            with pytest.raises(ValueError, match="contiguous"):
                ops.yuv_to_rgb(y, u, v, c, big)
            out = np.zeros((h + 1, w + 7, 3), np.uint8)
            assert ops.yuv_to_rgb(y, u, v, c, out[1:, 3:w + 3]) is not None
            np.testing.assert_array_equal(out[1:, 3:w + 3], got)
            assert not out[0].any() and not out[1:, :3].any() and not out[1:, w + 3:].any()
            # the real-valued conversion
            uu = u.repeat(sy, 0).repeat(sx, 1)[:h, :w] - 128.0
            vv = v.repeat(sy, 0).repeat(sx, 1)[:h, :w] - 128.0
            yy, cc = (y.astype(float), 1.0) if full else ((y - 16.0) * 255 / 219, 255 / 224)
            kg = 1 - kr - kb
            exact = np.stack([yy + 2 * (1 - kr) * cc * vv,
                              yy - 2 * kb * (1 - kb) / kg * cc * uu - 2 * kr * (1 - kr) / kg * cc * vv,
                              yy + 2 * (1 - kb) * cc * uu], -1)
            err = got - np.clip(exact, 0, 255)
            assert np.abs(err).max() <= 0.5 + 3e-3, np.abs(err).max()
            if h * w >= 1000:
                assert abs(err.mean()) < 0.01


def test_yuv_to_rgb_round_trips_through_swscale():
    """Read with the kernel and written back by swscale (the video command's write-back, in the
    same matrix): a flat colour's Y comes back exactly (limited range), U and V within the level
    by which swscale's own chroma of it varies, for every matrix swscale knows; its own 8-bit
    read is about a level dark."""
    av = pytest.importorskip("av")
    from fastfill.video.frames import planes

    rng = np.random.default_rng(3)
    dark = []
    for colorspace in (0, 1, 2, 4, 5, 6, 7, 9):
        for colour in rng.integers(25, 230, (12, 3)).astype(np.uint8):
            f = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8) + colour, format="rgb24")
            yuv = f.reformat(format="yuv420p", dst_colorspace=colorspace, dst_color_range=1)
            yuv.colorspace, yuv.color_range = colorspace, 1
            rgb = ops.yuv_to_rgb(*planes(yuv), ops.yuv_coefficients(colorspace, False))
            back = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            back.colorspace, back.color_range = colorspace, 1
            back = back.reformat(format="yuv420p")
            (ya, *ca), (yb, *cb) = planes(yuv), planes(back)
            np.testing.assert_array_equal(ya, yb)
            for a, b in zip(ca, cb):  # (swscale's own chroma of a flat colour varies by 1)
                assert np.abs(a.astype(int) - b).max() <= 1
            dark.append(yuv.to_ndarray(format="rgb24").astype(int).mean() - rgb.astype(int).mean())
    assert np.mean(dark) < -0.5  # (what the kernel is for: swscale's read, about 1 level dark)


def test_yuv_to_rgb_refuses_what_it_cannot_convert():
    y = np.zeros((8, 8), np.uint8)
    c = ops.yuv_coefficients(1, False)
    with pytest.raises(ValueError, match="divided by 2 or 4"):
        ops.yuv_to_rgb(y, np.zeros((3, 4), np.uint8), np.zeros((3, 4), np.uint8), c)
    with pytest.raises(ValueError, match="different shapes"):
        ops.yuv_to_rgb(y, np.zeros((4, 4), np.uint8), np.zeros((4, 8), np.uint8), c)
    with pytest.raises(ValueError, match="expected uint8"):
        ops.yuv_to_rgb(y.astype(np.uint16), np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), c)
    with pytest.raises(ValueError, match="7 integers"):
        ops.yuv_to_rgb(y, np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), c[:6])
    with pytest.raises(ValueError, match="writeable"):
        out = np.zeros((8, 8, 3), np.uint8)
        out.flags.writeable = False
        ops.yuv_to_rgb(y, np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), c, out)
