"""Losses of GANs and EBGANs and the EBGAN margin schedule, as pure functions.

Equation numbers refer to Zhao, Mathieu and LeCun, "Energy-based Generative Adversarial
Networks", ICLR 2017, unless stated otherwise.

Every loss takes batched inputs: the batch is the last dimension, and any leading dimensions
(a run dimension, in fused training) are kept, one loss per index. ``train.py`` (one run) and
``fused.py`` (K runs stacked) call these same functions, so a loss is defined once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
# A pairwise-product kernel for the pulling-away term: x (..., N, d) -> x x^T (..., N, N). The
# fused trainer passes one checked to give each run bit for bit what ``@`` gives it alone.
Gram = Callable[[Tensor], Tensor]


def gan_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """The logistic discriminator loss of Goodfellow et al. (2014), Eq. 1 there.

    L_D = -E[log sigma(D(x))] - E[log(1 - sigma(D(G(z))))], written with softplus for stability:
    -log sigma(a) = softplus(-a) and -log(1 - sigma(a)) = softplus(a). Logits are (..., B):
    the expectation is over the last (batch) dimension, one loss per leading index (run).
    """
    return F.softplus(-logits_real).mean(-1) + F.softplus(logits_fake).mean(-1)


def gan_g_loss(logits_fake: Tensor, kind: str = "non_saturating") -> Tensor:
    """The generator loss of Goodfellow et al. (2014), over the last (batch) dimension.

    ``non_saturating`` (the default, Section 3 there): L_G = -E[log sigma(D(G(z)))].
    ``minimax`` (Eq. 1 there): L_G = E[log(1 - sigma(D(G(z))))] = -E[softplus(D(G(z)))].
    Any other ``kind`` raises: no trainer may train an unknown loss as a known one.
    """
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean(-1)
    if kind == "minimax":
        return -F.softplus(logits_fake).mean(-1)
    raise ValueError(f"unknown generator loss {kind!r}")


def energy(reconstruction: Tensor, x: Tensor) -> Tensor:
    """The EBGAN energy D(x) = ||Dec(Enc(x)) - x||_2 (Section 2.3), per sample: (..., B, 784) ->
    (..., B). The norm is neither squared nor averaged, so the margin m = 10 of the paper's grid
    is on its scale."""
    return torch.linalg.vector_norm(reconstruction - x, dim=-1)


def ebgan_d_loss(energy_real: Tensor, energy_fake: Tensor, margin: float | Tensor) -> Tensor:
    """The EBGAN discriminator loss, Eq. 1: L_D(x, z) = D(x) + [m - D(G(z))]^+.

    Averaged over the last (batch) dimension; ``[.]^+ = max(0, .)``. Fakes whose energy already
    exceeds the margin push nothing. ``margin`` is a number, or a tensor that broadcasts
    against ``energy_fake`` (one margin per run: shape (K, 1)).
    """
    return energy_real.mean(-1) + torch.clamp(margin - energy_fake, min=0).mean(-1)


def ebgan_g_loss(energy_fake: Tensor, codes: Tensor | None = None,
                 pt_weight: float | Tensor = 0.0, gram: Gram | None = None) -> Tensor:
    """The EBGAN generator loss, Eq. 2: L_G(z) = D(G(z)), averaged over the batch, plus
    ``pt_weight`` * f_PT(codes) (Eq. 6, Section 2.4) for EBGAN-PT.

    ``pt_weight`` is a number, or one weight per run (K,); a number 0 (or no ``codes``) adds
    nothing, so EBGAN's loss is exactly Eq. 2.
    """
    loss = energy_fake.mean(-1)
    if codes is None or (not isinstance(pt_weight, Tensor) and pt_weight == 0):
        return loss
    return loss + pt_weight * pulling_away_term(codes, gram)


def pulling_away_term(codes: Tensor, gram: Gram | None = None) -> Tensor:
    """The pulling-away term f_PT, Eq. 6, over a batch of encoder representations S (..., N, d).

    f_PT(S) = 1 / (N (N - 1)) * sum_i sum_{j != i} (s_i^T s_j / (||s_i|| ||s_j||))^2

    It is the mean squared cosine similarity between distinct pairs: 0 for mutually orthogonal
    representations, 1 when all are parallel. Added to the generator loss only, with weight
    ``pt_weight`` (Section 2.4). A zero vector gets a cosine of 0 (the norm is floored).
    ``gram`` computes S S^T (default ``@``). Returns one value per leading index (run).
    """
    n = codes.shape[-2]
    if n < 2:
        raise ValueError("the pulling-away term needs at least two samples")
    unit = codes / codes.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    products = gram(unit) if gram is not None else unit @ unit.transpose(-2, -1)
    cos2 = products.pow(2)
    off_diagonal = cos2.sum((-2, -1)) - cos2.diagonal(dim1=-2, dim2=-1).sum(-1)
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
