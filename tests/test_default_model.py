"""The model shipped inside the package: it loads with no arguments and fills a real example."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastfill
from fastfill.engines import default_model_path, load_engine

ROOT = Path(__file__).resolve().parents[1]


def test_default_model_is_small_and_described():
    path = default_model_path()
    assert path.is_file(), f"the shipped model is missing: {path}"
    assert path.stat().st_size < 25 * 2**20
    meta = load_engine(path).meta
    assert meta.kind == "glcic" and meta.channels == 4 and meta.multiple == 4
    assert all(0 < c < 1 for c in meta.mean)
    assert (path.parent / "MODEL_CARD.md").is_file()


def test_default_inpainter_fills_only_the_hole_of_an_example_photo():
    image = np.asarray(Image.open(ROOT / "examples/images/coffee.jpg").convert("RGB"))
    mask = np.asarray(Image.open(ROOT / "examples/masks/coffee.png").convert("L")) > 127
    out = fastfill.Inpainter()(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], image[~mask])
    # Inside the hole: not the mean-colour placeholder, and closer to the photo than mean fill is.
    err = np.abs(out[mask].astype(int) - image[mask]).mean()
    mean_err = np.abs(np.round(np.array(load_engine(default_model_path()).meta.mean) * 255) - image[mask]).mean()
    assert err < mean_err


def _holes(size):
    """A central 64x64 hole, and free-form strokes kept 8 px from the border (a ramp's value beyond
    the image edge is unknown, so no fill can be held to it there)."""
    from fastfill.masks import freeform_mask

    square = np.zeros((size, size), bool)
    c = size // 2
    square[c - 32:c + 32, c - 32:c + 32] = True
    free = freeform_mask(np.random.default_rng(size), size, size)
    free[:8], free[-8:], free[:, :8], free[:, -8:] = False, False, False, False
    return {"64x64": square, "free-form": free}


@pytest.mark.parametrize("size", [128, 256, 512])
def test_default_model_fills_flat_colour_and_ramps(size):
    """Flat colour within 2 levels, a linear ramp within 3 (today's users: 'it cannot fill a
    flat colour' was the first complaint)."""
    inp = fastfill.Inpainter()
    flat = np.full((size, size, 3), (128, 100, 200), np.uint8)
    ramp = np.zeros((size, size, 3), np.uint8)
    ramp[..., 0] = np.linspace(20, 230, size).astype(np.uint8)[None, :]
    ramp[..., 1] = np.linspace(200, 40, size).astype(np.uint8)[:, None]
    ramp[..., 2] = 90
    for name, mask in _holes(size).items():
        for image, tol in ((flat, 2), (ramp, 3)):
            out = inp(image, mask)
            err = np.abs(out.astype(int) - image)[mask].max()
            assert err <= tol, f"{size}px {name} hole: off by {err} levels (limit {tol})"


def test_the_wheel_packages_hold_code_and_the_shipped_model_only():
    """Every file under the wheel's packages (pyproject's wheel.packages), as git tracks them, is
    source, the page's assets, the model card or the one shipped model: no checkpoint, data set
    or generated file rides along into site-packages."""
    import subprocess
    import tomllib

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    packages = cfg["tool"]["scikit-build"]["wheel"]["packages"]
    files = subprocess.run(["git", "ls-files", *packages], cwd=root, capture_output=True, text=True,
                           check=True).stdout.split()
    assert files and {f.split("/")[0] for f in files} == set(packages)
    allowed = {".py", ".pyi", ".js", ".html", ".css", ".svg", ".md"}  # (.svg: the page's icon)
    odd = [f for f in files if Path(f).suffix not in allowed and f != "fastfill/models/default.onnx"]
    assert odd == []
    big = [f for f in files if (root / f).stat().st_size > 200_000 and f != "fastfill/models/default.onnx"]
    assert big == []


def test_the_default_runs_the_default_fill_when_the_shipped_net_adds_nothing():
    """The shipped net returns its harmonic prefill unchanged: the default does not run it but
    the default fill (the patch fill with fills.DEFAULT_OPTIONS), and gives that fill's bytes;
    the net, asked for by name, still gives its prefill's."""
    from fastfill import ops
    from fastfill.fills import DEFAULT_METHOD, DEFAULT_OPTIONS

    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    mask[30:70, 40:100] = 1
    mask[:, :3] = 1  # a hole on the border
    default = fastfill.Inpainter()
    assert default.engine.name == "classical:patch" and "does not run" in default.engine.selection
    assert default.engine.fill_options == {**fastfill.fills.FILLS["patch"].options, **DEFAULT_OPTIONS}
    assert default.meta.mean == load_engine(default_model_path()).meta.mean
    assert np.array_equal(default(image, mask), ops.fill(image, mask, DEFAULT_METHOD, **DEFAULT_OPTIONS))
    net = fastfill.Inpainter(backend="onnxruntime")
    assert net.engine.name == "onnxruntime"
    assert np.array_equal(net(image, mask), ops.fill(image, mask, "harmonic"))
    everything = np.ones((32, 32), np.uint8)  # no known pixel: the model's mean colour, both ways
    assert np.array_equal(default(image[:32, :32].copy(), everything), net(image[:32, :32].copy(), everything))


def test_a_net_that_changes_its_prefill_keeps_running():
    from fastfill.engines.base import EngineBase, ModelMeta
    from fastfill.inpainter import _without_a_net_that_adds_nothing

    class Nudge(EngineBase):
        name = "nudge"

        def __init__(self, delta):
            self.meta = ModelMeta("glcic", (0.5, 0.5, 0.5), fill="harmonic", receptive_field=8)
            self.delta = delta

        def _infer(self, x):
            return np.clip(x[:, :3] + self.delta, 0, 1)

        def close(self):
            pass

    assert _without_a_net_that_adds_nothing(Nudge(1e-3)).name == "nudge"
    assert _without_a_net_that_adds_nothing(Nudge(0.0)).name == "classical:patch"
