"""The fill methods: one table that the kernels' face (:mod:`fastfill.ops`), the model metadata
check (``fastfill.fill``), the classical engine, the CLI's ``--method`` and the docs all read.
Adding a fill is a row here plus its kernel in ``csrc`` (dispatched by name in the bindings, whose
``_C.FILLS`` lists the same names and options: :mod:`fastfill.ops` refuses to import otherwise).

Standard library only: reading a model's metadata does not load the native module.
"""

from __future__ import annotations

import numbers

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Fill:
    """One fill method.

    ``options``: the method's options and their defaults (all ints; the kernel checks bounds).
    ``context``: the option that says how far from a hole the fill reads known pixels (None: only
    the pixels next to the hole), so that an ROI window with that margin gives the same bytes as
    the whole frame.
    ``on_device``: the CUDA ``prepare`` kernel computes this prefill itself, so a GPU engine's
    uint8 path (``device_path``) can run a model trained on it; the others are solved on the CPU.
    """

    name: str
    summary: str
    options: Mapping[str, int] = field(default_factory=dict)
    context: str | None = None
    on_device: bool = False

    def margin(self, options: Mapping[str, int] | None = None) -> int:
        """Pixels of context around each hole that the fill reads (an ROI window's margin)."""
        if self.context is None:
            return 1
        return int({**self.options, **(options or {})}[self.context]) + 1

    def resolve(self, options: Mapping[str, int] | None) -> dict[str, int]:
        """The options with their defaults; an unknown name is a ValueError naming the known."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ValueError(f"the {self.name} fill takes no option {', '.join(unknown)} (it takes: {known})")
        for k, v in options.items():  # (the kernel takes int64s: a bigger int failed in its cast)
            if not isinstance(v, numbers.Integral):
                raise TypeError(f"the {self.name} fill's option {k} must be an int, got {v!r}")
            if not -(2**63) <= int(v) < 2**63:
                raise ValueError(f"the {self.name} fill's option {k}={v} is out of range")
        return {**self.options, **{k: int(v) for k, v in options.items()}}


FILLS: Mapping[str, Fill] = MappingProxyType({f.name: f for f in (
    Fill("mean", "one colour (the model's mean colour; mid-grey for --method)", on_device=True),
    Fill("harmonic", "Laplace's equation inside each hole, the known pixels around it as boundary "
         "values: smooth, exact at the border"),
    Fill("patch", "multi-scale PatchMatch completion with patch voting, from the harmonic fill: "
         "texture copied from the known pixels within `radius` of each hole, its shading (below "
         "`blend` px) the harmonic fill's",
         options=MappingProxyType({"patch": 5, "levels": 0, "iterations": 2, "passes": 5,
                                   "radius": 96, "thin": 2, "blend": 10, "blend_limit": 16, "detail": 90,
                                   "detail_depth": 0, "gate": 0,
                                   "texture": 200, "texture_radius": 2, "texture_gain": 190,
                                   "onion": 1000000, "complete": 200,
                                   "poisson": 0, "seed": 0}),
         context="radius"),
)})


# The default fill: what runs when neither a model nor a method is named and the shipped model
# adds nothing to its prefill. Measured (docs/RESULTS.md): the patch fill rebuilt from its copies'
# own differences, with completeness votes at 100 % and its detail damped to 75 % from 16 rings
# in (all of it next to the known pixels, where the copies continue what is there: a uniform
# damping hazed the edges they continue), keeps within 0.5 dB of the harmonic fill's hole PSNR at
# less than half its texture distance in every setting, on the validation photos and on 98
# others, and fills a smooth gradient as exactly as the harmonic fill; the harmonic fill is a
# smear on textured backgrounds, the plain patch fill less accurate and seamed on gradients.
DEFAULT_METHOD = "patch"
DEFAULT_OPTIONS: Mapping[str, int] = MappingProxyType({"complete": 100, "poisson": 1, "detail": 75,
                                                       "detail_depth": 16})


def describe(name: str, options: Mapping[str, int] | None = None) -> str:
    """``name`` and the options that differ from its row's defaults, for headers and cards:
    ``patch (gate 16, detail 90)``; a bare name where none differ."""
    row = get(name)
    changed = [f"{k} {v}" for k, v in row.resolve(options).items() if row.options.get(k) != v]
    return f"{name} ({', '.join(changed)})" if changed else name


def get(name: str) -> Fill:
    """The table row for ``name``; a ValueError naming the known fills otherwise."""
    try:
        return FILLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"fill: expected one of {', '.join(FILLS)}, got {name!r}") from None


__all__ = ["DEFAULT_METHOD", "DEFAULT_OPTIONS", "Fill", "FILLS", "describe", "get"]
