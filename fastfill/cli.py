"""The `fastfill` command line: click commands that turn options into calls of the public API
(options several commands share are built once, here).

Exit codes (docs/ARCHITECTURE.md, Errors and exit codes): 0 all done, 1 some inputs failed,
2 usage or engine error.
Known errors (FastfillError) print one line; anything else is an internal error, also one line
and exit 2. Set FASTFILL_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path

import click

from .engines import DEVICES, MODEL_BACKENDS, parse_device
from .errors import FastfillError, printable
from .inpainter import MAX_BATCH, MAX_THREADS, engine_line, model_name
from .files.runner import MAX_JOBS
from .files.codecs import FORMAT_ALIASES, FORMAT_SUFFIX, MAX_DILATE, PILLOW_MAX_PIXELS
from .video.propagate import DEFAULT_WINDOW, MAX_WINDOW
from .video.stream import PRESETS
from .serve import DEFAULT_MAX_FILL_PIXELS

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastfill")
def cli():
    """fastfill: fill the masked regions of images (object removal)."""


@cli.command()
def info():
    """Print the build of the native kernels and the installed back-ends."""
    from . import ops

    click.echo(f"fastfill {__import__('fastfill').__version__}")
    b = ops.build_info()
    click.echo(f"native kernels: {', '.join(b['backends'])}"
               f" (OpenMP: {'yes, ' + str(b['omp_max_threads']) + ' threads' if b['openmp'] else 'no'})")
    if "cuda" in b["backends"]:
        click.echo(f"CUDA runtime: {b['cuda_runtime_status']}")
    from importlib import metadata

    # Versions from the installed distributions: importing torch or TensorRT just to print a
    # version would take seconds.
    for dist in ("numpy", "onnxruntime", "onnxruntime-gpu", "pillow", "torch", "onnx", "tensorrt",
                 "openvino", "av", "ray"):
        try:
            click.echo(f"{dist}: {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            click.echo(f"{dist}: not installed")
    try:
        import onnxruntime as ort

        click.echo(f"onnxruntime providers: {', '.join(ort.get_available_providers())}")
    except ImportError:  # pragma: no cover - a core dependency
        pass
    from .engines import default_model_path, read_meta, read_onnx_metadata

    path = default_model_path()
    if path.exists():
        try:  # (a damaged model is one line of the report, not the report's end)
            m = read_meta(path)
            click.echo(f"default model: {path.name} ({m.kind}, prefill {m.fill}, "
                       f"precision {read_onnx_metadata(path).get('fastfill.precision', 'fp32')})")
        except FastfillError as e:
            click.echo(f"default model: {path.name}: {e}")
            return
        try:
            from .engines import load_engine
            from .inpainter import Inpainter

            eng = load_engine(path)
            where = f"{eng.selection}, running on {eng.runs_on}"
            eng.close()
            with Inpainter() as inp:  # what run, video, serve and bench run with no model flags
                runs = f"{inp.engine.selection or inp.engine.name}, running on {inp.engine.runs_on}"
        except FastfillError as e:
            where = runs = f"no back-end loads it: {e}"
        click.echo(f"without --engine/--backend/--device/--threads/--method: {runs}")
        click.echo(f"the model on a back-end (--backend auto): {where}")


# -- run / video (the runtime; see fastfill.files, fastfill.inpainter, fastfill.video) -------------

# One table each, shared with the library (both modules import without onnxruntime or torch).
_OUT_FORMATS = [f.lower() for f in (*FORMAT_SUFFIX, *FORMAT_ALIASES)]
_BACKENDS = ["auto", *MODEL_BACKENDS]
# Upper bounds of the resource flags: beyond them a typo exhausts the machine (100000 threads
# filled its process table) rather than doing more work.
MAX_WORKERS = 1024


class _Finite:
    """A click float type that also refuses nan and infinity: nan passes every bound (a timeout
    of nan bounded nothing), and neither can be written as JSON."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return v


class _FloatRange(_Finite, click.FloatRange):
    """click's FloatRange, finite."""


class _FiniteFloat(_Finite, click.types.FloatParamType):
    """click's float, finite."""


def _given(ctx: click.Context) -> set[str]:
    """The parameters the command line named (not defaults nor the environment)."""
    return {n for n in ctx.params
            if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}


def _mask_flags_need_masks(has_masks: bool, what: str) -> None:
    """--invert, --threshold and --resize-mask read mask files: with none (--text alone) they
    would be dropped without a word (--dilate applies to the text's mask too)."""
    if has_masks:
        return
    given = _given(click.get_current_context())
    for name in ("invert", "threshold", "resize_mask"):
        if name in given:
            raise click.UsageError(f"--{name.replace('_', '-')} reads mask files: give {what}, or drop it")


class _DeviceType(click.ParamType):
    """``--device``, parsed once into a :class:`fastfill.engines.Device` (what the loaders take)."""

    name = "device"

    def convert(self, value, param, ctx):
        try:
            return parse_device(value)
        except FastfillError as e:
            self.fail(str(e), param, ctx)


_DEVICE = _DeviceType()
_DEVICE_CHOICES = f"{', '.join(DEVICES[1:])} or {DEVICES[0]}"


