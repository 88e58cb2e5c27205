"""`fastfill serve` at the HTTP level: HEAD, malformed requests, clients that leave, bodies over the
limit, the listening port and the shutdown: a real server process, raw sockets on loopback."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import numpy as np
import pytest

from conftest import serve_process
from test_serve import assert_json_error, encode, mask_png, scene
from test_serve_slow import read_until_closed

httpx = pytest.importorskip("httpx", reason="httpx (the 'dev' extra) is not installed")


def _addr(s):
    u = urlsplit(s.url)
    return u.hostname, u.port


def _wait_for(predicate, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_head_malformed_requests_and_clients_that_leave(tmp_path):
    image, mask = scene(64, 64)
    with serve_process(tmp_path, "--max-body", 200_000, "--max-fill-pixels", 2000, "--body-timeout", 30) as s:
        # HEAD on the GET routes: the head alone (RFC 9110 §9.1); uptime checks use it
        for path in ("/healthz", "/", "/api/v1/server-config", "/docs"):
            r = httpx.head(s.url + path, timeout=30)
            assert r.status_code == 200, (path, r.status_code)
            assert r.content == b"" and int(r.headers["content-length"]) > 0
        assert httpx.head(s.url + "/api/v1/inpaint", timeout=30).status_code == 405  # a POST route
        assert _wait_for(lambda: '"HEAD /healthz" 200 0 B' in s.log())  # (logged as sent: no body)

        # malformed HTTP: the JSON error of every answer, and an access line
        with socket.create_connection(_addr(s), timeout=10) as c:
            c.sendall(b"POST /api/v1/inpaint HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
            answer = read_until_closed(c, 10)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower()
        assert b'"status":400' in body and b"bad HTTP request" in body
        assert _wait_for(lambda: '400: bad HTTP request' in s.log())

        # a client that sends its headers and one byte of its body, then goes: not an internal error
        with socket.create_connection(_addr(s), timeout=10) as c:
            c.sendall(b"POST /api/v1/inpaint HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            time.sleep(0.3)
        assert _wait_for(lambda: re.search(r'"POST /api/v1/inpaint" 499 ', s.log()))
        assert "internal error" not in s.log()

        # a body over --max-body sent right after its headers (no Expect: 100-continue): the 413's
        # JSON arrives; the connection was closed with the body unread, and the client got a reset
        with socket.create_connection(_addr(s), timeout=20) as c:
            c.sendall(b"POST /api/v1/inpaint HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 4000000\r\n\r\n" + b"a" * 4_000_000)
            answer = read_until_closed(c, 20)
        assert answer.startswith(b"HTTP/1.1 413") and b'"status":413' in answer, answer[:200]

        # the fill's area in the digits that tell it from the limit; a form's flag that is no boolean
        files = {"image": ("i.png", encode(image)), "mask": ("m.png", mask_png(mask))}
        r = httpx.post(s.url + "/api/v1/inpaint/file", files=files, timeout=60)
        msg = assert_json_error(r, 413)
        assert re.search(r"would work over 0\.00\d+ megapixels .*over the limit of 0\.002 ", msg), msg
        r = httpx.post(s.url + "/api/v1/inpaint/file", files=files, data={"resize_mask": "maybe"}, timeout=60)
        assert "resize_mask: expected true or false" in assert_json_error(r, 400)
        small = mask_png(np.zeros((32, 32), bool))
        r = httpx.post(s.url + "/api/v1/inpaint/file", files={"image": ("i.png", encode(image)),
                                                               "mask": ("m.png", small)}, timeout=60)
        assert "(send the form field resize_mask=true to scale it)" in assert_json_error(r, 400)
    assert "internal error" not in s.log()


def _start(args, tmp_path, name):
    log = tmp_path / name
    f = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "fastfill.cli", "serve", *map(str, args)],
                            stdout=f, stderr=subprocess.STDOUT, env={**os.environ})
    f.close()
    return proc, log


def test_port_zero_names_the_port_it_got_and_a_port_in_use_is_one_line(tmp_path):
    pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")
    proc, log = _start(["--port", 0], tmp_path, "zero.log")
    try:
        assert _wait_for(lambda: "page: http://" in log.read_text(), 60), log.read_text()
        port = int(re.search(r"page: http://127\.0\.0\.1:(\d+)/", log.read_text()).group(1))
        assert port != 0
        assert _wait_for(lambda: _healthy(port), 30)
        again = subprocess.run([sys.executable, "-m", "fastfill.cli", "serve", "--port", str(port)],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 2, again.stderr
        assert f"cannot listen on 127.0.0.1:{port}:" in again.stderr
        assert "page: http" not in again.stderr  # (it was printed before the bind failed)
    finally:
        proc.terminate()
        proc.wait(30)
    bad = subprocess.run([sys.executable, "-m", "fastfill.cli", "serve", "--max-pixels", "300000000"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--max-pixels" in bad.stderr


def _healthy(port) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_stalled_upload_holds_the_shutdown_for_the_grace_at_most(tmp_path):
    """SIGTERM while a client has sent one byte of its body: the server exits after its grace (30 s),
    not the --body-timeout (300 s here) the upload could still take."""
    with serve_process(tmp_path, "--body-timeout", 300) as s:
        with socket.create_connection(_addr(s), timeout=10) as c:
            c.sendall(b"POST /api/v1/inpaint HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            time.sleep(0.5)
            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(120)
            took = time.monotonic() - t0
    assert s.proc.returncode in (143, -signal.SIGTERM), s.log()
    assert took < 90, took  # a bound on a hang (the grace is 30 s), not a speed


def test_a_request_whose_client_left_is_not_filled(tmp_path):
    """Requests sent whole and then abandoned (a page user who gave up and sent again) were
    decoded, filled and encoded all the same, holding the one model thread; now a request whose
    client is gone when its fill would be queued is dropped (logged 499), and one gone by the
    time its fill is done is not encoded."""
    import threading

    rng = np.random.default_rng(0)
    # (noise: a PNG whose decode takes a while, so a client that closes right after sending is
    # known to be gone by the time its fill would be queued)
    image = rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    mask = np.zeros((1200, 1600), bool)
    mask[300:700, 500:1000] = True
    body_parts = {"image": encode(image), "mask": mask_png(mask)}
    b = "Bxx"
    body = b""
    for n, d in body_parts.items():
        body += (f'--{b}\r\nContent-Disposition: form-data; name="{n}"; filename="{n}.png"\r\n\r\n'.encode()
                 + d + b"\r\n")
    body += f"--{b}--\r\n".encode()
    head = (f"POST /api/v1/inpaint/file HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            f"boundary={b}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with serve_process(tmp_path, "--method", "patch", "--io-threads", 1) as s:
        first = {}

        def stay():  # the client that waits: its fill holds the model thread
            first["r"] = httpx.post(s.url + "/api/v1/inpaint/file", timeout=300,
                                    files={"image": ("i.png", body_parts["image"]), "mask": ("m.png", body_parts["mask"])})

        t = threading.Thread(target=stay)
        t.start()
        time.sleep(0.5)
        for _ in range(2):  # sent whole, then gone
            with socket.create_connection(_addr(s), timeout=10) as c:
                c.sendall(head + body)
        t.join(300)
        assert first["r"].status_code == 200
        assert _wait_for(lambda: s.log().count('"POST /api/v1/inpaint/file" 499 ') == 2, 60), s.log()
        stats = httpx.get(s.url + "/api/v1/server-config", timeout=30).json()["stats"]
        assert stats["images"] == 1, stats
    assert "internal error" not in s.log()
