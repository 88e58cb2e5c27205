"""The model shipped inside the package: it loads with no arguments and fills a real example."""

from pathlib import Path

import numpy as np
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
