"""CE vs GLCIC vs classical inpainting on unseen photos: the table and figure of docs/RESULTS.md.

    python scripts/compare.py --glcic fastfill/models/default.onnx --ce runs/ce/last.safetensors \
        --data data/val --crops 16 --markdown docs/RESULTS.md --figure docs/comparison.png
    python scripts/compare.py --data data/val --crops 8 --settings BCO --sheet-dir out/sheets

Settings (all crops and masks from fixed seeds, `--crops` per validation photo):
  A  128x128, the Context Encoder's central hole: the inner 50x50 of the central 64x64 box is
     hidden, the 7 px band around it is the overlap context CE re-predicts (Pathak et al.'s code);
  B  128x128, the whole central 64x64 hidden (the band too: outside what CE trained on);
  C  256x256, free-form holes (brush strokes and blobs);
  D  256x256, GLCIC's random rectangles (sides 96-128);
  E  512x512, free-form holes (the net is not tuned to one scale);
  O  256x256, one object-sized blob (6-20 % of the crop; `fastfill.masks.object_mask`).
Every method sees exactly the same hidden pixels; metrics are inside the hole: PSNR, SSIM, L1 and
the texture distance (`train.evaluate.texture_distance`: sliced Wasserstein distance of the
mean-removed 7x7 patches of fill and truth, uint8 levels, lower is better; a smooth smear and
noise both score high), and ms/crop, each method's wall time over all crops of the setting
(one call per method, time.perf_counter) divided by the crop count. The classical rows: mean
colour, OpenCV Telea and Navier-Stokes (radius 5), scikit-image's biharmonic, fastfill's harmonic
fill (`fastfill.ops.fill`, also the shipped model's prefill) and its patch fill where this build
has it; the anchors (pip install 'fastfill[anchors]'; each row is skipped with a note when its
package is missing): OpenCV contrib's xphoto shift-map, GIMP Resynthesizer, InvokeAI's
PatchMatch (see train.evaluate for their settings). `--sheet-dir` writes a picture sheet per
setting: truth | masked | the fills.

`--draws N` pools N draws of crops and masks (seeds `--seed` .. `--seed`+N-1) into each table;
`--against NAME` adds, under each table, every fastfill row against that row: the mean hole PSNR
difference and the texture distance ratio, each with a 90 % interval from a bootstrap over the
photos' groups (`SOURCES.json`'s `group` beside the photos' folder: a photo's variants count as
one; each photo its own group without it), since a few photos can carry a mean.
"""

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fastfill import ops
from fastfill.fills import DEFAULT_METHOD, DEFAULT_OPTIONS, describe
from train.evaluate import (load_eval_set, mean_fill, metrics, model_fill, opencv_fill, patchmatch_fill,
                            resynthesizer_fill, shiftmap_fill)

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
    "O": dict(title="256×256, one object-sized blob (6–20 % of the crop)", size=256, mask="object",
              hole_side=None, ce=False),
}
MODEL = "GLCIC (shipped model)"
CLASSICAL = ("OpenCV Telea", "OpenCV Navier-Stokes", "biharmonic (scikit-image)", "harmonic (fastfill)")
ANCHORS = {"OpenCV shift-map (xphoto)": shiftmap_fill, "GIMP Resynthesizer": resynthesizer_fill,
           "PatchMatch (pypatchmatch)": patchmatch_fill}
PATCH = "patch (fastfill)"
GATED = "patch, detail gate (fastfill)"  # gate 16, detail 90: the candidate hybrid default
REBUILT = "patch, gradient rebuild (fastfill)"  # poisson 1: exact on smooth gradients
DEFAULT = f"fastfill default, {describe(DEFAULT_METHOD, DEFAULT_OPTIONS)}"  # what runs by default
# the picture sheet's columns after truth | masked, where present
SHEET = ("harmonic (fastfill)", "OpenCV Navier-Stokes", *ANCHORS, PATCH, MODEL)


def biharmonic_fill(images, masks):
    from skimage.restoration import inpaint_biharmonic
    out = []
    for im, m in zip(images, masks):
        f = inpaint_biharmonic(im, m, channel_axis=-1)
        res = im.copy()
        res[m] = np.clip(np.rint(f[m] * 255), 0, 255).astype(np.uint8)
        out.append(res)
    return np.stack(out)
