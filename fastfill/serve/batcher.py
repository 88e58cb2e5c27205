"""Micro-batching for the server: many request threads, one inference thread, one bounded queue.

Requests put (image, mask) pairs on a bounded queue and wait on a future. One thread takes the
first waiting pair and whatever else is already queued (up to ``max_batch``, never waiting for
more: a lone request is not delayed; at most ``max_area`` pixels of windows, which bound the
fill's memory) and fills them with one :meth:`Inpainter.batch` call. While
that call runs, new requests queue up and form the next batch, so batches grow with the load.
A full queue is refused at once (:class:`Busy`), never an unbounded backlog.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future


log = logging.getLogger("fastfill.serve")


class Busy(Exception):
    """The queue is full: try again later."""


def fill_area(pair) -> int:
    """The pixels the fill of a checked pair works over: its windows' area."""
    return sum(h * w for _, _, h, w in pair.windows)


class Batcher:
    """Fill (image, mask) pairs submitted from any thread, in batches, on one inference thread.

    Args:
        inpainter: the :class:`fastfill.Inpainter` that does the work (used from one thread only).
        max_queue: pairs that may wait (not counting the batch being filled); past it
            :meth:`submit` raises :class:`Busy`.
        max_batch: the most pairs per ``Inpainter.batch`` call.
        max_area: the most window pixels (:func:`fill_area`) per call, past the first pair (a
            pair over it alone is the caller's to refuse).
    """

    def __init__(self, inpainter, *, max_queue: int = 16, max_batch: int = 8,
                 max_area: int | None = None):
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue and max_batch must be >= 1")
        self.inpainter = inpainter
        self.max_batch = int(max_batch)
        self.max_area = max_area
        self._next = None  # a pair taken from the queue that did not fit its batch: the next one's
        self.max_queue = int(max_queue)
        # counters since the start, read through stats()
        self._stats = {"batches": 0, "images": 0, "largest": 0, "refused": 0, "infer_seconds": 0.0}
        self._q: queue.Queue = queue.Queue(maxsize=self.max_queue)
        self._lock = threading.Lock()
        self._stop = object()
        self._thread = threading.Thread(target=self._loop, name="fastfill-infer", daemon=True)
        self._thread.start()

    def full(self) -> bool:
        """True when a :meth:`submit` now would be refused (checked before decoding a request)."""
        return self._q.full()

    def stats(self) -> dict:
        """Counters since the start (batches, images, the largest batch, refused requests,
        seconds in the engine) and the requests waiting now; read by ``/api/v1/server-config``."""
        with self._lock:
            return dict(self._stats, waiting=self._q.qsize())

    def submit(self, pair) -> Future:
        """Queue one pair (as :meth:`Inpainter.check` returns it); the future gets the filled
        uint8 image or the error."""
        fut: Future = Future()
        try:
            self._q.put_nowait((pair, fut))
        except queue.Full:
            with self._lock:
                self._stats["refused"] += 1
            raise Busy(f"{self.max_queue} requests already waiting") from None
        return fut

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        self._q.put(self._stop)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first, self._next = (self._next, None) if self._next is not None else (self._q.get(), None)
            if first is self._stop:
                return
            items = [first]
            area = fill_area(first[0]) if self.max_area is not None else 0
            stop_after = False
            while len(items) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is self._stop:
                    stop_after = True
                    break
                if self.max_area is not None:
                    more = fill_area(nxt[0])
                    if area + more > self.max_area:
                        self._next = nxt  # (first of the next batch)
                        break
                    area += more
                items.append(nxt)
            items = [it for it in items if it[1].set_running_or_notify_cancel()]
            if items:
                self._run(items)
            if stop_after:  # (a pair held for the next batch breaks the loop before the stop)
                return

    def _run(self, items) -> None:
        t0 = time.perf_counter()
        try:
            results = self.inpainter.batch([pair for pair, _ in items])
        except Exception as e:  # noqa: BLE001 - attributed below
            if len(items) == 1:
                items[0][1].set_exception(e)
                return
            # One bad pair must not fail the others: fill them one by one to find it.
            log.debug("batch of %d failed (%s); retrying one by one", len(items), e)
            for it in items:
                self._run_one(it)
            return
        finally:
            with self._lock:
                self._stats["infer_seconds"] += time.perf_counter() - t0
        self._count(len(items))
        for (_, fut), r in zip(items, results):
            fut.set_result(r)

    def _run_one(self, item) -> None:
        pair, fut = item
        try:
            r = self.inpainter.batch([pair])[0]
        except Exception as e:  # noqa: BLE001 - the request's answer
            fut.set_exception(e)
            return
        self._count(1)
        fut.set_result(r)

    def _count(self, n: int) -> None:
        with self._lock:
            self._stats["batches"] += 1
            self._stats["images"] += n
            self._stats["largest"] = max(self._stats["largest"], n)
