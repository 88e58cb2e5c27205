"""`fastfill serve` under load, on loopback, next to the same work through Inpainter.batch in-process.

Run from the repo root: `python benchmarks/bench_serve.py [--requests 96] [--seconds 60]`.

1. Latency and throughput: the shipped model, 512x512 photos (crops of the bundled examples) with
   free-form holes, sent as PNG to /api/v1/inpaint/file by 1, 4 and 16 concurrent clients
   (bounded: --requests per level or --seconds, whichever comes first). Prints requests/s and
   p50/p99 latency, and the same images through `Inpainter.batch` in this process (batches of the
   server's size): the ratio is what HTTP, decoding and encoding cost.
2. Memory: the server's RSS (from /proc) before and after --soak requests (default 2,000; 256x256,
   8 clients), with readings on the way: it must stay flat.

The clients share the machine with the server (on 2 cores they take a real share of it).
"""

import argparse
import io
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stroke_mask(h, w, rng):
    """A free-form stroke: a random walk of discs (about 5-10 % of the image)."""
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    y, x = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    r = max(4, h // 24)
    for _ in range(12):
        m |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        y = np.clip(y + rng.normal(0, h / 14), r, h - r)
        x = np.clip(x + rng.normal(0, w / 14), r, w - r)
    return m


def cases(size, n, seed=0):
    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((ROOT / "examples/images").glob("*"))]
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        ph, pw = p.shape[:2]
        s = min(ph, pw, size)
        y, x = rng.integers(0, ph - s + 1), rng.integers(0, pw - s + 1)
        img = np.asarray(Image.fromarray(p[y:y + s, x:x + s]).resize((size, size)))
        mask = stroke_mask(size, size, rng)
        out.append((img, mask, png(img), png(np.where(mask, 255, 0).astype(np.uint8))))
    return out


def png(a):
    b = io.BytesIO()
    Image.fromarray(a).save(b, format="PNG")
    return b.getvalue()


def load(url, payloads, clients, max_requests, max_seconds):
    """Send payloads round-robin from `clients` threads; returns (latencies s, wall s, errors)."""
    import httpx

    lat, errors = [], []
    lock = threading.Lock()
    count = iter(range(max_requests))
    t_end = time.perf_counter() + max_seconds

    def worker():
        with httpx.Client(base_url=url, timeout=300) as c:
            while time.perf_counter() < t_end:
                with lock:
                    i = next(count, None)
                if i is None:
                    return
                img, msk = payloads[i % len(payloads)]
                t0 = time.perf_counter()
                r = c.post("/api/v1/inpaint/file", files={"image": ("i.png", img), "mask": ("m.png", msk)})
                dt = time.perf_counter() - t0
                with lock:
                    (lat if r.status_code == 200 else errors).append(dt if r.status_code == 200 else r.status_code)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    return np.array(lat), time.perf_counter() - t0, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--requests", type=int, default=96, help="at most this many per concurrency level")
    ap.add_argument("--seconds", type=float, default=60.0, help="at most this long per level")
    ap.add_argument("--soak", type=int, default=2000, help="requests of the memory run (0: skip)")
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()

    data = cases(args.size, 16)
    payloads = [(a, b) for _, _, a, b in data]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(os.devnull, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "fastfill.cli", "serve", "--port", str(port), "--queue", "64",
                             "--batch-size", str(args.batch_size)], stdout=log, stderr=log)
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        cfg = httpx.get(url + "/api/v1/server-config").json()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
              f"model {cfg['model']['name']} ({cfg['model']['kind']}, prefill {cfg['model']['fill']}) on "
              f"{cfg['backend']} {cfg['device']}; {args.size}x{args.size} PNG, free-form holes; "
              f"server batches of up to {cfg['limits']['max_batch']}")

        # in-process reference: the same decoded arrays, the same batch size
        from fastfill import Inpainter

        inp = Inpainter(batch_size=args.batch_size)
        imgs, masks = [d[0] for d in data], [d[1] for d in data]
        inp.batch(imgs[:2], masks[:2])  # warm-up
        t0 = time.perf_counter()
        reps = 0
        while time.perf_counter() - t0 < 5 or reps < 1:
            inp.batch(imgs, masks)
            reps += 1
        inproc = reps * len(imgs) / (time.perf_counter() - t0)
        inp.close()
        del inp
        print(f"in-process Inpainter.batch (decoded arrays, batches of {args.batch_size}): {inproc:.1f} images/s")

        load(url, payloads, 2, 4, 30)  # warm-up of the server
        print(f"{'clients':>7s} {'requests':>8s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'vs in-process':>14s} {'errors':>6s}")
        for clients in (1, 4, 16):
            lat, wall, errors = load(url, payloads, clients, args.requests, args.seconds)
            rps = len(lat) / wall
            print(f"{clients:7d} {len(lat):8d} {rps:7.2f} {1e3 * np.percentile(lat, 50):8.1f} "
                  f"{1e3 * np.percentile(lat, 99):8.1f} {rps / inproc:13.2f}x {len(errors):6d}")
        stats = httpx.get(url + "/api/v1/server-config").json()["stats"]
        print(f"server: {stats['batches']} batches for {stats['images']} images (largest {stats['largest']})")

        if args.soak:
            small = [(a, b) for _, _, a, b in cases(256, 16, seed=1)]
            readings = [(0, rss_mb(proc.pid))]
            step = max(1, args.soak // 4)
            done = 0
            t0 = time.perf_counter()
            while done < args.soak:
                n = min(step, args.soak - done)
                lat, _, errors = load(url, small, 8, n, 3600)
                done += len(lat) + len(errors)
                readings.append((done, rss_mb(proc.pid)))
            print(f"memory: server RSS over {done} requests (256x256, 8 clients, "
                  f"{done / (time.perf_counter() - t0):.1f} req/s): "
                  + ", ".join(f"{n}: {mb:.0f} MB" for n, mb in readings)
                  + f"; growth after the first {step}: {readings[-1][1] - readings[1][1]:+.1f} MB")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
