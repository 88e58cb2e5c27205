"""The networks: Context Encoder (Pathak et al. 2016) and GLCIC (Iizuka et al. 2017), with their
discriminators, plus a factory keyed by each network's ``kind`` and a receptive-field measurement.

Every generator returns RGB in [0, 1] (sigmoid). Every discriminator returns *logits* of shape
[N] (probability real = sigmoid(logit)); the losses in `train.losses` apply the sigmoid, which is
the papers' sigmoid output computed in a numerically safe way.

Shapes at a glance
------------------
CompletionNet(width)      [N, 4, H, W] -> [N, 3, H, W]   H, W multiples of 4; channel 3 = mask
                                                         (1 = hole), RGB holes already mean-filled.
GLCICDiscriminator        ([N, 3, G, G], [N, 3, L, L]) -> [N] logits   (G = 256, L = 128 default)
ContextEncoder            [N, 3, 128, 128] -> [N, 3, 64, 64]   the prediction box only (see below)
CEDiscriminator           [N, 3, 64, 64] -> [N] logits   sees only the predicted region

Context Encoder geometry (as in Pathak's released code, with the paper's 7 px overlap)
-------------------------------------------------------------------------------------
The net predicts the central PRED_SIZE x PRED_SIZE = 64x64 box of a 128x128 image,
rows/cols [32, 96) ("prediction box"). Only the inner box shrunk by OVERLAP = 7 px on each side is
hidden from the input: rows/cols [39, 89), 50x50 ("hole box"), filled with the dataset mean colour.
The 7 px band between them is visible context that the net re-predicts; the reconstruction loss
weights it 10x. Boxes are (top, left, height, width) tuples: `ContextEncoder.hole_box`,
`ContextEncoder.pred_box` (instance attributes; the module constants below are the defaults).
An exporter that wants full-frame output pastes the [N,3,64,64] prediction at `pred_box` into the
input image; the runtime then composites only inside the user's (hole) mask.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastfill.masks.synthetic import CE_IMAGE_SIZE, CE_OVERLAP, CE_PRED_SIZE  # (the center mask's too)

from .config import HEADS, MAX_WIDTH, NORMS  # (the recipe's names live with the config)


def ce_boxes(image_size: int = CE_IMAGE_SIZE, pred_size: int = CE_PRED_SIZE, overlap: int = CE_OVERLAP):
    """(hole_box, pred_box) as (top, left, height, width) for a centred CE prediction."""
    p0 = (image_size - pred_size) // 2
    pred = (p0, p0, pred_size, pred_size)
    h = pred_size - 2 * overlap
    if h <= 0:
        raise ValueError(f"overlap {overlap} leaves no hole in a {pred_size} px prediction")
    hole = (p0 + overlap, p0 + overlap, h, h)
    return hole, pred


CE_HOLE_BOX, CE_PRED_BOX = ce_boxes()  # (39, 39, 50, 50), (32, 32, 64, 64)


def _ch(c: int, width: float) -> int:
    """Scale a channel count by the width multiplier (at least 1 channel)."""
    return max(1, int(round(c * width)))


def _init_weights(m: nn.Module) -> None:
    """DCGAN-style init: conv weights N(0, 0.02), BN weight N(1, 0.02), biases 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- GLCIC completion network

