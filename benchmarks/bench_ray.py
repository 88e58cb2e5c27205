"""Images/s of the local `fastfill run` against `fastfill run --ray` with 1 and 2 workers.

Run from the repo root: `python benchmarks/bench_ray.py [--images 48] [--size 320] [--width 0.25]`.
All three runs fill the same folder of JPEGs (one hole each) into fresh output folders, in one
process, end to end (listing, decoding, model, encoding, writing; Ray's runs include starting the
actors and loading the engine in each, not starting Ray itself, which is timed apart). The
per-image cost of each stage on one thread is measured too (docs/SCALING.md)
derives the throughput on N nodes from them. Writes a "## Ray" section into benchmarks/RESULTS.md
(other sections are kept).
"""

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def make_folder(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    y = np.linspace(0, 1, size)[:, None]
    x = np.linspace(0, 1, size)[None, :]
    for i in range(n):
        base = np.stack([200 * y + 30 * x, 180 * x + 40 * np.sin(8 * y + i), 120 + 100 * x * y], 2)
        im = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(root / "images" / f"img{i:04d}.jpg", quality=92)
        m = np.zeros((size, size), np.uint8)
        hole = size // 5
        y0, x0 = rng.integers(0, size - hole, 2)
        m[y0:y0 + hole, x0:x0 + hole] = 255
        Image.fromarray(m).save(root / "masks" / f"img{i:04d}.png")


def stage_costs(folder: Path, engine: str, k: int = 8) -> dict:
    """Milliseconds per image of each stage, on one thread, for the first k images."""
    from fastfill.files import runner
    from fastfill.inpainter import Inpainter

    p = runner.find_work(folder / "images", folder / "masks", folder / "stage-out", overwrite=True)
    inp = Inpainter(engine, threads=1)
    dec = fill = enc = 0.0
    for row in p.images[:k]:
        t0 = time.perf_counter()
        src, mask = runner.read_row(row, p.fs_images, p.fs_masks)
        t1 = time.perf_counter()
        out = inp(src.rgb, mask)
        t2 = time.perf_counter()
        runner.write_row(row, out, src, mask, p.fs_out, runner.FileOptions(overwrite=True))
        t3 = time.perf_counter()
        dec, fill, enc = dec + t1 - t0, fill + t2 - t1, enc + t3 - t2
    inp.close()
    return {"decode": 1e3 * dec / k, "fill": 1e3 * fill / k, "encode+write": 1e3 * enc / k}


def run_local(folder: Path, out: Path, engine: str) -> tuple[float, int]:
    from fastfill.files import runner
    from fastfill.inpainter import Inpainter

    t0 = time.perf_counter()
    with Inpainter(engine) as inp:
        s = runner.run(folder / "images", folder / "masks", out,
                       runner.LocalExecutor(inp, jobs=min(4, os.cpu_count() or 1)), progress=False)
    return time.perf_counter() - t0, s.done


def run_ray(folder: Path, out: Path, engine: str, workers: int) -> tuple[float, int]:
    from fastfill.files import ray as fray

    t0 = time.perf_counter()
    s = fray.run_files(folder / "images", folder / "masks", out, engine=engine,
                       concurrency=workers, progress=False)
    return time.perf_counter() - t0, s.done


def write_section(text: str, path: Path) -> None:
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    section = "## Ray\n\n" + text.rstrip() + "\n"
    m = re.search(r"^## Ray\s*$.*?(?=^## |\Z)", old, flags=re.M | re.S)
    if m:
        new = old[:m.start()] + section + ("\n" if old[m.end():] else "") + old[m.end():]
    else:
        new = old.rstrip() + "\n\n" + section
    path.write_text(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=320, help="side of the square images")
    ap.add_argument("--engine", default=None, help="model file (default: see --width)")
    ap.add_argument("--width", type=float, default=0.25,
                    help="without --engine: export a random GLCIC of this width (needs the train "
                         "extra); 0 = tests/data/tiny_glcic.onnx")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    import ray

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        engine = args.engine
        if engine is None and args.width > 0:
            engine = str(tmp / f"glcic_w{args.width}.onnx")
            subprocess.run([str(Path(sys.executable).parent / "fastfill"), "export", "--random", "--width",
                            str(args.width), "-o", engine], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
            label = f"random GLCIC, width {args.width}"
        elif engine is None:
            engine = str(ROOT / "tests" / "data" / "tiny_glcic.onnx")
            label = "tests/data/tiny_glcic.onnx (width 1/16)"
        else:
            label = engine
        folder = tmp / "data"
        make_folder(folder, args.images, args.size)
        costs = stage_costs(folder, engine)

        rows = [("local `fastfill run`",) + run_local(folder, tmp / "out-local", engine)]
        t0 = time.perf_counter()
        ray.init(include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t0
        try:
            # The fixed cost of a job (actor start, engine load, pipeline fill and drain), which
            # also warms Ray's worker pool for the runs below: one image.
            one = tmp / "one"
            (one / "images").mkdir(parents=True)
            shutil.copy(sorted((folder / "images").iterdir())[0], one / "images")
            shutil.copytree(folder / "masks", one / "masks")
            fixed = run_ray(one, tmp / "out-one", engine, 1)[0]
            for w in (1, 2):
                rows.append((f"`--ray`, {w} worker{'s' if w > 1 else ''}",)
                            + run_ray(folder, tmp / f"out-ray{w}", engine, w))
        finally:
            ray.shutdown()
        same = all(
            (tmp / "out-local" / p.name).read_bytes() == p.read_bytes()
            for w in (1, 2) for p in (tmp / f"out-ray{w}").glob("*.jpg"))

    import onnxruntime

    lines = [
        f"`python benchmarks/bench_ray.py --images {args.images} --size {args.size}"
        + (f" --width {args.width}`" if args.engine is None else f" --engine {args.engine}`"),
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU; "
        f"Ray {ray.__version__}, onnxruntime {onnxruntime.__version__}. Model: {label}, "
        f"ONNX Runtime CPU. {args.images} JPEGs of {args.size}x{args.size}, one "
        f"{args.size // 5}x{args.size // 5} hole each (ROI on).",
        "",
        "| run | seconds | images/s |",
        "|---|---:|---:|",
    ]
    for name, secs, done in rows:
        lines.append(f"| {name} | {secs:.2f} | {done / secs:.1f} |")
    lines += [
        "",
        f"Starting the local Ray itself: {ray_start:.1f} s, then a one-image `--ray` job (the "
        f"fixed cost of a job: actor start, engine load, pipeline fill): {fixed:.1f} s; neither "
        "is in the rows above. Outputs of "
        f"the Ray runs byte-identical to the local run: {'yes' if same else 'NO'}.",
        "",
        "Per image, one thread: " + ", ".join(f"{k} {v:.1f} ms" for k, v in costs.items()) + ".",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(text, Path(args.results))
        print(f"\nwritten to {args.results}")


if __name__ == "__main__":
    main()
