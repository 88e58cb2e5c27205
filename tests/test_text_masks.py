"""Text masks (`--text`, `fastfill mask`, fastfill.masks.text): PP-OCRv4's detector on text
rendered with Pillow (several fonts, sizes, colours, outlined subtitles) over the example
photos: the glyphs are covered, the rest of the image is untouched, photos without text come
back unchanged; the video track; the flags' rules. The detector's tests skip only when the
`text` extra is not installed."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import invoke
from fastfill.errors import EngineError, InputError
from fastfill.masks import text as T

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = sorted((ROOT / "examples" / "images").glob("*.jpg"))
TINY = str(Path(__file__).parent / "data" / "tiny_glcic.onnx")
FONTS = {
    "DejaVuSans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "DejaVuSerif-Bold": "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "LiberationMono": "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "pillow-default": None,  # Pillow's own scalable font (ImageFont.load_default(size))
}
# The RGB distance from the text's colour of the hundredth of the pixels under it closest to it:
# below it, part of the text is one a reader cannot see (white over a white cup, red on a red
# saucer), and the detector misses it as a reader would.
READABLE = 100
COVERED = 0.99  # the share of a text's glyph pixels (anti-aliased rims and outlines too) in the mask


def _missing_extra() -> str | None:
    try:
        import cv2  # noqa: F401

        T.model_path()
        T.model_path(T.REC_FILE)
    except (ImportError, EngineError) as e:
        return str(e)
    return None


needs_text = pytest.mark.skipif(bool(_missing_extra()),
                                reason=f"the text extra is not installed: {_missing_extra()}")


@pytest.fixture(scope="module")
def detector():
    with T.TextDetector() as d:
        yield d


def _font(name: str, size: int):
    path = FONTS[name]
    if path is None:
        return ImageFont.load_default(size=size)
    if not Path(path).is_file():
        pytest.skip(f"font {path} is not on this machine")
    return ImageFont.truetype(path, size)


def _photo(i: int) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS[i % len(PHOTOS)]).convert("RGB"))


def _readable(bg: np.ndarray, style: str):
    """(fill, stroke width, stroke colour, contrast) for text on ``bg`` (the pixels under it):
    plain white or black, or a colour, whichever stands out most from the hundredth of those
    pixels closest to it in RGB (contrast: that distance); or an outlined subtitle (white on
    black), readable anywhere."""
    if style == "subtitle":
        return (255, 255, 255), 2, (0, 0, 0), 255.0
    under = bg.reshape(-1, 3).astype(np.float64)
    palette = ([(255, 255, 255), (15, 15, 15)] if style == "plain" else
               [(255, 220, 0), (0, 210, 255), (230, 30, 30), (40, 40, 210), (30, 200, 60)])
    contrast = {c: float(np.percentile(np.linalg.norm(under - c, axis=1), 1)) for c in palette}
    best = max(palette, key=contrast.get)
    return best, 0, None, contrast[best]


def render(rgb: np.ndarray, text: str, font, xy, style: str = "plain"):
    """``rgb`` with ``text`` drawn at ``xy`` (or at the first of a list of places where it is
    readable: plain or coloured text over a background as light or as dark as itself is not):
    (the image, bool glyph pixels: every pixel the drawing touches, anti-aliased rim and
    outline included)."""
    stroke = 2 if style == "subtitle" else 0
    for place in (xy if isinstance(xy, list) else [xy]):
        layer = Image.new("L", (rgb.shape[1], rgb.shape[0]), 0)
        ImageDraw.Draw(layer).text(place, text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        glyph = np.asarray(layer) > 0
        fill, stroke, stroke_fill, contrast = _readable(rgb[glyph], style)
        if contrast >= READABLE:
            break
    else:
        raise AssertionError(f"no readable place for {text!r} ({style}) among {xy}")
    im = Image.fromarray(rgb)
    ImageDraw.Draw(im).text(place, text, font=font, fill=fill, stroke_width=stroke, stroke_fill=stroke_fill)
    return np.asarray(im), glyph


# -- without the extra ------------------------------------------------------------------------------

def test_missing_model_is_one_line_saying_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "MODEL_PACKAGE", "fastfill_no_such_package")
    with pytest.raises(EngineError, match=r"pip install 'fastfill\[text\]'"):
        T.model_path()
    img = tmp_path / "a.png"
    Image.fromarray(_photo(0)).save(img)
    code, _, err = invoke("run", img, "--text", "-o", tmp_path / "out.png")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fastfill[text]'" in lines[0], err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("text, want", [
    ("bottom", (0.0, 2 / 3, 1.0, 1.0)), ("TOP", (0.0, 0.0, 1.0, 1 / 3)),
    ("0,0.75,1,1", (0.0, 0.75, 1.0, 1.0)), ("0.1, 0.2, 0.9, 0.5", (0.1, 0.2, 0.9, 0.5))])
def test_parse_region(text, want):
    assert T.parse_region(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["middle", "0,0.5,1", "0,0.8,1,0.7", "0,0,1.5,1", "a,b,c,d"])
def test_parse_region_refuses(text):
    with pytest.raises(InputError, match="region"):
        T.parse_region(text)


def test_input_size_is_a_multiple_of_32_within_the_limits():
    assert T.input_size(1080, 1920) == (544, 960)  # the long side capped at 960
    assert T.input_size(400, 600) == (640, 960)  # scaled up towards 736, as far as 960 allows
    assert T.input_size(300, 320) == (736, 800)  # the short side scaled up to 736 (rapidocr)
    assert T.input_size(4, 3000) == (32, 960)  # never 0


@pytest.mark.parametrize("args, message", [
    (["run", "{img}", "-o", "{out}"], "give MASKS, or --text"),
    (["run", "{img}", "--text-region", "bottom", "-o", "{out}"], "--text-region needs --text"),
    (["run", "{img}", "--text", "--ray", "-o", "{out}"], "--text does not run under --ray"),
    (["mask", "{img}", "-o", "{out}"], "say what to find: --text"),
    # (an empty region was taken for the whole frame)
    (["mask", "--text", "--text-region", "", "{img}", "-o", "{out}"], "region '': give one of"),
    # (it answered "--format png disagrees", a flag not given)
    (["mask", "--text", "{img}", "-o", "{out}.jpg"], "masks are written as PNG"),
    (["video", "{img}", "-o", "{out}.mp4"], "give --mask, or --text"),
    (["video", "{img}", "--text-every", "5", "--mask", "{img}", "-o", "{out}.mp4"],
     "--text-every needs --text"),
])
def test_flag_rules(tmp_path, args, message):
    img = tmp_path / "a.png"
    Image.fromarray(_photo(0)).save(img)
    code, _, err = invoke(*[a.format(img=img, out=tmp_path / "out") for a in args])
    assert code == 2 and message in err, err


class _Boxes:
    """A stand-in detector: the mask of frame k is ``masks[k]`` (frames carry their number in
    pixel [0, 0, 0])."""

    def __init__(self, masks):
        self.masks, self.calls = masks, []

    def __call__(self, rgb):
        k = int(rgb[0, 0, 0])
        self.calls.append(k)
        return self.masks[k]


def test_track_detects_every_n_frames_and_the_last():
    pytest.importorskip("cv2")
    n, h, w = 23, 8, 8
    frames = [np.full((h, w, 3), k, np.uint8) for k in range(n)]
    fake = _Boxes([np.zeros((h, w), bool)] * n)
    track = T.TextTrack(fake, every=10)
    out = list(track.masks(((k,), f) for k, f in enumerate(frames)))
    assert [t for t, _, _ in out] == [(k,) for k in range(n)]  # every frame, in order
    assert fake.calls == [0, 10, 20, 22] and track.detections == 4


def _text_clip(shows, h: int = 16, w: int = 32, n: int = 11):
    """n grey frames numbered in pixel [0, 0, 0], a bright text box on those where ``shows(k)``,
    and a stand-in detector that finds it there: (box, frames, detector)."""
    box = np.zeros((h, w), bool)
    box[4:10, 4:20] = True
    frames = []
    for k in range(n):
        f = np.full((h, w, 3), 100, np.uint8)
        f[0, 0, 0] = k
        if shows(k):
            f[box] = 250
        frames.append(f)
    return box, frames, _Boxes([box if shows(k) else np.zeros((h, w), bool) for k in range(n)])


def test_track_covers_text_that_comes_between_detections_and_only_there():
    """A box that the later detection finds: on the frames that show it (they look like the
    later frame there), not on those that do not (they look like the earlier one)."""
    pytest.importorskip("cv2")
    box, frames, fake = _text_clip(lambda k: k >= 4)  # the text arrives at frame 4
    out = list(T.TextTrack(fake, every=10).masks(((k,), f) for k, f in enumerate(frames)))
    for (k,), _, m in out:
        assert m.any() == (k >= 4), k
        if k >= 4:
            assert m[box].all()


def test_track_reads_a_detection_frame_as_detected_though_it_is_filled_in_place():
    """The frames between two detections are compared with the earlier detection's pixels; that
    frame is yielded first and may be filled in place at once (``fastfill video --text`` fills
    its own frames in place). Text that goes after frame 5: frames 6-9 keep their pixels even
    when each frame's masked pixels are painted over as soon as it is yielded."""
    pytest.importorskip("cv2")
    box, frames, fake = _text_clip(lambda k: k <= 5)  # the text leaves after frame 5
    out = []
    for tag, rgb, m in T.TextTrack(fake, every=10).masks(((k,), f) for k, f in enumerate(frames)):
        rgb[m] = 100  # (a fill, in place, before the next frame is read)
        out.append((tag, m))
    for (k,), m in out:
        assert m.any() == (k <= 5), k


