#!/usr/bin/env python3
"""Fetch, filter, deduplicate and split the photos allowed for training (docs/ARCHITECTURE.md,
"Training data").

    python scripts/fetch_data.py [--out data/] [--sources mate-backgrounds opencv-doc ...]

Sources
    Debian packages (``apt-get download`` + ``dpkg -x`` in a temporary directory):
        mate-backgrounds, opencv-doc (examples/data only), lomiri-wallpapers (+ -16.04, -20.04),
        sway-backgrounds, gnome-backgrounds
    Python packages (read from their installed package data):
        scikit-image (skimage/data), scikit-learn (sklearn/datasets/images),
        matplotlib (mpl-data/sample_data)

``plasma-workspace-wallpapers`` and ``ukui-wallpapers`` are reserved for independent
evaluation: this script refuses them.

Output (everything under ``--out``, which is git-ignored)
    raw/<source>/          the unpacked image folder and copyright file of each source (cache)
    train/<source>/<file>  training photos (original bytes, original format)
    val/<source>/<file>    validation photos
    SOURCES.json           per source: version, licence(s), copyright file; per image: origin,
                           sha256, size, group, split, licence; excluded files with the reason

Rules (see docs/DATA.md)
    * only raster photographs: no SVG, nothing under 128 px on its short side, no logos,
      drawings, renders, synthetic test patterns, documents or artificially degraded copies
      (automatic flatness test + a list reviewed by eye), and no image whose licence is not
      documented;
    * byte-identical files are kept once (sha256);
    * variants of one photo (same stem once resolution / light-dark / left-right / numbering
      suffixes are removed, or a near-identical 64-bit difference hash) form a group;
    * a group goes wholly to train or to val; the groups whose content hash (the smallest
      sha256 of their members) ranks lowest make up ~10 % of the groups -> val.

Re-running reuses what is there: sources already unpacked under raw/ are not downloaded
again, and files already in place are not copied again.
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESERVED = frozenset({"plasma-workspace-wallpapers", "ukui-wallpapers"})

# Debian package -> folders (inside the unpacked tree) that hold its images, and the
# upstream path prefix those folders correspond to (used to match DEP-5 "Files:" globs).
DEBIAN_SOURCES: dict[str, list[tuple[str, str]]] = {
    "mate-backgrounds": [("usr/share/backgrounds/mate", "")],
    "opencv-doc": [("usr/share/doc/opencv-doc/examples/data", "samples/data")],
    "lomiri-wallpapers": [("usr/share/backgrounds", ""), ("usr/share/wallpapers", "")],
    # Ubuntu Touch's photo wallpapers; their DEP-5 paths start with the release folder
    "lomiri-wallpapers-16.04": [("usr/share/backgrounds", "16.04")],
    "lomiri-wallpapers-20.04": [("usr/share/backgrounds", "20.04")],
    "sway-backgrounds": [("usr/share/backgrounds/sway", "assets")],
    "gnome-backgrounds": [("usr/share/backgrounds/gnome", "backgrounds")],
}
# opencv-doc/examples/data has sub-folders (dnn/ with class lists): only its top level counts.
NON_RECURSIVE = {"opencv-doc"}

# Python package -> (module, data folder inside the module)
PYTHON_SOURCES: dict[str, tuple[str, str]] = {
    "scikit-image": ("skimage", "data"),
    "scikit-learn": ("sklearn", "datasets/images"),
    "matplotlib": ("matplotlib", "mpl-data/sample_data"),
}
ALL_SOURCES = list(DEBIAN_SOURCES) + list(PYTHON_SOURCES)

RASTER_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
MIN_SIDE = 128
FLAT_LIMIT = 0.5          # fraction of flat pixels above which an image counts as a graphic
VAL_FRACTION = 0.10
DHASH_SIZE = 16           # difference hash on a 17x16 grey thumbnail -> 256 bits
DHASH_MAX_DIST = 16       # bits that may differ between variants of one photo (resized copies
                          # differ by 0-1, consecutive video frames by 7-11, unrelated photos >= 27)

# Python-package images are an allow-list: only photographs whose licence the package
# documents per image (scikit-image: docstrings of skimage/data/_fetchers.py;
# scikit-learn: sklearn/datasets/images/README.txt; matplotlib: sample_data).
PYTHON_ALLOW: dict[str, dict[str, tuple[str, str]]] = {
    "scikit-image": {
        "astronaut.png": ("public-domain", "NASA (Eileen Collins); no known copyright restrictions"),
        "brick.png": ("CC0-1.0", "CC0Textures, Bricks25"),
        "camera.png": ("CC0-1.0", "photographer Lav Varshney"),
        "cell.png": ("CC0-1.0", "scikit-image data"),
        "chelsea.png": ("CC0-1.0", "photographer Stefan van der Walt"),
        "clock_motion.png": ("public-domain", "photographer Stefan van der Walt"),
        "coffee.png": ("CC0-1.0", "photographer Rachel Michetti"),
        "coins.png": ("public-domain", "Brooklyn Museum; no known copyright restrictions"),
        "grass.png": ("CC0-1.0", "CC0Textures"),
        "gravel.png": ("CC0-1.0", "CC0Textures, Gravel04"),
        "hubble_deep_field.jpg": ("public-domain", "NASA"),
        "ihc.png": ("public-domain", "no known copyright restrictions"),
        "retina.jpg": ("CC0-1.0", "Mikael Häggström, Wikimedia Commons"),
        "rocket.jpg": ("public-domain", "SpaceX"),
        "text.png": ("public-domain", "no known copyright restrictions"),
    },
    "scikit-learn": {
        "china.jpg": ("CC-BY-2.0", "danielbuechele, https://www.flickr.com/photos/danielbuechele/6061409035"),
        "flower.jpg": ("CC-BY-2.0", "vultilion, https://www.flickr.com/photos/vultilion/6056698931"),
    },
    "matplotlib": {
        "grace_hopper.jpg": ("public-domain", "U.S. Navy official photograph of Grace Hopper"),
    },
}

PYTHON_LICENSE_REF = {
    "scikit-image": "per-image notes in the docstrings of skimage/data/_fetchers.py",
    "scikit-learn": "sklearn/datasets/images/README.txt",
    "matplotlib": "no per-image note; Grace Hopper's portrait is a U.S. Navy photograph (public domain)",
}

# Files reviewed by eye that are not photographs (or are degraded copies / unlicensed).
# Keys are paths relative to the source's image folder.
NOT_PHOTO: dict[str, dict[str, str]] = {
    "mate-backgrounds": {
        "abstract/*": "abstract artwork",
        "desktop/*": "graphic wallpaper",
    },
    "lomiri-wallpapers": {"*": "graphic wallpaper"},
    "lomiri-wallpapers-16.04": {"umang_by_Abhishek_Mudgal.jpg": "render (colour gradient)"},
    "lomiri-wallpapers-20.04": {
        "Fossa_by_Jasper_Roks.jpg": "render", "Infinite-Sea_by_Aury88.jpg": "digital artwork",
        "Painting-Colors_by__herobrine7gamer.jpg": "graphic (colour bands)",
    },
    "sway-backgrounds": {"*": "logo wallpaper"},
    "gnome-backgrounds": {
        "adwaita-*": "render", "grid-*": "render", "licorice-*": "render",
        "pixels-*": "illustration", "symbolic-*": "pattern", "truchet-*": "pattern",
        "vnc-*": "solid colour",
    },
    "opencv-doc": {
        "Blender_Suzanne*": "3D render", "HappyFish.jpg": "clip art", "LinuxLogo.jpg": "logo",
        "WindowsLogo.jpg": "logo", "aloeGT.png": "disparity map", "blox.jpg": "3D render",
        "cards.png": "drawing", "chessboard.png": "pattern", "detect_blob.png": "drawing",
        "digits.png": "handwritten digits sheet", "ellipses.jpg": "synthetic",
        "gradient.png": "synthetic", "imageText*.png": "document scan", "mask.png": "mask",
        "ml.png": "clip art", "notes.png": "sheet music", "opencv-logo*": "logo",
        "pic*.png": "synthetic shapes", "smarties.png": "render", "starry_night.jpg": "painting",
        "templ.png": "mask", "tmpl.png": "mask",
        "text_defocus.jpg": "synthetically blurred", "text_motion.jpg": "synthetically blurred",
        "licenseplate_motion.jpg": "synthetically blurred",
    },
}


# --------------------------------------------------------------------------- pure helpers

def check_sources(names) -> list[str]:
    """Validate a list of source names; reserved evaluation packages are refused."""
    names = list(names)
    bad = sorted(set(names) & RESERVED)
    if bad:
        raise ValueError(
            f"{', '.join(bad)} reserved for independent evaluation (docs/ARCHITECTURE.md, 'Training data'); "
            "never train, tune or test on it")
    unknown = sorted(set(names) - set(ALL_SOURCES))
    if unknown:
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(ALL_SOURCES)}")
    return names


_RES = re.compile(r"\d{2,5}x\d{2,5}")
_DROP_TOKENS = {"portrait", "landscape", "light", "dark", "l", "d", "original", "modified",
                "no", "logo", "hd", "uhd", "4k", "5k", "8k", "small", "large", "thumb", "cls"}
_SAME_TOKENS = {"left": "stereo", "right": "stereo"}


def group_stem(name: str) -> str:
    """Normalise a file name so variants of one photo share it.

    Removes the extension, resolution tokens (``_3840x2160``), scale marks (``@2x``),
    variant words (light/dark, -l/-d, portrait, left/right, original/modified), a trailing
    stereo / sequence letter after a lower-case letter (``aloeL``, ``leuvenA``) and trailing
    numbers (``aero1``, ``left01``, ``chicky_512``).
    """
    stem = Path(name).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = re.sub(r"@\d+x$", "", stem)
    stem = _RES.sub(" ", stem)
    stem = re.sub(r"(?<=[a-z])(GT|[A-Z])$", "", stem)      # aloeL, aloeGT, leuvenB
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)       # camelCase -> words
    tokens = [t for t in re.split(r"[\s_\-.]+", stem.lower()) if t]
    while tokens and tokens[-1].isdigit():
        tokens.pop()
    tokens = [re.sub(r"(?<=[a-z])\d+$", "", t) for t in tokens]       # aero1, left01
    tokens = [_SAME_TOKENS.get(t, t) for t in tokens if t not in _DROP_TOKENS]
    return "-".join(tokens) or "image"


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


@dataclass
class Item:
    """One kept image (before it is placed)."""
    source: str
    origin: str                 # path relative to the source's image folder
    sha256: str
    width: int = 0
    height: int = 0
    mode: str = "RGB"           # RGB or L (grey) after inspection
    dhash: int | None = None
    license: str = ""           # short licence name (DEP-5 / SPDX style)
    copyright: str = ""         # copyright holders / attribution
    group: str = ""
    split: str = ""
    path: str = ""              # where it lies under --out (relative)
    duplicates: list = field(default_factory=list)


def build_groups(items: list[Item], dhash_max_dist: int = DHASH_MAX_DIST) -> dict[str, list[Item]]:
    """Union-find over (source, group_stem) and near-identical difference hashes.

    Sets ``item.group`` to the group's id (smallest member sha256, first 16 hex) and returns
    {group id: members}.
    """
    parent = list(range(len(items)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    by_stem: dict[tuple[str, str], int] = {}
    for i, it in enumerate(items):
        key = (it.source, group_stem(it.origin))
        if key in by_stem:
            union(i, by_stem[key])
        else:
            by_stem[key] = i
    hashed = [i for i, it in enumerate(items) if it.dhash is not None]
    for a in range(len(hashed)):
        for b in range(a + 1, len(hashed)):
            i, j = hashed[a], hashed[b]
            if hamming(items[i].dhash, items[j].dhash) <= dhash_max_dist:
                union(i, j)
    members: dict[int, list[Item]] = {}
    for i, it in enumerate(items):
        members.setdefault(find(i), []).append(it)
    groups = {}
    for ms in members.values():
        gid = min(m.sha256 for m in ms)[:16]
        for m in ms:
            m.group = gid
        groups[gid] = ms
    return groups


def split_rank(group_id: str) -> str:
    return hashlib.sha256(f"fastfill-split:{group_id}".encode()).hexdigest()


def assign_splits(items: list[Item], val_fraction: float = VAL_FRACTION, **kw) -> dict[str, list[Item]]:
    """Group the items and send whole groups to 'train' or 'val'.

    n_val = max(1, round(val_fraction * n_groups)) groups go to val: those that rank first by
    sha256("fastfill-split:" + group id), the group id being derived from file content only.
    Only colour groups are eligible for val (grey-only photos stay in train: the model fills
    colour photos, and the few grey ones would make a skewed validation set). Deterministic,
    independent of file order, of names on disk and of the machine.
    """
    groups = build_groups(items, **kw)
    if len(groups) < 2:
        for ms in groups.values():
            for m in ms:
                m.split = "train"
        return groups
    eligible = [g for g, ms in groups.items() if all(m.mode == "RGB" for m in ms)] or list(groups)
    n_val = min(len(eligible), max(1, round(val_fraction * len(groups))))
    val = set(sorted(eligible, key=split_rank)[:n_val])
    for gid, ms in groups.items():
        for m in ms:
            m.split = "val" if gid in val else "train"
    return groups


def dedupe(items: list[Item]) -> tuple[list[Item], list[dict]]:
    """Keep the first item of each sha256; report the others."""
    seen: dict[str, Item] = {}
    kept, dropped = [], []
    for it in items:
        if it.sha256 in seen:
            first = seen[it.sha256]
            first.duplicates.append(f"{it.source}:{it.origin}")
            dropped.append({"source": it.source, "origin": it.origin,
                            "reason": f"identical to {first.source}:{first.origin}"})
        else:
            seen[it.sha256] = it
            kept.append(it)
    return kept, dropped


# ----------------------------------------------------------------- DEP-5 copyright parsing

def parse_dep5(text: str) -> list[dict]:
    """Paragraphs of a machine-readable Debian copyright file (Files/Copyright/License)."""
    paras, cur, last = [], {}, None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, last = {}, None
            continue
        m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
        if m and not line.startswith((" ", "\t")):
            last = m.group(1).lower()
            cur[last] = m.group(2).strip()
        elif last:
            cur[last] = (cur[last] + "\n" + line.strip()).strip()
    return paras


def dep5_lookup(paras: list[dict], upstream_path: str) -> tuple[str, str] | None:
    """(licence short name, copyright) of the last 'Files:' paragraph that matches."""
    hit = None
    for p in paras:
        if "files" not in p:
            continue
        for glob in p["files"].split():
            if fnmatch.fnmatchcase(upstream_path, glob):
                hit = (p.get("license", "").splitlines()[0].strip(),
                       " / ".join(x.strip() for x in p.get("copyright", "").splitlines()))
    return hit


# gnome-backgrounds' copyright file is not DEP-5 (and lists images no longer shipped).
GNOME_LICENSE = [("adwaita*", "CC-BY-SA-3.0", "2011 Jakub Steiner"),
                 ("*", "GPL-2+ (package licence; image not itemised)", "GNOME Project")]


# --------------------------------------------------------------------------- fetching

def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def apt_version(pkg: str) -> str | None:
    try:
        out = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True,
                             check=False).stdout
    except FileNotFoundError:
        return None
    m = re.search(r"Candidate:\s*(\S+)", out)
    return None if not m or m.group(1) == "(none)" else m.group(1)


def fetch_debian(pkg: str, raw: Path) -> dict:
    """Unpack `pkg`'s image folders and copyright into raw/<pkg>/ (cached)."""
    dest = raw / pkg
    marker = dest / ".fetched.json"
    if marker.exists():
        return json.loads(marker.read_text())
    version = apt_version(pkg)
    if version is None:
        return {"missing": f"apt-cache policy {pkg}: no candidate (package not available here)"}
    with tempfile.TemporaryDirectory(prefix=f"fastfill-{pkg}-") as tmp:
        r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{pkg}_*.deb"))
        if r.returncode != 0 or not debs:
            return {"missing": f"apt-get download {pkg} failed: {r.stderr.strip()[-300:]}"}
        tree = Path(tmp) / "tree"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(tree)], check=True)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        copied = []
        for sub, _ in DEBIAN_SOURCES[pkg]:
            src = tree / sub
            if src.is_dir():
                # symlinks resolved so links into other folders still work
                shutil.copytree(src, dest / "files" / sub, symlinks=False,
                                ignore_dangling_symlinks=True,
                                ignore=(shutil.ignore_patterns("dnn") if pkg in NON_RECURSIVE else None))
                copied.append(sub)
        cr = tree / "usr/share/doc" / pkg / "copyright"
        if cr.exists():
            shutil.copyfile(cr, dest / "copyright")
        info = {"version": version, "deb": debs[0].name, "folders": copied,
                "deb_sha256": hashlib.sha256(debs[0].read_bytes()).hexdigest()}
    marker.write_text(json.dumps(info, indent=1))
    return info


