"""Two small ordered pipelines, shared by the Inpainter's ``stream`` and the file runner.

- :func:`batched` runs a source iterator on a reader thread and a batch function on a worker
  thread, joined by bounded queues; results come back in order in the caller's loop, and the first
  error of any stage is raised there with its own traceback. Stopping the caller's loop stops
  both threads.
- :func:`prefetch` maps a function over items on a thread pool, a bounded number ahead, yielding
  (item, future) in order.
"""

from __future__ import annotations

import collections
import queue
import threading
import types
from typing import Callable, Iterable, Iterator, Sequence


class _Failure:
    """An exception carried from a stage to the caller's loop."""

    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def batched(source: Iterable, work: Callable[[list], Sequence], *, batch: int, depth: int,
            source_wait: float = 1.0) -> Iterator:
    """``work(chunk)`` over chunks of up to ``batch`` items of ``source``, yielding each result
    in order; a chunk is what is ready (a lone item is not held back waiting for more).
    ``source_wait``: how long stopping early waits for a source inside its ``next()`` (a caller's
    stalled camera: briefly; a source of one's own, whose thread must not outlive the process's
    native libraries: until it returns). A generator source is closed by the reading thread when
    it stops (its clean-up runs there); other iterators are left as they are."""
    stages = _Stages(source, work, batch, depth, source_wait)
    try:
        while True:
            item = stages.q_out.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                # (raised with its own traceback, from the failing stage; this frame, which the
                # traceback holds, must not hold the error in turn: that cycle kept whatever the
                # caller's frames held, a video's codecs, until the cyclic collector ran)
                error, item = item.error, None
                try:
                    raise error
                finally:
                    del error
            yield item
    finally:
        stages.stop()


class _Stages:
    """The reader and worker threads of :func:`batched` and their two bounded queues."""

    def __init__(self, source, work, batch, depth, source_wait=1.0):
        self.source, self.work, self.batch = source, work, batch
        self.source_wait = source_wait
        self.q_in: queue.Queue = queue.Queue(maxsize=depth)
        self.q_out: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.reading = False  # the reader is inside the source's next(): the caller's code
        self.threads = [threading.Thread(target=self.reader, name="fastfill-read", daemon=True),
                        threading.Thread(target=self.worker, name="fastfill-infer", daemon=True)]
        for t in self.threads:
            t.start()

    def put(self, q, item) -> bool:
        while not self.stopped.is_set():  # wakes every 0.1 s to see `stop`: never blocks shutdown
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader(self):
        it = None
        try:
            it = iter(self.source)
            while not self.stopped.is_set():
                self.reading = True
                try:
                    item = next(it)
                except StopIteration:
                    self.put(self.q_in, _DONE)
                    return
                finally:
                    self.reading = False
                if not self.put(self.q_in, item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            self.put(self.q_in, _Failure(e))
        finally:
            # (stopped early: the source's own clean-up runs now, on this thread, not whenever
            # the stream is collected)
            if isinstance(it, types.GeneratorType):  # (a generator: not a file or other object)
                it.close()

    def next_chunk(self):
        """(up to `batch` ready items, the end marker or failure that followed them, or None)."""
        first = None
        while first is None and not self.stopped.is_set():
            try:
                first = self.q_in.get(timeout=0.1)
            except queue.Empty:
                continue
        if first is None or first is _DONE or isinstance(first, _Failure):
            return [], first
        chunk = [first]
        while len(chunk) < self.batch:  # take what is ready, no waiting
            try:
                nxt = self.q_in.get_nowait()
            except queue.Empty:
                break
            if nxt is _DONE or isinstance(nxt, _Failure):
                return chunk, nxt
            chunk.append(nxt)
        return chunk, None

    def worker(self):
        try:
            while not self.stopped.is_set():
                chunk, last = self.next_chunk()
                if chunk and not all(self.put(self.q_out, r) for r in self.work(chunk)):
                    return
                if last is not None or not chunk:
                    if last is not None:
                        self.put(self.q_out, last)
                    return
        except BaseException as e:  # noqa: BLE001
            self.put(self.q_out, _Failure(e))

    def stop(self):
        self.stopped.set()
        for q in (self.q_in, self.q_out):  # unblock producers so that they see `stop`
            try:
                while True:
                    q.get_nowait()
            except queue.Empty:
                pass
        reader, worker = self.threads
        # a reader inside the source's next() runs the caller's code: a slow decoder's frame is
        # waited for, a stalled source (a camera) for a second at most; its thread ends when that
        # call returns. The worker finishes its batch.
        waited = 0.0
        while reader.is_alive() and waited < (self.source_wait if self.reading else 5.0):
            reader.join(timeout=0.05)
            waited += 0.05
        worker.join(timeout=max(5.0, self.source_wait))  # (a batch in native code, too)


def prefetch(pool, fn: Callable, items: Iterable, depth: int) -> Iterator[tuple]:
    """(item, future of ``fn(item)``) in order, with up to ``depth`` calls running ahead on ``pool``."""
    pending: collections.deque = collections.deque()
    it = iter(items)
    for item in it:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= depth:
            break
    while pending:
        item, fut = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(fn, nxt)))
        yield item, fut


__all__ = ["batched", "prefetch"]
