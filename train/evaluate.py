"""Evaluation: PSNR, SSIM and L1 inside the hole and on the whole image, for a trained model and
the baselines mean fill, OpenCV Telea and OpenCV Navier-Stokes.

    fastfill evaluate runs/glcic/last.safetensors --data heldout/ --mask rect --grid cmp.png

Each image gives `crops` size x size crops (256 GLCIC, 128 CE): with crops=1 the image is resized
to a shorter side of `size` and centre-cropped; with more, each crop is resized to a shorter side
of size x U(scale) and cropped at a random position, all from fixed seeds. Masks come from
`fastfill.masks` with a fixed seed per crop (the CE always uses its central hole). Metrics are
computed on [0, 1] RGB: PSNR = 10 log10(1 / MSE); SSIM is the Gaussian-window SSIM (11 px,
sigma 1.5, Wang et al. 2004) per channel, its map averaged over the region; L1 the mean absolute
error. The texture distance (`texture_distance`, in uint8 levels, lower is better) compares the
statistics of the mean-removed 7x7 colour patches in the hole: 0 for the same texture, high for a
smooth smear and for added noise alike. Per-image values are averaged over the images.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import DataError  # (torch-free: benchmarks import the metrics without the train extra)
from fastfill.masks import make_mask_generator


# ---------------------------------------------------------------- metrics

def _gauss_blur(x, sigma=1.5, radius=5):
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, ((radius, radius), (radius, radius)), mode="reflect")
    v = sum(k[i] * pad[i:i + x.shape[0], :] for i in range(2 * radius + 1))
    return sum(k[i] * v[:, i:i + x.shape[1]] for i in range(2 * radius + 1))


def ssim_map(a, b, data_range=1.0):
    """SSIM map [H, W] (mean over channels) of float images [H, W, 3] in [0, data_range]."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    maps = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = _gauss_blur(x), _gauss_blur(y)
        sxx = _gauss_blur(x * x) - mx * mx
        syy = _gauss_blur(y * y) - my * my
        sxy = _gauss_blur(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2)))
    return np.mean(maps, 0)