# -- the detector -----------------------------------------------------------------------------------

@needs_text
@pytest.mark.parametrize("font_name", list(FONTS))
def test_rendered_text_is_covered(detector, font_name):
    misses = []
    for size in (16, 28, 48):
        font = _font(font_name, size)
        for k, style in enumerate(("plain", "colour", "subtitle")):
            photo = _photo(size + k)
            h, w = photo.shape[:2]
            places = [(int(x * w), int(y * h)) for y in (0.15 + 0.3 * k, 0.1, 0.4, 0.6, 0.8)
                      for x in (0.06, 0.25)]
            rgb, glyph = render(photo, "Hello World 2024", font, places, style)
            mask = detector.detect(rgb)
            covered = (mask & glyph).sum() / glyph.sum()
            if covered < COVERED:
                misses.append(f"{size}px {style}: {covered:.3f}")
            # the mask is the text's neighbourhood, not the photo
            ys, xs = np.nonzero(glyph)
            near = np.zeros_like(mask)
            pad = size
            near[max(0, ys.min() - pad):ys.max() + pad, max(0, xs.min() - pad):xs.max() + pad] = True
            assert not (mask & ~near).any(), f"{size}px {style}: mask away from the text"
    assert not misses, f"{font_name}: glyphs not covered: {misses}"