def _engine_options(f):
    """--engine / --backend / --threads / --batch-size / --no-roi, shared by run and video."""
    f = click.option("--no-roi", is_flag=True,
                     help="Run the model on whole frames instead of crops around each hole.")(f)
    f = click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=4, show_default=True,
                     help="Images or crops of the same size per model call.")(f)
    f = click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None,
                     help="Engine threads (default: the back-end's choice).")(f)
    f = click.option("--backend", type=click.Choice(_BACKENDS), default=None,
                     help="Back-end for the model file [default: auto: for .onnx both OpenVINO (when "
                          "installed) and ONNX Runtime are timed at the first input of each size and "
                          "the faster is kept; .plan: TensorRT; .safetensors (a training checkpoint): "
                          "PyTorch].")(f)
    f = click.option("--device", type=_DEVICE, default=None, metavar="DEV",
                     help=f"{_DEVICE_CHOICES} [default: auto]; a device that is not there is an "
                          "error, never a silent CPU run.")(f)
    f = click.option("--engine", "engine_path", type=click.Path(dir_okay=False), default=None,
                     help="Model file (.onnx, .plan or a .safetensors checkpoint); default: the "
                          "default fill (the shipped model adds nothing to its prefill, so no net "
                          "runs unless a model flag is given).")(f)
    return f


def _mask_options(f):
    """--invert / --threshold / --resize-mask / --dilate, shared by run and video."""
    f = click.option("--dilate", type=click.IntRange(0, MAX_DILATE), default=0, metavar="PX",
                     help="Grow every hole by PX pixels.")(f)
    f = click.option("--resize-mask", is_flag=True,
                     help="Scale masks of another size to the image (or frame).")(f)
    f = click.option("--threshold", type=click.IntRange(1, 255), default=128, show_default=True,
                     help="Grey level from which a mask pixel means fill.")(f)
    f = click.option("--invert", is_flag=True, help="Black = fill instead of white = fill.")(f)
    return f


def _method_option(f):
    """--method: a classical fill instead of a model (the choices are the fill table's)."""
    from .fills import FILLS

    methods = "; ".join(f"{k}: {v.summary}" for k, v in FILLS.items())
    return click.option("--method", type=click.Choice(list(FILLS)), default=None,
                        help=f"No model: a classical fill ({methods}).")(f)


def _batch_options(jobs_help: str, refused: str):
    """-j/--jobs, -q/--quiet and --max-pixels, for the commands that walk a folder of images."""
    def add(f):
        f = click.option("--max-pixels", type=click.IntRange(1, PILLOW_MAX_PIXELS), default=None,
                         metavar="N", help=f"Refuse {refused} over N pixels, from their header "
                                           f"[default: 50000000; at most {PILLOW_MAX_PIXELS}, "
                                           "past which Pillow opens no image].")(f)
        f = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(f)
        return click.option("-j", "--jobs", type=click.IntRange(1, MAX_JOBS),
                            default=min(4, os.cpu_count() or 1), show_default=True,
                            help=jobs_help)(f)
    return add


def _text_options(every: bool = False, what: str = "Fill the text found in each image or frame, "
                  "united with the mask when one is given, then --dilate"):
    """--text / --text-region / --text-keep-unread (and, for video, --text-every): masks that
    find themselves. ``what``: what --text does, for its help."""
    def add(f):
        if every:
            f = click.option("--text-every", type=click.IntRange(1, 300), default=10,
                             show_default=True, metavar="N",
                             help="With --text: detect on every N-th frame (and the last); a "
                                  "frame in between gets the text of either detection it still "
                                  "shows (memory: up to N frames wait for the next detection).")(f)
        f = click.option("--text-keep-unread", is_flag=True,
                         help="With --text: keep the boxes the recognizer does not read as text "
                              "(stylised logos, handwriting; more false detections).")(f)
        f = click.option("--text-region", default=None, metavar="REGION",
                         help="With --text: look only in REGION: bottom (the lower third, "
                              "subtitles), top, full, or x0,y0,x1,y1 in fractions of the frame "
                              "(e.g. 0,0.75,1,1) [default: full, the whole frame].")(f)
        return click.option("--text", "text", is_flag=True,
                            help=f"{what} (PP-OCR's detector; pip install 'fastfill[text]').")(f)
    return add


def _text_detector(text: bool, region, keep_unread: bool = False, every: int = 10):
    """The text detector the --text flags ask for (None without --text): loaded now, so that a
    missing extra is one line (exit 2) before anything is made."""
    ctx = click.get_current_context()
    extra = [n for n in ("text_region", "text_keep_unread", "text_every")
             if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
    if not text:
        if extra:
            raise click.UsageError(f"--{extra[0].replace('_', '-')} needs --text")
        return None
    from .masks.text import TextDetector, TextOptions, parse_region

    try:
        r = parse_region(region) if region is not None else None  # ("" is refused, not "all")
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param_hint="--text-region") from None
    return TextDetector(TextOptions(region=r, verify=not keep_unread, every=every))


def _check_method(method, engine_path, backend, device, threads) -> None:
    """--method runs no model: the flags that choose or tune one are usage errors with it."""
    if method and (engine_path or backend or device):
        raise click.UsageError("--method replaces the model: drop --engine/--backend/--device")
    if method and threads is not None:
        raise click.UsageError(f"--threads sets a model's threads; --method {method} runs none "
                               "(the fills take OpenMP's: OMP_NUM_THREADS)")


def _inpainter(engine_path, backend, threads, batch_size, no_roi, method=None, device=None):
    from .inpainter import Inpainter

    _check_method(method, engine_path, backend, device, threads)
    return Inpainter(engine_path, backend=backend, threads=threads, batch_size=batch_size,
                     roi=not no_roi, device=device, method=method)


