"""IOPaint 1.6.0's and lama-cleaner 1.2.5's own web apps, unchanged, against a real `fastfill serve`,
in headless Chromium (Selenium, as tests/test_serve_page.py; skips where Chromium is missing).

The apps come from their wheels on PyPI (`pip download --no-deps`, cached under the pytest cache;
skipped, saying why, where PyPI cannot be reached; never fetched by fastfill itself). Each app's
static files are served by a small reverse proxy on loopback that forwards every other request,
as it came, to the fastfill server (the apps call their API on their own origin) and records it.

In each app: open an image, paint a stroke with the mouse, get the filled result (the pixels
inside the hole the app's own mask gives under IOPaint's rule changed, none outside, and the page
shows the server's answer), open Settings (it lists the served model); no error in the browser's
console (the apps poll /socket.io/, which fastfill does not serve: those 404s alone are
expected). IOPaint's answers are also checked against IOPaint's own pydantic schema.
Screenshots go to out/test-artifacts/.
"""

import base64
import hashlib
import http.client
import io
import json
import logging
import mimetypes
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from email import message_from_bytes
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from conftest import headless_chromium, serve_process
from test_serve_clients import iopaints_hole

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the 'dev' extra) is not installed")

ARTIFACTS = Path(__file__).resolve().parent.parent / "out" / "test-artifacts"
# The wheels, pinned by version and digest (what was read to write fastfill/serve/compat.py).
WHEELS = {"iopaint": ("iopaint==1.6.0", "IOPaint-1.6.0-py3-none-any.whl",
                      "b38c6987a27ddd995da60ea7e24e033ff3326b6d3082ed11966b009faf89a878"),
          "lama_cleaner": ("lama-cleaner==1.2.5", "lama_cleaner-1.2.5-py3-none-any.whl",
                           "d2ff2df4ae9661bffc13ee03d44a030d94f175628a2ef3e09530247a7cede703")}
# What each app needs from its wheel: its static build, and IOPaint's schema (to check our JSON).
WANTED = {"iopaint": ("iopaint/web_app/", "iopaint/schema.py", "iopaint/const.py"),
          "lama_cleaner": ("lama_cleaner/app/build/",)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def webapps(request, tmp_path_factory):
    """{"iopaint": dir, "lama_cleaner": dir}: the wheels' files, unpacked. The wheels are
    downloaded once into the pytest cache (``pytest --cache-clear`` drops them; without the cache
    plugin, once per session)."""
    if getattr(request.config, "cache", None) is not None:
        cache = Path(request.config.cache.mkdir("fastfill-webapp-wheels"))
    else:  # -p no:cacheprovider: once per session
        cache = tmp_path_factory.mktemp("webapp-wheels")
    missing = [spec for spec, name, digest in WHEELS.values()
               if not (cache / name).is_file() or _sha256(cache / name) != digest]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary", ":all:", "-d", str(cache), *missing]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"could not download the web apps' wheels ({' '.join(missing)}): {e}")
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"could not download the web apps' wheels ({' '.join(missing)}; PyPI "
                        f"unreachable?): pip: {tail[0]}")
    out = tmp_path_factory.mktemp("webapps")
    dirs = {}
    for key, (spec, name, digest) in WHEELS.items():
        whl = cache / name
        got = _sha256(whl) if whl.is_file() else "missing"
        assert got == digest, f"{name}: sha256 {got}, expected {digest} (not the wheel this test was written for)"
        with zipfile.ZipFile(whl) as z:
            members = [m for m in z.namelist() if m.startswith(WANTED[key])]
            assert members, f"{name} has none of {WANTED[key]}"
            z.extractall(out / key, members)
        dirs[key] = out / key
    return dirs


