"""One adapter per model kind: what the configuration, the loop, the exporter, the evaluation and
the PyTorch bench engine need to know about a generator, in one place, picked from :data:`KINDS`,
the one registry of model kinds (the `fastfill train` argument, the papers' defaults, the networks
that checkpoints are rebuilt from and the exported metadata all come from it).

    kind = KINDS[cfg.kind]            # or kind_of(model) for a built generator
    G, D, opt_g, opt_d = kind.build(cfg, device)
    y = G(kind.model_input(x, kind.train_hidden(G, m), mean, fill))
    completed = kind.complete(G, x, m, y)

GLCIC (:class:`GLCIC`): the net sees the prefilled image plus the mask channel and returns the
whole frame; the completion keeps the known pixels. The Context Encoder (:class:`ContextEncoderKind`)
sees the prefilled RGB and returns only its central prediction box, pasted into the frame; in
training it always hides its own fixed hole box (the papers' setting), whatever the mask.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from fastfill.engines.base import ModelMeta
from fastfill.masks import hole_centers

from .config import DataError
from .losses import ce_weight_map, masked_mse, weighted_mse
from .models import (CE_IMAGE_SIZE, CEDiscriminator, CompletionNet, ContextEncoder,
                     GLCICDiscriminator)


def prefill(images, masks, mean, fill="mean"):
    """Images [N,3,H,W] in [0, 1] with the hole pixels (masks [N,1,H,W], 1 = hole) prefilled.

    ``harmonic`` runs the runtime's own kernel (fastfill.ops.prepare) on the uint8 pixels, so the
    net trains on exactly what it will be fed."""
    if fill == "mean":
        m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return images * (1 - masks) + m * masks
    from fastfill import ops
    u8 = (images.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    hole = (masks[:, 0] > 0.5).to(torch.uint8).contiguous()
    x = ops.prepare(u8.cpu().numpy(), hole.cpu().numpy(), mean, 1, mask_channel=False, fill=fill)
    return torch.from_numpy(x).to(images.device)


def crop_patches(images, centers, size):
    """[N,3,size,size] patches of `images` centred on `centers` ([N,2] row, col), clamped inside."""
    _, _, h, w = images.shape
    out = []
    for img, (cy, cx) in zip(images, centers.tolist()):
        t = min(max(cy - size // 2, 0), h - size)
        l = min(max(cx - size // 2, 0), w - size)
        out.append(img[:, t:t + size, l:l + size])
    return torch.stack(out)


def glcic_phase(step: int, tc: int, td: int) -> str:
    """GLCIC's phase at 0-based iteration `step`: completion (< Tc), discriminator (< Tc+Td), joint."""
    return "completion" if step < tc else "discriminator" if step < tc + td else "joint"


class Kind:
    """The interface; each method says what it is for, the subclasses say how."""

    generator: type[nn.Module]  # its class attribute ``kind`` names the kind
    discriminator: type[nn.Module]
    paper: dict  # the papers' values of the TrainConfig fields left at None

    @property
    def name(self) -> str:
        """The kind's name: its generator's ``kind``, which checkpoints and model files record."""
        return self.generator.kind

    # -- configuration
    def configure(self, cfg) -> None:
        """The kind's own defaults and rules of a TrainConfig (after :attr:`paper`): DataError."""

    # -- training
    def build(self, cfg, device):
        """(generator, discriminator, generator optimiser, discriminator optimiser): the papers'."""
        raise NotImplementedError

    def phase(self, step: int, cfg) -> str:
        """'completion', 'discriminator' or 'joint' at 0-based step."""
        return "joint"

    def train_hidden(self, G, m):
        """The pixels hidden from the net in training, for masks m [N,1,H,W]."""
        return m

    def model_input(self, x, hidden, mean, fill):
        """The net's input for images x [N,3,H,W] in [0, 1] whose ``hidden`` pixels are unknown."""
        raise NotImplementedError

    def paste(self, G, frame, y):
        """The net's output ``y`` as a full frame over ``frame`` (what the exported graph returns)."""
        return y

    def complete(self, G, x, m, y):
        """The completed images the losses and the discriminator see."""
        raise NotImplementedError

    def fake(self, y, completed):
        """What the discriminator judges of a generated sample."""
        return completed

    def real_logits(self, G, D, x, cfg, step):
        raise NotImplementedError

    def fake_logits(self, D, m, fake, cfg):
        raise NotImplementedError

    def joint_loss_terms(self, G, y, x, m, cfg):
        """(reconstruction loss, its weight, the adversarial loss's weight) in the joint phase."""
        raise NotImplementedError

    # -- evaluation
    def eval_size(self) -> int:
        return 256

    def eval_mask(self, requested: str | None) -> str:
        return requested or "rect"

    # -- export
    def meta(self, model, mean, provenance: dict, fill: str = "mean") -> ModelMeta:
        raise NotImplementedError

    def export_net(self, model):
        """(module to trace, dummy input, dynamic axes) for torch.onnx.export."""
        raise NotImplementedError

    def check_shapes(self, meta: ModelMeta):
        """The two input shapes the export self-check runs (small, so the check stays fast)."""
        raise NotImplementedError

    def check_input(self, x, gen, meta: ModelMeta):
        """A realistic self-check input made from uniform noise ``x``."""
        return x

    def random_config(self, width: float) -> dict:
        """The config of a random-init model at ``width`` (tests and benchmarks)."""
        return {"kind": self.name, "width": width}


