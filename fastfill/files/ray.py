"""The file runner on a Ray Data cluster (extra ``ray``): ``fastfill run --ray`` and :func:`inpaint`.

No scheduler of its own and no rules of its own: :class:`RayExecutor` is the second executor of
the driver :func:`fastfill.files.runner.run` (the local run's worklist, pairing, output names, skip
rules and report), and Ray Data streams the rows through the runner's own read and write steps::

    rows (image, mask, out) ─► runner.read_row (Ray tasks) ─► fill (actor pool: one engine each)
                                                   ─► runner.write_row (Ray tasks) ─► driver

- the fill stage is a ``map_batches`` callable class: the engine is loaded once per actor, the
  pool has ``concurrency`` actors, each with ``gpus_per_worker`` GPUs;
- a bad file fails that file only: it travels through the stages as a row with ``error`` set and
  is reported by the runner's :class:`~fastfill.files.runner.Report` (a line, the summary,
  ``OUT/fastfill-failures.jsonl``), as in the local run;
- videos under IMAGES are one Ray task each (:func:`fastfill.files.runner.run_video`).

Ray is imported lazily: ``import fastfill.files.ray`` works without it, the first call says
``pip install 'fastfill[ray]'``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from typing import Any, Callable, Iterator

import numpy as np

from . import codecs as fio
from . import runner
from ..errors import EngineError, FastfillError, InputError
from .codecs import FileOptions
from .fs import resolve
from .runner import FAILURES_FILE, VIDEO_SUFFIXES, Outcome
from .worklist import Worklist

# files per decode / write task: spreads a few files over a cluster; Ray's per-task cost stays small
ROWS_PER_TASK = 8
_NO_RGB = np.zeros((0, 0, 3), np.uint8)
_NO_MASK = np.zeros((0, 0), np.uint8)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FastfillError("--ray needs Ray Data: pip install 'fastfill[ray]'") from None
    return ray


# -- the stages (run in Ray workers) ------------------------------------------------------------

def _objects(items) -> np.ndarray:
    """A 1-d object array of arrays (never stacked, even when their shapes agree)."""
    a = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        a[i] = x
    return a


def _strings(batch, key) -> list[str]:
    return ["" if v is None else str(v) for v in batch[key]]


def _decode_batch(batch: dict, *, fs_image=None, fs_mask=None, opts=FileOptions()) -> dict:
    """Rows of paths -> rows with the decoded image (``rgb``), mask, and what writing needs."""
    errors = _strings(batch, "error")
    rgbs, masks, srcs = [], [], []
    for i, (img, msk) in enumerate(zip(_strings(batch, "image"), _strings(batch, "mask"))):
        rgb, mask, src = _NO_RGB, _NO_MASK, b""
        if not errors[i]:
            try:
                dec, m = runner.read_row({"image": img, "mask": msk}, fs_image, fs_mask, opts)
                rgb, mask = dec.rgb, m.view(np.uint8)
                # what writing needs: the source without its pixels (they travel as `rgb`)
                src = pickle.dumps(dataclasses.replace(dec, rgb=_NO_RGB),
                                   protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
                errors[i] = runner.reason(e, "decode")
        rgbs.append(rgb)
        masks.append(mask)
        srcs.append(src)
    out = {k: batch[k] for k in ("image", "mask", "out", "format", "replace")}
    out.update(rgb=_objects(rgbs), hole=_objects(masks), src=_objects(srcs),
               error=np.array(errors, dtype=object))
    return out


def _make_inpainter(engine, options: dict):
    """The Inpainter of one worker: ``engine`` (None, a model path, a loaded engine or a callable
    that returns an engine or an Inpainter) with ``options`` (``roi``, ``batch_size``, and what
    chooses the engine: ``threads``, ``backend``, ``device``, ``method``; an option that cannot
    apply is an error, never dropped). ``auto_threads``, the executor's own share of the cores,
    goes only to a back-end that takes threads, when none were asked for."""
    from ..engines import open_engine
    from ..inpainter import Inpainter, default_engine, no_model_flags

    opts = dict(options)
    auto_threads = opts.pop("auto_threads", None)
    if callable(engine) and not isinstance(engine, (str, os.PathLike)):
        engine = engine()
    if isinstance(engine, Inpainter):
        chosen = [k for k in ("threads", "backend", "device", "method") if opts.get(k) is not None]
        if chosen:
            raise InputError(f"{', '.join(chosen)}: the engine callable returned an Inpainter, "
                             "which has its own; set them on it")
        return engine
    if engine is None and no_model_flags(*(opts.get(k) for k in ("threads", "backend", "device", "method"))):
        # what the local run runs with no model flags (the default fill where the shipped
        # model adds nothing): the executor's share of the cores does not ask for the net
        engine = default_engine(auto_threads)
    elif auto_threads is not None and opts.get("threads") is None and (engine is None or isinstance(
            engine, (str, os.PathLike))):
        engine = open_engine(engine, backend=opts.pop("backend", None), device=opts.pop("device", None),
                             method=opts.pop("method", None), threads=auto_threads,
                             threads_where_taken=True)
        opts.pop("threads", None)
    return Inpainter(engine, **opts)


class _Filler:
    """The fill stage: one Inpainter (one loaded engine) per actor, reused for every batch."""

    def __init__(self, engine, options: dict, image_col="rgb", mask_col="hole",
                 out_col="rgb", keep_errors=True):
        self.inp = _make_inpainter(engine, options)
        self.cols = (image_col, mask_col, out_col)
        self.keep_errors = keep_errors

    def __call__(self, batch: dict) -> dict:
        image_col, mask_col, out_col = self.cols
        images, masks = batch[image_col], batch[mask_col]
        n = len(images)
        errors = _strings(batch, "error") if "error" in batch else [""] * n
        good, pairs = [], []
        for i in range(n):
            if errors[i]:
                continue
            try:
                pairs.append(self.inp.check(images[i], masks[i]))
                good.append(i)
            except InputError as e:
                if not self.keep_errors:
                    raise
                errors[i] = str(e)
        results = [_NO_RGB] * n
        # EngineError is not caught: an engine that fails would fail every file (local run: same).
        for i, r in zip(good, self.inp.batch(pairs)):
            results[i] = r
        out = dict(batch)
        out[out_col] = _objects(results)
        if self.keep_errors:
            out["error"] = np.array(errors, dtype=object)
        return out


def _write_batch(batch: dict, *, fs_out=None, fs_image=None, opts=FileOptions()) -> dict:
    """Encode each result in its source's mode and write it atomically; one status per row."""
    errors = _strings(batch, "error")
    status, notes = [], []
    for i in range(len(errors)):
        note = ""
        if not errors[i]:
            try:
                src = pickle.loads(batch["src"][i])
                note = src.note or ""  # the decoder's note, said by the driver
                row = {"out": str(batch["out"][i]), "format": str(batch["format"][i]),
                       "replace": bool(batch["replace"][i]), "image": str(batch["image"][i])}
                runner.write_row(row, np.asarray(batch["rgb"][i]), src, np.asarray(batch["hole"][i]),
                                 fs_out, opts, fs_images=fs_image)
            except Exception as e:  # noqa: BLE001
                errors[i] = runner.reason(e, "encode")
        notes.append(note)
        status.append("failed" if errors[i] else "done")
    return {"image": batch["image"], "mask": batch["mask"], "out": batch["out"],
            "status": np.array(status, dtype=object), "error": np.array(errors, dtype=object),
            "note": np.array(notes, dtype=object)}


