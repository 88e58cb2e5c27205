"""End to end: `fastfill run` over a folder of real photos and masks, next to OpenCV's Telea and
Navier-Stokes inpainting over the same folder (decode, fill, encode, write), interleaved.

Run from the repo root:

    python benchmarks/bench_e2e.py [--model FILE.onnx ...] [--width W] [--reps N] [--threads N]

Folder: data/val (held-out photos, written by scripts/fetch_data.py) with one seeded rectangular
hole per photo (12 % of the area; the photo itself is the ground truth, so hole PSNR is printed
too), or, without data/, examples/images + examples/masks (object masks, no ground truth).
Models: fastfill/models/default.onnx when installed, tests/data/tiny_glcic.onnx, and a random
CompletionNet at --width when given (needs the `train` extra). Hole PSNR of a random-init model
means nothing; it is printed so the same script grades the shipped model once it lands.

`fastfill run` runs as a subprocess, as a user runs it: "wall" includes Python start-up, imports
and model load; "run" is the command's own processing time (its summary line).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def make_masks(images: list[Path], root: Path, out: Path, fraction: float = 0.12, seed: int = 0):
    """One rectangular hole per image (seeded by its name), saved as PNG beside its relative path."""
    import zlib

    import numpy as np
    from PIL import Image

    for p in images:
        w, h = Image.open(p).size
        rng = np.random.default_rng(seed + zlib.crc32(str(p.relative_to(root)).encode()))
        aspect = rng.uniform(0.6, 1.6)
        hh = int(round(np.sqrt(fraction * w * h / aspect)))
        hw = int(round(fraction * w * h / max(hh, 1)))
        hh, hw = min(hh, h - 2), min(hw, w - 2)
        t, l = int(rng.integers(0, h - hh)), int(rng.integers(0, w - hw))
        m = np.zeros((h, w), np.uint8)
        m[t:t + hh, l:l + hw] = 255
        dst = out / p.relative_to(root).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(dst)


def find_pairs(img_root: Path, mask_root: Path):
    pairs = []
    for p in sorted(img_root.rglob("*")):
        if p.suffix.lower() in IMAGE_EXT:
            rel = p.relative_to(img_root)
            cands = [mask_root / rel.with_suffix(s) for s in (".png", p.suffix)]
            m = next((c for c in cands if c.exists()), None)
            if m is not None:
                pairs.append((p, m, rel))
    return pairs


def run_opencv(pairs, out: Path, flag):
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    for img_p, mask_p, rel in pairs:
        img = cv2.imread(str(img_p), cv2.IMREAD_COLOR)
        m = cv2.imread(str(mask_p), cv2.IMREAD_GRAYSCALE)
        m = ((m >= 128) * 255).astype("uint8")
        res = cv2.inpaint(img, m, 3, flag)
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if dst.suffix.lower() in (".jpg", ".jpeg") else []
        cv2.imwrite(str(dst), res, params)


def run_fastfill(img_root, mask_root, out: Path, model, threads):
    cmd = [sys.executable, "-m", "fastfill.cli", "run", str(img_root), str(mask_root), "-o",
           str(out), "--overwrite", "-q", "--engine", str(model), "--threads", str(threads)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"fastfill run failed ({r.returncode}): {r.stderr.strip() or r.stdout}")
    m = re.search(r"done (\d+).* in ([\d.]+) s", r.stdout)
    return wall, (float(m.group(2)) if m else float("nan")), int(m.group(1)) if m else -1


def hole_psnr(pairs, out: Path):
    import numpy as np
    from PIL import Image

    vals = []
    for img_p, mask_p, rel in pairs:
        ref = np.asarray(Image.open(img_p).convert("RGB"), np.float64)
        got = np.asarray(Image.open(out / rel).convert("RGB"), np.float64)
        hole = np.asarray(Image.open(mask_p).convert("L")) >= 128
        mse = ((ref[hole] - got[hole]) ** 2).mean()
        vals.append(10 * np.log10(255 ** 2 / max(mse, 1e-10)))
    return float(np.mean(vals))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="image folder [data/val, else examples/images]")
    ap.add_argument("--masks", default=None, help="mask folder [generated for data/val]")
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--width", type=float, default=0.0, help="also a random CompletionNet(width)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import cv2
    import numpy as np

    from fastfill import bench as fb
    from fastfill.engines import default_model_path

    threads = args.threads or fb.default_threads()
    cv2.setNumThreads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="fastfill-e2e-"))
    truth = False
    if args.images:
        img_root = Path(args.images)
        mask_root = Path(args.masks) if args.masks else None
    elif (ROOT / "data/val").is_dir():
        img_root, mask_root = ROOT / "data/val", None
    else:
        img_root, mask_root = ROOT / "examples/images", ROOT / "examples/masks"
    if mask_root is None:
        imgs = [p for p in sorted(img_root.rglob("*")) if p.suffix.lower() in IMAGE_EXT]
        mask_root = tmp / "masks"
        make_masks(imgs, img_root, mask_root)
        truth = True
    pairs = find_pairs(img_root, mask_root)
    if not pairs:
        raise SystemExit(f"no image/mask pairs under {img_root} / {mask_root}")
    mpx = sum(np.prod(__import__("PIL.Image", fromlist=["Image"]).open(p).size) for p, _, _ in pairs) / 1e6

    models = [Path(m) for m in args.model] if args.model else []
    if not args.model:
        if default_model_path().exists():
            models.append(default_model_path())
        models.append(ROOT / "tests/data/tiny_glcic.onnx")
    if args.width > 0:
        from train.export import export_model, random_model

        net = random_model("glcic", args.width, seed=0)
        p = tmp / f"glcic_random_w{args.width:g}.onnx"
        export_model(net, p, provenance={"random_init": True, "config": net.config()},
                     log=lambda m: None)
        models.append(p)

    env = fb.environment(threads)
    print(f"date {env['date']}; {env['cpu']}, {env['cores']} cores; threads {threads}; "
          f"opencv {cv2.__version__}, onnxruntime {env['versions']['onnxruntime']}")
    print(f"folder: {img_root.relative_to(ROOT) if img_root.is_relative_to(ROOT) else img_root} "
          f"({len(pairs)} photos, {mpx:.2f} MP), masks: "
          f"{'generated, one rectangle of 12 % per photo' if truth else mask_root}")

    methods = {f"fastfill {m.name}": ("ff", m) for m in models}
    methods["opencv telea"] = ("cv", cv2.INPAINT_TELEA)
    methods["opencv ns"] = ("cv", cv2.INPAINT_NS)
    times = {k: [] for k in methods}
    runs = {k: [] for k in methods}
    order = list(methods)
    for rep in range(args.reps):
        for name in order:
            kind, what = methods[name]
            out = tmp / "out" / re.sub(r"\W+", "_", name)
            if kind == "ff":
                wall, proc, done = run_fastfill(img_root, mask_root, out, what, threads)
                if done != len(pairs):
                    raise SystemExit(f"fastfill run did {done} of {len(pairs)} images")
                runs[name].append(proc)
            else:
                t0 = time.perf_counter()
                run_opencv(pairs, out, what)
                wall = time.perf_counter() - t0
                runs[name].append(wall)
            times[name].append(wall)
        order = order[1:] + order[:1]
    print(f"\n{'method':<34}{'wall s':>8}{'img/s':>8}{'run s':>8}{'img/s':>8}{'MP/s':>7}"
          f"{'hole PSNR':>11}")
    for name in methods:
        wall = float(np.median(times[name]))
        proc = float(np.median(runs[name]))
        out = tmp / "out" / re.sub(r"\W+", "_", name)
        psnr = f"{hole_psnr(pairs, out):.2f} dB" if truth else "n/a"
        print(f"{name:<34}{wall:>8.2f}{len(pairs) / wall:>8.2f}{proc:>8.2f}{len(pairs) / proc:>8.2f}"
              f"{mpx / proc:>7.2f}{psnr:>11}")
    print(f"(median of {args.reps} interleaved reps; 'run' = the work without start-up: "
          "fastfill's own summary, OpenCV's loop)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
