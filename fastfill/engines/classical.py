"""A classical fill as an engine: no model, the prefill is the answer.

``ClassicalEngine("patch")`` declares ``fastfill.fill = patch`` and returns its input's RGB, so the
Inpainter's own ``prepare`` (the fill's kernel in csrc) does the work and every runner (files,
video, streams, ROI, Ray) serves it unchanged: ``fastfill run --method patch``, through the
``classical`` row of :data:`fastfill.engines.FORMATS` (``open_engine(method="patch")``). Its receptive field is
twice the fill's context (:meth:`fastfill.fills.Fill.margin`), so ROI windows hold everything the
fill reads and give the same bytes as the whole frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import EngineError
from ..fills import DEFAULT_METHOD, DEFAULT_OPTIONS, FILLS, describe
from .base import EngineBase, ModelMeta


class ClassicalEngine(EngineBase):
    """Engine that fills holes with a classical method: a name in :data:`fastfill.fills.FILLS`,
    with that method's ``options`` (None = its defaults); ``mean`` is the colour of a hole with no
    known pixel around it (and of the ``mean`` fill)."""

    device = "cpu"
    replaces: str | None = None  # the prefill of the net this engine stands in for (instead_of)

    def __init__(self, method: str = "harmonic", options: dict | None = None,
                 mean: tuple[float, float, float] = (0.5, 0.5, 0.5)):
        if method not in FILLS:
            raise EngineError(f"unknown classical method {method!r}; known: {', '.join(FILLS)}")
        fill = FILLS[method]
        try:
            self.fill_options = fill.resolve(options)
        except ValueError as e:
            raise EngineError(str(e)) from None
        self.name = f"classical:{method}"
        self.meta = ModelMeta("glcic", tuple(float(v) for v in mean), multiple=1,
                              receptive_field=2 * fill.margin(self.fill_options), channels=4,
                              fill=method, provenance={"method": method, **self.fill_options})

    @property
    def label(self) -> str:
        """The fill and its options that differ from the fill's defaults: ``patch (gate 16,
        detail 90)``."""
        return describe(self.meta.fill, self.fill_options)

    @classmethod
    def instead_of(cls, net: EngineBase, why: str) -> "ClassicalEngine":
        """The default fill (:data:`fastfill.fills.DEFAULT_METHOD` with its
        ``DEFAULT_OPTIONS``) in place of a net that returns its prefill unchanged: its ``path``
        is the net's model file (what headers call the model), ``why`` its ``selection``, and
        ``replaces`` the net's prefill."""
        fill = cls(DEFAULT_METHOD, dict(DEFAULT_OPTIONS), mean=net.meta.mean)
        fill.path, fill.selection, fill.replaces = net.path, why, net.meta.fill
        return fill

    def _infer(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, :3])


__all__ = ["ClassicalEngine"]