def _video_task(row: dict, engine, options: dict, opts, p: Worklist) -> Outcome:
    """One video, start to end, in one Ray task (its own engine)."""
    with _make_inpainter(engine, options) as inp:
        return runner.video_outcome(row, inp, p, opts)


# -- the driver ---------------------------------------------------------------------------------

def init(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True):
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one on
    this machine's cores. Returns True when this call started Ray (the caller shuts it down)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    import logging

    kw: dict[str, Any] = {"include_dashboard": False,
                          "logging_level": logging.WARNING if quiet else logging.INFO}
    if address:
        kw["address"] = address
    elif num_cpus is not None:
        kw["num_cpus"] = num_cpus
    import signal
    import threading

    kept = ({s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
            if threading.current_thread() is threading.main_thread() else {})
    try:
        ray.init(**kw)
    except ConnectionError as e:
        raise FastfillError(f"cannot reach the Ray cluster at {address}: {e}") from None
    finally:
        # Ray's core worker puts its own crash handler on SIGTERM (a stack dump and an abort,
        # exit 134): the caller's handlers (the CLI's clean stop, exit 143) are put back
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)
    return True


def _worker_resources(concurrency: int, gpus_per_worker: float, threads: int | None, local: bool):
    """(CPUs per fill actor, CPUs per decode/write task, engine threads)."""
    total = float(_import_ray().cluster_resources().get("CPU", 1.0))
    # Leave room for the decode and write tasks, or a small cluster would run only actors.
    cpus_per_worker = 1.0 if gpus_per_worker else min(1.0, total / (concurrency + 1))
    io_cpus = min(0.5, max(0.05, (total - cpus_per_worker * concurrency) / 2))
    if threads is None and not gpus_per_worker and local:
        threads = max(1, (os.cpu_count() or 1) // max(1, concurrency))
    return cpus_per_worker, io_cpus, threads


def _configure_data(progress: bool | None):
    ray = _import_ray()
    import logging

    ctx = ray.data.DataContext.get_current()
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show:  # before the switch below, which itself logs a warning when bars are off
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx.enable_progress_bars = show
    if hasattr(ctx, "enable_operator_progress_bars"):
        ctx.enable_operator_progress_bars = show
    return ctx


def _unwrap(e: BaseException) -> BaseException | None:
    """The FastfillError inside a Ray error (RayTaskError, UserCodeException, ...), if any."""
    seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, FastfillError):
            return x
        cause = getattr(x, "cause", None)
        stack.extend([x.__cause__, x.__context__, cause if isinstance(cause, BaseException)
                      else None])
    return None