@needs_text
@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_no_text_found_in_the_example_photos(detector, photo):
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    assert detector.polygons(rgb) == []
    assert not detector.detect(rgb).any()


@needs_text
def test_the_recognizer_check_drops_the_spoon(detector):
    """The detector alone takes the spoon's highlight in coffee.jpg for text (a box score as
    high as real text's): the recognizer reads nothing there."""
    rgb = np.asarray(Image.open(ROOT / "examples" / "images" / "coffee.jpg").convert("RGB"))
    with T.TextDetector(T.TextOptions(verify=False)) as unchecked:
        assert len(unchecked.polygons(rgb)) >= 1
    assert detector.polygons(rgb) == []


@needs_text
def test_region_limits_detection(detector):
    rgb = _photo(0)
    h, w = rgb.shape[:2]
    font = _font("DejaVuSans", 28)
    rgb, top = render(rgb, "TOP NEWS 24", font, (int(0.1 * w), int(0.05 * h)), "subtitle")
    rgb, bottom = render(rgb, "a subtitle line", font, (int(0.1 * w), int(0.85 * h)), "subtitle")
    everywhere = detector.detect(rgb)
    assert everywhere[top].mean() >= COVERED and everywhere[bottom].mean() >= COVERED
    with T.TextDetector(T.TextOptions(region=T.parse_region("bottom"))) as low:
        m = low.detect(rgb)
        assert m[bottom].mean() >= COVERED
        assert not m[: int(round(h * 2 / 3))].any()  # nothing above the band, margins included
        assert all(p[:, 1].min() >= int(round(h * 2 / 3)) for p in low.polygons(rgb))


