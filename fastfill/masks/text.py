"""Masks that find themselves: text (captions, subtitles, watermarks, signs) found by PaddleOCR's
PP-OCRv4 detection model, as shipped in the ``rapidocr-onnxruntime`` wheel (extra ``text``).

Only two ONNX files of that wheel are used (the detector, and its recognizer to check the boxes),
on fastfill's own ONNX Runtime session options (threads, no spinning; engines/onnxruntime.py):
the package's Python code (and its opencv-python, pyclipper, shapely) is never imported. Nothing
is downloaded.

::

    image (RGB) ── region crop ── resize (multiple of 32) ── BGR, (x/255 - 0.5) / 0.5 ── DB net
      ── probability map ── DB post-process: threshold, contours, rotated boxes, score filter,
         unclip by the DB ratio ── boxes ── each read by the recognizer, kept when it reads as text
      ── polygons (image coordinates) ── filled, grown by a margin ── mask

The pre- and post-processing follow rapidocr's own ``config.yaml`` (BGR, mean / std 0.5, DB
threshold 0.3, box score 0.5, unclip ratio 1.6, a 2x2 dilation of the bitmap) with one change:
the input's longest side is capped (``max_side``, 960 as PaddleOCR's own default), so that a
1080p frame costs a 960-wide pass (about 0.1 s on 2 cores) rather than a full-size one. Each box
is then read by the wheel's PP-OCRv4 recognizer and kept only when it reads as text, as PP-OCR's
own pipeline does (``verify``; see :class:`TextDetector`). Each box is grown by a margin (a tenth
of its height, at least 2 px): DB's boxes end at the glyphs' anti-aliased rims.

In video, :class:`TextTrack` runs the detector every N frames; a frame in between gets the text
of the detections on either side that it still shows (text that stays put keeps its mask, text
that comes or goes in between is covered on the frames that show it).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import EngineError, InputError

# The wheel that ships the model (used with --no-deps: its own dependencies are not needed) and
# the detection model inside it.
MODEL_PACKAGE = "rapidocr_onnxruntime"
MODEL_FILE = "models/ch_PP-OCRv4_det_infer.onnx"
REC_FILE = "models/ch_PP-OCRv4_rec_infer.onnx"  # the recognizer: only to check boxes (verify)
INSTALL = ("pip install 'fastfill[text]' && pip install --no-deps --ignore-requires-python "
           "'rapidocr-onnxruntime==1.4.4' (the PP-OCR model's wheel; --no-deps: its opencv-python "
           "would replace OpenCV contrib; it says Python < 3.13, and only its model files are read)")

# rapidocr 1.4.4's config.yaml (Det): normalization and the DB post-process.
MEAN, STD = 0.5, 0.5
LIMIT_SIDE = 736  # a shorter side below this is scaled up to it (rapidocr's limit_type "min")
MAX_SIDE = 960  # the longest side is scaled down to this (PaddleOCR's det_limit_side_len)
DB_THRESH, BOX_THRESH, UNCLIP_RATIO, MIN_SIZE, MAX_CANDIDATES = 0.3, 0.5, 1.6, 3, 1000
# ... its recognizer (Rec: rec_img_shape 3x48x320; Global: text_score) and the widest line read.
REC_HEIGHT, REC_MIN_WIDTH, REC_MAX_WIDTH, TEXT_SCORE = 48, 320, 3200, 0.5

# Named regions (x0, y0, x1, y1 as fractions of the frame): where subtitles and tickers sit.
REGIONS = {"full": (0.0, 0.0, 1.0, 1.0), "bottom": (0.0, 2 / 3, 1.0, 1.0),
           "top": (0.0, 0.0, 1.0, 1 / 3)}


def parse_region(text) -> tuple[float, float, float, float]:
    """``--text-region``: a name of :data:`REGIONS` or ``x0,y0,x1,y1`` in fractions of the
    frame (0..1, x0 < x1, y0 < y1); ValueError (InputError) otherwise."""
    if isinstance(text, tuple):
        values = text
    elif str(text).strip().lower() in REGIONS:
        return REGIONS[str(text).strip().lower()]
    else:
        try:
            values = tuple(float(v) for v in str(text).split(","))
        except ValueError:
            values = ()
    if len(values) != 4:
        raise InputError(f"region {text!r}: give one of {', '.join(REGIONS)} or x0,y0,x1,y1 in "
                         "fractions of the frame (e.g. 0,0.75,1,1)")
    x0, y0, x1, y1 = values
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise InputError(f"region {text!r}: need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return (float(x0), float(y0), float(x1), float(y1))


def model_path(name: str = MODEL_FILE) -> Path:
    """The detection model (or another file ``name``) of the installed ``rapidocr-onnxruntime``
    wheel, found without importing the package (its ``__init__`` imports dependencies fastfill
    does not install); EngineError with the install line when it is not there."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        p = Path(folder) / name
        if p.is_file():
            return p
    raise EngineError(f"text masks need the PP-OCR detection model: {INSTALL}")