class GLCIC(Kind):
    generator, discriminator = CompletionNet, GLCICDiscriminator
    paper = dict(steps=150_000, batch_size=96, crop=256, mask="rect", tc=90_000, td=10_000)

    def configure(self, cfg):
        if cfg.local_size is None:
            cfg.local_size = cfg.crop // 2
        if cfg.crop % 4:
            raise DataError(f"GLCIC crop must be a multiple of 4, got {cfg.crop}")

    def build(self, cfg, device):
        G = CompletionNet(cfg.width, head=cfg.head, norm=cfg.norm).to(device)
        D = GLCICDiscriminator(cfg.crop, cfg.local_size, cfg.d_width).to(device)
        return (G, D, torch.optim.Adadelta(G.parameters(), lr=cfg.adadelta_lr, rho=cfg.adadelta_rho),
                torch.optim.Adadelta(D.parameters(), lr=cfg.adadelta_lr, rho=cfg.adadelta_rho))

    def phase(self, step, cfg):
        return glcic_phase(step, cfg.tc, cfg.td)

    def model_input(self, x, hidden, mean, fill):
        return torch.cat([prefill(x, hidden, mean, fill), hidden], 1)

    def complete(self, G, x, m, y):
        return x * (1 - m) + y * m

    def real_logits(self, G, D, x, cfg, step):
        # real local patches at random places (a seeded generator: resumed runs see the same)
        rng = np.random.default_rng([cfg.seed, 3, step])
        c = torch.from_numpy(rng.integers(0, cfg.crop, size=(len(x), 2)))
        return D(x, crop_patches(x, c, cfg.local_size))

    def fake_logits(self, D, m, fake, cfg):
        c = torch.from_numpy(hole_centers(m[:, 0].cpu().numpy() > 0.5))  # the patch around the hole
        return D(fake, crop_patches(fake, c, cfg.local_size))

    def joint_loss_terms(self, G, y, x, m, cfg):
        return masked_mse(y, x, m), 1.0, cfg.alpha

    def meta(self, model, mean, provenance, fill="mean"):
        rf = getattr(model, "receptive_field", None)
        if rf is None:
            from .models import measure_receptive_field
            rf = measure_receptive_field(model)
        return ModelMeta(self.name, tuple(float(m) for m in mean), multiple=int(model.multiple),
                         input_size=None, receptive_field=int(rf), channels=4,
                         provenance=provenance, fill=fill)

    def export_net(self, model):
        axes = {"input": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", 2: "H", 3: "W"}}
        return copy.deepcopy(model).eval(), torch.rand(1, 4, 64, 64), axes

    def check_shapes(self, meta):
        return [(1, 4, 64, 64), (2, 4, 96, 128)]

    def check_input(self, x, gen, meta):
        # a hole filled with the mean, the mask channel 0/1
        mask = (torch.rand(x.shape[0], 1, *x.shape[2:], generator=gen) > 0.7).float()
        mean = torch.tensor(meta.mean).view(1, 3, 1, 1)
        x[:, :3] = x[:, :3] * (1 - mask) + mean * mask
        x[:, 3:] = mask
        return x


class ContextEncoderKind(Kind):
    generator, discriminator = ContextEncoder, CEDiscriminator
    paper = dict(steps=100_000, batch_size=64, crop=128, mask="center")

    def configure(self, cfg):
        if cfg.crop != CE_IMAGE_SIZE:
            raise DataError(f"the Context Encoder is defined on {CE_IMAGE_SIZE}x{CE_IMAGE_SIZE} crops, "
                            f"got crop={cfg.crop}")
        cfg.mask = "center"  # the Context Encoder's hole is its own (central) box

    def build(self, cfg, device):
        G = ContextEncoder(cfg.width, head=cfg.head).to(device)
        D = CEDiscriminator(G.pred_size, cfg.d_width).to(device)
        betas = (cfg.beta1, 0.999)
        return (G, D, torch.optim.Adam(G.parameters(), lr=cfg.lr_d * cfg.lr_ratio, betas=betas),
                torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas))

    def train_hidden(self, G, m):
        t, l, h, w = G.hole_box
        box = torch.zeros_like(m)
        box[:, :, t:t + h, l:l + w] = 1
        return box

    def model_input(self, x, hidden, mean, fill):
        return prefill(x, hidden, mean, fill)

    def paste(self, G, frame, y):
        t, l, h, w = G.pred_box
        out = frame.clone()
        out[:, :, t:t + h, l:l + w] = y
        return out

    def complete(self, G, x, m, y):
        return self.paste(G, x, y)  # the whole prediction box, overlap band included (the paper)

    def fake(self, y, completed):
        return y

    def real_logits(self, G, D, x, cfg, step):
        t, l, h, w = G.pred_box
        return D(x[:, :, t:t + h, l:l + w])

    def fake_logits(self, D, m, fake, cfg):
        return D(fake)

    def joint_loss_terms(self, G, y, x, m, cfg):
        t, l, h, w = G.pred_box
        wmap = ce_weight_map(G.pred_size, G.overlap, cfg.overlap_weight, device=y.device)
        return weighted_mse(y, x[:, :, t:t + h, l:l + w], wmap), cfg.lambda_rec, cfg.lambda_adv

    def eval_size(self):
        return CE_IMAGE_SIZE

    def eval_mask(self, requested):
        return "center"  # the net predicts its central box only

    def meta(self, model, mean, provenance, fill="mean"):
        size = int(model.image_size)
        return ModelMeta(self.name, tuple(float(m) for m in mean), multiple=4, input_size=(size, size),
                         receptive_field=size, channels=3, provenance=provenance, fill=fill)

    def export_net(self, model):
        net = FullFrameCE(model)
        return net, torch.rand(1, 3, net.size, net.size), {"input": {0: "N"}, "output": {0: "N"}}

    def check_shapes(self, meta):
        return [(1, 3, *meta.input_size), (2, 3, *meta.input_size)]

    def random_config(self, width):
        cfg = super().random_config(width)
        if width < 1:  # keep the tiny CE tiny: scale the 4000-unit bottleneck too
            cfg["bottleneck"] = max(16, int(round(4000 * width / 16)) * 16)
        return cfg


