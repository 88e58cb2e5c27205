"""Type stub of the private native module (use fastfill.ops instead)."""
from typing import Optional, Sequence, Tuple

import numpy as np

_Window = Optional[Tuple[int, int, int, int]]

def build_info() -> dict: ...
def prepare(images: np.ndarray, masks: np.ndarray, mean: Sequence[float], multiple: int,
            window: _Window, dtype: str, mask_channel: bool, device: str,
            fill: str = "mean", options: dict = ...) -> np.ndarray: ...
def fill(images: np.ndarray, masks: np.ndarray, mean: Sequence[float], window: _Window,
         method: str, options: dict = ...) -> np.ndarray: ...
def composite(pred: np.ndarray, images: np.ndarray, masks: np.ndarray, window: _Window,
              out: Optional[np.ndarray], device: str) -> np.ndarray: ...
# Present only when built with CUDA; pointers are device pointers as ints, stream a cudaStream_t.
def prepare_cuda(images: int, masks: int, out: int, n: int, height: int, width: int, window: _Window,
                 Hp: int, Wp: int, mean: Sequence[float], mask_channel: bool, half: bool,
                 stream: int, fill: int = 0) -> None: ...
def composite_cuda(pred: int, half: bool, Hp: int, Wp: int, images: int, masks: int, n: int,
                   height: int, width: int, window: _Window, out: int, out_batch_stride: int,
                   out_row_stride: int, stream: int) -> None: ...