def iopaint_schema(root: Path):
    """IOPaint's own iopaint/schema.py (pydantic models), loaded from the wheel without its
    package (whose __init__ wants torch) and with loguru stubbed when it is not installed."""
    import importlib.util
    import types

    names = ("iopaint", "iopaint.const", "iopaint.schema", "loguru")
    saved = {n: sys.modules.get(n) for n in names}
    try:
        pkg = types.ModuleType("iopaint")
        pkg.__path__ = [str(root / "iopaint")]
        sys.modules["iopaint"] = pkg
        if importlib.util.find_spec("loguru") is None:
            stub = types.ModuleType("loguru")
            stub.logger = logging.getLogger("iopaint")
            sys.modules["loguru"] = stub
        for n in ("const", "schema"):
            spec = importlib.util.spec_from_file_location(f"iopaint.{n}", root / "iopaint" / f"{n}.py")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            with warnings.catch_warnings():  # its pydantic style is not ours to fix
                warnings.simplefilter("ignore")
                spec.loader.exec_module(mod)
        return sys.modules["iopaint.schema"]
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class WebAppProxy:
    """A web app's static files on a loopback port; every other request forwarded to
    ``upstream`` (the fastfill server) as it came, its answer passed back as it came.
    ``forwarded``: one dict per forwarded request (method, path, status, headers, bodies)."""

    def __init__(self, root: Path, upstream: str):
        self.root = Path(root).resolve()
        up = urlsplit(upstream)
        self.up_host, self.up_port = up.hostname, up.port
        self.forwarded: list[dict] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _static_file(self, path: str):
                rel = "index.html" if path == "/" else path.lstrip("/")
                f = (proxy.root / rel).resolve()
                if self.command in ("GET", "HEAD") and f.is_file() and proxy.root in f.parents:
                    return f
                return None

            def _reply(self, status, headers, body):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def handle_any(self):
                path = urlsplit(self.path).path
                f = self._static_file(path)
                if f is not None:
                    kind = "text/javascript" if f.suffix == ".js" else (
                        mimetypes.guess_type(f.name)[0] or "application/octet-stream")
                    return self._reply(200, [("Content-Type", kind)], f.read_bytes())
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "keep-alive", "proxy-connection")}
                conn = http.client.HTTPConnection(proxy.up_host, proxy.up_port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    r = conn.getresponse()
                    answer, status, rheaders = r.read(), r.status, r.getheaders()
                finally:
                    conn.close()
                with proxy.lock:
                    proxy.forwarded.append({
                        "method": self.command, "path": path, "status": status, "request": body,
                        "request_type": self.headers.get("Content-Type", ""), "answer": answer,
                        "headers": {k.lower(): v for k, v in rheaders}})
                keep = [(k, v) for k, v in rheaders
                        if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date")]
                self._reply(status, keep, answer)

            do_GET = do_POST = do_HEAD = do_OPTIONS = do_PUT = do_DELETE = handle_any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def calls(self, method: str, path: str) -> list[dict]:
        with self.lock:
            return [c for c in self.forwarded if c["method"] == method and c["path"] == path]

    def failures(self) -> list[tuple]:
        """Forwarded requests answered >= 400, but the apps' /socket.io/ polling."""
        with self.lock:
            return [(c["method"], c["path"], c["status"], c["answer"][:200]) for c in self.forwarded
                    if c["status"] >= 400 and not c["path"].startswith("/socket.io/")]


@pytest.fixture(scope="module")
def browser():
    with headless_chromium("1280,900", console_log=True) as driver:
        yield driver


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_process(tmp_path_factory.mktemp("webapps"), "--max-pixels", 1_000_000, "--io-threads", 2) as s:
        yield s


def picture(h=240, w=320):
    """A grainy gradient (a fill never reproduces the grain) with a red disc under the stroke."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([30 + 120 * xx / w, 80 + 100 * yy / h, 170 + 0 * xx], -1)
    img = img + np.random.default_rng(0).normal(0, 6, img.shape)
    img[(yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= 8 ** 2] = (230, 20, 20)
    return np.clip(img, 0, 255).astype(np.uint8)


def wait_for(driver, predicate, what, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate())
    except Exception as e:  # a readable failure: what did not happen
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from e


def canvas_rgba(driver, index: int) -> np.ndarray:
    w, h, b = driver.execute_script(
        "const c = document.getElementsByTagName('canvas')[arguments[0]];"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = ''; for (let i = 0; i < d.length; i++) s += String.fromCharCode(d[i]);"
        "return [c.width, c.height, btoa(s)];", index)
    return np.frombuffer(base64.b64decode(b), np.uint8).reshape(h, w, 4)


def stroke(driver, element):
    """A horizontal mouse stroke through the centre of ``element`` (the canvas, shown at 1:1)."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element_with_offset(element, -30, 0).click_and_hold() \
        .move_by_offset(15, 0).move_by_offset(15, 0).move_by_offset(15, 0).move_by_offset(15, 0) \
        .release().perform()


def top_right_button(driver, selector: str):
    """The rightmost control of the app's top bar: Settings, in both apps."""
    return driver.execute_script(
        "const bs = Array.from(document.querySelectorAll(arguments[0])).filter(b => {"
        "  const r = b.getBoundingClientRect(); return r.top < 60 && r.width > 0; });"
        "bs.sort((a, b) => a.getBoundingClientRect().left - b.getBoundingClientRect().left);"
        "return bs[bs.length - 1];", selector)


def dialog_text(driver) -> str:
    return driver.execute_script("const e = document.querySelector('[role=dialog]'); return e ? e.innerText : '';")


def console_errors(driver) -> list[str]:
    """The browser's console errors, but the 404s of the apps' /socket.io/ polling."""
    out = []
    for e in driver.get_log("browser"):
        msg = e.get("message", "")
        if "/socket.io/" in msg and "404" in msg:
            continue
        if e.get("level") == "SEVERE":
            out.append(msg)
    return out


def check_fill(answer: bytes, image: np.ndarray, mask: bytes):
    """The answer changed every pixel of the hole IOPaint's rule cuts from the app's own mask
    (its faint anti-aliased rim included) and none outside it."""
    hole = iopaints_hole(mask)
    alpha = np.asarray(Image.open(io.BytesIO(mask)).convert("RGBA"))[..., 3]
    rim = (alpha > 0) & (alpha < 128)
    assert hole.sum() > 500 and hole[120, 160], "the stroke did not make the hole expected"
    assert rim.sum() > 20 and hole[rim].all(), "no faint rim in the app's mask: the rule is not tested"
    out = np.asarray(Image.open(io.BytesIO(answer)).convert("RGB"))
    assert out.shape == image.shape
    changed = np.any(out != image, axis=-1)
    assert not changed[~hole].any(), f"{changed[~hole].sum()} pixels outside the app's hole changed"
    assert changed[hole].mean() > 0.98, "the stroke was not filled"
    assert changed[rim].mean() > 0.9, "the faint rim of the stroke was not filled"
    assert out[120, 160, 0] < 150, "the red disc is still there under the stroke"
    return out


def photo_file(tmp_path):
    """The test picture and the PNG file the app opens (artifacts folder made)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image = picture()
    src = tmp_path / "photo.png"
    Image.fromarray(image).save(src)
    return image, src


def multipart_files(body: bytes, content_type: str) -> dict:
    msg = message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=HTTP)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in msg.iter_parts()}


def test_iopaint_web_app(browser, server, webapps, tmp_path):
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    image, src = photo_file(tmp_path)
    schema = iopaint_schema(webapps["iopaint"])
    d = browser
    with WebAppProxy(webapps["iopaint"] / "iopaint" / "web_app", server.url) as proxy:
        # what the app reads at start, against IOPaint's own schema
        conn = http.client.HTTPConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), timeout=30)
        for path, model in (("/api/v1/server-config", schema.ServerConfigResponse), ("/api/v1/model", schema.ModelInfo)):
            conn.request("GET", path)
            r = conn.getresponse()
            got = json.loads(r.read())
            assert r.status == 200
            checked = model.model_validate(got).model_dump(mode="json")  # raises on a missing/wrong key
            assert {k: got[k] for k in checked} == checked, path  # computed fields: what IOPaint computes
        conn.close()

        d.get(proxy.url + "/")
        assert d.title == "IOPaint"
        wait_for(d, lambda: proxy.calls("GET", "/api/v1/server-config") and proxy.calls("GET", "/api/v1/model"),
                 "the app to read server-config and model")
        d.find_element(By.CSS_SELECTOR, "input[type=file][id^=file-upload]").send_keys(str(src))
        wait_for(d, lambda: d.execute_script(
            "const c = document.getElementsByTagName('canvas'); return c.length >= 2 && c[0].width === 320;"),
            "the image in the editor")
        time.sleep(0.5)  # the editor centres the image once loaded
        stroke(d, d.find_elements(By.TAG_NAME, "canvas")[-1])
        wait_for(d, lambda: proxy.calls("POST", "/api/v1/inpaint"), "the app's inpaint request")
        call = proxy.calls("POST", "/api/v1/inpaint")[0]
        assert call["status"] == 200, call["answer"][:300]
        sent = json.loads(call["request"])
        assert sent["image"].startswith("data:image/png;base64,") and sent["mask"].startswith("data:image/png;base64,")
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(base64.b64decode(sent["image"].split(",", 1)[1]))).convert("RGB")), image)
        out = check_fill(call["answer"], image, base64.b64decode(sent["mask"].split(",", 1)[1]))
        assert call["headers"]["content-type"] == "image/png"
        # the page shows the server's answer
        wait_for(d, lambda: np.array_equal(canvas_rgba(d, 0)[..., :3], out), "the page to show the answer", 30)
        d.save_screenshot(str(ARTIFACTS / "iopaint_filled.png"))

        # Settings: the dialog opens and lists the served model; its tabs render; Ok closes it
        top_right_button(d, "button").click()
        wait_for(d, lambda: "Settings" in dialog_text(d), "the Settings dialog")
        text = dialog_text(d)
        assert "Current Model" in text and "default.onnx" in text, text
        d.save_screenshot(str(ARTIFACTS / "iopaint_settings.png"))
        for tab in ("General", "Plugins", "Model"):
            d.find_element(By.XPATH, f"//div[@role='dialog']//button[normalize-space()='{tab}']").click()
            time.sleep(0.3)
        d.find_element(By.XPATH, "//div[@role='dialog']//button[normalize-space()='Ok']").click()
        wait_for(d, lambda: not dialog_text(d), "the Settings dialog to close")
        time.sleep(0.5)
        errors = console_errors(d)
        assert not errors, "console errors:\n" + "\n".join(errors)
        assert not proxy.failures(), proxy.failures()
        assert proxy.calls("POST", "/api/v1/gen-info") and proxy.calls("GET", "/api/v1/inputimage")
    print(f"IOPaint web app: {time.monotonic() - t0:.1f} s")


def test_lama_cleaner_web_app(browser, server, webapps, tmp_path):
    from selenium.webdriver.common.by import By

    t0 = time.monotonic()
    image, src = photo_file(tmp_path)
    d = browser
    d.get("about:blank")
    d.get_log("browser")  # drop what an earlier test left
    with WebAppProxy(webapps["lama_cleaner"] / "lama_cleaner" / "app" / "build", server.url) as proxy:
        d.get(proxy.url + "/")
        assert d.title.startswith("lama-cleaner")
        wait_for(d, lambda: all(proxy.calls("GET", p) for p in ("/server_config", "/model", "/is_desktop",
                                                                 "/inputimage")),
                 "the app to read its server config")
        d.find_elements(By.CSS_SELECTOR, "input[type=file][id^=file-upload]")[-1].send_keys(str(src))
        wait_for(d, lambda: d.execute_script(
            "const c = document.getElementsByTagName('canvas'); return c.length >= 1 && c[0].width === 320;"),
            "the image in the editor")
        time.sleep(0.5)
        stroke(d, d.find_elements(By.TAG_NAME, "canvas")[-1])
        wait_for(d, lambda: proxy.calls("POST", "/inpaint"), "the app's inpaint request")
        call = proxy.calls("POST", "/inpaint")[0]
        assert call["status"] == 200, call["answer"][:300]
        parts = multipart_files(call["request"], call["request_type"])
        assert len(parts) >= 36 and parts["hdStrategy"] == b"Crop"  # the whole form its app sends
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(parts["image"])).convert("RGB")), image)
        out = check_fill(call["answer"], image, parts["mask"])  # lama-cleaner's rule is IOPaint's
        assert call["headers"]["content-type"] == "image/png" and call["headers"]["x-seed"] == "-1"
        wait_for(d, lambda: np.array_equal(canvas_rgba(d, 0)[..., :3], out), "the page to show the answer", 30)
        d.save_screenshot(str(ARTIFACTS / "lama_cleaner_filled.png"))
        # it never had to switch models (GET /model named its own choice)
        assert not proxy.calls("POST", "/model")

        top_right_button(d, "[role=button]").click()
        wait_for(d, lambda: "Settings" in dialog_text(d), "the Settings dialog")
        text = dialog_text(d)
        assert "Model" in text and "lama" in text, text
        model_select = d.find_element(By.CSS_SELECTOR, "[role=dialog] .model-setting-block [role=combobox]")
        assert model_select.get_attribute("disabled") is not None, "the app offers to switch models"
        d.save_screenshot(str(ARTIFACTS / "lama_cleaner_settings.png"))
        time.sleep(0.5)
        errors = console_errors(d)
        assert not errors, "console errors:\n" + "\n".join(errors)
        assert not proxy.failures(), proxy.failures()
    print(f"lama-cleaner web app: {time.monotonic() - t0:.1f} s")
