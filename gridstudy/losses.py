"""Losses of GANs and EBGANs and the EBGAN margin schedule, as pure functions.

Equation numbers refer to Zhao, Mathieu and LeCun, "Energy-based Generative Adversarial
Networks", ICLR 2017, unless stated otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gan_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The logistic discriminator loss of Goodfellow et al. (2014), Eq. 1 there.

    L_D = -E[log sigma(D(x))] - E[log(1 - sigma(D(G(z))))], written with softplus for stability:
    -log sigma(a) = softplus(-a) and -log(1 - sigma(a)) = softplus(a).
    """
    return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()


def gan_g_loss(logits_fake: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator loss of Goodfellow et al. (2014).

    ``non_saturating`` (the default, Section 3 there): L_G = -E[log sigma(D(G(z)))].
    ``minimax`` (Eq. 1 there): L_G = E[log(1 - sigma(D(G(z))))] = -E[softplus(D(G(z)))].
    """
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean()
    if kind == "minimax":
        return -F.softplus(logits_fake).mean()
    raise ValueError(f"unknown generator loss {kind!r}")


def ebgan_d_loss(
    energy_real: torch.Tensor, energy_fake: torch.Tensor, margin: float
) -> torch.Tensor:
    """The EBGAN discriminator loss, Eq. 1: L_D(x, z) = D(x) + [m - D(G(z))]^+.

    Averaged over the batch; ``[.]^+ = max(0, .)``. Fakes whose energy already exceeds the margin
    push nothing.
    """
    return energy_real.mean() + torch.clamp(margin - energy_fake, min=0).mean()


def ebgan_g_loss(energy_fake: torch.Tensor) -> torch.Tensor:
    """The EBGAN generator loss, Eq. 2: L_G(z) = D(G(z)), averaged over the batch."""
    return energy_fake.mean()


def pulling_away_term(codes: torch.Tensor) -> torch.Tensor:
    """The pulling-away term f_PT, Eq. 6, over a batch of encoder representations S (N, d).

    f_PT(S) = 1 / (N (N - 1)) * sum_i sum_{j != i} (s_i^T s_j / (||s_i|| ||s_j||))^2

    It is the mean squared cosine similarity between distinct pairs: 0 for mutually orthogonal
    representations, 1 when all are parallel. Added to the generator loss only, with weight
    ``pt_weight`` (Section 2.4). A zero vector gets a cosine of 0 (the norm is floored).
    """
    n = codes.shape[0]
    if n < 2:
        raise ValueError("the pulling-away term needs at least two samples")
    unit = codes / codes.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos2 = (unit @ unit.T).pow(2)
    off_diagonal = cos2.sum() - cos2.diagonal().sum()
    return off_diagonal / (n * (n - 1))


def scheduled_margin(
    margin: float, schedule: str, step: int, total_steps: int, margin_end: float = 0.0
) -> float:
    """The EBGAN margin at ``step`` (0-based) of ``total_steps``.

    ``constant``: m at every step (the paper's grid). ``linear``: from m at the first step to
    ``margin_end`` at the last, in equal decrements. ``cosine``: half a cosine from m to
    ``margin_end``, flat at both ends. The paper's semi-supervised experiments (Appendix) lowered
    m during training so that G is pushed less as it nears the data; this makes that a studied axis.
    """
    if schedule == "constant" or total_steps <= 1:
        return float(margin)
    progress = min(max(step / (total_steps - 1), 0.0), 1.0)
    if schedule == "linear":
        weight = 1.0 - progress
    elif schedule == "cosine":
        weight = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown margin schedule {schedule!r}")
    return float(margin_end + (margin - margin_end) * weight)
