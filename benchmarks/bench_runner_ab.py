"""The file runner against the local run it replaced (`io.process_files` at git revision --rev),
side by side in one process, interleaved, on the same folder and the same Inpainter.

Run from the repo root: `python benchmarks/bench_runner_ab.py [--rev fdb2cf3] [--reps 4]`.
Folder: the data/val photos (scripts/fetch_data.py) three times over as PNG, each with a seeded
rectangular hole of 30 % of its sides; the shipped model on ONNX Runtime, -j 2. Prints the median
wall time of each and their ratio, and whether the outputs are byte-identical.
"""

import argparse
import filecmp
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fastfill import Inpainter, runner


def old_io(rev: str):
    src = subprocess.run(["git", "show", f"{rev}:fastfill/io.py"], capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_io.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("fastfill.old_io", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fastfill.old_io"] = mod
    spec.loader.exec_module(mod)
    return mod


def folder() -> Path:
    root = Path(tempfile.mkdtemp())
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    photos = sorted(q for q in Path("data/val").rglob("*") if q.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for k in range(3):
        for p in photos:
            im = Image.open(p).convert("RGB")
            w, h = im.size
            name = f"{p.stem}_{k}.png"
            im.save(root / "images" / name)
            m = np.zeros((h, w), np.uint8)
            hh, ww = int(h * 0.3), int(w * 0.3)
            y, x = rng.integers(0, h - hh), rng.integers(0, w - ww)
            m[y:y + hh, x:x + ww] = 255
            Image.fromarray(m).save(root / "masks" / name)
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="fdb2cf3", help="a revision with io.process_files")
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    old = old_io(args.rev)
    src = folder()
    n = len(list((src / "images").iterdir()))
    inp = Inpainter(backend="onnxruntime")
    times = {"old io.process_files": [], "new runner.run_files": []}
    for rep in range(args.reps):
        for name in (list(times) if rep % 2 == 0 else list(times)[::-1]):
            out = src / f"out-{rep}-{name[:3]}"
            t0 = time.perf_counter()
            if name.startswith("old"):
                s = old.process_files(inp, old.plan_tasks(src / "images", src / "masks", out), jobs=2, progress=False)
            else:
                s = runner.run_files(inp, runner.plan(src / "images", src / "masks", out), jobs=2, progress=False)
            times[name].append(time.perf_counter() - t0)
            assert s.done == n, s
    print(f"{n} photos (data/val x3, PNG, 30 % rectangular hole), shipped model on onnxruntime, -j 2, "
          f"{args.reps} interleaved reps")
    for k, v in times.items():
        print(f"  {k}: median {np.median(v):.2f} s  ({', '.join(f'{x:.2f}' for x in v)})")
    a, b = (np.median(v) for v in times.values())
    print(f"  new/old: {b / a:.3f}")
    o1, o2 = src / "out-0-old", src / "out-0-new"
    names = sorted(q.name for q in o1.iterdir())
    print("  outputs byte-identical:", filecmp.cmpfiles(o1, o2, names, shallow=False)[1:] == ([], []))


if __name__ == "__main__":
    main()