class _ChannelWiseFCExport(nn.Module):
    """ChannelWiseFC written with Reshape + MatMul + Add (no Einsum), fixed shapes, dynamic batch."""

    def __init__(self, cwfc: nn.Module):
        super().__init__()
        c, n2, _ = cwfc.weight.shape
        self.c, self.n = c, cwfc.n
        self.weight = nn.Parameter(cwfc.weight.detach().clone(), requires_grad=False)  # [c, n2, n2]
        self.bias = nn.Parameter(cwfc.bias.detach().reshape(c, 1, n2).clone(), requires_grad=False)
        self.mix = cwfc.mix

    def forward(self, x):
        y = torch.matmul(x.reshape(-1, self.c, 1, self.n * self.n), self.weight) + self.bias
        return self.mix(y.reshape(-1, self.c, self.n, self.n))


class FullFrameCE(nn.Module):
    """A Context Encoder whose output is the full 128x128 frame: the prediction pasted into the
    input at the prediction box. The paste is ``rows @ pred @ cols`` with constant 0/1 placement
    matrices (exact: one product by 1 per output element) then ``x * (1 - box) + pasted``, so the
    graph needs only MatMul, Mul and Add (the exporter turns F.pad into shape arithmetic)."""

    def __init__(self, ce: nn.Module):
        super().__init__()
        ce = copy.deepcopy(ce).eval()
        for name, m in list(ce.named_modules()):
            for cname, child in list(m.named_children()):
                if type(child).__name__ == "ChannelWiseFC":
                    setattr(m, cname, _ChannelWiseFCExport(child))
        self.ce = ce
        size = int(ce.image_size)
        top, left, h, w = ce.pred_box
        self.size = size
        rows = torch.zeros(size, h)
        rows[torch.arange(top, top + h), torch.arange(h)] = 1.0
        cols = torch.zeros(w, size)
        cols[torch.arange(w), torch.arange(left, left + w)] = 1.0
        keep = torch.ones(1, 1, size, size)
        keep[..., top:top + h, left:left + w] = 0.0
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        self.register_buffer("keep", keep)

    def forward(self, x):
        pred = self.ce(x)
        return x * self.keep + torch.matmul(torch.matmul(self.rows, pred), self.cols)


# The one registry of model kinds: a new kind is one adapter above (its networks in models.py)
# and its entry here.
KINDS: dict[str, Kind] = {k.name: k for k in (GLCIC(), ContextEncoderKind())}
# The networks build_model rebuilds from a config()['kind']: each kind's generator and discriminator.
NETWORKS: dict[str, type[nn.Module]] = {net.kind: net for k in KINDS.values()
                                        for net in (k.generator, k.discriminator)}


def kind_of(model: nn.Module, error: type[Exception] = ValueError) -> Kind:
    """The adapter of a built generator (from its ``config()['kind']``); ``error`` otherwise."""
    cfg = model.config() if hasattr(model, "config") else {}
    kind = KINDS.get(cfg.get("kind"))
    if kind is None:
        raise error(f"{type(model).__name__} (kind {cfg.get('kind')!r}) is not a generator; "
                    f"the generators are {', '.join(repr(k) for k in KINDS)}")
    return kind


def reference_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the exported graph computes, from the untouched PyTorch generator."""
    with torch.no_grad():
        return kind_of(model).paste(model, x, model(x))


__all__ = ["KINDS", "NETWORKS", "Kind", "GLCIC", "ContextEncoderKind", "kind_of", "reference_forward",
           "prefill", "crop_patches", "glcic_phase", "FullFrameCE"]
