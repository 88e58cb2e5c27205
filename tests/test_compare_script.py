"""scripts/compare.py: pooled draws, photo groups and the bootstrap against a named row, on real files."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_ROOT = Path(__file__).resolve().parent.parent
_PATH = _ROOT / "scripts" / "compare.py"
_spec = importlib.util.spec_from_file_location("compare_script", _PATH)
cmp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cmp)


def _rows(psnr, texture):
    return [{"psnr_hole": p, "texture": t} for p, t in zip(psnr, texture)]


def test_bootstrap_of_equal_rows_is_exactly_even():
    rows = _rows([20.0, 18.0, 25.0], [3.0, 2.0, 4.0])
    (g, glo, ghi), (r, rlo, rhi) = cmp.bootstrap_gap(rows, rows, ["a", "b", "c"])
    assert (g, glo, ghi) == (0.0, 0.0, 0.0)
    assert (r, rlo, rhi) == (1.0, 1.0, 1.0)


def test_bootstrap_resamples_whole_groups():
    # one photo's four crops carry the whole gap. Drawn crop by crop, 16 draws would almost always
    # take some of them (5th percentile 1/16 dB, 95th 7/16); drawn as groups, 4 draws miss that
    # photo 32 % of the time and take it twice or more 26 % of the time
    ours = _rows([21.0] * 4 + [20.0] * 12, [1.0] * 16)
    theirs = _rows([20.0] * 16, [2.0] * 16)
    groups = [g for g in "wxyz" for _ in range(4)]
    (g, glo, ghi), (r, rlo, rhi) = cmp.bootstrap_gap(ours, theirs, groups, rounds=4000)
    assert g == pytest.approx(0.25)
    assert glo == 0.0 and ghi >= 0.5
    assert r == rlo == rhi == 0.5


def test_photo_groups_read_sources_json_beside_the_folder(tmp_path):
    val = tmp_path / "val" / "src"
    val.mkdir(parents=True)
    files = [val / "a.png", val / "a_small.png", val / "b.png"]
    (tmp_path / "SOURCES.json").write_text(json.dumps({"images": [
        {"path": "val/src/a.png", "group": "g1"}, {"path": "val/src/a_small.png", "group": "g1"}]}))
    groups = cmp.photo_groups(tmp_path / "val", files)
    assert groups[0] == groups[1] == "g1"
    assert groups[2] == str(files[2].resolve())  # not listed: its own group
    assert cmp.photo_groups(tmp_path / "other" / "val", files) == [str(f.resolve()) for f in files]


def test_draws_pool_into_one_table_with_the_gap_against_a_row(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(3):  # textured photos, so the patch rows differ from the harmonic fill
        noise = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
        Image.fromarray(noise).save(data / f"p{i}.png")
    md = tmp_path / "t.md"
    res = subprocess.run([sys.executable, str(_PATH), "--data", str(data), "--crops", "2", "--draws", "2",
                          "--settings", "B", "--no-anchors", "--glcic", "", "--against", "harmonic (fastfill)",
                          "--markdown", str(md)], capture_output=True, text=True, cwd=_ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    text = md.read_text()
    assert "seeds 0-1 pooled" in text
    assert "— 12 crops," in text  # 3 photos x 2 crops x 2 draws
    assert "Against harmonic (fastfill) (3 photo groups" in text
    gap_lines = [ln for ln in text.splitlines() if ln.startswith("- patch (fastfill):")]
    assert len(gap_lines) == 1 and "texture" in gap_lines[0]
    assert not any(ln.startswith("- harmonic (fastfill):") for ln in text.splitlines())


def test_against_an_absent_row_is_said(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    Image.fromarray(np.full((140, 140, 3), 90, np.uint8)).save(data / "flat.png")
    res = subprocess.run([sys.executable, str(_PATH), "--data", str(data), "--crops", "1", "--settings", "B",
                          "--no-anchors", "--glcic", "", "--against", "no such method"],
                         capture_output=True, text=True, cwd=_ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "--against no such method: no such row" in res.stdout
    bad = subprocess.run([sys.executable, str(_PATH), "--data", str(data), "--draws", "0"],
                         capture_output=True, text=True, cwd=_ROOT, timeout=60)
    assert bad.returncode == 2 and "--draws must be at least 1" in bad.stderr
