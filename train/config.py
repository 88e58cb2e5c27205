"""The training configuration (no torch here: `fastfill train` builds its options from it).

Defaults are the papers' numbers (see :mod:`train.loop`; those that differ by kind are each
kind's ``paper`` in :mod:`train.kinds`); fastfill's recipe is a set of flags.
"""

from __future__ import annotations

import re

from dataclasses import MISSING, dataclass, field

from fastfill.errors import InputError
from fastfill.files.runner import MAX_JOBS
from fastfill.inpainter import MAX_THREADS
from fastfill.masks import MASKS
from fastfill.ops import FILLS

HEADS = ("sigmoid", "residual")
NORMS = ("batch", "group", "none")


class DataError(InputError):
    """No usable images, or an unusable data argument (a fastfill InputError, so a ValueError)."""


# The widest net a width may ask for (4: 16 times the paper's weights; 200 asked for 12 GB).
MAX_WIDTH = 4.0


def opt(default=MISSING, help: str = "", **cli):
    """A field that is also a `fastfill train` option (``--name-with-dashes``): its help and what
    the command line checks (``type`` where the default is None, ``choices``, ``min``/``max``
    with ``min_open``/``max_open``, ``path``: "data" (an existing folder), "run" (a folder to
    write), "file" (an existing file), ``metavar``). The CLI builds the option from this."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """One training run. Fields made with :func:`opt` are `fastfill train` options."""

    kind: str  # a key of train.kinds.KINDS: the command's argument
    data: str = opt(help="Folder of training images (recursive; jpg, png, webp).", path="data")
    out: str = opt(help="Run folder: last.safetensors/.json, samples/, log.jsonl.", path="run")
    steps: int | None = opt(None, "Total iterations [paper: 150000 GLCIC, 100000 CE].", type=int, min=0)
    batch_size: int | None = opt(None, "[paper: 96 GLCIC, 64 CE]", type=int, min=1, max=1024)
    crop: int | None = opt(None, "Training crop side [256 GLCIC; CE is fixed at 128].", type=int, min=16,
                           max=2048)
    scale: tuple = opt((1.0, 1.5), "Each image is resized so its shorter side is crop x U(LO, HI) "
                       "before cropping.", metavar="LO:HI")
    flip: bool = True
    mask: str | None = opt(None, "Hole shapes for GLCIC [rect: sides 96-128 at 256]; the CE always "
                           "uses its central hole.", choices=tuple(MASKS))
    width: float = opt(1.0, "Channel multiplier of the generator.", min=0, min_open=True, max=MAX_WIDTH)
    d_width: float = opt(1.0, "Channel multiplier of the discriminator(s).", min=0, min_open=True,
                         max=MAX_WIDTH)
    # GLCIC
    tc: int | None = opt(None, "GLCIC completion-only iterations [90000].", type=int, min=0)
    td: int | None = opt(None, "GLCIC discriminator-only iterations [10000].", type=int, min=0)
    alpha: float = opt(0.0004, "GLCIC adversarial weight.")
    local_size: int | None = None   # local discriminator patch (128 at a 256 crop)
    adadelta_lr: float = 1.0
    adadelta_rho: float = 0.9
    # CE
    lambda_rec: float = 0.999
    lambda_adv: float = 0.001
    overlap_weight: float = 10.0
    lr_d: float = opt(2e-4, "CE discriminator learning rate.")
    lr_ratio: float = opt(10.0, "CE encoder-decoder learning rate / discriminator's.")
    beta1: float = 0.5
    # both
    adv: str = opt("bce", "Adversarial loss.", choices=("bce", "minimax"))
    # fastfill's recipe (the papers' settings are the defaults above)
    fill: str = opt("mean", "Prefill of the hole the net sees [paper: mean].", choices=tuple(FILLS))
    head: str = opt("sigmoid", "Output head: the paper's sigmoid, or prefill + a zero-initialised "
                    "correction.", choices=HEADS)
    norm: str = opt("batch", "GLCIC generator normalisation [paper: batch].", choices=NORMS)
    optimizer: str = opt("paper", "paper: ADADELTA (GLCIC) / Adam 2e-3 (CE); adam: Adam at --lr with "
                         "--warmup.", choices=("paper", "adam"))
    lr: float = opt(2e-4, "Generator learning rate with --optimizer adam.", min=0, min_open=True)
    warmup: int = opt(0, "Linear lr warm-up steps.", min=0)
    schedule: str = opt("constant", "lr after the warm-up (--optimizer adam): constant, or cosine "
                        "decay to 0 at --steps.", choices=("constant", "cosine"))
    val_every: int = opt(0, "Every N steps: hole PSNR on held-out crops (model and prefill) in "
                         "log.jsonl; the best is kept as OUT/best.safetensors. 0 = never.", min=0)
    val_crops: int = 4              # crops per held-out photo for that validation
    val_data: str | None = opt(None, "Folder of validation photos (e.g. data/val); then every photo "
                               "under --data trains.", path="data")
    ema: float = opt(0.0, "Decay of a moving average of the generator's weights (e.g. 0.999), which "
                     "is validated, sampled and kept as best; 0 = off.", min=0, max=1, max_open=True)
    seed: int = opt(0, "Seed of the data order, masks and initialisation.")
    val_fraction: float = opt(0.05, "Images held out (by a hash of their path) for validation and "
                              "sample grids.", min=0, max=1, max_open=True)
    sample_every: int = opt(1000, "Write samples/step_N.png (input | output | truth) every K steps "
                            "(0 = never).", min=0)
    save_every: int = opt(5000, "Write OUT/last.safetensors every K steps (and at the end and on "
                          "Ctrl-C).", min=1)
    n_samples: int = 4
    workers: int = opt(0, "Data loader processes.", min=0, max=MAX_JOBS)
    threads: int | None = opt(None, "torch CPU threads.", type=int, min=1, max=MAX_THREADS)
    device: str = opt("cpu", "cpu, cuda, cuda:N or auto (cuda when available).")
    progress: bool = True           # the progress bar (`fastfill train -q` turns it off)
    resume: str | None = opt(None, "Continue from a checkpoint (e.g. OUT/last.safetensors) exactly.",
                             path="file")
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from .kinds import KINDS  # here: the kinds need torch, this module does not

        kind = KINDS.get(self.kind)
        if kind is None:
            raise DataError(f"unknown model kind {self.kind!r}; known: {', '.join(KINDS)}")
        for k, v in kind.paper.items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        kind.configure(self)
        if self.steps < 0:
            raise DataError(f"steps must be >= 0, got {self.steps}")
        for k in ("batch_size", "save_every"):
            if getattr(self, k) < 1:
                raise DataError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k, allowed in (("fill", FILLS), ("head", HEADS), ("norm", NORMS), ("optimizer", ("paper", "adam")),
                           ("schedule", ("constant", "cosine"))):
            if getattr(self, k) not in allowed:
                raise DataError(f"{k} must be one of {', '.join(allowed)}, got {getattr(self, k)!r}")
        if self.sample_every < 0:
            raise DataError(f"sample_every must be >= 0 (0 = never), got {self.sample_every}")
        lo, hi = (float(v) for v in self.scale)
        if not 0 < lo <= hi <= 16:  # (inf overflowed the resize)
            raise DataError(f"scale must be LO:HI with 0 < LO <= HI <= 16, got {lo:g}:{hi:g}")
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", self.device):
            raise DataError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")


__all__ = ["TrainConfig", "HEADS", "NORMS", "DataError", "opt"]
