"""Training data: a folder of photographs -> random crops at random scales, flips, masks.

Every sample is a pure function of (seed, position): position p = step * batch_size + i picks the
image from a per-epoch permutation and seeds the crop/flip/mask draws, so a run is reproducible
and a resumed run sees exactly the batches the uninterrupted run would have seen, with any number
of loader workers.

Images are decoded once, downscaled so that the shorter side is what the largest crop scale needs
(`ceil(crop * scale[1])`), and kept in memory.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import DataError  # noqa: F401 (re-exported)

from fastfill.masks import make_mask_generator

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def photo_files(root) -> list[Path]:
    """The training photos under `root`: files with a photo suffix (jpg, jpeg, png, webp; any
    case), recursive, sorted (unlike fastfill.files.codecs.find_images, which asks the file its format)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def split_files(files, root, val_fraction: float):
    """Deterministic train/validation split by a hash of each relative path (stable when files are
    added or removed). Returns (train, val)."""
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, val = [], []
    for p in files:
        rel = Path(p).relative_to(root).as_posix()
        h = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) / 2**32
        (val if h < val_fraction else train).append(p)
    return train, val


def load_image(path, min_side: int | None = None) -> np.ndarray:
    """Decode to uint8 RGB [H, W, 3]; when min_side is given, downscale so the shorter side is
    min_side (never upscales). Raises on unreadable files."""
    with Image.open(path) as im:
        if min_side:
            s = min_side / min(im.size)
            if s < 1:
                im.draft("RGB", (math.ceil(im.size[0] * s), math.ceil(im.size[1] * s)))  # fast JPEG
        im = im.convert("RGB")
        if min_side and min(im.size) > min_side:
            s = min_side / min(im.size)
            im = im.resize((max(min_side, round(im.size[0] * s)), max(min_side, round(im.size[1] * s))),
                           Image.BICUBIC, reducing_gap=2.0)
        return np.asarray(im, np.uint8).copy()


class ImageFolder(torch.utils.data.Dataset):
    """Random crops of the images in a folder, with masks.

    Indexing by a global sample position p (see module doc) returns
    (image float32 [3, crop, crop] in [0, 1], mask float32 [1, crop, crop], 1 = hole).

    crop      output side in px (256 for GLCIC, 128 for CE)
    scale     (lo, hi): the image is resized so its shorter side is crop * U(lo, hi)
              (GLCIC: 256..384 at a 256 crop -> (1.0, 1.5))
    flip      random horizontal flips
    mask      mask kind (fastfill.masks) or None for all-zero masks
    files     explicit file list (e.g. the training split); default: every image under root
    """

    def __init__(self, root, crop=256, scale=(1.0, 1.5), flip=True, mask="rect", seed=0, files=None,
                 warn=warnings.warn):
        self.root = Path(root)
        self.crop, self.scale, self.flip, self.seed = int(crop), tuple(map(float, scale)), bool(flip), int(seed)
        if not (0 < self.scale[0] <= self.scale[1]):
            raise DataError(f"scale must be 0 < lo <= hi, got {scale}")
        self.mask_kind = mask
        self.mask_fn = make_mask_generator(mask) if mask else None
        files = photo_files(self.root) if files is None else list(files)
        side = math.ceil(self.crop * max(1.0, self.scale[1]))
        self.files, self.images, self.skipped = [], [], []
        for p in files:
            try:
                img = load_image(p, side)
            except Exception as e:  # PIL raises many types for bad files
                warn(f"skipping unreadable image {p}: {e}")
                self.skipped.append(str(p))
                continue
            self.files.append(Path(p))
            self.images.append(img)
        if not self.images:
            raise DataError(f"no readable images (jpg, png, webp) under {self.root}")

    def __len__(self):
        return len(self.images)

    def mean_color(self) -> list[float]:
        """Pixel-weighted mean RGB of all images, in [0, 1]."""
        tot, n = np.zeros(3), 0
        for im in self.images:
            tot += im.reshape(-1, 3).sum(0, dtype=np.float64)
            n += im.shape[0] * im.shape[1]
        return [float(v) for v in tot / n / 255.0]

    def index_at(self, pos: int) -> int:
        n = len(self.images)
        perm = np.random.default_rng([self.seed, pos // n]).permutation(n)
        return int(perm[pos % n])

    def sample(self, pos: int):
        """(uint8 [crop, crop, 3], bool [crop, crop]) for global position `pos`."""
        rng = np.random.default_rng([self.seed, 1, pos])
        img = self.images[self.index_at(pos)]
        h, w = img.shape[:2]
        target = self.crop * rng.uniform(*self.scale)  # shorter side after resizing
        box = self.crop * min(h, w) / target  # crop side in source pixels
        box = min(box, min(h, w))
        y = rng.uniform(0, h - box)
        x = rng.uniform(0, w - box)
        pil = Image.fromarray(img)
        out = pil.resize((self.crop, self.crop), Image.BILINEAR, box=(x, y, x + box, y + box))
        arr = np.array(out, np.uint8)
        if self.flip and rng.random() < 0.5:
            arr = arr[:, ::-1]
        if self.mask_fn is None:
            mask = np.zeros((self.crop, self.crop), bool)
        else:
            mask = self.mask_fn(np.random.default_rng([self.seed, 2, pos]), self.crop, self.crop)
        return np.ascontiguousarray(arr), mask

    def __getitem__(self, pos):
        arr, mask = self.sample(int(pos))
        img = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
        return img, torch.from_numpy(mask).float()[None]


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler yielding the positions of steps start, start+1, ..., stop-1."""

    def __init__(self, batch_size, start, stop):
        self.batch_size, self.start, self.stop = batch_size, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield list(range(step * self.batch_size, (step + 1) * self.batch_size))

    def __len__(self):
        return max(0, self.stop - self.start)


def batches(dataset, batch_size, start, stop, workers=0):
    """Iterator of (images [B,3,S,S], masks [B,1,S,S]) for steps start..stop-1."""
    return iter(torch.utils.data.DataLoader(dataset, batch_sampler=StepBatches(batch_size, start, stop),
                                            num_workers=workers, persistent_workers=False))


__all__ = ["ImageFolder", "DataError", "photo_files", "split_files", "load_image", "batches", "StepBatches"]
