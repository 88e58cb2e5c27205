"""CE vs GLCIC vs classical inpainting on unseen photos: the table and figure of docs/RESULTS.md.

    python scripts/compare.py --glcic fastfill/models/default.onnx --ce runs/ce/last.safetensors \
        --data data/val --crops 16 --markdown docs/RESULTS.md --figure docs/comparison.png

Settings (all crops and masks from fixed seeds, `--crops` per validation photo):
  A  128x128, the Context Encoder's central hole: the inner 50x50 of the central 64x64 box is
     hidden, the 7 px band around it is the overlap context CE re-predicts (Pathak et al.'s code);
  B  128x128, the whole central 64x64 hidden (the band too: outside what CE trained on);
  C  256x256, free-form holes (brush strokes and blobs);
  D  256x256, GLCIC's random rectangles (sides 96-128);
  E  512x512, free-form holes (the net is not tuned to one scale).
Every method sees exactly the same hidden pixels; metrics are inside the hole. The classical
rows: mean colour, OpenCV Telea and Navier-Stokes (radius 5), scikit-image's biharmonic, and
fastfill's harmonic fill (`fastfill.ops.fill`, also the shipped model's prefill).
"""

import argparse
import datetime
import platform
from pathlib import Path

import numpy as np
from PIL import Image

from fastfill import ops
from train.evaluate import load_eval_set, mean_fill, metrics, model_fill, opencv_fill

SETTINGS = {
    "A": dict(title="128×128, central hole (CE's 50×50 hidden region, 7 px overlap band visible)",
              size=128, mask="center", hole_side=None, ce=True),
    "B": dict(title="128×128, central 64×64 hole (all of it hidden)", size=128, mask="center",
              hole_side=64, ce=True),
    "C": dict(title="256×256, free-form holes", size=256, mask="freeform", hole_side=None, ce=False),
    "D": dict(title="256×256, random rectangles (96–128 px sides)", size=256, mask="rect", hole_side=None,
              ce=False),
    # 4 crops per photo at 512: scikit-image's biharmonic takes seconds per crop there
    "E": dict(title="512×512, free-form holes", size=512, mask="freeform", hole_side=None, ce=False,
              crops=4),
}
MODEL = "GLCIC (shipped model)"
CLASSICAL = ("OpenCV Telea", "OpenCV Navier-Stokes", "biharmonic (scikit-image)", "harmonic (fastfill)")


def biharmonic_fill(images, masks):
    from skimage.restoration import inpaint_biharmonic
    out = []
    for im, m in zip(images, masks):
        f = inpaint_biharmonic(im, m, channel_axis=-1)
        res = im.copy()
        res[m] = np.clip(np.rint(f[m] * 255), 0, 255).astype(np.uint8)
        out.append(res)
    return np.stack(out)
COLS = ("psnr_hole", "ssim_hole", "l1_hole")


def run_setting(cfg, args):
    images, masks, _ = load_eval_set(args.data, cfg["size"], cfg["mask"], seed=args.seed,
                                     crops=min(args.crops, cfg.get("crops", args.crops)),
                                     hole_side=cfg["hole_side"])
    outs = {}
    glcic, mean, _ = model_fill(args.glcic, images, masks)
    outs["mean fill"] = mean_fill(images, masks, mean)
    outs["OpenCV Telea"] = opencv_fill(images, masks, "telea", radius=5)
    outs["OpenCV Navier-Stokes"] = opencv_fill(images, masks, "ns", radius=5)
    outs["biharmonic (scikit-image)"] = biharmonic_fill(images, masks)
    outs["harmonic (fastfill)"] = ops.fill(images, masks.astype(np.uint8), "harmonic")
    if cfg["ce"] and args.ce:
        outs["Context Encoder"], _, _ = model_fill(args.ce, images, masks)
    for spec in args.model:  # more models, each a row: NAME=PATH
        name, path = spec.split("=", 1)
        outs[name], _, _ = model_fill(path, images, masks)
    outs[MODEL] = glcic
    table = {}
    for name, out in outs.items():
        per = [metrics(o, t, m) for o, t, m in zip(out, images, masks)]
        table[name] = {k: float(np.mean([p[k] for p in per])) for k in COLS}
    return table, images, masks, outs


def figure(images, masks, outs, path, n=6, extra=()):
    """ground truth | masked | CE | the --model rows | GLCIC | harmonic | OpenCV NS, a row per example."""
    keys = [k for k in ("Context Encoder", *extra, MODEL, "harmonic (fastfill)", "OpenCV Navier-Stokes")
            if k in outs]
    idx = np.linspace(0, len(images) - 1, n).astype(int)
    rows = []
    for i in idx:
        shown = images[i].copy()
        shown[masks[i]] = 255
        tiles = [images[i], shown] + [outs[k][i] for k in keys]
        pad = np.full((images.shape[1], 4, 3), 255, np.uint8)
        rows.append(np.concatenate(sum(([t, pad] for t in tiles), [])[:-1], 1))
    sep = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate(sum(([r, sep] for r in rows), [])[:-1], 0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
    return ["ground truth", "masked"] + keys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--glcic", required=True, help="GLCIC model (.onnx or checkpoint)")
    ap.add_argument("--ce", help="Context Encoder checkpoint (optional)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="another model (.onnx or checkpoint) as a row of its own; repeatable")
    ap.add_argument("--data", required=True, help="validation photos (never trained on)")
    ap.add_argument("--crops", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default="ABCDE")
    ap.add_argument("--markdown", help="write the tables to this file")
    ap.add_argument("--figure", help="write the figure (setting A) to this PNG")
    args = ap.parse_args()
    lines = [f"Validation photos: `{args.data}` ({args.crops} crops each, seed {args.seed}); "
             f"GLCIC: `{args.glcic}`; CE: `{args.ce or 'not given'}`; "
             f"{datetime.date.today()}, {platform.machine()}.", ""]
    gaps = {}
    for key in args.settings:
        cfg = SETTINGS[key]
        table, images, masks, outs = run_setting(cfg, args)
        lines += [f"### {key}. {cfg['title']} — {len(images)} crops", "",
                  "| method | PSNR (dB) ↑ | SSIM ↑ | L1 ↓ |", "|---|---:|---:|---:|"]
        for name, row in table.items():
            lines.append(f"| {name} | {row['psnr_hole']:.2f} | {row['ssim_hole']:.4f} | {row['l1_hole']:.4f} |")
        best = max(CLASSICAL, key=lambda k: table[k]["psnr_hole"])
        gap = table[MODEL]["psnr_hole"] - table[best]["psnr_hole"]
        gaps[key] = gap
        lines += ["", f"GLCIC − best classical ({best}): {gap:+.2f} dB (target ≥ +1 dB)", ""]
        if key == args.settings[0] and args.figure:
            cols = figure(images, masks, outs, args.figure, extra=[m.split("=", 1)[0] for m in args.model])
            lines += [f"Figure `{args.figure}`: {' | '.join(cols)}.", ""]
        print("\n".join(lines[-(len(table) + 6):]), flush=True)
    text = "\n".join(lines)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