@needs_text
def test_text_mask_api(detector):
    rgb, glyph = render(_photo(1), "API 123", _font("pillow-default", 40), (30, 40), "subtitle")
    m = T.text_mask(rgb)
    assert m.dtype == bool and m.shape == rgb.shape[:2]
    assert (m & glyph).sum() / glyph.sum() >= COVERED
    assert np.array_equal(T.text_mask(rgb, detector=detector), detector.detect(rgb))
    with pytest.raises(InputError, match="uint8"):
        detector.detect(rgb.astype(np.float32))


# -- files: fastfill run --text, fastfill mask --text ---------------------------------------------

def _text_tree(tmp_path):
    """images/: two photos with text (one in a sub-folder, one JPEG) and the three plain
    photos, all PNG but one; returns (folder, {relative name: glyph mask})."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    glyphs = {}
    rgb, g = render(_photo(0), "SALE 50% OFF", _font("DejaVuSans", 40), (40, 400), "subtitle")
    Image.fromarray(rgb).save(images / "sub" / "sale.png")
    glyphs["sub/sale.png"] = g
    rgb, g = render(_photo(2), "Caption here", _font("DejaVuSerif-Bold", 26), (30, 60), "plain")
    Image.fromarray(rgb).save(images / "caption.png")
    glyphs["caption.png"] = g
    for p in PHOTOS:
        Image.open(p).convert("RGB").save(images / f"{p.stem}.png")
    return images, glyphs


@needs_text
def test_run_text_end_to_end(tmp_path):
    images, glyphs = _text_tree(tmp_path)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    masks, out = tmp_path / "masks", tmp_path / "out"
    code, stdout, err = invoke("mask", "--text", images, "-o", masks, "-q")
    assert code == 1 and "failed: " in err and "broken.png" in err, err
    assert err.count("failed: ") == 1 and "done 5, skipped 0, failed 1" in stdout
    code, stdout, err = invoke("run", images, "--text", "-o", out, "-q", "--engine", TINY)
    assert code == 1 and err.count("failed: ") == 1 and "done 5" in stdout, err
    for src in sorted(images.rglob("*.png")):
        rel = src.relative_to(images).as_posix()
        if rel == "broken.png":
            continue
        before = np.asarray(Image.open(src).convert("RGB"))
        after = np.asarray(Image.open(out / rel).convert("RGB"))
        mask_img = Image.open(masks / rel)
        assert mask_img.mode == "L" and set(np.unique(mask_img)) <= {0, 255}
        hole = np.asarray(mask_img) > 0
        assert np.array_equal(before[~hole], after[~hole]), f"{rel}: changed outside the mask"
        if rel in glyphs:
            assert (hole & glyphs[rel]).sum() / glyphs[rel].sum() >= COVERED, rel
            assert not np.array_equal(before[hole], after[hole]), f"{rel}: the text was not filled"
        else:
            assert not hole.any() and np.array_equal(before, after), f"{rel}: a photo without text changed"
    # the masks go back in as MASKS, paired by name, with the same result
    again = tmp_path / "again"
    code, _, err = invoke("run", images, masks, "-o", again, "-q", "--engine", TINY)
    assert code == 1, err
    for rel in glyphs:
        assert np.array_equal(np.asarray(Image.open(again / rel)), np.asarray(Image.open(out / rel)))
    assert not [p for p in masks.rglob(".*")], "temporary files left"


@needs_text
def test_mask_command_mirrors_names_and_skips_existing(tmp_path):
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    rgb, _ = render(_photo(1), "Hello", _font("DejaVuSans", 30), (20, 20), "plain")
    Image.fromarray(rgb).save(images / "a" / "x.jpg", quality=95)
    out = tmp_path / "masks"
    code, stdout, _ = invoke("mask", "--text", images, "-o", out, "-q")
    assert code == 0 and (out / "a" / "x.png").is_file() and "done 1" in stdout
    assert (np.asarray(Image.open(out / "a" / "x.png")) > 0).any()
    code, stdout, _ = invoke("mask", "--text", images, "-o", out, "-q")
    assert code == 0 and "skipped 1" in stdout
    single = tmp_path / "one.png"
    code, _, err = invoke("mask", "--text", images / "a" / "x.jpg", "-o", single, "-q")
    assert code == 0 and single.is_file(), err


def test_mask_on_a_video_says_so_whatever_the_output(tmp_path):
    """`fastfill mask --text clip.mp4 -o x.png` said a video's output is a video file, and
    `-o x.mp4` that masks are PNG: each sent the user to the other."""
    pytest.importorskip("av")
    from conftest import write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip, [np.zeros((32, 48, 3), np.uint8)] * 2, 12, codec="mpeg4", pix_fmt="yuv420p",
               audio=False)
    for out in ("x.png", "x.mp4", "masks/"):
        code, _, err = invoke("mask", "--text", clip, "-o", str(tmp_path / out))
        assert code == 2 and "a video: fastfill mask writes the masks of images" in err, (out, err)


@needs_text
def test_text_joins_the_file_mask_then_dilate(tmp_path, detector):
    from fastfill.files import codecs

    rgb, _ = render(_photo(0), "JOIN ME", _font("DejaVuSans", 36), (40, 60), "subtitle")
    img, mask = tmp_path / "a.png", tmp_path / "m.png"
    Image.fromarray(rgb).save(img)
    own = np.zeros(rgb.shape[:2], np.uint8)
    own[300:340, 200:260] = 255
    Image.fromarray(own).save(mask)
    opts = codecs.FileOptions(dilate=3)
    _, hole = codecs.read_item(img, mask, opts, text=detector)
    want = codecs.dilate_mask((own > 0) | detector.detect(rgb), 3)
    assert np.array_equal(hole, want)
    _, text_only = codecs.read_item(img, None, opts, text=detector)
    assert np.array_equal(text_only, codecs.dilate_mask(detector.detect(rgb), 3))
    # the CLI: outside the union (dilated) untouched, inside filled
    out = tmp_path / "out.png"
    code, _, err = invoke("run", img, mask, "--text", "--dilate", "3", "-o", out, "-q", "--engine", TINY)
    assert code == 0, err
    after = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(after[~want], rgb[~want])
    assert not np.array_equal(after[300:340, 200:260], rgb[300:340, 200:260])


# -- video -------------------------------------------------------------------------------------------

def _subtitled_video(path, n=36, w=480, h=270, sideways=False):
    """A panning clip with a subtitle on frames 7..26 (another line from 17); the glyphs.
    ``sideways``: stored turned a quarter counter-clockwise, with the display rotation that
    shows it upright (a phone's portrait clip); the glyphs as stored."""
    av = pytest.importorskip("av")
    base = np.asarray(Image.open(PHOTOS[2]).convert("RGB").resize((w, h), Image.BICUBIC))
    font = _font("DejaVuSans", 20)
    glyphs = []
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height = (h, w) if sideways else (w, h)
        v.pix_fmt, v.options = "yuv420p", {"crf": "10"}
        if sideways:
            v.set_display_rotation(-90)
        for i in range(n):
            frame = np.roll(base, 2 * i, axis=1).copy()
            g = np.zeros((h, w), bool)
            if 7 <= i < 27:
                line = "This is a subtitle" if i < 17 else "And the next line"
                frame, g = render(frame, line, font, (w // 5, int(h * 0.82)), "subtitle")
            if sideways:
                frame, g = np.ascontiguousarray(np.rot90(frame, 1)), np.ascontiguousarray(np.rot90(g, 1))
            glyphs.append(g)
            for p in v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    return glyphs


@needs_text
def test_video_text_track_covers_every_frame_with_text(tmp_path, detector):
    av = pytest.importorskip("av")
    clip = tmp_path / "in.mp4"
    glyphs = _subtitled_video(clip)
    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    track = T.TextTrack(detector, every=10)
    for (i,), _, m in track.masks(((i,), f) for i, f in enumerate(frames)):
        if glyphs[i].any():
            assert (m & glyphs[i]).sum() / glyphs[i].sum() >= COVERED, f"frame {i}"
        else:
            assert not m.any(), f"frame {i} has no text but a mask"
    assert track.detections == 5  # frames 0, 10, 20, 30 and the last


@needs_text
def test_video_text_cli(tmp_path):
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    _subtitled_video(clip)
    code, stdout, err = invoke("video", clip, "--text", "--text-every", "10", "--method", "harmonic",
                               "-o", out, "-q")
    assert code == 0, err
    assert "done 36 frames (20 with a hole)" in stdout and "text looked for on 5 frames" in stdout, stdout
    assert out.stat().st_size > 0


@needs_text
def test_run_text_fills_the_videos_under_images(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    _subtitled_video(folder / "clip.mp4", n=12)
    code, stdout, err = invoke("run", folder, "--text", "--method", "harmonic", "-o", out, "-q")
    assert code == 0 and "done 1" in stdout, err
    assert (out / "clip.mp4").stat().st_size > 0
    code, stdout, err = invoke("mask", "--text", folder, "-o", tmp_path / "masks", "-q")
    assert code == 1 and "a video: fastfill mask writes the masks of images" in err, err


@needs_text
def test_ctrl_c_during_video_text_detection_exits_130(tmp_path):
    """A real process, SIGINT while the reader thread detects text: the exit aborted (SIGABRT,
    "terminate called without an active exception") in 4 of 5 tries, the thread still inside
    ONNX Runtime as the interpreter finalised; now it is waited for and the exit is 130."""
    import signal
    import subprocess
    import sys
    import time

    clip, out_dir = tmp_path / "in.mp4", tmp_path / "out"
    out_dir.mkdir()
    _subtitled_video(clip, n=150)
    for delay in (0.5, 1.5):
        proc = subprocess.Popen([sys.executable, "-m", "fastfill.cli", "video", str(clip), "--text",
                                 "--text-every", "1", "-o", str(out_dir / "o.mp4"), "-q"],
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not any(out_dir.iterdir()) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)  # (the temporary output appears once frames are being filled)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 130, (proc.returncode, err)
        assert "terminate called" not in err and not any(out_dir.iterdir()), err


@needs_text
def test_a_clip_stored_sideways_has_its_text_found_as_displayed(tmp_path):
    """A phone's clip stored sideways with a display rotation: text was looked for in the stored
    frames, and --text-region bottom read the stored frame's bottom (a side of the picture as
    seen): its subtitles were left in, the run done."""
    av = pytest.importorskip("av")
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    glyphs = _subtitled_video(clip, sideways=True)
    code, stdout, err = invoke("video", clip, "--text", "--text-region", "bottom", "--text-every", "10",
                               "--method", "harmonic", "-o", out, "-q")
    assert code == 0, err
    with av.open(str(clip)) as a, av.open(str(out)) as b:
        before = [f.to_ndarray(format="rgb24").astype(int) for f in a.decode(video=0)]
        after = [(f.to_ndarray(format="rgb24").astype(int), f.rotation) for f in b.decode(video=0)]
    assert all(r == -90 for _, r in after)  # (kept)
    after = [x for x, _ in after]
    changed = [np.abs(x - y).max(-1)[g].mean() for x, y, g in zip(before, after, glyphs) if g.any()]
    assert len(changed) == 20 and min(changed) > 40, changed  # every subtitled frame's glyphs filled