def _engine_failed(e: BaseException) -> FastfillError:
    """One clear FastfillError for a Ray error raised around a failure in a worker."""
    import re

    from .. import errors

    inner = _unwrap(e)
    text = str(inner if inner is not None else e)
    # Ray re-raises worker errors with the remote traceback in the message: keep the last
    # `fastfill.errors.X: message` line, as the local run would have printed it.
    found = re.findall(r"(?:fastfill\.errors\.)?(EngineError|InputError|BuildError|FastfillError): "
                       r"(.+)", text)
    if found:
        name, msg = found[-1]
        return getattr(errors, name)(msg.strip())
    if isinstance(inner, FastfillError):
        return inner
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return EngineError("the Ray job failed: " + (lines[-1] if lines else type(e).__name__))


class RayExecutor:
    """The rows on a Ray cluster (the second executor of :func:`fastfill.files.runner.run`):
    images through Ray Data (decode tasks -> ``concurrency`` fill actors, one engine each ->
    write tasks), videos one Ray task each. Ray starts (or is joined, at ``address``) when there
    is work, and a Ray it started is shut down with the executor."""

    needs_absolute_paths = True  # Ray workers do not share the driver's working directory

    def __init__(self, engine=None, *, backend: str | None = None, device=None,
                 threads: int | None = None, roi: bool = True, batch_size: int = 4,
                 address: str | None = None, concurrency: int = 1, gpus_per_worker: float = 0,
                 progress: bool | None = None, method: str | None = None):
        if concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {concurrency}")
        self.engine, self.address, self.progress = engine, address, progress
        self.concurrency, self.gpus, self.batch_size = concurrency, gpus_per_worker, batch_size
        self.options = {"roi": roi, "batch_size": batch_size, "threads": threads,
                        "backend": backend, "device": device, "method": method}
        self._started = None  # None: Ray not asked yet; True: this executor started it

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._started:
            _import_ray().shutdown()

    def start(self, echo: Callable[[str], None] | None = None) -> None:
        """A local model file must be there (a cluster's workers may see paths the driver does not)."""
        e = self.engine
        if e is not None and isinstance(e, (str, os.PathLike)) and "://" not in str(e) \
                and not os.path.exists(e) and not self.address:
            raise EngineError(f"{e}: no such model file")

    def _ray(self):
        if self._started is None:
            self._started = init(self.address, quiet=not self.progress)
            _configure_data(self.progress)
            # a worker asking for a GPU the local cluster has not waits for it forever (a remote
            # cluster, named or in RAY_ADDRESS, may add a node that has one)
            if self.gpus and not (self.address or os.environ.get("RAY_ADDRESS")):
                have = _import_ray().cluster_resources().get("GPU", 0)
                if have < self.gpus:
                    raise EngineError(f"--gpus-per-worker {self.gpus:g}: this machine's Ray "
                                      f"cluster has {have:g} GPUs; nothing written")
            self.actor_cpus, self.io_cpus, self.options["auto_threads"] = _worker_resources(
                self.concurrency, self.gpus, None, local=not self.address)
        return _import_ray()

    def images(self, rows: list[dict], p: Worklist, opts: FileOptions) -> Iterator[Outcome]:
        try:
            self._ray()
            ds = _image_pipeline(rows, self.engine, self.options, opts, p,
                                 concurrency=self.concurrency, gpus=self.gpus,
                                 actor_cpus=self.actor_cpus, io_cpus=self.io_cpus,
                                 batch_size=self.batch_size)
            for b in ds.iter_batches(batch_size=64, batch_format="numpy"):
                for img, msk, st, err, note in zip(b["image"], b["mask"], b["status"], b["error"],
                                                   b["note"]):
                    yield Outcome(str(img), str(msk), "" if st == "done" else str(err), str(note))
        except FastfillError:
            raise
        except Exception as e:  # a Ray error around an engine failure in an actor
            raise _engine_failed(e) from e

    def videos(self, rows: list[dict], p: Worklist, opts: FileOptions) -> Iterator[Outcome]:
        """One Ray task per video; each task's Outcome as it finishes."""
        try:
            ray = self._ray()
            task = ray.remote(_video_task).options(num_cpus=self.actor_cpus, num_gpus=self.gpus or 0,
                                                   max_retries=0)
            pending = [task.remote(r, self.engine, self.options, opts, p) for r in rows]
            try:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    yield ray.get(ready[0])  # an EngineError in that task raises here
            finally:
                # An engine error (or the caller stopping early) ends the run: the other videos
                # would only fail the same way. A cancelled task is interrupted and removes its
                # temporary file.
                for ref in pending:
                    try:
                        ray.cancel(ref)
                    except Exception:  # noqa: BLE001 - already finished or gone
                        pass
        except FastfillError:
            raise
        except Exception as e:
            raise _engine_failed(e) from e