def texture_distance(pred, truth, mask, patch=7, directions=64, seed=0, max_centers=4096):
    """Sliced Wasserstein-1 distance between the patches of `pred` and of `truth` in the hole.

    uint8 [H,W,3] images, bool mask [H,W]. The patches are the patch x patch colour patches
    centred on the hole pixels whose patch lies wholly inside the image (at most `max_centers`
    of them, evenly spaced in raster order), each a vector of patch*patch*3 values in uint8
    levels, laid out as its [patch, patch, 3] array, less its own per-channel mean. Both sets
    (same centres, so the same size) are projected on `directions` random unit vectors (rows of
    np.random.default_rng(seed).standard_normal((directions, patch*patch*3)), normalised);
    the W1 distance of two equal-size samples is the mean |sorted a - sorted b|, averaged over
    the directions. 0.0 when no centre qualifies. Identical images give 0; a smooth fill of a
    textured hole and added noise both score high (the patch spread is too small or too big)."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    r = patch // 2
    valid = np.zeros_like(mask)
    if h >= patch and w >= patch:
        valid[r:h - (patch - 1 - r), r:w - (patch - 1 - r)] = mask[r:h - (patch - 1 - r), r:w - (patch - 1 - r)]
    ys, xs = np.nonzero(valid)
    if not len(ys):
        return 0.0
    if len(ys) > max_centers:
        keep = np.linspace(0, len(ys) - 1, max_centers).round().astype(np.int64)
        ys, xs = ys[keep], xs[keep]
    dy, dx = np.mgrid[-r:patch - r, -r:patch - r]
    rows, cols = ys[:, None] + dy.ravel(), xs[:, None] + dx.ravel()
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((directions, patch * patch * 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # the projection of (p - its channel means) = p . d - sum_c mean_c * (the sum of d over channel c)
    chan = dirs.reshape(directions, patch * patch, 3).sum(1)  # [directions, 3]
    proj = []
    for im in (pred, truth):
        p = np.asarray(im)[rows, cols]  # uint8 [n, patch*patch, 3]
        means = p.sum(1, dtype=np.int64) / (patch * patch)
        q = p.reshape(len(ys), -1).astype(np.float64) @ dirs.T - means @ chan.T  # [n, directions]
        proj.append(np.sort(q.T, axis=1))
    return float(np.abs(proj[0] - proj[1]).mean())


def metrics(pred, truth, mask):
    """{'psnr_hole','ssim_hole','l1_hole','psnr','ssim','l1','texture'} for uint8 [H,W,3] images,
    bool mask; 'texture' is `texture_distance` in the hole."""
    p, t = pred.astype(np.float64) / 255, truth.astype(np.float64) / 255
    err = (p - t)
    s = ssim_map(p, t)
    out = {}
    for suffix, region in (("_hole", mask), ("", np.ones_like(mask))):
        e = err[region]
        mse = float(np.mean(e ** 2))
        out["psnr" + suffix] = float(10 * np.log10(1.0 / max(mse, 1e-10)))
        out["ssim" + suffix] = float(s[region].mean())
        out["l1" + suffix] = float(np.abs(e).mean())
    out["texture"] = texture_distance(pred, truth, mask)
    return out


# ---------------------------------------------------------------- methods

def mean_fill(images, masks, mean):
    out = images.copy()
    out[masks] = np.clip(np.rint(np.asarray(mean) * 255), 0, 255).astype(np.uint8)
    return out


def opencv_fill(images, masks, method="telea", radius=3):
    import cv2
    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    return np.stack([cv2.inpaint(im, m.astype(np.uint8) * 255, radius, flag) for im, m in zip(images, masks)])


# The classical anchors of scripts/compare.py (pip install 'fastfill[anchors]'): benchmark
# dependencies only. Each raises ImportError when its package is missing; each pastes its
# result into the hole only (the tools may touch pixels next to it).

def _paste(images, masks, outs):
    res = images.copy()
    res[masks] = np.stack(outs)[masks]
    return res


def shiftmap_fill(images, masks):
    """OpenCV contrib's xphoto shift-map (He and Sun 2012), on the RGB image (OpenCV's docs
    suggest a Lab-like space; on our photos RGB is the better of the two). Its mask is the
    inverse of ours: 0 = hole, 255 = known."""
    import cv2
    if not hasattr(cv2, "xphoto"):
        raise ImportError("cv2.xphoto needs opencv-contrib-python(-headless)")
    outs = []
    for im, m in zip(images, masks):
        dst = np.zeros_like(im)
        cv2.xphoto.inpaint(np.ascontiguousarray(im), np.where(m, 0, 255).astype(np.uint8), dst,
                           cv2.xphoto.INPAINT_SHIFTMAP)
        outs.append(dst)
    return _paste(images, masks, outs)


def resynthesizer_fill(images, masks):
    """GIMP's Resynthesizer (PyPI `resynthesizer`: 61315's C port, a prebuilt library): the
    library's defaults (30 neighbours a patch, 200 probes, matchContextType 1: random order,
    matched to the context) with the seamless-tiling options off, as GIMP's heal-selection runs
    it. Deterministic. Mask: 255 = hole."""
    import resynthesizer
    params = resynthesizer.getDefaultParams()
    params.isMakeSeamlesslyTileableHorizontally = params.isMakeSeamlesslyTileableVertically = 0
    outs = [np.asarray(resynthesizer.resynthesize(Image.fromarray(im), Image.fromarray(m.astype(np.uint8) * 255),
                                                  params)) for im, m in zip(images, masks)]
    return _paste(images, masks, outs)


def patchmatch_fill(images, masks, patch_size=3, seed=0):
    """InvokeAI's PyPatchMatch (PyPI `pypatchmatch` >= 2: a prebuilt library): Barnes et al.'s
    PatchMatch in a coarse-to-fine EM completion; patch_size is the radius (3 = 7x7 patches,
    InvokeAI's setting). Seeded per call, so deterministic. Mask: nonzero = hole."""
    from patchmatch import patch_match
    if not patch_match.patchmatch_available:
        raise ImportError("pypatchmatch is installed but its native library did not load")
    outs = []
    for im, m in zip(images, masks):
        patch_match.set_random_seed(seed)
        outs.append(patch_match.inpaint(np.ascontiguousarray(im), m.astype(np.uint8), patch_size=patch_size))
    return _paste(images, masks, outs)


def model_fill(path, images, masks):
    """Complete with a model -> (uint8 completed, mean colour, meta).

    ``path`` is a checkpoint (.safetensors, run in PyTorch) or an exported model (.onnx, run by
    the fastfill runtime exactly as users run it). Every masked pixel is hidden from the model
    (mean colour), whatever the model's native hole."""
    if str(path).lower().endswith(".onnx"):
        from fastfill import Inpainter
        inp = Inpainter(str(path), roi=False)
        meta = inp.engine.meta
        return np.stack(inp.batch(list(images), list(masks))), list(meta.mean), {"kind": meta.kind}
    import torch

    from .checkpoint import load_checkpoint
    from .kinds import KINDS
    net, meta = load_checkpoint(path)
    kind = KINDS[meta["kind"]]
    mean, fill = meta["mean"], meta.get("fill", "mean")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    m = torch.from_numpy(masks).float()[:, None]
    with torch.no_grad():
        y = torch.cat([kind.paste(net, x[i:i + 8], net(kind.model_input(x[i:i + 8], m[i:i + 8], mean, fill)))
                       for i in range(0, len(x), 8)])
    # rint, as the runtime's composite rounds
    pred = np.rint(y.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    out = images.copy()
    out[masks] = pred[masks]
    return out, mean, meta


def _crop(im, size, rng, scale):
    """A size x size crop of PIL image `im`; rng None = resize to shorter side `size`, centre crop."""
    side = size if rng is None else size * rng.uniform(*scale)
    s = side / min(im.size)
    im = im.resize((max(size, round(im.size[0] * s)), max(size, round(im.size[1] * s))), Image.BICUBIC)
    if rng is None:
        l, t = (im.size[0] - size) // 2, (im.size[1] - size) // 2
    else:
        l, t = int(rng.integers(0, im.size[0] - size + 1)), int(rng.integers(0, im.size[1] - size + 1))
    return np.asarray(im.crop((l, t, l + size, t + size)), np.uint8)


def load_eval_set(data, size, mask_kind, seed=0, limit=None, files=None, crops=1, scale=(1.0, 1.5),
                  hole_side=None):
    """(images uint8 [N,S,S,3], masks bool [N,S,S], files) from a folder, deterministic.

    ``crops`` crops per image (see the module doc); ``hole_side`` sets the side of `center` holes
    (default: the CE's own hole)."""
    from .data import photo_files

    files = photo_files(data) if files is None else [Path(f) for f in files]
    imgs, used = [], []
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                crops_of_f = [_crop(im, size, None if crops == 1 else np.random.default_rng([seed, i, k]),
                                    scale) for k in range(crops)]
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
            warnings.warn(f"evaluate: skipped {f}: {type(e).__name__}: {e}", stacklevel=2)
            continue
        imgs.extend(crops_of_f)
        used.extend([f] * len(crops_of_f))
        if limit and len(imgs) >= limit:
            break
    if not imgs:
        raise DataError(f"no readable images under {data}")
    gen = make_mask_generator(mask_kind)
    if mask_kind == "center" and hole_side:
        masks = np.stack([gen(None, size, size, side=hole_side) for _ in imgs])
    else:
        masks = np.stack([gen(np.random.default_rng([seed, i]), size, size) for i in range(len(imgs))])
    return np.stack(imgs), masks, used


def evaluate(model, data, mask=None, size=None, limit=None, seed=0, grid=None, held_out=False, crops=1):
    """Evaluate `model` (checkpoint path) and the baselines on `data`. Returns {method: metrics}."""
    from .kinds import KINDS
    if str(model).lower().endswith(".onnx"):
        from fastfill.engines.base import read_meta as read_onnx_meta
        meta = {"kind": read_onnx_meta(model).kind, "data": {}}
    else:
        from .checkpoint import read_meta
        meta = read_meta(model)
    kind = KINDS.get(meta["kind"])
    if kind is None:  # the runtime runs any kind; evaluation needs the kind's crop and hole
        raise DataError(f"{model}: unknown model kind {meta['kind']!r}; known: {', '.join(KINDS)}")
    size = size or kind.eval_size()
    mask = kind.eval_mask(mask)
    if grid:  # (refused now, not after the evaluation)
        Image.init()
        if Path(grid).suffix.lower() not in Image.registered_extensions():
            raise DataError(f"--grid {grid}: not an image file name (e.g. grid.png)")
        if not held_out and Path(data).is_dir() and Path(grid).resolve().is_relative_to(Path(data).resolve()):
            raise DataError(f"--grid {grid} is inside --data {data}: it would be taken for a photo")
    files = None
    if held_out:
        if "root" not in (meta.get("data") or {}):
            raise DataError(f"{model} records no validation split (an exported model keeps none): "
                            "--held-out needs the training checkpoint; or pass --data DIR")
        root = Path(meta["data"]["root"])
        # (a --val-data run recorded its paths as given: relative ones to where training ran)
        files = [root / f if (root / f).exists() or not Path(f).exists() else Path(f)
                 for f in meta["data"].get("val_files", [])]
        if not files:
            raise DataError(f"{model} records no held-out images (trained with val_fraction "
                            f"{meta['data'].get('val_fraction')}); pass --data DIR")
        data = root
    images, masks, used = load_eval_set(data, size, mask, seed, limit, files, crops=crops)
    pred, mean, _ = model_fill(model, images, masks)
    results_img = {
        "model": pred,
        "mean fill": mean_fill(images, masks, mean),
    }
    try:
        results_img["opencv telea"] = opencv_fill(images, masks, "telea")
        results_img["opencv ns"] = opencv_fill(images, masks, "ns")
    except ImportError:
        pass
    table = {}
    for name, out in results_img.items():
        per = [metrics(o, t, m) for o, t, m in zip(out, images, masks)]
        table[name] = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    table["_n"] = len(images)
    if grid:
        rows = []
        for i in range(min(8, len(images))):
            shown = mean_fill(images[i:i + 1], masks[i:i + 1], mean)[0]
            rows.append(np.concatenate([shown] + [results_img[k][i] for k in results_img] + [images[i]], 1))
        Path(grid).parent.mkdir(parents=True, exist_ok=True)
        from fastfill.files.codecs import atomic_write

        sheet = Image.fromarray(np.concatenate(rows, 0))  # (whole or absent, asked for: replaced)
        atomic_write(grid, lambda tmp: sheet.save(tmp, format=Image.registered_extensions()[
            Path(grid).suffix.lower()]), overwrite=True, suffix=Path(grid).suffix)
    return table


def format_table(table) -> str:
    cols = ["psnr_hole", "ssim_hole", "l1_hole", "psnr", "ssim", "l1", "texture"]
    lines = [f"{'method':<14}" + "".join(f"{c:>11}" for c in cols)]
    for name, row in table.items():
        if name.startswith("_"):
            continue
        lines.append(f"{name:<14}" + "".join(f"{row[c]:>11.4f}" for c in cols))
    lines.append(f"({table['_n']} images; grid columns: masked input | "
                 f"{' | '.join(k for k in table if not k.startswith('_'))} | truth)")
    return "\n".join(lines)
