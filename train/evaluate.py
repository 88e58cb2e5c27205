"""Evaluation: PSNR, SSIM and L1 inside the hole and on the whole image, for a trained model and
the baselines mean fill, OpenCV Telea and OpenCV Navier-Stokes.

    python -m train.evaluate runs/glcic/last.safetensors --data heldout/ --mask rect --grid cmp.png

Images are resized (shorter side = size) and centre-cropped to size x size (256 GLCIC, 128 CE);
masks come from `train.masks` with a fixed seed (the CE always uses its central hole). Metrics are
computed on [0, 1] RGB: PSNR = 10 log10(1 / MSE); SSIM is the Gaussian-window SSIM (11 px,
sigma 1.5, Wang et al. 2004) per channel, its map averaged over the region; L1 the mean absolute
error. Per-image values are averaged over the images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .data import DataError, find_images
from .masks import make_mask_generator


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


def metrics(pred, truth, mask):
    """{'psnr_hole','ssim_hole','l1_hole','psnr','ssim','l1'} for uint8 [H,W,3] images, bool mask."""
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


def model_fill(path, images, masks):
    """Complete with a checkpoint (.safetensors, PyTorch) -> (uint8 completed, mean colour)."""
    import torch

    from .checkpoint import load_checkpoint
    net, meta = load_checkpoint(path)
    mean = meta["mean"]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    m = torch.from_numpy(masks).float()[:, None]
    with torch.no_grad():
        if meta["kind"] == "glcic":
            mt = torch.tensor(mean).view(1, 3, 1, 1)
            y = torch.cat([net(torch.cat([x[i:i + 8] * (1 - m[i:i + 8]) + mt * m[i:i + 8], m[i:i + 8]], 1))
                           for i in range(0, len(x), 8)])
        else:
            ht, hl, hh, hw = net.hole_box
            pt, pl, ph, pw = net.pred_box
            inp = x.clone()
            inp[:, :, ht:ht + hh, hl:hl + hw] = torch.tensor(mean).view(1, 3, 1, 1)
            y = x.clone()
            y[:, :, pt:pt + ph, pl:pl + pw] = net(inp)
    pred = (y.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    out = images.copy()
    out[masks] = pred[masks]
    return out, mean, meta


def load_eval_set(data, size, mask_kind, seed=0, limit=None, files=None):
    """(images uint8 [N,S,S,3], masks bool [N,S,S], files) from a folder, deterministic."""
    files = find_images(data) if files is None else [Path(f) for f in files]
    imgs, used = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                s = size / min(im.size)
                im = im.resize((max(size, round(im.size[0] * s)), max(size, round(im.size[1] * s))), Image.BICUBIC)
                l, t = (im.size[0] - size) // 2, (im.size[1] - size) // 2
                imgs.append(np.asarray(im.crop((l, t, l + size, t + size)), np.uint8))
                used.append(f)
        except Exception:
            continue
        if limit and len(imgs) >= limit:
            break
    if not imgs:
        raise DataError(f"no readable images under {data}")
    gen = make_mask_generator(mask_kind)
    masks = np.stack([gen(np.random.default_rng([seed, i]), size, size) for i in range(len(imgs))])
    return np.stack(imgs), masks, used


def evaluate(model, data, mask=None, size=None, limit=None, seed=0, grid=None, held_out=False):
    """Evaluate `model` (checkpoint path) and the baselines on `data`. Returns {method: metrics}."""
    from .checkpoint import read_meta
    from .models import CE_IMAGE_SIZE
    meta = read_meta(model)
    ce = meta["kind"] == "ce"
    size = size or (CE_IMAGE_SIZE if ce else 256)
    mask = "center" if ce else (mask or "rect")
    files = None
    if held_out:
        root = Path(meta["data"]["root"])
        files = [root / f for f in meta["data"].get("val_files", [])]
        if not files:
            raise DataError(f"{model} records no held-out images (trained with val_fraction "
                            f"{meta['data'].get('val_fraction')}); pass --data DIR")
        data = root
    images, masks, used = load_eval_set(data, size, mask, seed, limit, files)
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
        Image.fromarray(np.concatenate(rows, 0)).save(grid)
    return table


def format_table(table) -> str:
    cols = ["psnr_hole", "ssim_hole", "l1_hole", "psnr", "ssim", "l1"]
    lines = [f"{'method':<14}" + "".join(f"{c:>11}" for c in cols)]
    for name, row in table.items():
        if name.startswith("_"):
            continue
        lines.append(f"{name:<14}" + "".join(f"{row[c]:>11.4f}" for c in cols))
    lines.append(f"({table['_n']} images; grid columns: masked input | "
                 f"{' | '.join(k for k in table if not k.startswith('_'))} | truth)")
    return "\n".join(lines)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="checkpoint (.safetensors)")
    ap.add_argument("--data", help="folder of held-out images")
    ap.add_argument("--held-out", action="store_true", help="use the checkpoint's own validation split")
    ap.add_argument("--mask", default="rect", help="rect | freeform | mixed | center (GLCIC)")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", default=None, help="write a comparison grid PNG here")
    a = ap.parse_args(argv)
    if not a.data and not a.held_out:
        ap.error("give --data DIR or --held-out")
    print(format_table(evaluate(a.model, a.data, a.mask, a.size, a.limit, a.seed, a.grid, a.held_out)))


if __name__ == "__main__":
    main()