def _import_cv2():
    try:
        import cv2
    except ImportError:
        raise EngineError(f"text masks need OpenCV: {INSTALL}") from None
    return cv2


def input_size(h: int, w: int, limit_side: int = LIMIT_SIDE, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The net's input (height, width) for an image of ``h`` x ``w``: a short side under
    ``limit_side`` scaled up to it, then a long side over ``max_side`` scaled down to it, each
    rounded to a multiple of 32 (the net's stride), at least 32."""
    ratio = limit_side / min(h, w) if min(h, w) < limit_side else 1.0
    if max(h, w) * ratio > max_side:
        ratio = max_side / max(h, w)
    return (max(32, int(round(h * ratio / 32)) * 32), max(32, int(round(w * ratio / 32)) * 32))


@dataclass(frozen=True)
class TextOptions:
    """How text masks are made (the ``--text*`` flags): picklable, one per run."""

    region: tuple[float, float, float, float] | None = None  # fractions; None = the whole frame
    margin: float = 0.1  # grow each box by this fraction of its height (its glyphs' rims)
    min_margin: int = 2  # ... and by at least this many pixels
    box_thresh: float = BOX_THRESH  # a box's mean probability must reach it
    verify: bool = True  # keep only the boxes the recognizer reads as text ...
    text_score: float = TEXT_SCORE  # ... with at least this mean confidence
    max_side: int = MAX_SIDE
    every: int = 10  # video: detect on every N-th frame (TextTrack)


class TextDetector:
    """PP-OCRv4's text detector (DB) on ONNX Runtime: ``detect(rgb) -> bool [H, W]`` (True =
    text, to fill) and ``polygons(rgb) -> [int32 [4, 2] (x, y)]``. The models are loaded once;
    ``detect`` may be called from several threads at once (an ORT session is thread-safe).

    With ``options.verify`` (the default), each box is read by PP-OCRv4's recognizer from the
    same wheel and kept only when it reads as text (``text_score``, as PP-OCR's own pipeline
    drops boxes): the detector alone takes e.g. a spoon's highlight in examples/images/coffee.jpg
    for text, with a box score (0.75) and a size no threshold can tell from real text.

    ``threads``: ONNX Runtime's intra-op threads (None: its choice). EngineError (with the line
    that installs them) when OpenCV or the model's wheel is missing."""

    def __init__(self, options: TextOptions = TextOptions(), *, model: str | Path | None = None,
                 threads: int | None = None):
        self.cv2 = _import_cv2()
        self.options = options
        self.path = Path(model) if model is not None else model_path()
        self.session = _session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.reader = None
        if options.verify:
            # (a model given by path: its recognizer beside it, under the wheel's name)
            rec = (self.path.parent / Path(REC_FILE).name if model is not None
                   else model_path(REC_FILE))
            self.reader = _session(rec, threads)

    def close(self) -> None:
        """Release the sessions (the detector is unusable afterwards)."""
        self.session = self.reader = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> str:
        """One line: what finds the text, for a run's header."""
        r = self.options.region
        where = "" if r is None else " in region " + ",".join(f"{v:g}" for v in r)
        read = ", boxes checked by the recognizer" if self.reader is not None else ""
        return f"text masks: PP-OCRv4 detection (onnxruntime{read}){where}"

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """The DB net's text probability map for ``rgb`` (uint8 [H, W, 3]), float32 at the net's
        input size (see :func:`input_size`)."""
        h, w = rgb.shape[:2]
        ih, iw = input_size(h, w, max_side=self.options.max_side)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # PP-OCR was trained on OpenCV's BGR
        x = self.cv2.resize(bgr, (iw, ih)).astype(np.float32)
        x = (x * np.float32(1 / 255) - np.float32(MEAN)) / np.float32(STD)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        return self.session.run(None, {self.input_name: x})[0][0, 0]

    def boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """The text boxes of ``rgb`` in its pixel coordinates, before the margin: ``(float32
        [4, 2] corners (x, y), short side in px)``, inside the region when the options set one,
        each read as text when ``verify``."""
        rgb = _check_rgb(rgb)
        x0, y0, crop = _crop(rgb, self.options.region)
        if crop is None:
            return []
        found = db_boxes(self.cv2, self.probability(crop), crop.shape[:2],
                         box_thresh=self.options.box_thresh)
        if self.reader is not None:
            found = [b for b in found if self.reads(crop, b[0]) >= self.options.text_score]
        return [(box + np.float32((x0, y0)), short) for box, short in found]

    def reads(self, rgb: np.ndarray, corners: np.ndarray) -> float:
        """How surely the recognizer reads the box ``corners`` of ``rgb`` as text: the mean
        confidence of the characters CTC decodes (0 when it reads none). rapidocr's recognizer
        input: the box warped upright (turned when it stands), 48 px high, BGR, (x/255 - 0.5)/0.5,
        padded on the right to at least 320 px."""
        line = _upright(self.cv2, rgb, corners)
        h, w = line.shape[:2]
        rw = int(min(REC_MAX_WIDTH, max(8, np.ceil(REC_HEIGHT * w / max(h, 1)))))
        x = self.cv2.resize(np.ascontiguousarray(line[:, :, ::-1]), (rw, REC_HEIGHT)).astype(np.float32)
        x = (x * np.float32(1 / 255) - np.float32(MEAN)) / np.float32(STD)
        padded = np.zeros((1, 3, REC_HEIGHT, max(rw, REC_MIN_WIDTH)), np.float32)
        padded[0, :, :, :rw] = x.transpose(2, 0, 1)
        probs = self.reader.run(None, {self.reader.get_inputs()[0].name: padded})[0][0]
        best, conf = probs.argmax(1), probs.max(1)
        # CTC: a character is a run of one non-blank class (class 0 is the blank)
        chars = (best != 0) & np.r_[True, best[1:] != best[:-1]]
        return float(conf[chars].mean()) if chars.any() else 0.0

    def polygons(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The text boxes of ``rgb`` (:meth:`boxes`) as int32 [4, 2] (x, y) corners."""
        return [np.rint(box).astype(np.int32) for box, _ in self.boxes(rgb)]

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """The text mask of ``rgb``: bool [H, W], each box filled and grown by the margin
        (``options.margin`` of its short side, at least ``min_margin`` px), kept to the region."""
        o = self.options
        mask = np.zeros(np.shape(rgb)[:2], np.uint8)
        for box, short in self.boxes(rgb):
            poly = _grown(self.cv2, box, max(float(o.min_margin), o.margin * short))
            self.cv2.fillPoly(mask, [poly], 1)
        if o.region is not None:  # the margin never leaves the region
            x0, y0, crop = _crop(rgb, o.region)
            keep = np.zeros_like(mask)
            if crop is not None:
                keep[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = 1
            mask &= keep
        return mask.astype(bool)

    __call__ = detect


def _upright(cv2, rgb: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The pixels of a rotated box, warped to an upright rectangle; a box that stands (1.5 times
    as high as wide) is turned to lie, as rapidocr's ``get_rotate_crop_image`` does."""
    c = np.asarray(corners, np.float32)
    total, diff = c.sum(1), c[:, 1] - c[:, 0]
    tl, br, tr, bl = c[total.argmin()], c[total.argmax()], c[diff.argmin()], c[diff.argmax()]
    w = max(1, int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))))
    h = max(1, int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))))
    m = cv2.getPerspectiveTransform(np.float32([tl, tr, br, bl]),
                                    np.float32([[0, 0], [w, 0], [w, h], [0, h]]))
    out = cv2.warpPerspective(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.rot90(out) if h >= 1.5 * w else out


def _session(path: Path, threads: int | None):
    """An ONNX Runtime CPU session with fastfill's settings (engines/onnxruntime.py): graph
    optimizations on, ``threads`` intra-op threads and one inter-op, no spinning (decode, the
    fill and encode share the cores right after each call), quiet."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/... types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EngineError(f"{path}: onnxruntime cannot load the text detector: {msg}") from None


def _check_rgb(rgb) -> np.ndarray:
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
        raise InputError(f"text detection takes a uint8 [H, W, 3] RGB image, got {a.dtype} {a.shape}")
    return a


def _crop(rgb: np.ndarray, region) -> tuple[int, int, np.ndarray | None]:
    """(x0, y0, the region's pixels), None when the region holds no pixel at this size."""
    if region is None:
        return 0, 0, rgb
    h, w = rgb.shape[:2]
    x0, y0 = int(round(region[0] * w)), int(round(region[1] * h))
    x1, y1 = int(round(region[2] * w)), int(round(region[3] * h))
    if x1 <= x0 or y1 <= y0:
        return x0, y0, None
    return x0, y0, rgb[y0:y1, x0:x1]


def db_boxes(cv2, prob: np.ndarray, shape: tuple[int, int], *, thresh: float = DB_THRESH,
             box_thresh: float = BOX_THRESH, unclip_ratio: float = UNCLIP_RATIO,
             min_size: float = MIN_SIZE, max_candidates: int = MAX_CANDIDATES) -> list:
    """DB's post-process (rapidocr's ``DBPostProcess``, fast score mode): the map ``prob``
    thresholded at ``thresh`` and dilated 2x2; per contour its rotated rectangle, kept when its
    short side reaches ``min_size`` and its mean probability ``box_thresh``; grown by DB's unclip
    distance (area * ratio / perimeter) to the text's full extent; scaled to ``shape`` (h, w).
    Returns ``[(float32 [4, 2] corners (x, y), short side in pixels)]``."""
    ph, pw = prob.shape
    bitmap = cv2.dilate((prob > thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)[-2]
    sx, sy = shape[1] / pw, shape[0] / ph
    out = []
    for contour in contours[:max_candidates]:
        (cx, cy), (bw, bh), angle = cv2.minAreaRect(contour)
        if min(bw, bh) < min_size:
            continue
        corners = cv2.boxPoints(((cx, cy), (bw, bh), angle))
        if _box_score(cv2, prob, corners) < box_thresh:
            continue
        # DB trains on kernels shrunk by D = A(1 - 0.4^2) / L; unclip grows the box back. The
        # offset of a rectangle by d (round joins, as pyclipper's), then its minAreaRect, is the
        # rectangle grown by d on every side: computed directly, without pyclipper.
        d = bw * bh * unclip_ratio / (2 * (bw + bh))
        bw, bh = bw + 2 * d, bh + 2 * d
        if min(bw, bh) < min_size + 2:
            continue
        corners = cv2.boxPoints(((cx, cy), (bw, bh), angle)) * np.float32((sx, sy))
        corners[:, 0] = np.clip(corners[:, 0], 0, shape[1])
        corners[:, 1] = np.clip(corners[:, 1], 0, shape[0])
        sides = np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1)  # in image pixels
        short = float(sides.min())
        out.append((corners.astype(np.float32), short))
    return out


def _box_score(cv2, prob: np.ndarray, corners: np.ndarray) -> float:
    """The mean probability inside the box (DB's "fast" score), on its bounding crop."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(corners[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()), 0, h - 1))
    m = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(m, [(corners - (x0, y0)).astype(np.int32)], 1)
    return cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], m)[0]


def _grown(cv2, corners: np.ndarray, grow: float) -> np.ndarray:
    """The rotated box through ``corners`` grown by ``grow`` px on every side, int32 [4, 2]."""
    (cx, cy), (bw, bh), angle = cv2.minAreaRect(corners.astype(np.float32))
    return np.rint(cv2.boxPoints(((cx, cy), (bw + 2 * grow, bh + 2 * grow), angle))).astype(np.int32)


@functools.lru_cache(maxsize=4)
def _shared(options: TextOptions) -> TextDetector:
    return TextDetector(options)


def text_mask(rgb: np.ndarray, options: TextOptions = TextOptions(), *,
              detector: TextDetector | None = None) -> np.ndarray:
    """The text mask of an image (uint8 [H, W, 3] RGB): bool [H, W], True = text to fill.

    Without ``detector``, one shared detector per ``options`` is loaded on first use and kept."""
    return (detector or _shared(options)).detect(rgb)


class TextTrack:
    """Text masks for a stream of frames, the detector run on every ``every``-th frame (and on
    the last one).

    A frame between two detections gets the boxes both found, and each box only one of them
    found (text that appears or goes in between) unless the frame, inside that box, clearly
    still looks like the detection's frame without it (its mean difference from that frame
    under half its difference from the other): text that stays put keeps its mask, text that
    comes or goes between two detections is covered on the frames that show it, and the frames
    that do not show it keep their pixels. Text that moves is covered where the two detections
    saw it, not in between (a small ``every`` for tickers). Up to ``every`` frames wait for the
    next detection (memory: that many frames). ``detections`` and ``seconds`` measure the
    detector's share."""

    def __init__(self, detector, every: int = 10):
        if every < 1:
            raise InputError(f"text detection every N frames needs N >= 1, got {every}")
        self.detector, self.every = detector, int(every)
        self.cv2 = _import_cv2()
        self.detections = 0
        self.seconds = 0.0
        # quarter turns (counter-clockwise, as np.rot90 counts them) from a stored frame to the
        # frame as displayed (a phone's clip stored sideways): text is looked for, and a region
        # read, on the picture as it is seen; the masks come back in the stored orientation
        self.turns = 0

    def _detect(self, rgb) -> tuple[np.ndarray, np.ndarray]:
        import time

        t0 = time.perf_counter()
        k = self.turns % 4
        if k:
            found = np.ascontiguousarray(np.rot90(np.asarray(self.detector(
                np.ascontiguousarray(np.rot90(rgb, k))), bool), -k))
        else:
            found = np.asarray(self.detector(rgb), bool)
        self.detections += 1
        self.seconds += time.perf_counter() - t0
        return rgb, found

    def masks(self, frames: Iterable) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
        """``frames``: (tag, rgb) in order -> (tag, rgb, text mask) in the same order."""
        waiting: list = []  # the frames since the last detection
        last = None  # (rgb, mask) of the last detection
        for i, (tag, rgb) in enumerate(frames):
            if i % self.every:
                waiting.append((tag, rgb))
                continue
            now = self._detect(rgb)
            yield from self._between(last, now, waiting)
            # (the frame goes on to be filled, in place where the caller owns it: the frames up
            # to the next detection are compared with its pixels as detected, so a copy is kept)
            waiting, last = [], (np.array(rgb, copy=True), now[1])
            yield tag, rgb, now[1]
        if waiting:  # the clip's end: its last frame is detected too (text that came since)
            tag, rgb = waiting.pop()
            now = self._detect(rgb)
            yield from self._between(last, now, waiting)
            yield tag, rgb, now[1]

    def _between(self, before, after, frames: list) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
        """The frames between two detections, each with the text it shows (see the class)."""
        if not frames:
            return
        (fa, ma), (fb, mb) = before, after
        both = ma & mb
        changed = [(box, part, True) for box, part in _components(self.cv2, ma & ~mb)]
        changed += [(box, part, False) for box, part in _components(self.cv2, mb & ~ma)]
        for tag, rgb in frames:
            m = both.copy()
            for box, part, in_before in changed:
                d_a, d_b = (_difference(rgb, f, box, part) for f in (fa, fb))
                without, with_ = (d_b, d_a) if in_before else (d_a, d_b)
                if not without < 0.5 * with_:
                    m[box] |= part
            yield tag, rgb, m


def _components(cv2, mask: np.ndarray) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """The connected parts of ``mask``: (bounding box as slices, the part's pixels in it)."""
    if not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for k in range(1, n):
        x, y, w, h = stats[k, :4]
        box = (slice(y, y + h), slice(x, x + w))
        out.append((box, labels[box] == k))
    return out


def _difference(a: np.ndarray, b: np.ndarray, box, part: np.ndarray) -> float:
    """Mean absolute difference of two frames over ``part`` of ``box``."""
    d = np.abs(a[box].astype(np.int16) - b[box].astype(np.int16)).sum(axis=2)
    return float(d[part].mean())


__all__ = ["TextDetector", "TextOptions", "TextTrack", "text_mask", "parse_region", "model_path",
           "input_size", "db_boxes", "REGIONS", "INSTALL", "MODEL_FILE"]