class _PathOrURI(click.Path):
    """An existing local path, or a URI (s3://..., gs://..., file://...) left for --ray to open."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "://" in value:
            return value
        return super().convert(value, param, ctx)


def _ray_options(f):
    """--ray / --address / --concurrency / --gpus-per-worker (fastfill.files.ray; extra `ray`)."""
    f = click.option("--gpus-per-worker", type=_FloatRange(0, 64), default=0,
                     show_default=True, help="With --ray: GPUs per model worker.")(f)
    f = click.option("--concurrency", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
                     help="With --ray: model workers (actors), each loads the engine once.")(f)
    f = click.option("--address", default=None, metavar="ADDR",
                     help="With --ray: the Ray cluster to join (implies --ray; default: "
                          "RAY_ADDRESS or a local Ray on this machine).")(f)
    f = click.option("--ray", "use_ray", is_flag=True,
                     help="Run on Ray Data (pip install 'fastfill[ray]'); IMAGES, MASKS and -o "
                          "may then be URIs such as s3://bucket/x.")(f)
    return f


def _check_ray_flags(with_ray) -> None:
    """Flags of one mode given in the other are usage errors, not silently ignored; a GPU asked
    for under Ray needs GPUs for the workers (Ray gives an actor none unless asked)."""
    ctx = click.get_current_context()
    p = ctx.params
    wants_gpu = (parse_device(p.get("device")).gpu
                 or str(p.get("engine_path") or "").lower().endswith(".plan"))
    if with_ray and wants_gpu and not p.get("gpus_per_worker"):
        raise click.UsageError("a GPU (--device cuda/tensorrt or a .plan) with --ray needs "
                               "--gpus-per-worker (Ray gives the model workers no GPU otherwise)")

    def given(name):
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    if with_ray and given("jobs"):
        raise click.UsageError("-j/--jobs sets the local run's decode/encode threads; with --ray, Ray "
                               "schedules them (--concurrency sets the model workers)")
    if not with_ray:
        for name, flag in (("concurrency", "--concurrency"), ("gpus_per_worker", "--gpus-per-worker")):
            if given(name):
                raise click.UsageError(f"{flag} needs --ray (the local run has one model; -j sets its "
                                       "decode/encode threads)")


@cli.command()
@click.argument("images", type=_PathOrURI(exists=True))
@click.argument("masks", type=_PathOrURI(exists=True), required=False)
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output folder (mirrors IMAGES), or a file when IMAGES is one file.")
@_engine_options
@_mask_options
@_text_options()
@click.option("--format", "fmt", type=click.Choice(_OUT_FORMATS, case_sensitive=False),
              default=None, help="Output format (default: the input's).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@_batch_options("Decode/encode threads.", "images (and masks)")
@_method_option
@_ray_options
def run(images, masks, output, engine_path, backend, device, threads, batch_size, no_roi, invert,
        threshold, resize_mask, dilate, text, text_region, text_keep_unread, fmt, quality, overwrite,
        jobs, quiet, max_pixels, method, use_ray, address, concurrency, gpus_per_worker):
    """Fill the masked regions of IMAGES (a file or folder) with MASKS (a file or folder).

    Images pair with masks by relative path and stem (images/a/x.jpg <-> masks/a/x.png); a
    single MASK file applies to every image. White = fill. With --text, MASKS may be left out:
    the text found in each image is filled.
    """
    from .files import runner

    _check_ray_flags(use_ray or address)
    if text and (use_ray or address):
        raise click.UsageError("--text does not run under --ray yet: write the masks first "
                               "(fastfill mask --text IMAGES -o MASKS) and pass them as MASKS")
    detector = _text_detector(text, text_region, text_keep_unread)
    if masks is None and not text:
        raise click.UsageError("give MASKS, or --text to fill the text found in the images")
    _mask_flags_need_masks(masks is not None, "MASKS")
    opts = runner.FileOptions(invert=invert, threshold=threshold, resize_mask=resize_mask, dilate=dilate,
                              max_pixels=max_pixels, quality=quality, overwrite=overwrite)
    if use_ray or address:
        from .files.ray import RayExecutor

        _check_method(method, engine_path, backend, device, threads)
        executor = RayExecutor(engine_path, method=method, backend=backend, device=device, threads=threads,
                               roi=not no_roi, batch_size=batch_size, address=address,
                               concurrency=concurrency, gpus_per_worker=gpus_per_worker,
                               progress=False if quiet else None)
    elif "://" in images or "://" in (masks or "") or "://" in output:
        raise click.UsageError("URIs (s3://..., file://...) need --ray")
    else:
        executor = runner.LocalExecutor(
            lambda: _inpainter(engine_path, backend, threads, batch_size, no_roi, method, device),
            jobs=jobs, text=detector)
    summary = runner.run(images, masks, output, executor, opts, fmt=fmt,
                         progress=False if quiet else None,
                         echo=_say_err)
    return _finished(summary)


def _finished(summary) -> int:
    """The summary first; then, if the failures file could not be written, why (the run's
    outcome stands: its exit code still says whether files failed)."""
    _say(summary.line())
    if summary.report_error:
        _say_err(f"{'error' if summary.failed else 'warning'}: {summary.report_error}")
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def _say(message: str, err: bool = False) -> None:
    """One line to stdout (or stderr) that outlives its reader: a closed pipe or a full disk sends
    the rest of the stream to /dev/null instead of ending the run (or turning a run that did
    everything into a failure at exit, when Python flushes the stream)."""
    try:
        click.echo(message, err=err)
    except OSError:
        stream = sys.stderr if err else sys.stdout
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):  # (not a file: nothing to flush at exit)
            pass


def _say_err(message: str) -> None:
    _say(message, err=True)


@cli.command()
@click.argument("video_in", metavar="IN", type=click.Path(exists=True, dir_okay=False))
@click.option("--mask", "mask", default=None, type=click.Path(exists=True),
              help="One mask for every frame, or a folder of per-frame masks (frame_0001.png ...); "
                   "may be left out with --text.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output video file (its suffix picks the container).")
@_engine_options
@click.option("--first-index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Frame number of the first frame in mask file names (1 for ffmpeg's %04d).")
@_mask_options
@_text_options(every=True)
@_method_option
@click.option("--codec", default=None, help="Video codec (default: the input's).")
@click.option("--crf", type=click.IntRange(0, 63), default=None,
              help="Quality for x264/x265 (0-51), VP8/VP9/AV1 (0-63); lower = better "
                   "[default: the input's bit rate].")
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help="x264/x265 speed preset: faster encodes, larger files [default: the "
                   "encoder's, medium].")
@click.option("--propagate/--no-propagate", default=True, show_default=True,
              help="Fill each hole pixel first from the nearest frame that shows the same scene "
                   "point (camera motion estimated outside the holes; never across a cut); the "
                   "fill only does the rest. A static shot with a static mask is filled as without.")
@click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=DEFAULT_WINDOW,
              show_default=True, metavar="N",
              help="With --propagate: frames each side it looks at (output waits N frames; "
                   "memory: 2N+2 frames).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def video(video_in, mask, output, engine_path, backend, device, threads, batch_size, no_roi, first_index,
          invert, threshold, resize_mask, dilate, text, text_region, text_keep_unread, text_every, method,
          codec, crf, preset, propagate, window, overwrite, quiet):
    """Fill the masked region of every frame of the video IN (audio is copied).

    With a folder of per-frame masks, a frame without a mask file is copied unchanged; when no
    mask file matches any frame (check --first-index), or IN cannot be used (not a video, cut
    short), the video fails (exit 1, nothing written).
    """
    from .video import stream as video_mod

    detector = _text_detector(text, text_region, text_keep_unread, text_every)
    given = _given(click.get_current_context())
    if "window" in given and not propagate:  # (flags of one mode given in the other)
        raise click.UsageError("--window is propagation's, and --no-propagate turns it off: drop one")
    if "first_index" in given and not (mask and os.path.isdir(mask)):
        raise click.UsageError("--first-index numbers a folder of per-frame masks (--mask DIR)")
    if mask is None and not text:
        raise click.UsageError("give --mask, or --text to fill the text found in the frames")
    _mask_flags_need_masks(mask is not None, "--mask")
    try:
        with _inpainter(engine_path, backend, threads, batch_size, no_roi, method, device) as inp:
            stats = video_mod.inpaint_video(
                inp, video_in, output, mask, first_index=first_index, invert=invert,
                threshold=threshold, resize_mask=resize_mask, dilate=dilate, codec=codec,
                crf=crf, preset=preset, overwrite=overwrite, progress=False if quiet else None,
                text=detector,
                propagate=propagate, window=window)
    except video_mod.BadVideo as e:  # (this input failed, as a file of `run` does)
        said = str(e)
        named = said.startswith((f"{video_in}: ", f"{Path(video_in)}: "))  # (as written, or as a Path)
        _say_err(f"failed: {said}" if named else f"failed: {video_in}: {said}")
        return EXIT_SOME_FAILED
    _say(stats.line())
    return EXIT_OK


@cli.command("mask")
@click.argument("images", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output folder of PNG masks (mirrors IMAGES: a/x.jpg -> a/x.png), or a .png "
                   "file when IMAGES is one file.")
@_text_options(what="Mask the text found in each image")
@click.option("--dilate", type=click.IntRange(0, MAX_DILATE), default=0, metavar="PX",
              help="Grow every hole by PX pixels.")
@click.option("--overwrite", is_flag=True, help="Replace existing masks.")
@_batch_options("Images at a time.", "images")
def mask_cmd(images, output, text, text_region, text_keep_unread, dilate, overwrite, jobs, quiet,
             max_pixels):
    """Write the masks that --text finds in IMAGES: one PNG per image, white = hole.

    For a person to review or edit before the fill: `fastfill run IMAGES MASKS` pairs them
    back by name. Unusable images fail one line each and the run goes on (exit 1).
    """
    from .files import runner

    if not text:
        raise click.UsageError("say what to find: --text")
    out = str(output)
    from .files.worklist import VIDEO_SUFFIXES

    if os.path.isfile(images) and Path(images).suffix.lower() in VIDEO_SUFFIXES:
        # (said first: -o x.png then x.mp4 each refused with the other's advice)
        raise click.UsageError(f"{images}: a video: fastfill mask writes the masks of images "
                               "(fastfill video --text finds the text of every frame)")
    if (os.path.isfile(images) and Path(out).suffix and Path(out).suffix.lower() != ".png"
            and not out.endswith(("/", os.sep))):
        raise click.UsageError(f"-o {output}: masks are written as PNG: end it with .png, or give a folder")
    detector = _text_detector(text, text_region, text_keep_unread)
    opts = runner.FileOptions(dilate=dilate, max_pixels=max_pixels, overwrite=overwrite)
    summary = runner.run(images, None, output, runner.MaskExecutor(detector, jobs=jobs), opts,
                         fmt="PNG", progress=False if quiet else None,
                         echo=_say_err)
    return _finished(summary)


class _Parsed(click.ParamType):
    """A value written as text (shown as ``name``) and read by ``parse``, whose ValueError is the
    usage error; a tuple (a default) passes as it is."""

    def __init__(self, name: str, parse):
        self.name, self.parse = name, parse

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return self.parse(value)
        except ValueError as e:  # (fastfill's InputError is one)
            self.fail(str(e), param, ctx)


def _size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT (or N for NxN)."""
    from .bench import parse_size

    return parse_size(text)


