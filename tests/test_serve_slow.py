"""`fastfill serve` against slow clients (slowloris): a real server process, raw sockets on loopback.

Sockets that dribble a request a byte at a time must not starve real requests; incomplete headers
and bodies are answered 408 and closed after their timeouts; open connections stay bounded.
"""

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest

from conftest import serve_process
from test_serve import assert_json_error, check_filled, decode, encode, mask_png, scene

httpx = pytest.importorskip("httpx", reason="httpx (the 'dev' extra) is not installed")

# More dribblers than the server's bound on requests in flight (max(64, 4 x (queue + io-threads)) = 64
# here), fewer than its bound on open connections.
DRIBBLERS = 80
MAX_CONNECTIONS = 100
HEADER_TIMEOUT, BODY_TIMEOUT = 8, 2


def read_until_closed(sock, limit: float):
    """What the server sends until it closes the connection; None if still open after ``limit`` s."""
    sock.settimeout(limit)
    data = b""
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        return None
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionResetError:  # closed while our bytes were unread: a reset
        return data


def still_open(sock) -> bool:
    """Nothing to read and no end of stream yet."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return False  # an answer, or the end of the stream
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_slow_clients_do_not_starve_the_server_and_are_closed(tmp_path):
    image, mask = scene()
    files = {"image": ("i.png", encode(image)), "mask": ("m.png", mask_png(mask))}
    with serve_process(tmp_path, "--queue", 12, "--io-threads", 4, "--max-connections", MAX_CONNECTIONS,
                       "--header-timeout", HEADER_TIMEOUT, "--body-timeout", BODY_TIMEOUT) as s:
        u = urlsplit(s.url)
        addr = (u.hostname, u.port)
        # a POST that announces 100 bytes and sends 10
        short = socket.create_connection(addr, timeout=10)
        short.sendall(b"POST /api/v1/inpaint HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n0123456789")
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n"
        dribblers = [socket.create_connection(addr, timeout=10) for _ in range(DRIBBLERS)]
        stop = threading.Event()

        def dribble():  # one byte a second on every socket
            for i in range(len(request)):
                for d in dribblers:
                    try:
                        d.send(request[i:i + 1])
                    except OSError:
                        pass
                if stop.wait(1):
                    return

        thread = threading.Thread(target=dribble, daemon=True)
        thread.start()
        try:
            time.sleep(1)  # every dribbler has sent a byte
            with httpx.Client(base_url=s.url, timeout=60) as c:
                assert c.get("/healthz").status_code == 200
                r = c.post("/api/v1/inpaint/file", files=files)
                assert r.status_code == 200, r.text
                check_filled(decode(r.content)[1], image, mask)
            # answered while the dribblers were all still connected, not after their timeout
            assert all(still_open(d) for d in dribblers)

            answer = read_until_closed(short, 30)
            assert answer is not None, "a POST with a short body was neither answered nor closed"
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"--body-timeout" in answer and b"connection: close" in answer.lower()

            for d in dribblers:  # incomplete headers: 408 (or a reset, our next byte unread) and closed
                got = read_until_closed(d, 30)
                assert got is not None, "a connection with incomplete headers was never closed"
                assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got
        finally:
            stop.set()
            thread.join(5)
            for d in dribblers + [short]:
                d.close()

        # the bound on open connections: past it a connection gets 503 and is closed; idle
        # connections that send nothing are closed after the header timeout
        idle = [socket.create_connection(addr, timeout=10) for _ in range(MAX_CONNECTIONS)]
        try:
            with socket.create_connection(addr, timeout=10) as extra:
                got = read_until_closed(extra, 30)
            assert got is not None and got.startswith(b"HTTP/1.1 503 "), got
            assert b"Retry-After" in got or b"retry-after" in got
            for d in idle:
                assert read_until_closed(d, 30) == b""
        finally:
            for d in idle:
                d.close()
        with httpx.Client(base_url=s.url, timeout=60) as c:
            assert c.get("/healthz").status_code == 200
            assert_json_error(c.get("/api/v1/nope"), 404)
        log = s.log()
        assert "Traceback" not in log
        assert " 408 " in log and "--header-timeout" in log


def test_connection_bound_and_timeouts_are_bounded():
    from conftest import invoke
    from fastfill import Inpainter
    from fastfill.errors import InputError
    from fastfill.serve import create_app
    from fastfill.serve.app import ServeLimits

    for flag, value in (("--max-connections", 8), ("--max-connections", 10**6), ("--header-timeout", 0),
                        ("--body-timeout", 0), ("--body-timeout", 10**6)):
        code, _, err = invoke("serve", flag, value)
        assert code == 2 and flag in err and "range" in err, err
    for bad in ({"max_connections": 1}, {"header_timeout": 0.0}, {"body_timeout": float("inf")}):
        with pytest.raises(InputError, match=next(iter(bad))):
            create_app(Inpainter(), ServeLimits(**bad))


def test_decoded_images_held_at_once_stay_within_queue_batch_and_io_threads(monkeypatch):
    """A burst of requests: fills done waited behind every pending decode for an I/O thread,
    each holding its image and its result, so as many images were held as requests were in
    flight (64 against the 22 the memory bound counts). Now at most queue + batch + io-threads
    requests hold one; the rest wait with their bodies, or get 503 when the queue is full."""
    import httpx

    from conftest import serve_in_thread
    from fastfill import Inpainter
    from fastfill.serve.app import Server, ServeLimits, create_app
    from fastfill.serve.batcher import Batcher, Busy

    held = {"now": 0, "peak": 0}
    lock = threading.Lock()
    decode_, encode_ = Server.decode, Server.encode

    def counted_decode(self, *a, **k):
        out = decode_(self, *a, **k)
        with lock:
            held["now"] += 1
            held["peak"] = max(held["peak"], held["now"])
        return out

    def counted_encode(self, *a, **k):
        try:
            return encode_(self, *a, **k)
        finally:
            with lock:
                held["now"] -= 1

    submit_ = Batcher.submit

    def counted_submit(self, *a, **k):  # (refused once decoded: its image let go)
        try:
            return submit_(self, *a, **k)
        except Busy:
            with lock:
                held["now"] -= 1
            raise

    monkeypatch.setattr(Server, "decode", counted_decode)
    monkeypatch.setattr(Server, "encode", counted_encode)
    monkeypatch.setattr(Batcher, "submit", counted_submit)
    app = create_app(Inpainter(method="harmonic"), ServeLimits(queue=2, io_threads=1), max_batch=1)
    with serve_in_thread(app) as base:
        image, mask = scene(256, 256)
        files = {"image": ("i.png", encode(image)), "mask": ("m.png", mask_png(mask))}
        url = f"{base}/api/v1/inpaint/file"
        codes = []

        def send():
            r = httpx.post(url, files=files, timeout=120)
            with lock:
                codes.append(r.status_code)

        burst = [threading.Thread(target=send) for _ in range(24)]
        for t in burst:
            t.start()
        for t in burst:
            t.join()
    assert len(codes) == 24 and set(codes) <= {200, 503} and codes.count(200) >= 4, codes
    assert held["peak"] <= 2 + 1 + 1 and held["now"] == 0, held
