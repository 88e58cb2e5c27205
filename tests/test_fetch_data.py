"""Fast, offline tests of scripts/fetch_data.py: grouping, split rule, reserved packages."""
import hashlib
import importlib.util
import random
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "scripts" / "fetch_data.py"
_spec = importlib.util.spec_from_file_location("fetch_data", _PATH)
fd = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fetch_data", fd)  # dataclasses look the module up while it loads
_spec.loader.exec_module(fd)


def _item(origin, source="src", mode="RGB", dhash=None, content=None):
    sha = hashlib.sha256((content or f"{source}/{origin}").encode()).hexdigest()
    return fd.Item(source=source, origin=origin, sha256=sha, mode=mode, dhash=dhash)


@pytest.mark.parametrize("a,b", [
    ("abstract/Elephants.jpg", "abstract/Elephants_3840x2160.jpg"),
    ("Elephants_5640x3172.jpg", "Elephants.jpg"),
    ("Sway_Wallpaper_Blue_1136x640_Portrait.png", "Sway_Wallpaper_Blue_2048x1536.png"),
    ("wood-d.webp", "wood-l.webp"),
    ("aloeL.jpg", "aloeR.jpg"),
    ("leuvenA.jpg", "leuvenB.jpg"),
    ("aero1.jpg", "aero3.jpg"),
    ("left01.jpg", "right14.jpg"),
    ("ela_original.jpg", "ela_modified.jpg"),
    ("photo@2x.png", "photo.png"),
])
def test_variants_share_a_stem(a, b):
    assert fd.group_stem(a) == fd.group_stem(b)


@pytest.mark.parametrize("a,b", [
    ("Garden.jpg", "GreenMeadow.jpg"),
    ("apple.jpg", "orange.jpg"),
    ("coffee.png", "coins.png"),
])
def test_different_photos_do_not_share_a_stem(a, b):
    assert fd.group_stem(a) != fd.group_stem(b)


def _population():
    items = [_item(f"{w}.jpg") for w in
             ("apple orange lemon lime kiwi cabbage coffee tea cup saucer spoon fork knife plate "
              "bowl glass bottle cork wine beer bread cheese grape melon peach pear plum cherry "
              "berry fig").split()]
    variants = [_item(f"Dune_{r}.jpg", content=f"dune{r}") for r in ("1920x1080", "3840x2160")]
    variants.append(_item("Dune.jpg", content="dune"))
    return items + variants


def test_split_is_deterministic_and_order_independent():
    a = _population()
    fd.assign_splits(a)
    b = _population()
    random.Random(0).shuffle(b)
    fd.assign_splits(b)
    split_a = {i.origin: i.split for i in a}
    split_b = {i.origin: i.split for i in b}
    assert split_a == split_b
    assert set(split_a.values()) == {"train", "val"}


def test_variants_land_on_one_side_and_val_is_about_ten_percent():
    items = _population()
    groups = fd.assign_splits(items, 0.10)
    for ms in groups.values():
        assert len({m.split for m in ms}) == 1
    dune = [i for i in items if i.origin.startswith("Dune")]
    assert len({i.group for i in dune}) == 1
    n_val_groups = len({i.group for i in items if i.split == "val"})
    assert n_val_groups == max(1, round(0.10 * len(groups)))


def test_near_duplicate_hash_groups_across_names():
    base = random.Random(1).getrandbits(256)
    a = _item("first.jpg", dhash=base)
    b = _item("second.jpg", dhash=base ^ 0b111)          # 3 bits differ: same photo resized
    c = _item("third.jpg", dhash=base ^ ((1 << 64) - 1))  # 64 bits differ: another photo
    fd.build_groups([a, b, c])
    assert a.group == b.group != c.group


def test_grey_groups_stay_in_train():
    items = [_item(f"grey{w}.png", mode="L") for w in "abcdefghijklmnopqrst"]
    items.append(_item("colour.jpg"))
    fd.assign_splits(items, 0.10)
    assert [i.origin for i in items if i.split == "val"] == ["colour.jpg"]


def test_adding_a_variant_never_splits_a_group():
    more = _population() + [_item("Dune_5640x3172.jpg", content="dune-big")]
    fd.assign_splits(more)
    assert len({(i.group, i.split) for i in more if i.origin.startswith("Dune")}) == 1


def test_dedupe_keeps_first_copy():
    a = _item("a.png", source="s1", content="same")
    b = _item("b.png", source="s2", content="same")
    kept, dropped = fd.dedupe([a, b])
    assert kept == [a] and dropped[0]["origin"] == "b.png"


@pytest.mark.parametrize("pkg", ["plasma-workspace-wallpapers", "ukui-wallpapers"])
def test_reserved_packages_are_refused(pkg, tmp_path, capsys):
    with pytest.raises(ValueError, match="reserved"):
        fd.check_sources(["mate-backgrounds", pkg])
    assert fd.main(["--out", str(tmp_path), "--sources", pkg]) == 2
    assert "reserved" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists()


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        fd.check_sources(["some-other-wallpapers"])


def test_dep5_lookup_last_match_wins():
    text = ("Format: x\n\nFiles: *\nCopyright: A\nLicense: GPL-2+\n\n"
            "Files: nature/Aqua.jpg\n       nature/Dune.jpg\nCopyright: 2008, B\n 2009, C\n"
            "License: CC-BY-SA-4.0\n\nLicense: GPL-2+\n text\n")
    paras = fd.parse_dep5(text)
    assert fd.dep5_lookup(paras, "nature/Dune.jpg") == ("CC-BY-SA-4.0", "2008, B / 2009, C")
    assert fd.dep5_lookup(paras, "abstract/Flow.png") == ("GPL-2+", "A")
