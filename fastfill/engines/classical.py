"""A classical fill as an engine: no model, the prefill is the answer.

``ClassicalEngine("harmonic")`` declares ``fastfill.fill = harmonic`` and returns its input's RGB,
so the Inpainter's own ``prepare`` (the harmonic solve in csrc) does the work and every runner
(files, video, streams, ROI) serves it unchanged: ``fastfill run --method harmonic``.
"""

from __future__ import annotations

import numpy as np

from ..errors import EngineError
from .base import EngineBase, ModelMeta

METHODS = ("harmonic",)


class ClassicalEngine(EngineBase):
    """Engine that fills holes with a classical method (see :data:`METHODS`)."""

    device = "cpu"

    def __init__(self, method: str = "harmonic"):
        if method not in METHODS:
            raise EngineError(f"unknown classical method {method!r}; known: {', '.join(METHODS)}")
        self.name = f"classical:{method}"
        # receptive field 2: ROI windows keep one known pixel around each hole, all the fill needs
        self.meta = ModelMeta("glcic", (0.5, 0.5, 0.5), multiple=1, receptive_field=2, channels=4,
                              fill=method, provenance={"method": method})

    def _infer(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, :3])

    def close(self) -> None:
        pass


__all__ = ["ClassicalEngine", "METHODS"]
