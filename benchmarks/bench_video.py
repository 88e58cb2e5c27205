"""`fastfill video` against `ffmpeg -vf delogo` and PyAV + cv2.inpaint, side by side in one run:
frames/s, hole PSNR against the clean frames, flicker and texture distance, on clips whose clean
frames are known.

Run from the repo root (needs the `video` extra and the `ffmpeg` program; without it the delogo
rows are left out with one line):

    python benchmarks/bench_video.py [--sizes 720,1080] [--frames 120] [--preset medium --crf 23]
        [--pan 6,0.5 --pan=-4,1.3 ...]   # each pan case at these steps (px a frame, 1080p scale)

Clips: a camera over a scene made of the bundled example photos (upscaled), static, panning (at
1080p 6 px right and 0.5 px down per frame: across the frame in about 10 s) or static with a
camera's noise (`noisy`, not in the default cases: Gaussian noise of --noise levels added to
every pixel of every frame before the encode, which smooths it; scored against the noiseless
frames), with a burnt-in
broadcast logo (384x90 at 1080p, top right, white box and text at 75 %) or a subtitle band (1320x100
at the bottom, outlined white text that changes every 40 frames); the mask (and delogo's rectangle)
is the logo's box or the band. Every method writes H.264 with the same encoder settings (libx264,
--preset, --crf, yuv420p) and is timed from opening the input to closing the output, in --repeat
rounds with the methods' order rotated (the median is reported) (fastfill through its API in this
process; ffmpeg as its own process). CPU ms/frame: this process's CPU time while the method runs
(all its threads) and that of the ffmpeg process it waits for, the median over the rounds, per
frame: steadier than frames/s on a loaded machine, and what a fill costs beside decoding and
encoding. Hole PSNR: over the hole pixels of every frame against the clean frames. Flicker: the mean
change of the hole from frame to frame beyond the clean frames' own change (0 = moves exactly as the
scene does). Texture distance: the stills' (`train.evaluate.texture_distance`, 7x7 patches centred
in the hole against the clean frame's), the mean over every 10th frame. Outputs are read as RGB
by `fastfill.video.frames.to_rgb` (rounded; swscale's own 8-bit RGB, used before 2026-12-07
session 36, reads every frame about 1.1 levels dark).

Goals (2 cores): fastfill at least delogo's frames/s at 1080p with a logo hole; on a panning camera
>= 8 dB better hole PSNR than delogo and at most half its flicker. `--floor` adds what no fill
can beat: the ffmpeg program re-encoding with no filter, and fastfill's own pipeline with an
empty mask (decode, threads, encode; nothing filled or estimated).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import cv2  # noqa: E402

from fastfill import Inpainter  # noqa: E402
from fastfill.fills import FILLS  # noqa: E402
from fastfill.video.frames import reformatter_, to_rgb  # noqa: E402
from fastfill.video.stream import inpaint_video  # noqa: E402

PAN = (6.0, 0.5)  # px per frame at 1080p: across the frame in about 10 s at 30 frames/s
NOISE = 2.0  # levels of a noisy camera's Gaussian noise, before the encode
SUBTITLES = ["We left before the sun came up,", "and the road was empty all the way",
             "to the sea. Nobody said a word.", "- Do you remember the name of the town?"]


def canvas() -> np.ndarray:
    """The scene: the example photos side by side (and the first mirrored), 2.6x upscaled."""
    names = sorted((ROOT / "examples" / "images").iterdir())
    tiles = [np.asarray(Image.open(p).convert("RGB").resize((600, 512), Image.BICUBIC))
             for p in names]
    row = np.concatenate(tiles + [tiles[0][:, ::-1]], axis=1)
    return cv2.resize(row, None, fx=2.6, fy=2.6, interpolation=cv2.INTER_CUBIC)


def clean_frame(scene, size, camera, i, pan=PAN):
    """Frame i: the scene seen from (x, y), 1080p pixels whatever the size (720p sees the same)."""
    h, w = size
    s = 1080 / h
    x, y = (60.0, 40.0) if camera != "pan" else (60 + pan[0] * i, 40 + pan[1] * i)
    m = np.array([[s, 0, x], [0, s, y]], np.float64)
    return cv2.warpAffine(scene, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)


def hole_box(size, hole):
    """(x, y, w, h) of the burnt-in logo or the subtitle band, scaled from 1080p."""
    h, _ = size
    k = h / 1080
    x, y, bw, bh = (1480, 50, 384, 90) if hole == "logo" else (300, 940, 1320, 100)
    return round(x * k), round(y * k), round(bw * k), round(bh * k)


def burn(frame, size, hole, i):
    x, y, w, h = hole_box(size, hole)
    im = Image.fromarray(frame)
    draw = ImageDraw.Draw(im, "RGBA")
    if hole == "logo":
        draw.rounded_rectangle([x, y, x + w - 1, y + h - 1], radius=h // 5,
                               fill=(255, 255, 255, 190))
        font = ImageFont.load_default(size=int(h * 0.55))
        draw.text((x + w // 2, y + h // 2), "fastfill 24", font=font, fill=(20, 40, 120, 255),
                  anchor="mm")
    else:
        font = ImageFont.load_default(size=int(h * 0.42))
        draw.text((x + w // 2, y + h // 2), SUBTITLES[(i // 40) % len(SUBTITLES)], font=font,
                  fill=(255, 255, 255, 255), anchor="mm", stroke_width=max(2, h // 30),
                  stroke_fill=(0, 0, 0, 255))
    return np.asarray(im)


def make_clip(path, scene, size, camera, hole, n, pan=PAN, noise=NOISE):
    """The input clip (H.264 at CRF 12, so that its own loss is small) and the mask file; a
    ``noisy`` camera's frames with Gaussian noise of ``noise`` levels (seeded by the frame)."""
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "12", "preset": "veryfast"}
        for i in range(n):
            rgb = burn(clean_frame(scene, size, camera, i, pan), size, hole, i)
            if camera == "noisy":
                rng = np.random.default_rng(i)
                rgb = np.rint(rgb + rng.normal(0, noise, rgb.shape))
                rgb = np.clip(rgb, 0, 255).astype(np.uint8)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    x, y, bw, bh = hole_box(size, hole)
    m = np.zeros(size, np.uint8)
    m[y:y + bh, x:x + bw] = 255
    mask = path.with_suffix(".png")
    Image.fromarray(m).save(mask)
    return mask


