"""The file run against the same run at an earlier git revision, side by side in one process,
interleaved, on the same folder: wall time and whether the outputs are byte-identical.

Run from the repo root: `python benchmarks/bench_runner_ab.py [--rev 465b94f] [--reps 4]
[--photos examples/images] [--copies 7]`.

The old revision's `fastfill/` is extracted with `git archive` and imported as its own package
(`fastfill_at_<rev>`, with this build's native module), so both runs share nothing but the
machine. Folder: each photo under --photos, --copies times over as PNG, each with a seeded
rectangular hole of 30 % of its sides; the shipped model on ONNX Runtime, -j 2.
"""

import argparse
import filecmp
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import fastfill
from fastfill import Inpainter
from fastfill.files import runner


def old_package(rev: str):
    """fastfill as it was at ``rev``, importable as ``fastfill_at_<rev>``."""
    name = f"fastfill_at_{rev}"
    root = Path(tempfile.mkdtemp())
    tar = subprocess.run(["git", "archive", rev, "fastfill"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(root, filter="data")
    (root / "fastfill").rename(root / name)
    # this build's kernels, the same module object (pybind11 registers each type once)
    sys.modules[f"{name}._C"] = importlib.import_module("fastfill._C")
    sys.path.insert(0, str(root))
    return importlib.import_module(name)


def folder(photos: Path, copies: int) -> Path:
    root = Path(tempfile.mkdtemp())
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    found = sorted(q for q in photos.rglob("*") if q.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for k in range(copies):
        for p in found:
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
    ap.add_argument("--rev", default="465b94f", help="the earlier revision")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--photos", type=Path, default=Path("examples/images"))
    ap.add_argument("--copies", type=int, default=7)
    args = ap.parse_args()
    old = old_package(args.rev)
    old_runner = importlib.import_module(f"{old.__name__}.runner")
    src = folder(args.photos, args.copies)
    n = len(list((src / "images").iterdir()))
    inp_old, inp_new = old.Inpainter(backend="onnxruntime"), Inpainter(backend="onnxruntime")
    names = (f"{args.rev} runner.run_files", "now runner.run")
    times = {k: [] for k in names}
    for rep in range(args.reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            out = src / f"out-{rep}-{names.index(name)}"
            t0 = time.perf_counter()
            if name == names[0]:
                s = old_runner.run_files(inp_old, old_runner.plan(src / "images", src / "masks", out),
                                         jobs=2, progress=False)
            else:
                s = runner.run(src / "images", src / "masks", out, runner.LocalExecutor(inp_new, jobs=2),
                               progress=False)
            times[name].append(time.perf_counter() - t0)
            assert s.done == n, s
    print(f"{n} photos ({args.photos} x{args.copies}, PNG, 30 % rectangular hole), shipped model on "
          f"onnxruntime, -j 2, {args.reps} interleaved reps")
    for k, v in times.items():
        print(f"  {k}: median {np.median(v):.2f} s  ({', '.join(f'{x:.2f}' for x in v)})")
    a, b = (np.median(v) for v in times.values())
    print(f"  now/{args.rev}: {b / a:.3f}")
    o1, o2 = src / "out-0-0", src / "out-0-1"
    files = sorted(q.name for q in o1.iterdir())
    print("  outputs byte-identical:", filecmp.cmpfiles(o1, o2, files, shallow=False)[1:] == ([], []))


if __name__ == "__main__":
    main()
