"""A side-by-side sheet (input | mask over input | result) for a folder run of `fastfill run`.

    python scripts/contact_sheet.py examples/images examples/masks out/demo -o out/demo/sheet.png
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROW_HEIGHT = 240


def _fit(img: Image.Image) -> Image.Image:
    return img.resize((max(1, round(img.width * ROW_HEIGHT / img.height)), ROW_HEIGHT), Image.LANCZOS)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("masks", type=Path)
    ap.add_argument("results", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for img_path in sorted(p for p in args.images.rglob("*") if p.is_file()):
        rel = img_path.relative_to(args.images)
        res_path = args.results / rel
        mask_path = next(iter(sorted((args.masks / rel.parent).glob(rel.stem + ".*"))), None)
        if not res_path.exists() or mask_path is None:
            continue
        img = ImageOps.exif_transpose(Image.open(img_path)).convert("RGB")
        hole = np.asarray(Image.open(mask_path).convert("L")) > 127
        shown = np.asarray(img).copy()
        shown[hole] = (0.4 * shown[hole] + 0.6 * np.array([255, 0, 255])).astype(np.uint8)
        res = Image.open(res_path).convert("RGB")
        rows.append([_fit(img), _fit(Image.fromarray(shown)), _fit(res)])
    if not rows:
        raise SystemExit(f"no results found in {args.results}")
    pad = 6
    width = max(sum(t.width for t in r) + pad * (len(r) + 1) for r in rows)
    sheet = Image.new("RGB", (width, len(rows) * (ROW_HEIGHT + pad) + pad), "white")
    for i, r in enumerate(rows):
        x = pad
        for tile in r:
            sheet.paste(tile, (x, pad + i * (ROW_HEIGHT + pad)))
            x += tile.width + pad
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"sheet: {args.out} ({len(rows)} rows: input | hole | result)")


if __name__ == "__main__":
    main()
