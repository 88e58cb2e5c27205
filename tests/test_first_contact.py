"""What a newcomer trips over: output names that disagree with the input, a single video given to
`run`, a still image given to `video`, the words of `info` and the run header, and what `make
demo` installs. Real files, the real CLI and real make."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def pair(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(
        tmp_path / "images" / "a.png")
    m = np.zeros((32, 48), np.uint8)
    m[8:20, 10:30] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    return tmp_path


@pytest.mark.parametrize("images, output, want", [
    ("images", "out.png", "IMAGES is a folder, so the output is a folder"),
    ("images/a.png", "x.xyz", ".xyz is not a format fastfill writes"),
    ("images/a.png", "x.psd", ".psd is not a format fastfill writes"),
    ("images/a.png", "x.png --format jpeg", "--format jpeg disagrees with -o"),
])
def test_outputs_that_break_the_naming_rules_are_refused_before_anything_runs(pair, images, output, want):
    out, *flags = output.split()
    code, stdout, err = invoke("run", "--method", "harmonic", "-q", *flags, pair / images, pair / "m.png",
                               "-o", pair / out)
    assert code == 2 and want in err and err.count("\n") == 1, err
    assert not (pair / out).exists() and stdout == ""


def test_a_file_output_gets_the_format_its_suffix_names_and_a_folder_input_a_folder(pair):
    code, _, err = invoke("run", "--method", "harmonic", "-q", pair / "images" / "a.png", pair / "m.png",
                          "-o", pair / "x.jpeg")
    assert code == 0, err
    with Image.open(pair / "x.jpeg") as im:
        assert im.format == "JPEG"
    code, _, err = invoke("run", "--method", "harmonic", "-q", "--format", "jpeg",
                          pair / "images" / "a.png", pair / "m.png", "-o", pair / "y.jpg")
    assert code == 0, err
    # a folder named like a file, asked for with a trailing separator
    code, _, err = invoke("run", "--method", "harmonic", "-q", pair / "images", pair / "m.png",
                          "-o", str(pair / "out.png") + os.sep)
    assert code == 0 and (pair / "out.png" / "a.png").is_file(), err


def test_a_single_video_given_to_run_is_one_video_done_into_the_file_named(pair):
    av = pytest.importorskip("av")
    video = pair / "clip.mkv"
    with av.open(str(video), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv444p"
        for i in range(3):
            frame = np.full((32, 48, 3), 40 * i, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    code, stdout, err = invoke("run", "--method", "harmonic", "-q", video, pair / "m.png", "-o", pair / "out.mkv")
    assert code == 0 and "done 1, skipped 0, failed 0" in stdout, err
    assert (pair / "out.mkv").is_file()
    with av.open(str(pair / "out.mkv")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
    code, _, err = invoke("run", "--method", "harmonic", "-q", video, pair / "m.png", "-o", pair / "out.png")
    assert code == 2 and "the output of a video is a video file" in err


def test_video_refuses_a_still_image(pair):
    pytest.importorskip("av")
    code, stdout, err = invoke("video", "--method", "harmonic", "-q", pair / "images" / "a.png",
                               "--mask", pair / "m.png", "-o", pair / "still.mkv")
    assert code == 2 and "a still image, not a video" in err, err
    assert not (pair / "still.mkv").exists()
    # a file named like a picture that is none is a failed input, as any other non-video
    (pair / "notes.png").write_text("not a picture")
    code, stdout, err = invoke("video", "--method", "harmonic", "-q", pair / "notes.png",
                               "--mask", pair / "m.png", "-o", pair / "notes.mkv")
    assert code == 1 and f"failed: {pair / 'notes.png'}: not a video" in err, err
    assert not (pair / "notes.mkv").exists()


def test_info_says_when_there_is_no_nvidia_driver_at_all(monkeypatch):
    from fastfill import ops

    info = ops.build_info()
    if "cuda" not in info["backends"]:
        pytest.skip("the native module was built without CUDA kernels")
    if ops.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver: the CUDA runtime's own words stand")
    assert info["cuda_runtime_status"] == "no NVIDIA GPU/driver found"
    code, stdout, _ = invoke("info")
    assert code == 0 and "CUDA runtime: no NVIDIA GPU/driver found" in stdout
    monkeypatch.setattr(ops, "nvidia_driver_present", lambda: True)  # a driver the runtime rejects
    assert ops.build_info()["cuda_runtime_status"].startswith("no usable GPU (")


def test_the_run_header_says_what_runs_in_words(pair):
    code, _, err = invoke("run", "--method", "patch", pair / "images", pair / "m.png", "-o", pair / "o1")
    assert code == 0 and err.splitlines()[0] == "fill: patch (no model), on the CPU"
    code, _, err = invoke("run", pair / "images", pair / "m.png", "-o", pair / "o2")
    assert code == 0
    assert err.splitlines()[0] == ("model: default.onnx (glcic) adds nothing to its harmonic prefill "
                                   "(checked at load): running the default fill, patch (detail 75, "
                                   "detail_depth 16, complete 100, poisson 1), on the CPU")
    assert "classical:" not in err


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_sets_up_the_runtime_alone_and_make_test_everything():
    def pip_lines(target):
        out = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        return [line for line in out.splitlines() if "pip install" in line]

    demo = pip_lines("demo")
    assert demo and all("torch" not in line and "[" not in line for line in demo), demo
    assert any(line.rstrip().endswith("-e .") for line in demo), demo
    full = "\n".join(pip_lines("test"))
    assert "torch==2.13.0" in full and "train" in full and "serve" in full and "dev" in full
