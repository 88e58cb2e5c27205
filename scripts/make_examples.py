#!/usr/bin/env python3
"""Rebuild examples/images/*.jpg and examples/masks/*.png from the validation split.

    python scripts/fetch_data.py          # once, fills data/
    python scripts/make_examples.py [--data data/] [--out examples/] [--preview sheet.png]

Each example is a validation photo (never trained on), resized to at most 640 px on its long
side and saved as JPEG quality 85, with a mask (white = fill) drawn over a real object.
Mask shapes are given in the source photo's pixel coordinates (measured by eye) and are
dilated by a few pixels so the object's edge and shadow are inside the hole.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
MAX_SIDE = 640
QUALITY = 85
GROW = 7  # px of dilation (odd)

# name -> (source, origin in SOURCES.json, object removed, [shapes])
# shape: ("poly", [(x, y), ...]) or ("ellipse", (x0, y0, x1, y1)) in source-photo pixels
EXAMPLES = {
    "coffee": ("scikit-image", "coffee.png", "the teaspoon", [
        ("ellipse", (324, 238, 408, 328)),
        ("poly", [(400, 64), (418, 62), (424, 72), (418, 110), (410, 150), (398, 192),
                  (390, 240), (370, 240), (384, 188), (398, 146), (404, 108), (398, 74)]),
    ]),
    "apple": ("opencv-doc", "apple.jpg", "the pencil behind the apple", [
        ("poly", [(0, 434), (104, 440), (110, 482), (0, 482)]),
        ("poly", [(392, 440), (512, 444), (512, 486), (392, 484)]),
    ]),
    "fruits": ("opencv-doc", "fruits.jpg", "the lime", [
        ("poly", [(326, 168), (352, 138), (396, 122), (446, 120), (486, 127), (512, 134),
                  (512, 262), (470, 258), (420, 270), (378, 300), (346, 300), (330, 262),
                  (322, 214)]),
    ]),
}


def draw_mask(size, shapes, scale=1.0):
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    for kind, geom in shapes:
        if kind == "ellipse":
            d.ellipse([c * scale for c in geom], fill=255)
        else:
            d.polygon([(x * scale, y * scale) for x, y in geom], fill=255)
    return m.filter(ImageFilter.MaxFilter(GROW))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "examples")
    ap.add_argument("--preview", type=Path, help="also write a contact sheet with the masks overlaid")
    args = ap.parse_args(argv)
    manifest = json.loads((args.data / "SOURCES.json").read_text())
    index = {(i["source"], i["origin"]): i for i in manifest["images"]}
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    tiles = []
    for name, (source, origin, what, shapes) in EXAMPLES.items():
        rec = index.get((source, origin))
        if rec is None:
            print(f"error: {source}:{origin} not in {args.data}/SOURCES.json", file=sys.stderr)
            return 1
        if rec["split"] != "val":
            print(f"error: {source}:{origin} is in the {rec['split']} split, not val", file=sys.stderr)
            return 1
        im = Image.open(args.data / rec["path"]).convert("RGB")
        scale = min(1.0, MAX_SIDE / max(im.size))
        if scale < 1.0:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        mask = draw_mask(im.size, shapes, scale)
        im.save(args.out / "images" / f"{name}.jpg", quality=QUALITY, optimize=True)
        mask.save(args.out / "masks" / f"{name}.png", optimize=True)
        cover = sum(mask.histogram()[128:]) / (mask.width * mask.height)
        print(f"{name}: {source}:{origin} {im.width}x{im.height}, hole over {what} "
              f"({cover:.1%} of the image), licence {rec['license']}")
        if args.preview:
            red = Image.new("RGB", im.size, (255, 0, 0))
            tiles.append(Image.composite(Image.blend(im, red, 0.5), im, mask))
    if args.preview and tiles:
        h = max(t.height for t in tiles)
        sheet = Image.new("RGB", (sum(t.width for t in tiles), h), "white")
        x = 0
        for t in tiles:
            sheet.paste(t, (x, 0))
            x += t.width
        sheet.save(args.preview)
    return 0


if __name__ == "__main__":
    sys.exit(main())
