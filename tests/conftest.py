"""Shared test set-up.

- Tests marked `gpu` skip with a reason when no usable NVIDIA GPU is present.
- :func:`invoke` runs the CLI through ``fastfill.cli.main`` (the real exit-code mapping):
  ``from conftest import invoke``.
- ``one_torch_thread``: one torch thread for a test (``pytestmark =
  pytest.mark.usefixtures("one_torch_thread")`` in the train tests).
- :func:`held_to_permissions`: the ``preexec_fn`` that holds a child process to file permissions
  when the tests run as root (as they do on every machine here).
"""

import contextlib
import sys

import click
import pytest
from click.testing import CliRunner


def _gpu_skip_reason():
    try:
        from fastfill import ops
    except ImportError as e:  # the native module is not built
        return f"fastfill._C is not importable: {e}"
    info = ops.build_info()
    if "cuda" not in info["backends"]:
        return "fastfill._C was built without CUDA kernels"
    if info["cuda_device_count"] == 0:
        return f"no usable NVIDIA GPU: {info['cuda_runtime_status']}"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


def invoke(*args, env=None, internal_ok=False):
    """Run ``fastfill ARGS`` through ``fastfill.cli.main``: (exit code, stdout, stderr).

    main() itself maps errors to exit codes and one-line messages, so tests see what a user sees.
    An unexpected exception (main's "internal error" path) is re-raised with its traceback unless
    ``internal_ok``, so that a bug fails the test where it happened.
    """
    from fastfill.cli import main
    from fastfill.errors import FastfillError

    with CliRunner().isolation(env=env) as streams:
        out, err = streams[0], streams[1]
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            cause = e.__context__
            if (not internal_ok and isinstance(cause, Exception)
                    and not isinstance(cause, (FastfillError, click.ClickException,
                                               click.exceptions.Abort))):
                raise cause
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:  # pragma: no cover - main() always exits
            code = 0
        sys.stdout.flush()  # print(file=sys.stderr) is buffered; click.echo flushes itself
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture
def one_torch_thread():
    """One torch thread: tiny nets run faster so, and a shared 2-core machine is not
    oversubscribed."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _drop_dac_capabilities():
    """In a child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding
    set. Root's program then runs without them (its capabilities after exec are that set), so a
    file's mode holds for it as for any user."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def held_to_permissions():
    """``preexec_fn`` for a child process that must meet file permissions as an ordinary user
    does: None for a user other than root; for root, one that drops the capabilities that bypass
    them. Only a child can be held so (the test process keeps its own capabilities). Root that
    cannot drop them (no CAP_SETPCAP) skips the test, saying so; CI does not accept that skip."""
    import os
    import subprocess

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        subprocess.run(["true"], preexec_fn=_drop_dac_capabilities, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"root that cannot drop CAP_DAC_OVERRIDE is not held to file permissions ({e})")
    return _drop_dac_capabilities


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_in_thread(app):
    """Context manager: uvicorn serving the ASGI ``app`` on a free loopback port in a thread of
    this process (for tests that patch the server's own functions); yields its base URL and
    stops it at the end."""
    import contextlib
    import threading
    import time

    uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")

    @contextlib.contextmanager
    def run():
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            for _ in range(200):
                if server.started:
                    break
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(30)

    return run()


class ServerProcess:
    """``fastfill serve ARGS`` in a real process on a free loopback port (see :func:`serve_process`)."""

    def __init__(self, proc, url, log):
        self.proc, self.url, self.log_path = proc, url, log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def serve_process(tmp_path, *args, env=None, timeout=60.0):
    """Context manager: start ``fastfill serve`` with ARGS, wait for /healthz, stop it (SIGTERM)
    at the end. Skips when the 'serve' extra is not installed."""
    import contextlib
    import os
    import subprocess
    import time
    import urllib.request

    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")

    @contextlib.contextmanager
    def run():
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        cmd = [sys.executable, "-m", "fastfill.cli", "serve", "--port", str(port), *map(str, args)]
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})})
        url = f"http://127.0.0.1:{port}"
        server = ServerProcess(proc, url, log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"fastfill serve exited with {proc.returncode}:\n{server.log()}")
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"fastfill serve did not start in {timeout} s:\n{server.log()}")
                time.sleep(0.1)
            yield server
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    return run()


@contextlib.contextmanager
def headless_chromium(window: str = "1200,900", console_log: bool = False):
    """A headless Chromium driven by Selenium (the page and web-app tests), quit on leaving;
    skips with how to install it when Chromium or its driver is missing."""
    import os
    import shutil
    import tempfile

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the 'dev' extra) is not installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium "
                    "chromium-driver; `make test` does it where it can)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for a browser online
    opts = Options()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={window}", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    if console_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Chromium leaves its singleton socket's folder in TMPDIR after quitting: give it one of its
    # own, removed with the browser.
    with tempfile.TemporaryDirectory(prefix="fastfill-chromium-") as tmp:
        driver = webdriver.Chrome(service=Service(driver_path, env={**os.environ, "TMPDIR": tmp}),
                                  options=opts)
        try:
            driver.set_script_timeout(60)
            yield driver
        finally:
            driver.quit()


def write_clip(path, frames, fps, codec="ffv1", pix_fmt="bgr0", audio=True, bit_rate=None,
               audio_codec="aac", audio_rate=16000, setup=None):
    """A real clip of RGB ``frames`` (PyAV), with a mono sine track (``audio_codec``) when
    ``audio``; ``setup(container, video, audio)`` sets more (tags, colours) before the first frame."""
    import numpy as np

    av = pytest.importorskip("av")
    frames = list(frames)
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = pix_fmt
        if bit_rate:
            v.bit_rate = bit_rate
        a = None
        if audio:
            a = c.add_stream(audio_codec, rate=audio_rate)
            a.layout = "mono"
        if setup is not None:
            setup(c, v, a)
        apts = 0
        size = (a.codec_context.frame_size or 1024) if a is not None else 0
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
            while a is not None and apts < (i + 1) * audio_rate // fps:
                s = np.sin(np.arange(apts, apts + size) / 10)[None] * 0.3
                s = (s * 32767).astype(np.int16) if a.format.name.startswith("s16") else s.astype(np.float32)
                af = av.AudioFrame.from_ndarray(s, format=a.format.name, layout="mono")
                af.sample_rate, af.pts = audio_rate, apts
                apts += size
                for p in a.encode(af):
                    c.mux(p)
        for s in filter(None, (v, a)):
            for p in s.encode(None):
                c.mux(p)