def run_delogo(src, dst, box, enc):
    x, y, w, h = box
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(src), "-vf",
                    f"delogo=x={x}:y={y}:w={w}:h={h}", "-c:v", "libx264", "-preset", enc["preset"],
                    "-crf", str(enc["crf"]), "-pix_fmt", "yuv420p", str(dst)], check=True)


def run_cv2(src, dst, mask_path, enc):
    """The plain pipeline a user would write: PyAV decode, cv2.inpaint (Telea), PyAV encode."""
    mask = np.asarray(Image.open(mask_path))
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vin = i.streams.video[0]
        vin.thread_type = "AUTO"
        s = o.add_stream("libx264", rate=vin.average_rate)
        s.width, s.height, s.pix_fmt = vin.width, vin.height, "yuv420p"
        s.options = {"crf": str(enc["crf"]), "preset": enc["preset"]}
        s.codec_context.thread_type = "AUTO"  # (frame threads, as the ffmpeg program)
        for frame in i.decode(vin):
            rgb = cv2.inpaint(frame.to_ndarray(format="rgb24"), mask, 3, cv2.INPAINT_TELEA)
            for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                o.mux(p)
        for p in s.encode(None):
            o.mux(p)


def run_fastfill(inp, propagate):
    def go(src, dst, mask_path, enc):
        st = inpaint_video(inp, src, dst, mask_path, codec="libx264", crf=enc["crf"],
                           preset=enc["preset"], propagate=propagate, progress=False,
                           overwrite=True)
        return st.propagation.share if st.propagation else None
    return go


def run_encode_only(src, dst, mask_path, enc):
    """The floor of the ffmpeg program: the same decode and encode, no filter."""
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(src), "-c:v",
                    "libx264", "-preset", enc["preset"], "-crf", str(enc["crf"]), "-pix_fmt",
                    "yuv420p", str(dst)], check=True)


def run_fastfill_empty(inp):
    """The floor of fastfill's pipeline: the same command with an empty mask (nothing to fill,
    nothing estimated), so what is left is decoding, the threads and encoding."""
    run = run_fastfill(inp, True)  # (the same command as the default's row)

    def go(src, dst, mask_path, enc):
        empty = Path(dst).with_name("empty-mask.png")
        if not empty.exists():
            Image.fromarray(np.zeros_like(np.asarray(Image.open(mask_path)))).save(empty)
        run(src, dst, empty, enc)
    return go