def _norm(c: int, norm: str) -> nn.Module:
    """BatchNorm (the papers'), GroupNorm (statistics per image, not per batch) or nothing."""
    if norm == "batch":
        return nn.BatchNorm2d(c)
    if norm == "group":
        return nn.GroupNorm(next(g for g in (8, 4, 2, 1) if c % g == 0), c)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def _check_head(head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    return head


def _kaiming(m: nn.Module) -> None:
    """He init for ReLU nets without BatchNorm (N(0, 0.02) would shrink the signal layer by layer)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _zero(m: nn.Module) -> None:
    nn.init.zeros_(m.weight)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def _conv_bn_relu(cin, cout, k, stride=1, dilation=1, norm="batch"):
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation),
        _norm(cout, norm),
        nn.ReLU(inplace=True),
    )


def _deconv_bn_relu(cin, cout, norm="batch"):
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, 2, 1),
        _norm(cout, norm),
        nn.ReLU(inplace=True),
    )


class CompletionNet(nn.Module):
    """GLCIC completion network (Iizuka et al. 2017, Table 1), fully convolutional.

    Input  x: float32 [N, 4, H, W], H and W multiples of 4 (`multiple`): RGB in [0, 1] with the
              hole pixels set to the dataset mean colour, then the mask channel (1 = hole).
    Output:   float32 [N, 3, H, W], RGB in [0, 1] (sigmoid), the whole frame (callers composite).

    Layers (channels at width 1.0): 5x5 conv 64; 3x3/2 128; 3x3 128; 3x3/2 256; 3x3 256 x2;
    dilated 3x3 256 with dilation 2, 4, 8, 16; 3x3 256 x2; 4x4 deconv/2 128; 3x3 128;
    4x4 deconv/2 64; 3x3 32; 3x3 3 + sigmoid. BatchNorm + ReLU after every layer but the last.
    `width` multiplies every channel count (0.25 keeps the same geometry and receptive field
    at ~1/16 of the FLOPs).

    ``head="residual"`` (fastfill's): no sigmoid; the last conv is zero-initialised and its output
    is a correction added to the input RGB, clipped to [0, 1], so the untrained net returns its
    prefill (the model contract, docs/ARCHITECTURE.md). ``norm`` = "batch" (the paper's), "group" or "none".
    """

    kind = "glcic"  # config()['kind']: what build_model rebuilds it from
    in_channels = 4
    multiple = 4
    receptive_field = 307  # px, the paper's figure; tests measure it from gradients

    def __init__(self, width: float = 1.0, dilations=(2, 4, 8, 16), head: str = "sigmoid",
                 norm: str = "batch"):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.width = float(width)
        self.dilations = tuple(int(d) for d in dilations)
        self.head, self.norm = _check_head(head), norm
        c64, c128, c256, c32 = (_ch(c, width) for c in (64, 128, 256, 32))
        cbr = lambda *a, **k: _conv_bn_relu(*a, **k, norm=norm)  # noqa: E731
        layers = [
            cbr(4, c64, 5),
            cbr(c64, c128, 3, 2),
            cbr(c128, c128, 3),
            cbr(c128, c256, 3, 2),
            cbr(c256, c256, 3),
            cbr(c256, c256, 3),
            *[cbr(c256, c256, 3, dilation=d) for d in self.dilations],
            cbr(c256, c256, 3),
            cbr(c256, c256, 3),
            _deconv_bn_relu(c256, c128, norm),
            cbr(c128, c128, 3),
            _deconv_bn_relu(c128, c64, norm),
            cbr(c64, c32, 3),
            nn.Conv2d(c32, 3, 3, 1, 1),
        ]
        if head == "sigmoid":
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights if norm == "batch" else _kaiming)
        if head == "residual":
            _zero(layers[-1])

    def config(self) -> dict:
        cfg = {"kind": self.kind, "width": self.width, "dilations": list(self.dilations)}
        if self.head != "sigmoid" or self.norm != "batch":  # older checkpoints have neither key
            cfg.update(head=self.head, norm=self.norm)
        return cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 4:
            raise ValueError(f"CompletionNet expects [N, 4, H, W], got {tuple(x.shape)}")
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"CompletionNet needs H and W multiples of 4, got {tuple(x.shape[2:])}")
        if self.head == "residual":
            return torch.clamp(x[:, :3] + self.net(x), 0.0, 1.0)
        return self.net(x)


class _ConvStack(nn.Module):
    """n 5x5 stride-2 convs (BN + ReLU) then FC to `out_features`; input must be square `size`."""

    def __init__(self, size: int, channels, out_features: int):
        super().__init__()
        convs, cin = [], 3
        for c in channels:
            convs += [nn.Conv2d(cin, c, 5, 2, 2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.convs = nn.Sequential(*convs)
        s = size
        for _ in channels:
            s = (s + 1) // 2
        self.size = size
        self.fc = nn.Linear(cin * s * s, out_features)

    def forward(self, x):
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"discriminator branch expects {self.size}x{self.size}, got {tuple(x.shape[-2:])}")
        return F.relu(self.fc(self.convs(x).flatten(1)))


class GLCICDiscriminator(nn.Module):
    """GLCIC context discriminators (global + local), fused by one FC.

    forward(whole, patch): whole [N, 3, global_size, global_size] (256 by default; the whole
    completed image), patch [N, 3, local_size, local_size] (128, centred on the hole).
    Returns logits [N]. Global: six 5x5/2 convs (64, 128, 256, 512, 512, 512) + FC 1024;
    local: five (64, 128, 256, 512, 512) + FC 1024; concat 2048 -> FC 1 (sigmoid in the loss).
    """

    kind = "glcic_d"

    def __init__(self, global_size: int = 256, local_size: int = 128, width: float = 1.0):
        super().__init__()
        self.global_size, self.local_size, self.width = int(global_size), int(local_size), float(width)
        ch = [_ch(c, width) for c in (64, 128, 256, 512, 512, 512)]
        fc = _ch(1024, width)
        self.global_d = _ConvStack(self.global_size, ch, fc)
        self.local_d = _ConvStack(self.local_size, ch[:5], fc)
        self.fc = nn.Linear(2 * fc, 1)
        self.apply(_init_weights)

    def config(self) -> dict:
        return {"kind": self.kind, "global_size": self.global_size, "local_size": self.local_size,
                "width": self.width}

    def forward(self, whole: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.global_d(whole), self.local_d(patch)], 1)).squeeze(1)


# ---------------------------------------------------------------- Context Encoder

class ChannelWiseFC(nn.Module):
    """Pathak's channel-wise fully-connected layer: each of the C feature maps (n x n) is fully
    connected to itself only (C separate n^2 x n^2 matrices, no cross-channel parameters), followed
    by a stride-1 1x1 convolution that propagates information across channels."""

    def __init__(self, channels: int, n: int):
        super().__init__()
        self.n = n
        self.weight = nn.Parameter(torch.randn(channels, n * n, n * n) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels, n * n))
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        nb, c, h, w = x.shape
        y = torch.einsum("bci,cio->bco", x.reshape(nb, c, h * w), self.weight) + self.bias
        return self.mix(y.reshape(nb, c, h, w))


class ContextEncoder(nn.Module):
    """Context Encoder (Pathak et al. 2016) for 128x128 images with a central hole.

    Input  x: float32 [N, 3, 128, 128], RGB in [0, 1], the hole box (`hole_box`, default rows/cols
              [39, 89), 50x50) filled with the dataset mean colour.
    Output:   float32 [N, 3, 64, 64], RGB in [0, 1]: the prediction box (`pred_box`, default
              rows/cols [32, 96)), i.e. the hole plus a 7 px overlap band into the context.

    Encoder: five 4x4 stride-2 convs 128 -> 4 px (64, 64, 128, 256, bottleneck/16 channels), each
    conv + BatchNorm (not on the first, DCGAN style) + LeakyReLU(0.2), no pooling. The last map is
    the bottleneck: 250 x 4 x 4 = 4000 units. Channel-wise FC (+ 1x1 conv) connects it to the
    decoder: five up-convolutions with BatchNorm + ReLU, 4 -> 8 -> 16 -> 32 -> 64 px
    (512, 256, 128, 64 channels), then a stride-1 3x3 up-convolution to RGB + sigmoid.
    ``head="residual"``: the last up-convolution is zero-initialised, without sigmoid, and its
    output corrects the input's prediction box (clipped to [0, 1]).
    """

    kind = "ce"
    in_channels = 3
    image_size = CE_IMAGE_SIZE

    def __init__(self, width: float = 1.0, bottleneck: int = 4000, overlap: int = CE_OVERLAP,
                 head: str = "sigmoid"):
        super().__init__()
        self.head = _check_head(head)
        if bottleneck % 16:
            raise ValueError(f"bottleneck must be a multiple of 16 (4x4 maps), got {bottleneck}")
        self.width, self.bottleneck, self.overlap = float(width), int(bottleneck), int(overlap)
        self.hole_box, self.pred_box = ce_boxes(CE_IMAGE_SIZE, CE_PRED_SIZE, self.overlap)
        self.pred_size = CE_PRED_SIZE
        e = [_ch(c, width) for c in (64, 64, 128, 256)] + [bottleneck // 16]
        enc, cin = [], 3
        for i, c in enumerate(e):
            enc.append(nn.Conv2d(cin, c, 4, 2, 1))
            if i > 0:
                enc.append(nn.BatchNorm2d(c))
            enc.append(nn.LeakyReLU(0.2, inplace=True))
            cin = c
        self.encoder = nn.Sequential(*enc)
        self.cwfc = nn.Sequential(ChannelWiseFC(cin, 4), nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        dec = []
        for c in [_ch(c, width) for c in (512, 256, 128, 64)]:
            dec += [nn.ConvTranspose2d(cin, c, 4, 2, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        dec += [nn.ConvTranspose2d(cin, 3, 3, 1, 1)] + ([nn.Sigmoid()] if head == "sigmoid" else [])
        self.decoder = nn.Sequential(*dec)
        self.apply(_init_weights)
        if head == "residual":
            _zero(dec[-1])

    def config(self) -> dict:
        cfg = {"kind": self.kind, "width": self.width, "bottleneck": self.bottleneck, "overlap": self.overlap}
        if self.head != "sigmoid":
            cfg["head"] = self.head
        return cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, CE_IMAGE_SIZE, CE_IMAGE_SIZE):
            raise ValueError(f"ContextEncoder expects [N, 3, 128, 128], got {tuple(x.shape)}")
        y = self.decoder(self.cwfc(self.encoder(x)))
        if self.head == "residual":
            t, l, h, w = self.pred_box
            return torch.clamp(x[:, :, t:t + h, l:l + w] + y, 0.0, 1.0)
        return y


class CEDiscriminator(nn.Module):
    """DCGAN-style discriminator on the CE prediction box only (not conditioned on context).

    Input [N, 3, 64, 64] -> logits [N]. 4x4/2 convs 64, 128, 256, 512 (BN but on the first,
    LeakyReLU 0.2) then a 4x4 valid conv to 1.
    """

    kind = "ce_d"

    def __init__(self, size: int = CE_PRED_SIZE, width: float = 1.0):
        super().__init__()
        self.size, self.width = int(size), float(width)
        layers, cin, s = [], 3, self.size
        for i, c in enumerate(_ch(c, width) for c in (64, 128, 256, 512)):
            layers.append(nn.Conv2d(cin, c, 4, 2, 1))
            if i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin, s = c, s // 2
        layers.append(nn.Conv2d(cin, 1, s))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def config(self) -> dict:
        return {"kind": self.kind, "size": self.size, "width": self.width}

    def forward(self, x):
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"CEDiscriminator expects {self.size}x{self.size}, got {tuple(x.shape[-2:])}")
        return self.net(x).flatten(1).squeeze(1)


# ---------------------------------------------------------------- factory

def build_model(config: dict) -> nn.Module:
    """Rebuild a network from its `config()` dict ({'kind': ..., **kwargs}), a generator or a
    discriminator of one of the kinds in :data:`train.kinds.KINDS`; ValueError on unknown kinds."""
    from .kinds import NETWORKS  # here: train.kinds imports this module

    if not isinstance(config, dict):
        raise ValueError(f"a model config is a JSON object, got {type(config).__name__}")
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind not in NETWORKS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(NETWORKS)}")
    # (a checkpoint's JSON is data: a width of 200 built a 12 GB net, a stray key raised TypeError)
    for k, v in cfg.items():
        if k.endswith("width") and not (isinstance(v, (int, float)) and 0 < v <= MAX_WIDTH):
            raise ValueError(f"model {kind}: {k} must be a number in (0, {MAX_WIDTH:g}], got {v!r}")
        if k.endswith("size") and not (v is None or isinstance(v, int) and 0 < v <= 4096):
            raise ValueError(f"model {kind}: {k} must be an int in [1, 4096], got {v!r}")
    try:
        return NETWORKS[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"model {kind}: config {cfg} does not build it ({e})") from None


def measure_receptive_field(net: nn.Module, size: int = 512) -> int:
    """Side (px) of the input region that influences the centre output pixel, from gradients.

    Runs `net` (a CompletionNet-like [N,4,H,W] net) in eval mode on random input of size x size,
    back-propagates one centre output pixel and returns the larger extent of the nonzero gradient.
    """
    was_training = net.training
    net.eval()
    try:
        torch.manual_seed(0)
        x = torch.rand(1, net.in_channels, size, size, requires_grad=True)
        y = net(x)
        c = size // 2
        y[0, :, c, c].sum().backward()
        g = x.grad[0].abs().sum(0)
        rows = torch.nonzero(g.sum(1)).flatten()
        cols = torch.nonzero(g.sum(0)).flatten()
        if len(rows) == 0:
            return 0
        return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    finally:
        net.train(was_training)


__all__ = [
    "CompletionNet", "GLCICDiscriminator", "ContextEncoder", "CEDiscriminator", "ChannelWiseFC",
    "HEADS", "NORMS", "build_model", "measure_receptive_field", "ce_boxes",
    "CE_IMAGE_SIZE", "CE_PRED_SIZE", "CE_OVERLAP", "CE_HOLE_BOX", "CE_PRED_BOX",
]