COLS = ("psnr_hole", "ssim_hole", "l1_hole", "texture")


def run_setting(cfg, args, notes, seed=None):
    """-> (per-crop metrics {method: [{psnr_hole, ssim_hole, l1_hole, texture}, ...]}, seconds
    {method: wall time of its call}, images, masks, outs, the crops' photo files)."""
    images, masks, files = load_eval_set(args.data, cfg["size"], cfg["mask"],
                                         seed=args.seed if seed is None else seed,
                                         crops=min(args.crops, cfg.get("crops", args.crops)),
                                         hole_side=cfg["hole_side"])
    outs, secs = {}, {}

    def timed(name, fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        secs[name] = time.perf_counter() - t
        return out

    def skip(name, why):
        if name not in notes:
            notes[name] = why
            print(f"note: no row for {name}: {why}", flush=True)

    glcic, mean = None, (0.5, 0.5, 0.5)
    if args.glcic:
        glcic, mean, _ = timed(MODEL, model_fill, args.glcic, images, masks)
    outs["mean fill"] = timed("mean fill", mean_fill, images, masks, mean)
    outs["OpenCV Telea"] = timed("OpenCV Telea", opencv_fill, images, masks, "telea", 5)
    outs["OpenCV Navier-Stokes"] = timed("OpenCV Navier-Stokes", opencv_fill, images, masks, "ns", 5)
    outs["biharmonic (scikit-image)"] = timed("biharmonic (scikit-image)", biharmonic_fill, images, masks)
    u8 = masks.astype(np.uint8)
    outs["harmonic (fastfill)"] = timed("harmonic (fastfill)", ops.fill, images, u8, "harmonic")
    if "patch" in ops.FILLS:
        outs[PATCH] = timed(PATCH, ops.fill, images, u8, "patch")
        outs[GATED] = timed(GATED, lambda *a: ops.fill(*a, gate=16, detail=90), images, u8, "patch")
        outs[REBUILT] = timed(REBUILT, lambda *a: ops.fill(*a, poisson=1), images, u8, "patch")
        outs[DEFAULT] = timed(DEFAULT, lambda *a: ops.fill(*a, **DEFAULT_OPTIONS), images, u8,
                              DEFAULT_METHOD)
    else:
        skip(PATCH, "this fastfill build has no 'patch' fill (ops.FILLS = " + ", ".join(ops.FILLS) + ")")
    for name, fn in ANCHORS.items() if args.anchors else ():
        try:
            outs[name] = timed(name, fn, images, masks)
        except (ImportError, OSError, RuntimeError) as e:  # not installed, or its library did not load
            skip(name, f"{type(e).__name__}: {e} (pip install 'fastfill[anchors]')")
    if cfg["ce"] and args.ce:
        outs["Context Encoder"] = timed("Context Encoder", model_fill, args.ce, images, masks)[0]
    for name, path in args.model:  # more models, each a row
        outs[name] = timed(name, model_fill, path, images, masks)[0]
    if glcic is not None:
        outs[MODEL] = glcic
    per = {name: [metrics(o, t, m) for o, t, m in zip(out, images, masks)] for name, out in outs.items()}
    return per, {name: secs[name] for name in outs}, images, masks, outs, files


def summary(per, secs, crops):
    """The table {method: {psnr_hole, ssim_hole, l1_hole, texture, ms}} of pooled per-crop metrics."""
    table = {}
    for name, rows in per.items():
        table[name] = {k: float(np.mean([r[k] for r in rows])) for k in COLS}
        table[name]["ms"] = 1e3 * secs[name] / crops
    return table


def photo_groups(data, files):
    """Each crop's group: its photo's ``group`` in the ``SOURCES.json`` beside ``data`` (the
    variants of one photo are one group), else the photo itself."""
    groups = {}
    for where in (Path(data), Path(data).parent):
        if (where / "SOURCES.json").is_file():
            src = json.loads((where / "SOURCES.json").read_text())
            groups = {(where / im["path"]).resolve(): im["group"] for im in src.get("images", [])}
            break
    return [groups.get(Path(f).resolve(), str(Path(f).resolve())) for f in files]


def bootstrap_gap(ours, theirs, groups, rounds=4000, seed=0):
    """Mean hole PSNR difference (ours − theirs) and texture distance ratio (ours / theirs), each
    as (value, low, high) with a 90 % interval from resampling whole groups with replacement."""
    ours_p, theirs_p = np.array([r["psnr_hole"] for r in ours]), np.array([r["psnr_hole"] for r in theirs])
    ours_t, theirs_t = np.array([r["texture"] for r in ours]), np.array([r["texture"] for r in theirs])
    names = sorted(set(groups))
    members = [np.nonzero(np.array(groups) == g)[0] for g in names]
    rng = np.random.default_rng(seed)
    gaps, ratios = [], []
    for _ in range(rounds):
        pick = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        gaps.append(np.mean(ours_p[pick] - theirs_p[pick]))
        ratios.append(ours_t[pick].mean() / theirs_t[pick].mean())
    return ((float(np.mean(ours_p - theirs_p)), *np.percentile(gaps, [5, 95]).tolist()),
            (float(ours_t.mean() / theirs_t.mean()), *np.percentile(ratios, [5, 95]).tolist()))


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


def sheet(images, masks, outs, path, n=4, scale=None, extra=()):
    """truth | masked | each SHEET fill present, then the ``extra`` rows (the --model names), `n`
    crops (evenly spaced), a labelled header; tiles scaled (nearest) to about 256 px."""
    keys = [k for k in (*SHEET, *extra) if k in outs]
    scale = scale or max(1, 256 // images.shape[1])
    labels = ["truth", "masked"] + keys
    idx = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).astype(int))
    size, gap = images.shape[1], 4
    tile_w = size * scale
    width = len(labels) * tile_w + (len(labels) - 1) * gap
    head = 28
    canvas = Image.new("RGB", (width, head + len(idx) * (tile_w + gap) - gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    short = {"harmonic (fastfill)": "harmonic", "OpenCV Navier-Stokes": "Navier-Stokes",
             "OpenCV shift-map (xphoto)": "shift-map", "GIMP Resynthesizer": "Resynthesizer",
             "PatchMatch (pypatchmatch)": "PatchMatch", PATCH: "fastfill patch", MODEL: "fastfill default"}
    for c, lab in enumerate(labels):
        draw.text((c * (tile_w + gap) + 4, 8), short.get(lab, lab), fill=(0, 0, 0))
    for r, i in enumerate(idx):
        shown = images[i].copy()
        shown[masks[i]] = 255
        for c, tile in enumerate([images[i], shown] + [outs[k][i] for k in keys]):
            im = Image.fromarray(tile).resize((tile_w, tile_w), Image.NEAREST)
            canvas.paste(im, (c * (tile_w + gap), head + r * (tile_w + gap)))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return labels


def _named_model(spec: str) -> tuple[str, str]:
    """--model's NAME=PATH, parsed once for the rows, the figure and the sheets."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {spec!r}")
    return name, path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shipped = Path(__file__).resolve().parents[1] / "fastfill" / "models" / "default.onnx"
    ap.add_argument("--glcic", default=str(shipped.relative_to(Path.cwd())) if shipped.is_relative_to(Path.cwd())
                    else str(shipped),
                    help="GLCIC model (.onnx or checkpoint) [the shipped model]; '' for none")
    ap.add_argument("--ce", help="Context Encoder checkpoint (optional)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH", type=_named_model,
                    help="another model (.onnx or checkpoint) as a row of its own; repeatable")
    ap.add_argument("--data", required=True, help="validation photos (never trained on)")
    ap.add_argument("--crops", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=1,
                    help="pool this many draws of crops and masks (seeds --seed, --seed+1, ...)")
    ap.add_argument("--against", metavar="NAME",
                    help="under each table, every fastfill row against this row (e.g. 'PatchMatch "
                         "(pypatchmatch)'), with 90 %% intervals from a bootstrap over the photos")
    ap.add_argument("--settings", default="ABCDE", help="letters from " + "".join(SETTINGS))
    ap.add_argument("--markdown", help="write the tables to this file")
    ap.add_argument("--figure", help="write the figure (the first setting) to this PNG")
    ap.add_argument("--anchors", action=argparse.BooleanOptionalAction, default=True,
                    help="measure the patch tools (shift-map, Resynthesizer, PatchMatch); they take "
                         "most of the time")
    ap.add_argument("--sheet-dir", help="write a picture sheet per setting, DIR/sheet_<setting>.png")
    args = ap.parse_args()
    if unknown := set(args.settings) - set(SETTINGS):
        ap.error(f"unknown settings {''.join(sorted(unknown))}; known: {''.join(SETTINGS)}")
    if args.draws < 1:
        ap.error(f"--draws must be at least 1, got {args.draws}")
    if args.glcic and not Path(args.glcic).exists():
        ap.error(f"--glcic {args.glcic}: no such file (pass --glcic '' for no model row)")
    seeds = list(range(args.seed, args.seed + args.draws))
    drawn = f"seed {args.seed}" if args.draws == 1 else f"seeds {seeds[0]}-{seeds[-1]} pooled"
    lines = [f"Validation photos: `{args.data}` ({args.crops} crops each, {drawn}); "
             f"GLCIC: `{args.glcic or 'not given'}`; CE: `{args.ce or 'not given'}`; "
             f"{datetime.date.today()}, {platform.machine()}.", ""]
    gaps, notes = {}, {}
    for key in args.settings:
        cfg = SETTINGS[key]
        per, secs, files, hidden = {}, {}, [], []
        for i, seed in enumerate(seeds):
            p, sec, imgs, msks, o, f = run_setting(cfg, args, notes, seed)
            if i == 0:
                images, masks, outs = imgs, msks, o  # (the figure and the sheet: the first draw)
            for name in p:
                per.setdefault(name, []).extend(p[name])
                secs[name] = secs.get(name, 0.0) + sec[name]
            files += f
            hidden.append(msks.mean())
        for name in [n for n, rows in per.items() if len(rows) != len(files)]:
            # (a row that failed in some draw only: its crops would not line up with the others')
            notes.setdefault(name, f"ran in only some of the {args.draws} draws")
            print(f"note: no row for {name}: ran in only some draws", flush=True)
            del per[name], secs[name]
        table = summary(per, secs, len(files))
        lines += [f"### {key}. {cfg['title']} — {len(files)} crops, {100 * np.mean(hidden):.1f} % hidden", "",
                  "| method | PSNR (dB) ↑ | SSIM ↑ | L1 ↓ | texture ↓ | ms/crop |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, row in table.items():
            lines.append(f"| {name} | {row['psnr_hole']:.2f} | {row['ssim_hole']:.4f} | {row['l1_hole']:.4f} "
                         f"| {row['texture']:.2f} | {row['ms']:.1f} |")
        extra = [""]
        if args.against and args.against not in per:
            notes.setdefault(f"--against {args.against}", "no such row in this run (rows: "
                             + ", ".join(per) + ")")
            print(f"note: --against {args.against}: no such row in this run", flush=True)
        elif args.against:
            groups = photo_groups(args.data, files)
            extra += [f"Against {args.against} ({len(set(groups))} photo groups; 90 % intervals from a "
                      "bootstrap over them):", ""]
            for name in per:
                if ("fastfill" in name or name == MODEL) and name != args.against:
                    (g, glo, ghi), (r, rlo, rhi) = bootstrap_gap(per[name], per[args.against], groups)
                    extra.append(f"- {name}: {g:+.2f} dB [{glo:+.2f}, {ghi:+.2f}], texture {r:.3f}× "
                                 f"[{rlo:.2f}, {rhi:.2f}]")
            extra.append("")
        if MODEL in table:
            best = max(CLASSICAL, key=lambda k: table[k]["psnr_hole"])
            gap = table[MODEL]["psnr_hole"] - table[best]["psnr_hole"]
            gaps[key] = gap
            extra += [f"GLCIC − best classical ({best}): {gap:+.2f} dB (target ≥ +1 dB)", ""]
        if key == args.settings[0] and args.figure:
            cols = figure(images, masks, outs, args.figure, extra=[name for name, _ in args.model])
            extra += [f"Figure `{args.figure}`: {' | '.join(cols)}.", ""]
        if args.sheet_dir:
            path = Path(args.sheet_dir) / f"sheet_{key}.png"
            cols = sheet(images, masks, outs, path, extra=[name for name, _ in args.model])
            extra += [f"Sheet `{path}`: {' | '.join(cols)}.", ""]
        lines += extra
        print("\n".join(lines[-(len(table) + 4 + len(extra)):]), flush=True)
    if notes:
        lines += ["Rows left out: " + "; ".join(f"{k} ({v})" for k, v in notes.items()) + ".", ""]
    text = "\n".join(lines)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