def run_files(images, masks, output, opts: FileOptions = FileOptions(), *, engine=None,
              method: str | None = None, backend: str | None = None, device=None,
              threads: int | None = None,
              roi: bool = True, batch_size: int = 4, fmt: str | None = None, address: str | None = None,
              concurrency: int = 1, gpus_per_worker: float = 0, progress: bool | None = None,
              echo: Callable[[str], None] | None = None, filesystem=None) -> runner.Summary:
    """``fastfill run --ray``: :func:`fastfill.files.runner.run` with a :class:`RayExecutor`.

    ``images``/``masks``/``output``: local paths or URIs (see :func:`resolve`); ``filesystem``:
    a pyarrow FileSystem for all three instead. ``engine``: a model path (local to every worker)
    or None for the shipped model; ``method``: a classical fill instead (no model). ``concurrency``
    fill actors, each with ``gpus_per_worker``
    GPUs. Failed files are printed through ``echo``, counted, and listed in
    ``OUTPUT/fastfill-failures.jsonl``. An engine error stops the run (EngineError).
    """
    ex = RayExecutor(engine, method=method, backend=backend, device=device, threads=threads, roi=roi,
                     batch_size=batch_size, address=address, concurrency=concurrency,
                     gpus_per_worker=gpus_per_worker, progress=progress)
    return runner.run(images, masks, output, ex, opts, fmt=fmt, filesystem=filesystem,
                      progress=progress, echo=echo)


