"""The training configuration (no torch here: the CLI builds its `train` options from it).

Defaults are the papers' numbers (see :mod:`train.loop`); fastfill's recipe is a set of flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastfill.errors import InputError

HEADS = ("sigmoid", "residual")
NORMS = ("batch", "group", "none")


class DataError(InputError):
    """No usable images, or an unusable data argument (a fastfill InputError, so a ValueError)."""


PAPER_DEFAULTS = {
    "glcic": dict(steps=150_000, batch_size=96, crop=256, mask="rect", tc=90_000, td=10_000),
    "ce": dict(steps=100_000, batch_size=64, crop=128, mask="center"),
}


@dataclass
class TrainConfig:
    kind: str                       # "glcic" | "ce"
    data: str                       # folder of images (recursive)
    out: str                        # run folder: last.safetensors, samples/, log.jsonl
    steps: int | None = None        # total iterations (paper default per kind)
    batch_size: int | None = None
    crop: int | None = None         # training crop side (256 GLCIC, 128 CE)
    scale: tuple = (1.0, 1.5)       # shorter side resized to crop * U(scale)
    flip: bool = True
    mask: str | None = None         # rect | freeform | mixed | center (GLCIC default rect)
    width: float = 1.0              # channel multiplier of the generator
    d_width: float = 1.0            # channel multiplier of the discriminator(s)
    # GLCIC
    tc: int | None = None           # completion-only iterations
    td: int | None = None           # discriminator-only iterations
    alpha: float = 0.0004
    local_size: int | None = None   # local discriminator patch (128 at a 256 crop)
    adadelta_lr: float = 1.0
    adadelta_rho: float = 0.9
    # CE
    lambda_rec: float = 0.999
    lambda_adv: float = 0.001
    overlap_weight: float = 10.0
    lr_d: float = 2e-4
    lr_ratio: float = 10.0          # generator lr = lr_ratio * lr_d
    beta1: float = 0.5
    # both
    adv: str = "bce"                # adversarial loss kind (train.losses)
    # fastfill's recipe (the papers' settings are the defaults above)
    fill: str = "mean"              # prefill of the hole: mean (papers) | harmonic (fastfill.ops.fill)
    head: str = "sigmoid"           # sigmoid (papers) | residual (prefill + zero-initialised correction)
    norm: str = "batch"             # GLCIC generator: batch (paper) | group | none
    optimizer: str = "paper"        # paper (ADADELTA for GLCIC, Adam for CE) | adam
    lr: float = 2e-4                # generator lr with optimizer=adam
    warmup: int = 0                 # linear lr warm-up steps (optimizer=adam)
    schedule: str = "constant"      # lr after warm-up: constant | cosine (to 0 at `steps`)
    val_every: int = 0              # hole PSNR on held-out crops every N steps; best.safetensors kept
    val_crops: int = 4              # crops per held-out photo for that validation
    val_data: str | None = None     # folder of validation photos (then all of `data` trains)
    ema: float = 0.0                # decay of an exponential moving average of the generator's
                                    # weights (e.g. 0.999; 0 = off): validated, sampled and kept as best
    seed: int = 0
    val_fraction: float = 0.05
    sample_every: int = 1000
    save_every: int = 5000
    n_samples: int = 4
    workers: int = 0
    threads: int | None = None
    device: str = "cpu"             # cpu | cuda | cuda:N | auto (cuda when available)
    progress: bool = True
    resume: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in PAPER_DEFAULTS:
            raise DataError(f"unknown model kind {self.kind!r}; known: {', '.join(PAPER_DEFAULTS)}")
        for k, v in PAPER_DEFAULTS[self.kind].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if self.kind == "glcic":
            if self.local_size is None:
                self.local_size = self.crop // 2
            if self.crop % 4:
                raise DataError(f"GLCIC crop must be a multiple of 4, got {self.crop}")
        elif self.crop != 128:
            raise DataError(f"the Context Encoder is defined on 128x128 crops, got crop={self.crop}")
        if self.steps < 0:
            raise DataError(f"steps must be >= 0, got {self.steps}")
        for k in ("batch_size", "save_every"):
            if getattr(self, k) < 1:
                raise DataError(f"{k} must be >= 1, got {getattr(self, k)}")
        from fastfill.ops import FILLS
        for k, allowed in (("fill", FILLS), ("head", HEADS), ("norm", NORMS), ("optimizer", ("paper", "adam")),
                           ("schedule", ("constant", "cosine"))):
            if getattr(self, k) not in allowed:
                raise DataError(f"{k} must be one of {', '.join(allowed)}, got {getattr(self, k)!r}")
        if self.sample_every < 0:
            raise DataError(f"sample_every must be >= 0 (0 = never), got {self.sample_every}")


__all__ = ["TrainConfig", "PAPER_DEFAULTS", "HEADS", "NORMS", "DataError"]