def _lo_hi(text: str) -> tuple[float, float]:
    """LO:HI -> (lo, hi) floats."""
    try:
        lo, hi = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise ValueError(f"expected LO:HI such as 1.0:1.5, got {text!r}") from None
    return lo, hi


def _serve_token(ctx, param, value):
    """Refuse at start a token no client can send in a header (not after loading the model)."""
    from .serve import check_token

    try:
        check_token(value)
    except ValueError as e:  # (fastfill's InputError is one)
        src = ctx.get_parameter_source(param.name)
        where = "(from FASTFILL_TOKEN) " if src is click.core.ParameterSource.ENVIRONMENT else ""
        raise click.BadParameter(where + str(e), ctx, param) from None
    return value


def _serve_cors(ctx, param, value):
    """Refuse at start an origin no browser sends (not after loading the model)."""
    from .serve import check_cors_origin

    try:
        return tuple(dict.fromkeys(check_cors_origin(v) for v in value))
    except ValueError as e:  # (fastfill's InputError is one)
        raise click.BadParameter(str(e), ctx, param) from None


@cli.command("serve")
@_engine_options
@_method_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (another than loopback is reachable from other machines).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--io-threads", type=click.IntRange(1, 256), default=min(4, os.cpu_count() or 1),
              show_default=True, help="Threads decoding and encoding requests (the model runs on one).")
