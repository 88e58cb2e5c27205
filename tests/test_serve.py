"""`fastfill serve`: the real server in its own process on a loopback port, called over HTTP.

Every route with real PNG/JPEG bytes; every bad input gets its status and a JSON body (never a
traceback) and the server keeps serving; a concurrent burst is batched and every answer has the
right pixels; a full queue answers 503 with Retry-After.
"""

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from conftest import serve_process

httpx = pytest.importorskip("httpx", reason="httpx (the 'dev' extra) is not installed")


def scene(h=128, w=160, seed=0):
    """A smooth picture with a red disc (the object to remove) and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([40 + 100 * xx / w, 90 + 80 * yy / h, 160 + 0 * xx], -1)
    img = img + rng.normal(0, 3, img.shape)
    cy, cx, r = h // 2 + seed % 7, w // 2 - seed % 5, h // 6
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img[disc] = (220, 30, 30)
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 3) ** 2
    return np.clip(img, 0, 255).astype(np.uint8), mask


def encode(arr, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def mask_png(mask) -> bytes:
    return encode(np.where(mask, 255, 0).astype(np.uint8))


def as_json(image: bytes, mask: bytes, data_url=False, **extra) -> dict:
    b = base64.b64encode(image).decode()
    return {"image": ("data:image/png;base64," + b) if data_url else b,
            "mask": base64.b64encode(mask).decode(), **extra}


def decode(data: bytes):
    im = Image.open(io.BytesIO(data))
    return im.format, np.asarray(im)


def check_filled(result: np.ndarray, image: np.ndarray, mask: np.ndarray):
    """Outside the hole: the input exactly. Inside: the red disc is gone."""
    assert result.shape == image.shape
    np.testing.assert_array_equal(result[~mask], image[~mask])
    inside = result[mask].astype(int)
    assert (inside[:, 0] - inside[:, 2]).mean() < 0, "the red object is still there"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    with serve_process(tmp, "--max-pixels", 300_000, "--max-body", 2_000_000, "--queue", 64,
                       "--batch-size", 8, "--io-threads", 2) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def assert_json_error(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == status and body["error"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body["error"]


def test_health_config_docs_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    cfg = client.get("/api/v1/server-config").json()
    assert cfg["model"]["kind"] == "glcic" and cfg["model"]["name"] == "default.onnx"
    # the model file's own prefill, and what fills in its place (it said "patch" for the model)
    assert cfg["model"]["fill"] == "harmonic" and cfg["model"]["runs"].startswith("the default fill, patch (")
    # the shipped net returns its harmonic prefill unchanged: the default fill runs, and says so
    assert cfg["backend"] == "classical:patch" and cfg["device"] == "cpu"
    assert "prefill unchanged" in cfg["backend_selection"] and "does not run" in cfg["backend_selection"]
    assert cfg["running_on"] == "CPU"
    assert cfg["limits"]["max_pixels"] == 300_000 and cfg["limits"]["max_body"] == 2_000_000
    assert cfg["limits"]["queue"] == 64 and cfg["limits"]["max_batch"] == 8
    schema = client.get("/openapi.json").json()
    assert {"/api/v1/inpaint", "/api/v1/inpaint/file", "/api/v1/server-config", "/healthz"} <= set(schema["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text.lower()  # the docs page works offline too
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace('href="/', "").split("<body>")[0]  # no CDN in the head


def test_json_route_png_and_data_url(client):
    image, mask = scene()
    for data_url in (False, True):
        r = client.post("/api/v1/inpaint", json=as_json(encode(image), mask_png(mask), data_url,
                                                        ldm_steps=20, hd_strategy="Crop", prompt=""))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        fmt, out = decode(r.content)
        assert fmt == "PNG"
        check_filled(out, image, mask)


def test_file_route_matches_json_route(client):
    image, mask = scene(seed=1)
    png, m = encode(image), mask_png(mask)
    a = client.post("/api/v1/inpaint/file", files={"image": ("x.png", png, "image/png"),
                                                   "mask": ("m.png", m, "image/png")})
    b = client.post("/api/v1/inpaint", json=as_json(png, m))
    assert a.status_code == 200 and a.content == b.content
    check_filled(decode(a.content)[1], image, mask)


def test_jpeg_in_jpeg_out(client):
    image, mask = scene(seed=2)
    jpg = encode(image, "JPEG", quality=95)
    r = client.post("/api/v1/inpaint/file", files={"image": ("x.jpg", jpg), "mask": ("m.png", mask_png(mask))})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    fmt, out = decode(r.content)
    assert fmt == "JPEG" and out.shape == image.shape
    # outside the hole: what the JPEG held, up to a second JPEG encoding (README: the format forces it)
    src = decode(jpg)[1].astype(int)
    assert np.abs(out.astype(int)[~mask] - src[~mask]).mean() < 2.0


def test_alpha_kept(client):
    image, mask = scene(seed=3)
    alpha = np.full(mask.shape, 255, np.uint8)
    alpha[:, :20] = 0
    alpha[:10] = 77
    rgba = np.dstack([image, alpha])
    r = client.post("/api/v1/inpaint", json=as_json(encode(rgba), mask_png(mask)))
    assert r.status_code == 200
    fmt, out = decode(r.content)
    assert out.shape == (*mask.shape, 4)
    np.testing.assert_array_equal(out[..., 3][~mask], alpha[~mask])
    assert (out[..., 3][mask] == 255).all()
    np.testing.assert_array_equal(out[..., :3][~mask], image[~mask])


def test_bad_inputs_get_json_errors_and_the_server_keeps_serving(client):
    image, mask = scene()
    png, m = encode(image), mask_png(mask)
    files = lambda img, msk: {"image": ("i.png", img), "mask": ("m.png", msk)}  # noqa: E731
    # undecodable and truncated images
    assert "not an image" in assert_json_error(client.post("/api/v1/inpaint/file", files=files(b"hello" * 50, m)), 400)
    assert "truncated" in assert_json_error(
        client.post("/api/v1/inpaint/file", files=files(png[: len(png) // 2], m)), 400)
    # mask of another size: 400, or scaled on request
    small = mask_png(mask[::2, ::2])
    said = assert_json_error(client.post("/api/v1/inpaint/file", files=files(png, small)), 400)
    assert "resize_mask" in said and said.startswith("the mask is ")  # (named once)
    r = client.post("/api/v1/inpaint/file", files=files(png, small), data={"resize_mask": "true"})
    assert r.status_code == 200
    assert client.post("/api/v1/inpaint", json=as_json(png, small, resize_mask=True)).status_code == 200
    # JSON route: not base64, not JSON, a field missing, a data: URL that is not base64
    assert "base64" in assert_json_error(client.post("/api/v1/inpaint", json={"image": "@@@", "mask": "x"}), 400)
    assert_json_error(client.post("/api/v1/inpaint", content=b'{"image": ', headers={"content-type": "application/json"}), 400)
    assert "mask" in assert_json_error(client.post("/api/v1/inpaint", json={"image": "aGk="}), 400)
    assert_json_error(client.post("/api/v1/inpaint", json={"image": "data:image/png,abc", "mask": "aGk="}), 400)
    assert "mask" in assert_json_error(client.post("/api/v1/inpaint/file", files={"image": ("i.png", png)}), 400)
    # wrong content types
    assert_json_error(client.post("/api/v1/inpaint", content=json.dumps(as_json(png, m)),
                                  headers={"content-type": "text/plain"}), 415)
    assert_json_error(client.post("/api/v1/inpaint/file", json=as_json(png, m)), 415)
    # over the limits: body (announced, and streamed without a length), pixels (image and mask)
    big = b"x" * 2_100_000
    assert "--max-body" in assert_json_error(
        client.post("/api/v1/inpaint", content=big, headers={"content-type": "application/json"}), 413)
    assert "--max-body" in assert_json_error(
        client.post("/api/v1/inpaint", content=iter([big[:1_000_000], big[1_000_000:]]),
                    headers={"content-type": "application/json"}), 413)
    huge = np.zeros((600, 600, 3), np.uint8)  # 360,000 pixels > 300,000; 1 kB as PNG
    assert "max-pixels" in assert_json_error(
        client.post("/api/v1/inpaint/file", files=files(encode(huge), m)), 413)
    assert "max-pixels" in assert_json_error(
        client.post("/api/v1/inpaint/file", files=files(png, mask_png(np.zeros((600, 600), bool))),
                    data={"resize_mask": "1"}), 413)
    # unknown route, wrong method
    assert_json_error(client.get("/api/v1/nope"), 404)
    assert_json_error(client.get("/api/v1/inpaint"), 405)
    # still serving, right pixels
    r = client.post("/api/v1/inpaint/file", files=files(png, m))
    assert r.status_code == 200
    check_filled(decode(r.content)[1], image, mask)


def test_access_log_one_line_per_request(client, server):
    client.get("/healthz")
    client.get("/api/v1/nope")
    lines = [ln for ln in server.log().splitlines() if '"GET /api/v1/nope"' in ln]
    assert lines and " 404 " in lines[-1] and " ms" in lines[-1] and " B " in lines[-1]
    assert "Traceback" not in server.log()


def test_concurrent_burst_is_batched_with_the_right_pixels(client):
    before = client.get("/api/v1/server-config").json()["stats"]
    # 64 requests, 8 at a time; sizes vary so that a batch mixes shapes
    cases = [scene(128 + 32 * (i % 3), 160 + 16 * (i % 2), seed=i) for i in range(64)]

    def one(i):
        image, mask = cases[i]
        with httpx.Client(base_url=client.base_url, timeout=120) as c:
            return c.post("/api/v1/inpaint/file", files={"image": ("i.png", encode(image)),
                                                         "mask": ("m.png", mask_png(mask))})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(64)))
    for (image, mask), r in zip(cases, answers):
        assert r.status_code == 200, r.text
        check_filled(decode(r.content)[1], image, mask)
    after = client.get("/api/v1/server-config").json()["stats"]
    images = after["images"] - before["images"]
    batches = after["batches"] - before["batches"]
    assert images == 64
    assert batches < 64 and after["largest"] > 1, f"no batching: {batches} batches for 64 requests"


def test_full_queue_answers_503_with_retry_after(tmp_path):
    # one waiting place, one image per model call, a large slow image: a burst must overflow
    image, mask = scene(768, 768)
    mask[:] = False
    mask[100:700, 100:700] = True
    png, m = encode(image), mask_png(mask)
    with serve_process(tmp_path, "--queue", 1, "--batch-size", 1, "--io-threads", 4) as s:
        barrier = threading.Barrier(12)

        def one(_):
            with httpx.Client(base_url=s.url, timeout=120) as c:
                barrier.wait()
                return c.post("/api/v1/inpaint/file", files={"image": ("i.png", png), "mask": ("m.png", m)})

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(12)))
        codes = sorted(r.status_code for r in answers)
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
        for r in answers:
            if r.status_code == 503:
                assert_json_error(r, 503)
                assert int(r.headers["retry-after"]) >= 1
        with httpx.Client(base_url=s.url) as c:
            stats = c.get("/api/v1/server-config").json()["stats"]
        assert stats["refused"] + codes.count(200) <= 12 and stats["largest"] == 1


def test_a_fill_over_its_limit_is_413(tmp_path):
    """A long diagonal stroke's windows are the whole image: a small request could make the
    fill work over tens of megapixels (4 GB at 20). Over --max-fill-pixels: 413, and the server
    goes on."""
    # (windows: the hole's box and the fill's margin, ~100 px: the disc's 136,900 pixels, the
    # stroke's the whole 307,200)
    image, small = scene(480, 640)
    diag = np.zeros((480, 640), bool)
    for k in range(-3, 4):
        i = np.arange(480)
        diag[i, np.clip(i * 4 // 3 + k, 0, 639)] = True
    with serve_process(tmp_path, "--max-fill-pixels", 200_000) as s, \
            httpx.Client(base_url=s.url, timeout=120) as c:
        assert c.get("/api/v1/server-config").json()["limits"]["max_fill_pixels"] == 200_000
        r = c.post("/api/v1/inpaint/file", files={"image": ("i.png", encode(image)),
                                                  "mask": ("m.png", mask_png(diag))})
        msg = assert_json_error(r, 413)
        assert "--max-fill-pixels" in msg and "megapixels" in msg
        r = c.post("/api/v1/inpaint/file", files={"image": ("i.png", encode(image)),
                                                  "mask": ("m.png", mask_png(small))})
        assert r.status_code == 200, r.text
        check_filled(decode(r.content)[1], image, small)


def test_batches_hold_to_their_area():
    """The batcher takes what is waiting up to --batch-size pairs and the area limit; a pair that
    does not fit starts the next batch, none is lost, each gets its own answer."""
    from types import SimpleNamespace

    from fastfill.serve.batcher import Batcher

    gate, sizes = threading.Event(), []

    class Fake:
        def batch(self, pairs):
            gate.wait(10)
            sizes.append([p.n for p in pairs])
            return [p.n for p in pairs]

    b = Batcher(Fake(), max_queue=16, max_batch=8, max_area=250)
    pairs = [SimpleNamespace(n=i, windows=[(0, 0, 10, 10)]) for i in range(7)]  # 100 px each
    futures = [b.submit(p) for p in pairs]
    gate.set()
    assert [f.result(10) for f in futures] == list(range(7))
    b.close()
    assert [n for batch in sizes for n in batch] == list(range(7))
    assert all(len(batch) <= 2 for batch in sizes) and max(len(x) for x in sizes) == 2, sizes


def test_token_and_bind_warning(tmp_path):
    image, mask = scene()
    files = {"image": ("i.png", encode(image)), "mask": ("m.png", mask_png(mask))}
    with serve_process(tmp_path, env={"FASTFILL_TOKEN": "s3cret"}) as s, httpx.Client(base_url=s.url) as c:
        assert_json_error(c.post("/api/v1/inpaint/file", files=files), 401)
        assert_json_error(c.get("/api/v1/server-config", headers={"Authorization": "Bearer nope"}), 401)
        r = c.post("/api/v1/inpaint/file", files=files, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
        assert "Authorization: Bearer" in s.log()
    with serve_process(tmp_path, "--host", "0.0.0.0") as s:
        assert "no authentication" in s.log()
    with serve_process(tmp_path) as s:
        assert "no authentication" not in s.log()


def test_is_loopback():
    from fastfill.serve import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


def test_sigterm_stops_the_server(tmp_path):
    with serve_process(tmp_path) as s:
        s.proc.terminate()
        code = s.proc.wait(15)
    assert code in (0, 143), s.log()
    assert "Traceback" not in s.log()


def test_internal_and_engine_errors_are_json_and_logged(monkeypatch, caplog):
    """A bug inside the server is a 500 JSON answer with no traceback; the log has one line, or
    the traceback with FASTFILL_DEBUG=1. An engine that fails is a 500 naming it. The real app on
    a loopback port, served by uvicorn in a thread."""
    import logging

    from conftest import serve_in_thread
    from fastfill import Inpainter
    from fastfill.files import codecs as fio
    from fastfill.engines import load_engine
    from fastfill.serve.app import create_app

    class Broken:  # an engine whose back-end raises its own error type
        def __init__(self):
            self.inner = load_engine(backend="onnxruntime")
            self.meta, self.name, self.device = self.inner.meta, "broken", "cpu"
            self.fail = False

        def infer(self, x):
            if self.fail:
                raise RuntimeError("device lost")
            return self.inner.infer(x)

    engine = Broken()
    app = create_app(Inpainter(engine))
    with serve_in_thread(app) as base:
        image, mask = scene()
        files = {"image": ("i.png", encode(image)), "mask": ("m.png", mask_png(mask))}
        url = f"{base}/api/v1/inpaint/file"
        caplog.set_level(logging.INFO, logger="fastfill.serve")

        def bug(*a, **k):
            raise ZeroDivisionError("a bug in the encoder")

        monkeypatch.setattr(fio, "encode_image", bug)
        for debug in ("", "1"):
            monkeypatch.setenv("FASTFILL_DEBUG", debug)
            caplog.clear()
            r = httpx.post(url, files=files, timeout=60)
            assert assert_json_error(r, 500) == "internal error (see the server log)"
            logged = "\n".join(rec.getMessage() for rec in caplog.records)
            assert "ZeroDivisionError" in logged and "a bug in the encoder" in logged
            assert ("Traceback" in logged) == bool(debug)
        monkeypatch.undo()
        engine.fail = True
        r = httpx.post(url, files=files, timeout=60)
        assert "broken failed" in assert_json_error(r, 500) and "device lost" in r.json()["error"]
        engine.fail = False
        assert httpx.post(url, files=files, timeout=60).status_code == 200  # still serving


def test_access_log_escapes_control_characters(client, server):
    """A decoded %0a must not forge a second log line, nor %1b write terminal escapes."""
    forged = '12:00:00 127.0.0.1 "GET /admin" 200 9 B 0.1 ms'
    r = client.get("/x%0a" + forged.replace(" ", "%20").replace('"', "%22") + "%0d%1b[2J%1b[31mred%e2%80%ae")
    assert r.status_code == 404
    deadline = time.monotonic() + 10  # the access line is written after the answer is sent
    while "/admin" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "\x1b" not in log and "\r" not in log and "\u202e" not in log
    lines = [ln for ln in log.splitlines() if "/admin" in ln]
    assert lines, log
    for ln in lines:  # the forged text stays inside the real line, which says 404
        assert ln.split(" ", 1)[1].startswith('127.0.0.1 "GET /x') and " 404 " in ln, ln


def test_non_ascii_token_is_401_and_a_bad_token_is_refused_at_start(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import free_port
    from fastfill import Inpainter
    from fastfill.errors import InputError
    from fastfill.serve import create_app

    with serve_process(tmp_path, env={"FASTFILL_TOKEN": "s3cret"}) as s, httpx.Client(base_url=s.url) as c:
        for sent in ("Bearer sécret".encode(), "Bearer s3crét".encode("latin-1"), b"Bearer \xff",
                     b"bearer \x80s3cret"):
            assert_json_error(c.get("/api/v1/server-config", headers={"Authorization": sent}), 401)
        assert c.get("/api/v1/server-config", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert "Traceback" not in s.log() and "TypeError" not in s.log()
    # a token no client can send in a header: one usage line at start, nothing served
    cmd = [sys.executable, "-m", "fastfill.cli", "serve", "--port", str(free_port())]
    for args, env in ((["--token", "sécret"], {}), (["--token", "two words"], {}),
                      (["--token", "tab\there"], {}), ([], {"FASTFILL_TOKEN": "s3crét"})):
        try:
            p = subprocess.run(cmd + args, capture_output=True, text=True, timeout=60,
                               env={**os.environ, **env})
        except subprocess.TimeoutExpired:
            pytest.fail(f"fastfill serve {args} {env} started serving with a token no client can send")
        assert p.returncode == 2, p.stderr
        err = p.stderr.strip().splitlines()
        assert err[-1].startswith("Error: Invalid value for '--token'") and "printable ASCII" in err[-1], p.stderr
        assert "Traceback" not in p.stderr
        assert ("FASTFILL_TOKEN" in err[-1]) == bool(env)
    for bad in ("sécret", "a b", "x\n", "\x00"):
        with pytest.raises(InputError, match="printable ASCII"):
            create_app(Inpainter(), token=bad)
