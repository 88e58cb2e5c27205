"""``--backend auto`` on a CPU: the installed back-ends measured on the shapes the run meets.

Which CPU back-end is faster depends on the model and on the input size (OpenVINO 1.2x faster on
1080p ROI crops of the shipped model, ONNX Runtime 1.8x faster on a 512² whole frame, both on the
same two cores), so a fixed order loses at some sizes. :class:`MeasuredEngine` holds every CPU
back-end that loads the model; the first time a call falls in a new *size class* (batch,
channels, and the pixel count to half an octave: ROI crops of similar area share one) it runs the
input on each back-end, one warm-up call (a new shape is compiled or planned there) and
:data:`PROBE_RUNS` timed calls interleaved, and keeps the fastest for that class. The probe's
own output (the same values from every back-end, by the model contract) is the call's answer, so
a probe costs a few extra calls once per size class, never a wrong or a second answer.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from .base import EngineBase

# timed calls per back-end in a probe (after one warm-up call each); the fastest of them counts
PROBE_RUNS = 2


class MeasuredEngine(EngineBase):
    """The fastest of ``engines`` (loaded CPU engines of one model file), measured per size class
    at the first call of that class. ``skipped``: why other back-ends were not candidates."""

    name = "auto"
    device = "cpu"

    def __init__(self, engines: list, skipped: list[str] | None = None):
        if len(engines) < 2:
            raise ValueError("MeasuredEngine needs at least two engines to choose from")
        self.engines = list(engines)
        self.meta = engines[0].meta
        self.path = engines[0].path
        self.skipped = list(skipped or [])
        self.choice: dict[tuple, object] = {}  # size class -> engine
        self.measured: dict[tuple, dict[str, float]] = {}  # size class -> {back-end: best ms}
        self.probed: dict[tuple, tuple] = {}  # size class -> the input shape it was measured on
        self.last: tuple | None = None
        self._lock = threading.Lock()

    @staticmethod
    def size_class(shape) -> tuple:
        """(N, C, half-octave of H x W): inputs of about the same area run alike."""
        n, c, h, w = shape
        return int(n), int(c), round(2 * math.log2(max(1, int(h) * int(w))))

    def _infer(self, x: np.ndarray) -> np.ndarray:
        key = self.size_class(x.shape)
        engine = self.choice.get(key)
        if engine is None:
            with self._lock:
                engine = self.choice.get(key)
                if engine is None:
                    out = self._probe(key, x)
                    self.last = key
                    return out
        self.last = key
        return engine._infer(x)

    def _probe(self, key: tuple, x: np.ndarray) -> np.ndarray:
        best = {e.name: math.inf for e in self.engines}
        outs = {}
        for e in self.engines:  # warm-up: the first call at a new shape pays its compilation
            outs[e.name] = e._infer(x)
        for i in range(PROBE_RUNS):  # interleaved, in a rotating order: noise hits all alike
            k = i % len(self.engines)
            for e in self.engines[k:] + self.engines[:k]:
                t0 = time.perf_counter()
                outs[e.name] = e._infer(x)
                best[e.name] = min(best[e.name], (time.perf_counter() - t0) * 1e3)
        fastest = min(self.engines, key=lambda e: best[e.name])
        self.choice[key] = fastest
        self.measured[key] = best
        self.probed[key] = tuple(x.shape)
        return outs[fastest.name]

    @property
    def selection(self) -> str:
        """What was measured and chosen (the latest size class first), or what will be."""
        names = " and ".join(e.name for e in self.engines)
        skipped = f"; {'; '.join(self.skipped)}" if self.skipped else ""
        if not self.measured:
            return f"auto (measures {names} at the first input of each size{skipped})"
        keys = ([self.last] if self.last in self.measured else []) + [
            k for k in self.measured if k != self.last]
        parts = []
        for k in keys:
            n, _, h, w = self.probed[k]
            times = ", ".join(f"{b} {ms:.1f} ms" for b, ms in self.measured[k].items())
            parts.append(f"{self.choice[k].name} at {n}x{h}x{w} ({times})")
        return f"auto (measured: {'; '.join(parts)}{skipped})"

    @property
    def runs_on(self) -> str:
        if self.last in self.choice:
            return self.choice[self.last].runs_on
        return " or ".join(e.runs_on for e in self.engines) + ", measured per input size"

    def close(self) -> None:
        for e in self.engines:
            e.close()


__all__ = ["MeasuredEngine", "PROBE_RUNS"]