@click.option("--queue", "queue_size", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Requests that may wait for the model; past it the answer is 503 + Retry-After.")
@click.option("--max-pixels", type=click.IntRange(1, PILLOW_MAX_PIXELS), default=50_000_000, show_default=True,
              metavar="N", help=f"Largest image (and mask) in pixels; above it 413 (at most "
                                f"{PILLOW_MAX_PIXELS}, past which Pillow opens no image).")
@click.option("--max-fill-pixels", type=click.IntRange(1, 1_000_000_000), default=DEFAULT_MAX_FILL_PIXELS,
              show_default=True, metavar="N",
              help="Most pixels the fill of a request (and of a batch) works over: the hole's "
                   "windows (a long diagonal stroke's are the whole image); above it 413.")
@click.option("--max-body", type=click.IntRange(1, 2**34), default=64 * 1024 * 1024, show_default=True,
              metavar="BYTES", help="Largest request body; above it 413.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG / lossy WebP quality of the answers.")
@click.option("--max-connections", type=click.IntRange(16, 65536), default=512, show_default=True,
              help="Open connections (idle ones included); past it 503 and closed.")
@click.option("--header-timeout", type=_FloatRange(0.5, 3600), default=10.0, show_default=True,
              metavar="SECONDS", help="Time to send a request's headers; past it 408 and closed.")
@click.option("--body-timeout", type=_FloatRange(0.5, 86400), default=60.0, show_default=True,
              metavar="SECONDS", help="Time to send a request's body (up to --max-body); past it 408 "
                                      "and closed.")
@click.option("--token", envvar="FASTFILL_TOKEN", default=None, metavar="TOKEN", callback=_serve_token,
              help="Require 'Authorization: Bearer TOKEN' on the API (all but the page, its files, "
                   "the docs and /healthz; printable ASCII, no spaces) [env FASTFILL_TOKEN].")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN", callback=_serve_cors,
              help="Let pages from ORIGIN (scheme://host[:port], or *) call the API from a browser; "
                   "repeatable. Default: none (same-origin only).")
def serve_cmd(engine_path, backend, device, threads, batch_size, no_roi, method, host, port, io_threads,
              queue_size, max_pixels, max_fill_pixels, max_body, quality, max_connections, header_timeout,
              body_timeout, token, cors_origins):
    """Serve the HTTP API (IOPaint-compatible /api/v1/inpaint) and the painting page.

    IOPaint's and lama-cleaner's web apps and scripts work against it too (their routes).

    Needs the 'serve' extra: pip install 'fastfill[serve]'. Requests are filled in micro-batches of
    up to --batch-size on one model; see README "fastfill serve".
    """
    from .serve import serve

    try:
        from .serve.app import ServeLimits
    except ImportError as e:
        raise click.UsageError(f"fastfill serve needs the 'serve' extra: pip install 'fastfill[serve]' "
                               f"({e.name} is not installed)") from None
    limits = ServeLimits(max_pixels=max_pixels, max_fill_pixels=max_fill_pixels, max_body=max_body,
                         queue=queue_size, io_threads=io_threads,
                         quality=quality, max_connections=max_connections,
                         header_timeout=header_timeout, body_timeout=body_timeout)
    with _inpainter(engine_path, backend, threads, batch_size, no_roi, method, device) as inp:
        serve(inp, host=host, port=port, limits=limits, token=token, model_name=model_name(inp),
              cors_origins=cors_origins, echo=_say_err)
    return EXIT_OK


@cli.command("quantize")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The INT8 .onnx to write.")
@click.option("--calibration", required=True, type=click.Path(exists=True),
              help="Photos (a folder or one file) to calibrate on; a fifth is held out for the self-check.")