def fetch_python(name: str, raw: Path) -> dict:
    """Locate the installed package's sample-image folder (no copy needed)."""
    module, sub = PYTHON_SOURCES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return {"missing": f"python package {name} not installed (pip install {name})"}
    root = Path(list(spec.submodule_search_locations)[0]) / sub
    if not root.is_dir():
        return {"missing": f"{root} does not exist"}
    from importlib.metadata import version
    try:
        ver = version(name)
    except Exception:
        ver = "unknown"
    return {"version": ver, "root": str(root)}


def source_files(name: str, info: dict, raw: Path) -> list[tuple[str, Path, str]]:
    """[(origin relative to the image folder, absolute path, upstream path)]"""
    out = []
    if name in DEBIAN_SOURCES:
        for sub, upstream in DEBIAN_SOURCES[name]:
            base = raw / name / "files" / sub
            if not base.is_dir():
                continue
            it = base.iterdir() if name in NON_RECURSIVE else base.rglob("*")
            for p in sorted(it):
                if p.is_file():
                    rel = p.relative_to(base).as_posix()
                    out.append((rel, p, f"{upstream}/{rel}".lstrip("/")))
    else:
        base = Path(info["root"])
        for p in sorted(base.iterdir()):
            if p.is_file():
                out.append((p.name, p, p.name))
    return out


