"""PyTorch eager on a training checkpoint behind the Engine interface: ``fastfill bench
--torch CKPT`` measures it beside the exported graph (it computes what the export computes).

It is the ``torch`` row of :data:`fastfill.engines.FORMATS` (``.safetensors`` checkpoints), which
names this module: the runtime imports it only when that row is used."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fastfill.bench import FlopCountError
from fastfill.engines.base import EngineBase
from fastfill.errors import EngineError

from .checkpoint import load_for_inference
from .export import model_meta
from .kinds import reference_forward


def torch_flops(model, channels: int, height: int, width: int,
                source: str = "model") -> float:
    """GFLOP of one forward of a torch model at [1, C, H, W], counted on the meta device;
    :class:`FlopCountError` when it cannot be counted."""
    try:
        m = copy.deepcopy(model).to("meta")
        x = torch.empty(1, channels, height, width, device="meta")
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(x)
        return fc.get_total_flops() / 1e9
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        # e.g. an op without a meta kernel (NotImplementedError is a RuntimeError)
        raise FlopCountError(f"cannot count FLOPs of {source}: {type(e).__name__}: {e}") from None


class TorchEngine(EngineBase):
    """PyTorch eager on a training checkpoint, with the Engine interface (for comparisons): its
    input is checked against the model contract as every engine's is."""

    name = "torch"
    device = "cpu"

    def __init__(self, checkpoint: str | Path, threads: int | None = None):
        path, model, meta = load_for_inference(checkpoint, EngineError)
        self._init(model, meta.get("mean") or (0.5, 0.5, 0.5), threads, str(path), meta.get("fill", "mean"))

    @classmethod
    def from_model(cls, model, mean=(0.5, 0.5, 0.5), threads: int | None = None,
                   source: str = "model", fill: str = "mean"):
        self = cls.__new__(cls)
        self._init(model, mean, threads, source, fill)
        return self

    def _init(self, model, mean, threads, source, fill="mean"):
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.model = model.eval()
        self.meta = model_meta(self.model, mean, {"source": source}, fill)  # fed as the export is
        self.path = source

    def _infer(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        with torch.inference_mode():
            y = reference_forward(self.model, t)
        return y.numpy()

    def flops(self, height: int, width: int) -> float:
        """GFLOP of one forward at [1, C, height, width], counted by torch (no ONNX file here)."""
        return torch_flops(self.model, self.meta.channels, height, width, source=self.path)

    def close(self) -> None:
        self.model = None

    def __repr__(self):
        return f"<TorchEngine {self.path}>"


__all__ = ["TorchEngine", "torch_flops"]