@click.option("--images", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Calibration crops.")
@click.option("--held-out", type=click.IntRange(1, 100_000), default=None,
              help="Held-out crops for the self-check [default: images/4, at least 8].")
@click.option("--size", type=click.IntRange(16, 4096), default=256, show_default=True,
              help="Side of the crops (a fixed-size model uses its own).")
@click.option("--per-channel/--per-tensor", default=True, show_default=True,
              help="Weight scales per output channel or one per tensor.")
@click.option("--calibration-method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="How activation ranges are calibrated.")
@click.option("--max-loss", type=_FloatRange(min=0), default=0.1, show_default=True, metavar="DB",
              help="Refuse when the held-out hole PSNR drops by more than this.")
@click.option("--force", is_flag=True, help="Write the model even above --max-loss.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--seed", type=int, default=0, show_default=True)
def quantize_cmd(model, output, calibration, images, held_out, size, per_channel, calibration_method, max_loss, force,
                 overwrite, seed):
    """Static INT8 quantization (ONNX Runtime's QDQ tools) of a fastfill .onnx, calibrated on photos.

    The result loads wherever an .onnx loads (ONNX Runtime and OpenVINO run QDQ graphs); it is
    checked against the float model on held-out photos before it is written.
    """
    from .quantize import quantize

    r = quantize(model, output, calibration, images=images, size=size, per_channel=per_channel,
                 calibration_method=calibration_method, max_loss_db=max_loss, force=force, overwrite=overwrite, held_out=held_out,
                 seed=seed, log=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {output} (INT8, {r.quantized_convs} convolutions; hole PSNR on held-out crops: "
               f"fp32 {r.psnr_fp32:.2f} dB, int8 {r.psnr_int8:.2f} dB, loss {r.loss_db:+.3f} dB) in {r.seconds:.0f} s")
    return EXIT_OK


@cli.command("bench")
@click.option("--engine", "engines", multiple=True, type=click.Path(dir_okay=False),
              help="Model file (.onnx or .plan); repeatable. Default: what `run` runs without "
                   "options (the shipped model, loaded as run loads it: the default fill).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(_BACKENDS),
              help="Back-end(s) to run each model file on; repeatable (default: by suffix).")
@click.option("--device", type=_DEVICE, default=None, metavar="DEV",
              help=f"{_DEVICE_CHOICES}, for every model file.")
@click.option("--torch", "torch_ckpt", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also PyTorch eager on this training checkpoint (needs the `train` extra).")
@click.option("--size", "sizes", multiple=True, type=_Parsed("WxH", _size),
              help="Image size WxH; repeatable [default: 512x512].")
@click.option("--batch", "batches", multiple=True, type=click.IntRange(1, MAX_BATCH),
              help="Images per call; repeatable [default: 1].")
@click.option("--iters", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed iterations per configuration (at most; see --max-seconds).")
@click.option("--warmup", type=click.IntRange(0, 1000), default=2, show_default=True,
              help="Untimed iterations first (not bounded by --max-seconds).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None,
              help="Engine threads, the same for every target that has them (not TensorRT) "
                   "[default: the back-end's choice, as fastfill run].")
@click.option("--hole-fraction", type=_FloatRange(0, 1, min_open=True), default=0.1,
              show_default=True, help="Area of the centred rectangular hole (synthetic input).")
@click.option("--roi", "roi_compare", is_flag=True,
              help="Measure each engine with ROI crops and on the full frame, side by side.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Benchmark on this image file (with --mask): decode and encode are timed too.")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The mask for --image.")
@click.option("--resize-mask", is_flag=True, help="With --image: scale a mask of another size, as run does.")
@click.option("--max-pixels", type=click.IntRange(1, PILLOW_MAX_PIXELS), default=None,
              help="With --image: refuse larger images, as run does [default: 50 megapixels].")
@click.option("--max-seconds", type=_FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Stop a configuration's iterations after this long (but after at least 2 of them).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the synthetic input.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the numbers as JSON to this file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
def bench_cmd(engines, backends, device, torch_ckpt, sizes, batches, iters, warmup, threads, hole_fraction,
              roi_compare, image, mask, resize_mask, max_pixels, max_seconds, seed, json_out, overwrite):
    """Measure latency, throughput, stage split and GFLOP/s of one or more engines.

    Several --engine/--backend/--torch targets are measured interleaved in one run and printed
    side by side with ratios (the first is the baseline).
    """
    from . import bench as b

    if bool(image) != bool(mask):
        raise click.UsageError("--image and --mask go together")
    if image and sizes:
        raise click.UsageError("--size is the synthetic input's; with --image the file's size is used")
    if not image and (resize_mask or max_pixels is not None):
        raise click.UsageError("--resize-mask and --max-pixels read --image's files: give --image and --mask")
    for f, flag in ((image, "--image"), (mask, "--mask")):
        if f and not os.path.isfile(f):  # (a FIFO would block the decode)
            raise click.UsageError(f"{flag} {f}: not a regular file")
    if json_out:  # (before the benchmark runs, and never over one of its inputs)
        from .engines import default_model_path

        inputs = [*engines, torch_ckpt, image, mask, None if engines or torch_ckpt else default_model_path()]
        if any(i and os.path.realpath(i) == os.path.realpath(json_out) for i in inputs):
            raise click.UsageError(f"--json {json_out} is one of the benchmark's inputs")
        folder = os.path.dirname(os.path.abspath(json_out))
        if not os.path.isdir(folder):
            raise click.UsageError(f"--json {json_out}: folder {os.path.dirname(json_out)} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):  # (found now, not after the whole benchmark)
            raise click.UsageError(f"--json {json_out}: cannot write in {folder}")
        if os.path.lexists(json_out) and not overwrite:
            raise click.UsageError(f"--json {json_out} exists (use --overwrite to replace it)")
    engine_list = list(engines) or ([] if torch_ckpt else [None])
    targets = b.make_targets(engine_list, list(backends) or [None], torch_checkpoint=torch_ckpt,
                             threads=threads, roi_modes=(False, True) if roi_compare else (True,),
                             device=device)
    try:
        report = b.bench(targets, list(sizes) or [(512, 512)], list(batches) or [1], iters=iters,
                         warmup=warmup, hole_fraction=hole_fraction, max_seconds=max_seconds,
                         files=b.FileInput(image, mask, resize_mask, max_pixels) if image else None, seed=seed,
                         threads=threads, log=lambda m: click.echo(m, err=True),
                         start=lambda rep: click.echo(b.format_header(rep)))  # before any progress
    finally:
        for t in targets:
            t.inpainter.close()
    click.echo("\n" + b.format_table(report))
    if json_out:
        b.write_json(report, json_out)
        click.echo(f"wrote {json_out}", err=True)
    return EXIT_OK


def _import_train(module, needs=None):
    """Import train.<module> lazily; one line saying what to install when the `train` extra is
    missing (any of its packages, or of ``needs``), or which file hides fastfill's `train`
    package."""
    try:
        from .engines import TRAIN_NEEDS, import_train
        return import_train(module, TRAIN_NEEDS if needs is None else needs)
    except ImportError as e:
        raise click.ClickException(str(e)) from None


class _ConfigCommand(click.Command):
    """A command whose options are built from a configuration dataclass when it is first used
    (``build``), so that listing the commands imports nothing of training."""

    def __init__(self, *args, build, **kwargs):
        super().__init__(*args, **kwargs)
        self._build = build

    def get_params(self, ctx):
        if self._build is not None:
            self.params = self._build() + self.params
            self._build = None
        return super().get_params(ctx)


def _option_from_field(f) -> click.Option:
    """A click option from a TrainConfig field made with train.config.opt (its metadata)."""
    import dataclasses

    m = f.metadata
    required = f.default is dataclasses.MISSING
    default = None if required else f.default
    kind = m.get("type") or type(default)
    paths = {"data": click.Path(exists=True, file_okay=False), "run": click.Path(file_okay=False),
             "file": click.Path(exists=True, dir_okay=False)}
    if "choices" in m:
        t = click.Choice(list(m["choices"]))
    elif "path" in m:
        t = paths[m["path"]]
    elif kind is tuple:
        t = _Parsed("LO:HI", _lo_hi)
    elif "min" in m or "max" in m:
        t = (click.IntRange if kind is int else _FloatRange)(
            m.get("min"), m.get("max"), min_open=m.get("min_open", False), max_open=m.get("max_open", False))
    else:
        t = {int: click.INT, float: _FiniteFloat(), str: click.STRING}[kind]
    shown = ":".join(map(str, default)) if isinstance(default, tuple) else default is not None
    # (a required option gets no default at all: click 8.3 takes an explicit None as a value)
    extra = {"required": True} if required else {"default": default, "show_default": shown}
    return click.Option([f"--{f.name.replace('_', '-')}"], type=t, metavar=m.get("metavar"),
                        help=m["help"], **extra)


def _train_params() -> list[click.Parameter]:
    """`fastfill train`'s argument and options: a kind of train.kinds.KINDS, then the TrainConfig
    fields made with ``opt``, in their order."""
    import dataclasses

    try:
        kind = click.Choice(list(_import_train("kinds").KINDS))
    except click.ClickException:  # (no torch: --help still shows; running says what to install)
        kind = click.STRING
    TrainConfig = _import_train("config", needs=()).TrainConfig  # (no torch needed; checked, not hidden)

    return ([click.Argument(["kind"], type=kind)]
            + [_option_from_field(f) for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]
            + [click.Option(["-q", "--quiet"], is_flag=True, help="No progress bar.")])


@cli.command("train", cls=_ConfigCommand, build=_train_params)
def train_cmd(kind, quiet, **opts):
    """Train a GLCIC or Context Encoder model on a folder of photographs (needs the `train` extra).

    Ctrl-C (or SIGTERM) stops after the current step and saves OUT/last.safetensors; --resume
    continues it.
    """
    import signal

    loop = _import_train("loop")
    r = loop.train(loop.TrainConfig(kind=kind, **opts, progress=not quiet))
    if r["interrupted"]:
        click.echo(f"interrupted at step {r['step']}; saved {r['checkpoint']} (continue with --resume)", err=True)
        return 143 if r["interrupted"] == signal.SIGTERM else 130
    click.echo(f"done: step {r['step']}, {r['steps_per_s']:.2f} it/s; saved {r['checkpoint']}")
    return EXIT_OK


@cli.command("evaluate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="Folder of held-out images.")
@click.option("--held-out", is_flag=True, help="Use the validation split recorded in the checkpoint.")
@click.option("--mask", type=click.Choice(["rect", "freeform", "object", "mixed", "center"]), default="rect",
              show_default=True, help="Hole shapes (GLCIC; the CE always uses its central hole).")
@click.option("--size", type=click.IntRange(min=16), default=None, help="Image side [256 GLCIC, 128 CE].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Write a comparison grid PNG.")
@click.option("--crops", type=click.IntRange(min=1), default=1, show_default=True,
              help="Crops per image, at random positions and scales from fixed seeds.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --grid file.")
def evaluate_cmd(model, data, held_out, mask, size, limit, seed, grid, crops, overwrite):
    """PSNR/SSIM/L1 and texture distance (hole and whole image) of a checkpoint or .onnx vs mean
    fill and OpenCV Telea/NS."""
    if not data and not held_out:
        raise click.UsageError("give --data DIR or --held-out")
    if grid and os.path.lexists(grid) and not overwrite:
        raise click.UsageError(f"--grid {grid} exists (use --overwrite to replace it)")
    ev = _import_train("evaluate")
    click.echo(ev.format_table(ev.evaluate(model, data, mask, size, limit, seed, grid, held_out, crops)))
    return EXIT_OK


@cli.command("export")
@click.argument("checkpoint", required=False, type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
@click.option("--random", "random_init", is_flag=True, help="Export a random-init model (tests, benchmarks).")
@click.option("--kind", default="glcic", show_default=True, metavar="KIND",
              help="Model kind for --random (one that `fastfill train` takes).")
@click.option("--width", type=_FloatRange(min=0, min_open=True, max=4.0), default=1.0,
              show_default=True, help="Channel width multiplier for --random (at most 4).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --random.")
@click.option("--opset", type=click.IntRange(17, 20), default=17, show_default=True,
              help="ONNX opset (17-20, what the exporter writes).")
@click.option("--tol", type=_FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest |ONNX Runtime - PyTorch| the self-check accepts.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
def export_cmd(checkpoint, output, random_init, kind, width, seed, opset, tol, force):
    """Export a checkpoint's generator to ONNX (metadata inside), after checking it against PyTorch."""
    if bool(checkpoint) == random_init:
        raise click.UsageError("give a CHECKPOINT or --random (not both)")
    given = _given(click.get_current_context())
    for name in ("kind", "width", "seed"):  # (a checkpoint has its own: they would be dropped)
        if name in given and not random_init:
            raise click.UsageError(f"--{name} is for --random: a checkpoint has its own")
    ex = _import_train("export")
    kw = dict(opset=opset, tol=tol, overwrite=force, log=click.echo)
    if random_init:
        ex.export_random(kind, width, output, seed=seed, **kw)
    else:
        ex.export_checkpoint(checkpoint, output, **kw)
    return EXIT_OK


@cli.command("build")
@click.argument("onnx_file", metavar="MODEL.onnx", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .plan file.")
@click.option("--fp16/--fp32", "fp16", default=True, show_default=True, help="Engine precision.")
@click.option("--profile", "profiles", multiple=True, metavar="MIN:OPT:MAX",
              help="Shape profile, each shape NxHxW (or HxW); repeatable. "
                   "Default GLCIC: 1x64x64:1x512x512:4x2048x2048.")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="Timing cache file, read when present and updated after the build.")
@click.option("--workspace", type=click.IntRange(min=1), default=None, metavar="MB",
              help="Builder workspace limit in MiB.")
@click.option("--device", "device_id", type=click.IntRange(min=0), default=0, show_default=True, help="GPU index.")
@click.option("--force", is_flag=True, help="Replace an existing plan.")
def build_cmd(onnx_file, output, fp16, profiles, timing_cache, workspace, device_id, force):
    """Build a TensorRT engine (.plan + sidecar .json) from an exported .onnx."""
    from .build import build_engine

    build_engine(onnx_file, output, precision="fp16" if fp16 else "fp32", profiles=list(profiles) or None,
                 timing_cache=timing_cache, workspace_mb=workspace,
                 device_id=device_id, overwrite=force, log=click.echo)
    return EXIT_OK


class _Terminated:
    """SIGTERM is handled like Ctrl-C (the same clean-up of temporary files), with exit 143.
    A second stop (Ctrl-C or SIGTERM) during that clean-up says so and lets it finish: raised
    again, it cut short the wait for the worker threads, and the interpreter then shut down
    under a thread still in native code (an abort). A third one quits at once (a later run
    removes what is left)."""

    seen = False
    interrupts = 0

    @classmethod
    def handle(cls, signum, frame):
        cls.seen = cls.seen or cls.interrupts == 0  # (the exit code of the first stop)
        cls._stop("terminated: finishing the clean-up (SIGTERM again to quit at once)")

    @classmethod
    def interrupt(cls, signum, frame):
        cls._stop("interrupted: finishing the clean-up (Ctrl-C again to quit at once)")

    @classmethod
    def _stop(cls, second: str):
        cls.interrupts += 1
        if cls.interrupts == 1:
            raise KeyboardInterrupt
        if cls.interrupts == 2:
            try:
                sys.stderr.write(second + "\n")
            except (OSError, ValueError):
                pass
            return
        os._exit(143 if cls.seen else 130)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    _say_err(f"warning: {printable(message)}")


def main(argv=None):
    """Entry point: run the click group, turning known errors into one line and an exit code."""
    import signal

    _Terminated.seen, _Terminated.interrupts = False, 0  # (a process may call main again)
    # a library's warning (a training photo that cannot be read, a provider missing): one line,
    # not Python's file:line and source line
    warnings.showwarning = _warning_line
    try:
        signal.signal(signal.SIGTERM, _Terminated.handle)
        signal.signal(signal.SIGINT, _Terminated.interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    try:
        # Commands return their exit code (0/1/2) so that this one place decides how to leave.
        rv = cli.main(args=argv, standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("terminated" if _Terminated.seen else "aborted", err=True)
        sys.exit(143 if _Terminated.seen else 130)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_USAGE)
    except FastfillError as e:
        if os.environ.get("FASTFILL_DEBUG"):
            raise
        click.echo(f"error: {printable(e)}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception as e:  # a bug, not a bad input: still one line and exit 2 (1 = inputs failed)
        if os.environ.get("FASTFILL_DEBUG"):
            raise
        click.echo(f"error: internal error: {type(e).__name__}: {printable(e)} "
                   "(set FASTFILL_DEBUG=1 for the traceback)", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)


if __name__ == "__main__":
    main()
