"""Losses: masked reconstruction losses and the adversarial losses behind one small interface.

An adversarial loss object has
    generator_loss(fake_logits) -> (loss, metrics dict)
    discriminator_loss(real_logits, fake_logits) -> (loss, metrics dict)
where logits are the discriminators' raw outputs (probability real = sigmoid(logit)).
Kinds (`make_adversarial_loss(kind)`):
    bce      the GAN log-likelihood of both papers, with the usual non-saturating generator
             term -log D(G(z)) (what both papers' released code optimises)
    minimax  the literal min-max objective: the generator minimises log(1 - D(G(z)))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mse(pred, target, mask):
    """GLCIC's ||M ⊙ (C(x, M) - x)||², normalised to the mean squared error over hole pixels.
    pred/target [N,3,H,W], mask [N,1,H,W] (1 = hole)."""
    se = ((pred - target) * mask).pow(2).sum()
    return se / (mask.sum() * pred.shape[1]).clamp_min(1.0)


def ce_weight_map(pred_size: int, overlap: int, overlap_weight: float = 10.0, device=None):
    """[1,1,P,P] weights of the CE reconstruction loss: 1 inside the hole, `overlap_weight` in the
    `overlap`-px band of the prediction box that overlaps the context."""
    w = torch.full((1, 1, pred_size, pred_size), float(overlap_weight), device=device)
    w[..., overlap:pred_size - overlap, overlap:pred_size - overlap] = 1.0
    return w


def weighted_mse(pred, target, weight):
    """Mean of weight * (pred - target)² (Pathak's overlap-weighted L2)."""
    return (weight * (pred - target).pow(2)).mean()


class BCEAdversarial:
    """Logistic GAN loss; non-saturating generator term."""

    def discriminator_loss(self, real_logits, fake_logits):
        lr = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        lf = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        loss = lr + lf
        with torch.no_grad():
            acc = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
        return loss, {"d_loss": loss.item(), "d_real": torch.sigmoid(real_logits).mean().item(),
                      "d_fake": torch.sigmoid(fake_logits).mean().item(), "d_acc": acc.item()}

    def generator_loss(self, fake_logits):
        loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        return loss, {"g_adv": loss.item()}


class MinimaxAdversarial(BCEAdversarial):
    """The papers' literal objective: the generator minimises E[log(1 - D(G(z)))]."""

    def generator_loss(self, fake_logits):
        loss = -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)
        return loss, {"g_adv": loss.item()}


ADVERSARIAL = {"bce": BCEAdversarial, "minimax": MinimaxAdversarial}


def make_adversarial_loss(kind: str = "bce"):
    """The adversarial loss for `kind`; raises ValueError on unknown kinds."""
    try:
        return ADVERSARIAL[kind]()
    except KeyError:
        raise ValueError(f"unknown adversarial loss {kind!r}; known: {', '.join(ADVERSARIAL)}") from None


__all__ = ["masked_mse", "ce_weight_map", "weighted_mse", "BCEAdversarial", "MinimaxAdversarial",
           "ADVERSARIAL", "make_adversarial_loss"]