def _image_pipeline(rows, engine, options, opts, p: Worklist, *, concurrency, gpus, actor_cpus, io_cpus,
                    batch_size):
    ray = _import_ray()
    n_blocks = max(1, min(len(rows), -(-len(rows) // ROWS_PER_TASK)))
    ds = ray.data.from_items(rows, override_num_blocks=n_blocks)  # Ray >= 2.10
    ds = ds.map_batches(_decode_batch, batch_size=ROWS_PER_TASK, batch_format="numpy",
                        fn_kwargs=dict(fs_image=p.fs_images, fs_mask=p.fs_masks, opts=opts),
                        num_cpus=io_cpus)
    ds = ds.map_batches(_Filler, batch_size=max(batch_size, 1), batch_format="numpy",
                        fn_constructor_args=(engine, options),
                        compute=ray.data.ActorPoolStrategy(size=concurrency),
                        num_cpus=actor_cpus, num_gpus=gpus or None)
    ds = ds.map_batches(_write_batch, batch_size=ROWS_PER_TASK, batch_format="numpy",
                        fn_kwargs=dict(fs_out=p.fs_out, fs_image=p.fs_images, opts=opts),
                        num_cpus=io_cpus)
    return ds


# -- the Dataset API ------------------------------------------------------------------------------

def inpaint(ds, engine=None, *, image_column: str = "image", mask_column: str = "mask",
            output_column: str = "inpainted", roi: bool = True, batch_size: int = 4,
            threads: int | None = None, backend: str | None = None, device=None,
            concurrency: int = 1, gpus_per_worker: float = 0, cpus_per_worker: float | None = None,
            on_error: str = "raise", method: str | None = None):
    """Fill the holes of a Ray Dataset of images and masks; returns a (lazy) Dataset.

    ``ds`` has an ``image_column`` of uint8 ``[H, W, 3]`` RGB arrays and a ``mask_column`` of
    ``[H, W]`` masks (nonzero = fill); sizes may differ from row to row. The result has every input
    column plus ``output_column`` (uint8 ``[H, W, 3]``), so it composes with the caller's own
    reading and writing. ``engine``: None (the shipped model), a model path readable by every
    worker, or a zero-argument callable returning an Engine or an Inpainter (called once per
    actor). ``backend``/``device``/``threads``/``method``: as ``fastfill run`` (a GPU device needs
    ``gpus_per_worker``). ``on_error``: "raise" (a bad row fails the job) or "column" (an ``error`` column,
    empty when the row went well; a failed row's output is an empty ``[0, 0, 3]`` array).
    """
    ray = _import_ray()
    if on_error not in ("raise", "column"):
        raise InputError(f"on_error must be 'raise' or 'column', got {on_error!r}")
    if concurrency < 1:
        raise InputError(f"concurrency must be >= 1, got {concurrency}")
    if cpus_per_worker is None:  # (asks the cluster: only when it has to)
        cpus_per_worker, _, _ = _worker_resources(concurrency, gpus_per_worker, threads, local=False)
    options = {"roi": roi, "batch_size": batch_size, "threads": threads, "backend": backend,
               "device": device, "method": method}
    return ds.map_batches(_Filler, batch_size=max(1, batch_size), batch_format="numpy",
                          fn_constructor_args=(engine, options),
                          fn_constructor_kwargs=dict(image_col=image_column, mask_col=mask_column,
                                                     out_col=output_column,
                                                     keep_errors=on_error == "column"),
                          compute=ray.data.ActorPoolStrategy(size=concurrency),
                          num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None)


__all__ = ["inpaint", "run_files", "RayExecutor", "resolve", "init", "FAILURES_FILE", "VIDEO_SUFFIXES"]