def crop_of(path, size, hole, index):
    """Frame ``index`` of a clip, cropped to the hole's box and a margin around it."""
    x, y, w, h = hole_box(size, hole)
    m = h // 2
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return to_rgb(f, reformatter_())[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
    raise RuntimeError(f"{path}: no frame {index}")


def write_sheet(path, crops):
    """One column of labelled crops (the input, each method, the clean frame) as a PNG."""
    font = ImageFont.load_default(size=16)
    h, w = crops[0][1].shape[:2]
    sheet = Image.new("RGB", (w, len(crops) * (h + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (label, im) in enumerate(crops):
        draw.text((4, k * (h + 24) + 3), label, fill=(0, 0, 0), font=font)
        sheet.paste(Image.fromarray(np.ascontiguousarray(im)), (0, k * (h + 24) + 22))
    sheet.save(path)


def score(out, scene, size, camera, hole, n, texture_every=10, pan=PAN):
    """(hole PSNR in dB, flicker, texture distance) of an output against the clean frames; the
    texture distance (``train.evaluate.texture_distance``, as for stills: 0 = the clean frames'
    patch statistics, a smear scores high) is the mean over every ``texture_every``-th frame."""
    from train.evaluate import texture_distance  # (the stills' metric; NumPy only)

    x, y, w, h = hole_box(size, hole)
    se, count, flick, prev, tex = 0.0, 0, [], None, []
    r = 3  # the 7x7 patches centred in the hole read 3 px around it
    y0, x0 = max(0, y - r), max(0, x - r)
    inside = np.zeros((min(size[0], y + h + r) - y0, min(size[1], x + w + r) - x0), bool)
    inside[y - y0:y - y0 + h, x - x0:x - x0 + w] = True
    sws = reformatter_()
    with av.open(str(out)) as c:
        frames = 0
        for i, f in enumerate(c.decode(video=0)):
            rgb, clean = to_rgb(f, sws), clean_frame(scene, size, camera, i, pan)
            o = rgb[y:y + h, x:x + w].astype(np.float64)
            g = clean[y:y + h, x:x + w].astype(np.float64)
            se += ((o - g) ** 2).sum()
            count += o.size
            if prev is not None:
                flick.append(np.abs((o - prev[0]) - (g - prev[1])).mean())
            prev = (o, g)
            if i % texture_every == texture_every // 2:
                crop = (slice(y0, y0 + inside.shape[0]), slice(x0, x0 + inside.shape[1]))
                tex.append(texture_distance(rgb[crop], clean[crop], inside))
            frames += 1
    if frames != n:
        raise RuntimeError(f"{out}: {frames} frames, the input has {n}")
    return (10 * np.log10(255 ** 2 / max(se / count, 1e-12)), float(np.mean(flick)),
            float(np.mean(tex)))


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's threads and of its waited-for children
    (the ffmpeg program): a method's difference is its CPU, however the machine's load
    stretches its wall time."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_methods(methods, src, mask, size, hole, enc, tmp: Path, repeat: int) -> dict:
    """Each method's wall and CPU seconds over ``repeat`` rounds, the methods' order rotated
    every round (the machine's load drifts): {name: ([wall, ...], [cpu, ...], propagated share
    or None)}; each method's output is left in ``tmp/<name>.mp4``."""
    names = list(methods)
    times = {n: ([], [], None) for n in names}
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0, c0 = time.perf_counter(), cpu_seconds()
            where = hole_box(size, hole) if name == "ffmpeg delogo" else mask
            share = methods[name](src, tmp / f"{name}.mp4", where, enc)
            wall, cpu = times[name][:2]
            wall.append(time.perf_counter() - t0)
            cpu.append(cpu_seconds() - c0)
            times[name] = (wall, cpu, share)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="720,1080", help="frame heights (16:9)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--cases", default="logo-static,logo-pan,subtitle-static,subtitle-pan")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds per clip, methods rotated; frames/s is the median")
    ap.add_argument("--method", action="append", default=[], choices=list(FILLS),
                    help="also a row of fastfill with this classical fill (propagating; "
                         "repeatable)")
    ap.add_argument("--floor", action="store_true",
                    help="also the floors: the ffmpeg program re-encoding without a filter, and "
                         "fastfill's pipeline with an empty mask (their hole PSNR is the logo's)")
    ap.add_argument("--pan", action="append", default=[], metavar="DX,DY",
                    help="the pan's step in px a frame at 1080p scale, e.g. --pan=-4,1.3 (repeatable: each pan case "
                         "runs once per step; default 6,0.5). One clip's hole PSNR moves by a "
                         "few tenths of a dB with any change to the placing (propagation hands "
                         "each frame's pixels to the next): judge such a change on several")
    ap.add_argument("--noise", type=float, default=NOISE, metavar="LEVELS",
                    help="the noisy cases' (logo-noisy, subtitle-noisy) Gaussian noise, levels")
    ap.add_argument("--sheet", default=None, metavar="PNG",
                    help="write the middle frame of the largest logo pan, each method, as a sheet")
    args = ap.parse_args(argv)
    try:
        pans = [tuple(float(v) for v in p.split(",")) for p in args.pan] or [PAN]
        if any(len(p) != 2 for p in pans):
            raise ValueError
    except ValueError:
        ap.error(f"--pan: expected DX,DY (two numbers), got {args.pan}")
    for case in args.cases.split(","):
        hole, _, camera = case.partition("-")
        if hole not in ("logo", "subtitle") or camera not in ("static", "pan", "noisy"):
            ap.error(f"--cases: {case!r} is not HOLE-CAMERA, HOLE logo or subtitle, CAMERA "
                     "static, pan or noisy")
    enc = {"preset": args.preset, "crf": args.crf}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"encoder libx264 --preset {args.preset} --crf {args.crf}; {args.frames} frames/clip")
    methods = {}
    if shutil.which("ffmpeg"):
        methods["ffmpeg delogo"] = run_delogo
        if args.floor:
            methods["ffmpeg, no filter"] = run_encode_only
    else:
        print("ffmpeg: not found (apt-get install ffmpeg): the delogo rows are left out")
    inp = Inpainter()  # the default fill, as `fastfill video` uses it
    print(f"fastfill default fill: {inp.engine.name}")
    methods["PyAV + cv2 Telea"] = run_cv2
    methods["fastfill --no-propagate"] = run_fastfill(inp, False)
    methods["fastfill (propagate)"] = run_fastfill(inp, True)
    for m in args.method:
        methods[f"fastfill --method {m}"] = run_fastfill(Inpainter(method=m), True)
    if args.floor:
        methods["fastfill, empty mask"] = run_fastfill_empty(inp)
    scene = canvas()
    rows = []
    print(f"{'clip':24s} {'method':24s} {'frames/s':>9s} {'vs first':>9s} {'CPU ms/f':>8s} "
          f"{'vs first':>9s} {'hole PSNR':>9s} {'flicker':>8s} {'texture':>8s} "
          f"{'from other frames':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for height in (int(v) for v in args.sizes.split(",")):
            size = (height, height * 16 // 9)
            for case, pan in [(c, p) for c in args.cases.split(",")
                              for p in (pans if c.endswith("-pan") else [PAN])]:
                hole, camera = case.split("-")
                src = Path(tmp) / f"{height}-{case}.mp4"
                mask = make_clip(src, scene, size, camera, hole, args.frames, pan, args.noise)
                base = None
                mid = args.frames // 2
                sheet = ([("input (frame %d)" % mid, crop_of(src, size, hole, mid))]
                         if args.sheet and case == "logo-pan" and height == max(
                             int(v) for v in args.sizes.split(",")) else None)
                times = time_methods(methods, src, mask, size, hole, enc, Path(tmp), args.repeat)
                for name in methods:
                    dst = Path(tmp) / f"{name}.mp4"
                    fps = args.frames / float(np.median(times[name][0]))
                    cpu = 1000 * float(np.median(times[name][1])) / args.frames
                    share = times[name][2]
                    psnr, flicker, texture = score(dst, scene, size, camera, hole, args.frames,
                                                   pan=pan)
                    if sheet is not None:
                        sheet.append((name, crop_of(dst, size, hole, mid)))
                    base = base or (fps, psnr, flicker, cpu)
                    clip = f"{height}p {hole} {camera}" + (
                        f" ({pan[0]:g}, {pan[1]:g})" if camera == "pan" and len(pans) > 1 else "")
                    share = "" if share is None else f"{100 * share:.0f}%"
                    print(f"{clip:24s} {name:24s} {fps:9.1f} {fps / base[0]:8.2f}x {cpu:8.1f} "
                          f"{cpu / base[3]:8.2f}x {psnr:8.2f}  {flicker:8.2f} {texture:8.2f} "
                          f"{share:>6s}", flush=True)
                    rows.append((clip, name, fps, fps / base[0], psnr, psnr - base[1], flicker,
                                 flicker / base[2] if base[2] else float("nan"), texture, share,
                                 cpu, cpu / base[3]))
                if sheet is not None:
                    x, y, w, h = hole_box(size, hole)
                    m = h // 2
                    clean = clean_frame(scene, size, camera, mid, pan)
                    sheet.append(("clean frame", clean[max(0, y - m):y + h + m,
                                                       max(0, x - m):x + w + m]))
                    write_sheet(args.sheet, sheet)
                    print(f"sheet: {args.sheet}")
    print("\n| clip | method | frames/s | vs first row | CPU ms/frame | vs first row | "
          "hole PSNR (dB) | Δ dB | flicker | flicker ratio | texture distance | "
          "hole from other frames |\n"
          "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.2f}x | {r[10]:.1f} | {r[11]:.2f}x | "
              f"{r[4]:.2f} | {r[5]:+.2f} | {r[6]:.2f} | {r[7]:.2f} | {r[8]:.2f} | {r[9]} |")


if __name__ == "__main__":
    main()