def flat_fraction(im) -> float:
    import numpy as np
    t = im.convert("L")
    t.thumbnail((256, 256))
    g = np.asarray(t, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 1.0
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    return float((lap < 1.0).mean())


def dhash(im, n: int = DHASH_SIZE) -> int:
    import numpy as np
    g = np.asarray(im.convert("L").resize((n + 1, n), resample=3), dtype=np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def inspect(path: Path):
    """(width, height, mode, flat fraction, dhash) or raises."""
    from PIL import Image
    with Image.open(path) as im:
        w, h = im.size
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        im.draft("RGB", (512, 512))
        rgb = im.convert("RGB")
    import numpy as np
    a = np.asarray(rgb.resize((64, 64)), dtype=np.int16)
    grey = int(np.abs(a - a[..., :1]).max()) <= 3
    return w, h, ("L" if grey else "RGB"), flat_fraction(rgb), dhash(rgb)


def not_photo_reason(name: str, origin: str) -> str | None:
    for pat, why in NOT_PHOTO.get(name, {}).items():
        if fnmatch.fnmatchcase(origin, pat):
            return why
    return None


def collect(name: str, info: dict, raw: Path, progress) -> tuple[list[Item], list[dict], dict]:
    items, excluded, licences = [], [], {}
    paras = []
    cr = raw / name / "copyright"
    if name in DEBIAN_SOURCES and cr.exists():
        paras = parse_dep5(cr.read_text(errors="replace"))
    for origin, path, upstream in progress(source_files(name, info, raw), desc=name, unit="file",
                                           leave=False):
        ext = path.suffix.lower()
        if ext not in RASTER_EXT:
            if ext in {".svg", ".svgz", ".gif", ".ico", ".xpm"}:
                excluded.append({"source": name, "origin": origin, "reason": f"not a photo format ({ext})"})
            continue
        if name in PYTHON_SOURCES:
            allowed = PYTHON_ALLOW[name].get(origin)
            if allowed is None:
                excluded.append({"source": name, "origin": origin,
                                 "reason": "not a photograph or licence not documented per image"})
                continue
            lic, copyright_ = allowed
        else:
            why = not_photo_reason(name, origin)
            if why:
                excluded.append({"source": name, "origin": origin, "reason": why})
                continue
            if name == "gnome-backgrounds":
                lic, copyright_ = next((l, c) for g, l, c in GNOME_LICENSE
                                       if fnmatch.fnmatchcase(Path(origin).name, g))
            else:
                hit = dep5_lookup(paras, upstream)
                lic, copyright_ = hit if hit else ("unknown", "")
            if lic == "unknown":
                excluded.append({"source": name, "origin": origin, "reason": "licence unknown"})
                continue
        try:
            w, h, mode, flat, dh = inspect(path)
        except Exception as e:  # unreadable file
            excluded.append({"source": name, "origin": origin, "reason": f"unreadable: {e}"})
            continue
        if min(w, h) < MIN_SIDE:
            excluded.append({"source": name, "origin": origin, "reason": f"too small ({w}x{h})"})
            continue
        if flat >= FLAT_LIMIT:
            excluded.append({"source": name, "origin": origin,
                             "reason": f"graphic ({flat:.0%} flat pixels)"})
            continue
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        items.append(Item(source=name, origin=origin, sha256=sha, width=w, height=h, mode=mode,
                          dhash=dh, license=lic, copyright=copyright_))
        licences[lic] = licences.get(lic, 0) + 1
        items[-1]._abs = path  # type: ignore[attr-defined]
    return items, excluded, licences


def place(items: list[Item], out: Path, progress) -> None:
    """Copy each item to out/<split>/<source>/<name>; remove stale files there."""
    wanted: dict[Path, Item] = {}
    for it in items:
        name = Path(it.origin).name
        rel = Path(it.split) / it.source / name
        if rel in wanted:   # same base name twice in a source: keep the sub-folder in the name
            rel = Path(it.split) / it.source / it.origin.replace("/", "__")
        wanted[rel] = it
        it.path = rel.as_posix()
    for rel, it in progress(sorted(wanted.items()), desc="place", unit="file", leave=False):
        dst = out / rel
        if dst.exists() and dst.stat().st_size == it._abs.stat().st_size \
                and hashlib.sha256(dst.read_bytes()).hexdigest() == it.sha256:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(it._abs, dst)
    for split in ("train", "val"):
        root = out / split
        if not root.exists():
            continue
        for p in sorted(root.rglob("*"), reverse=True):
            if p.is_file() and p.relative_to(out) not in wanted:
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    ap.add_argument("--sources", nargs="+", default=ALL_SOURCES, metavar="NAME",
                    help=f"subset of: {' '.join(ALL_SOURCES)}")
    ap.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    args = ap.parse_args(argv)
    try:
        names = check_sources(args.sources)
    except ValueError as e:
        log(f"error: {e}")
        return 2
    try:
        from tqdm import tqdm as progress
    except ImportError:  # pragma: no cover
        def progress(x, **_):
            return x
    complete = set(names) == set(ALL_SOURCES)
    if not complete:
        log("warning: --sources is a subset: the split ranks the groups of these sources only and "
            "differs from the full run; train and evaluate on one full run")
    out: Path = args.out
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    sources, missing, all_items, excluded = {}, {}, [], []
    for name in progress(names, desc="sources", unit="src"):
        info = fetch_debian(name, raw) if name in DEBIAN_SOURCES else fetch_python(name, raw)
        if "missing" in info:
            missing[name] = info["missing"]
            log(f"warning: {name}: {info['missing']}")
            continue
        items, exc, lic = collect(name, info, raw, progress)
        all_items += items
        excluded += exc
        sources[name] = {
            "kind": "debian" if name in DEBIAN_SOURCES else "python",
            "version": info.get("version"),
            **({"deb": info.get("deb"), "deb_sha256": info.get("deb_sha256"),
                "copyright_file": f"raw/{name}/copyright",
                "image_folders": [s for s, _ in DEBIAN_SOURCES[name]]}
               if name in DEBIAN_SOURCES else {"data_folder": PYTHON_SOURCES[name][1],
                                                  "license_reference": PYTHON_LICENSE_REF[name]}),
            "licenses_of_kept_images": lic,
        }

    kept, dups = dedupe(all_items)
    excluded += dups
    groups = assign_splits(kept, args.val_fraction)
    place(kept, out, progress)

    counts: dict[str, dict[str, int]] = {}
    for it in kept:
        c = counts.setdefault(it.source, {"train": 0, "val": 0})
        c[it.split] += 1
    for name in sources:
        sources[name]["counts"] = counts.get(name, {"train": 0, "val": 0})
        sources[name]["excluded"] = sum(1 for e in excluded if e["source"] == name)
    images = []
    for it in sorted(kept, key=lambda i: i.path):
        d = asdict(it)
        d.pop("dhash")
        d["dhash"] = f"{it.dhash:0{DHASH_SIZE * DHASH_SIZE // 4}x}" if it.dhash is not None else None
        images.append(d)
    manifest = {
        "about": "Written by scripts/fetch_data.py; see docs/DATA.md. Reserved, never used: "
                 + ", ".join(sorted(RESERVED)),
        "split_rule": f"groups of variants ranked by sha256('fastfill-split:'+group); first "
                      f"max(1, round({args.val_fraction} * groups)) -> val",
        "complete": complete and not missing,
        "sources": sources,
        "missing": missing,
        "totals": {"train": sum(c["train"] for c in counts.values()),
                   "val": sum(c["val"] for c in counts.values()),
                   "groups": len(groups),
                   "val_groups": len({i.group for i in kept if i.split == "val"}),
                   "bytes": sum((out / i.path).stat().st_size for i in kept)},
        "images": images,
        "excluded": sorted(excluded, key=lambda e: (e["source"], e["origin"])),
    }
    (out / "SOURCES.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")

    w = max([len(n) for n in sources] + [6])
    print(f"{'source':{w}s}  train    val  excluded  licences")
    for name, s in sources.items():
        print(f"{name:{w}s}  {s['counts']['train']:5d}  {s['counts']['val']:5d}  {s['excluded']:8d}  "
              + ", ".join(sorted(s["licenses_of_kept_images"])))
    t = manifest["totals"]
    print(f"{'total':{w}s}  {t['train']:5d}  {t['val']:5d}  groups {t['groups']} "
          f"(val {t['val_groups']}), {t['bytes'] / 2**20:.1f} MiB in {out}")
    for name, why in missing.items():
        print(f"missing: {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
