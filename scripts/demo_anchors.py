"""The example photos' objects removed by the patch tools a user could reach for instead, beside
fastfill's default: for each photo the area around its mask, in two labelled rows (input | mask |
PatchMatch, then GIMP Resynthesizer | harmonic | fastfill default). Needs the anchors (`pypatchmatch`,
`resynthesizer`: test and benchmark dependencies, never the runtime's).

    python scripts/demo_anchors.py -o docs/demo_anchors.jpg
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastfill import ops  # noqa: E402
from fastfill.fills import DEFAULT_METHOD, DEFAULT_OPTIONS  # noqa: E402
from train.evaluate import patchmatch_fill, resynthesizer_fill  # noqa: E402

MARGIN = 48  # pixels shown around the mask's box


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=ROOT / "examples" / "images")
    ap.add_argument("--masks", type=Path, default=ROOT / "examples" / "masks")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    labels = ["input", "mask", "PatchMatch", "Resynthesizer", "harmonic", "fastfill default"]
    crops = []
    for path in sorted(args.images.glob("*.jpg")):
        im = np.asarray(Image.open(path).convert("RGB"))
        hole = np.asarray(Image.open(args.masks / f"{path.stem}.png").convert("L")) > 127
        shown = im.copy()
        shown[hole] = (0.4 * shown[hole] + 0.6 * np.array([255, 0, 255])).astype(np.uint8)
        fills = [im, shown, patchmatch_fill(im[None], hole[None])[0],
                 resynthesizer_fill(im[None], hole[None])[0],
                 ops.fill(im, hole, method="harmonic"),
                 ops.fill(im, hole, method=DEFAULT_METHOD, **DEFAULT_OPTIONS)]
        ys, xs = np.nonzero(hole)
        y0, y1 = max(0, ys.min() - MARGIN), min(im.shape[0], ys.max() + 1 + MARGIN)
        x0, x1 = max(0, xs.min() - MARGIN), min(im.shape[1], xs.max() + 1 + MARGIN)
        crops.append([f[y0:y1, x0:x1] for f in fills])
    if not crops:
        raise SystemExit(f"no .jpg photos in {args.images}")
    font = ImageFont.load_default(size=14)
    cols = 3
    width = max(cols * (c[0].shape[1] + 4) for c in crops)
    height = sum(2 * (c[0].shape[0] + 22) for c in crops)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    top = 0
    for c in crops:
        h, w = c[0].shape[:2]
        for k, (label, crop) in enumerate(zip(labels, c)):
            x, y = (k % cols) * (w + 4), top + (k // cols) * (h + 22)
            draw.text((x + 3, y + 3), label, fill=(0, 0, 0), font=font)
            sheet.paste(Image.fromarray(np.ascontiguousarray(crop)), (x, y + 20))
        top += 2 * (h + 22)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
