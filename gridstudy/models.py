"""The fully connected networks of the paper's MNIST grid (EBGAN, Section 4.1 and Appendix).

The paper gives the grid's axes (nLayerG, sizeG, nLayerD, sizeD, dropoutD) but not every detail
of the layers; the choices below follow DCGAN practice and are all fields of
:class:`~gridstudy.config.RunConfig` where a user may want to change them:

- Generator: ``n_layers_g`` linear layers; each hidden layer has width ``size_g`` and is followed
  by batch norm and ReLU; the output layer maps to 784 pixels through tanh.
- GAN discriminator: ``n_layers_d`` linear layers; hidden width ``size_d``; ReLU; batch norm
  after every hidden layer except the one on the input; optional dropout after each hidden layer
  (``dropout_d``, rate ``dropout_rate``); one logit out.
- EBGAN discriminator: an auto-encoder. ``n_layers_d`` counts encoder plus decoder layers and the
  decoder is one linear layer (back to 784, tanh), so the encoder has ``n_layers_d - 1`` layers
  of width ``size_d`` built like the GAN discriminator's hidden layers. The energy is the
  per-sample reconstruction error D(x) = ||Dec(Enc(x)) - x||_2 (paper, Section 2.3).
- Initialisation: weights N(0, ``init_std_d``) in D and N(0, ``init_std_g``) in G, biases 0;
  batch norm starts at scale 1, shift 0.
"""

from __future__ import annotations

import torch
from torch import nn

from gridstudy.config import RunConfig
from gridstudy.data import IMAGE_DIM
from gridstudy.losses import energy


def _hidden_stack(
    in_dim: int, width: int, n: int, *, norm_first: bool, dropout: float
) -> list[nn.Module]:
    """``n`` hidden layers Linear -> [BatchNorm] -> ReLU -> [Dropout]."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers.append(nn.Linear(in_dim if i == 0 else width, width))
        if i > 0 or norm_first:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(SeededDropout(dropout))
    return layers


class SeededDropout(nn.Module):
    """Inverted dropout whose masks come from an explicit ``torch.Generator``.

    ``nn.Dropout`` draws from the global RNG; drawing from the run's own generator instead makes
    a run's masks depend on its seed alone, so runs trained side by side (fused) get exactly the
    masks they would get alone. Without a generator it falls back to the global RNG.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return apply_dropout(x, keep, 1.0 - self.p)


def apply_dropout(x: torch.Tensor, keep: torch.Tensor, one_minus_p: float | torch.Tensor
                  ) -> torch.Tensor:
    """Inverted dropout (Srivastava et al. 2014) with a given mask: x * keep / (1 - p).

    ``keep`` is True where a unit survives (a uniform draw >= p). The fused trainer passes one
    ``1 - p`` per run, shaped to broadcast; SeededDropout passes a number."""
    return x * keep / one_minus_p


def use_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Make every SeededDropout in ``module`` draw its masks from ``generator``."""
    for m in module.modules():
        if isinstance(m, SeededDropout):
            m.generator = generator


def _init_linear(module: nn.Module, std: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (batch, z_dim) -> images (batch, 784) in [-1, 1]."""

    def __init__(self, c: RunConfig) -> None:
        super().__init__()
        hidden = _hidden_stack(c.z_dim, c.size_g, c.n_layers_g - 1, norm_first=True, dropout=0.0)
        self.net = nn.Sequential(*hidden, nn.Linear(c.size_g, IMAGE_DIM), nn.Tanh())
        _init_linear(self, c.init_std_g)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class GanDiscriminator(nn.Module):
    """images (batch, 784) -> logits (batch,) of being real."""

    def __init__(self, c: RunConfig) -> None:
        super().__init__()
        dropout = c.dropout_rate if c.dropout_d else 0.0
        hidden = _hidden_stack(IMAGE_DIM, c.size_d, c.n_layers_d - 1, norm_first=False,
                               dropout=dropout)
        self.net = nn.Sequential(*hidden, nn.Linear(c.size_d, 1))
        _init_linear(self, c.init_std_d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class EbganDiscriminator(nn.Module):
    """An auto-encoder whose reconstruction error is the energy D(x)."""

    def __init__(self, c: RunConfig) -> None:
        super().__init__()
        dropout = c.dropout_rate if c.dropout_d else 0.0
        self.encoder = nn.Sequential(
            *_hidden_stack(IMAGE_DIM, c.size_d, c.n_layers_d - 1, norm_first=False, dropout=dropout)
        )
        self.decoder = nn.Sequential(nn.Linear(c.size_d, IMAGE_DIM), nn.Tanh())
        _init_linear(self, c.init_std_d)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (energy (batch,), encoder representation (batch, size_d))."""
        code = self.encoder(x)
        return energy(self.decoder(code), x), code


def build_models(c: RunConfig) -> tuple[Generator, nn.Module]:
    """The generator and the discriminator of a run, initialised (seed the RNG first)."""
    discriminator = EbganDiscriminator(c) if c.is_ebgan else GanDiscriminator(c)
    return Generator(c), discriminator


def count_flops_per_step(c: RunConfig) -> int:
    """Multiply-add FLOPs of one training step (one D then one G update), forward and backward.

    Counts the linear layers only (2 * in * out per sample for the forward pass, twice that for
    the backward pass): G runs forward once per step for the fake batch (its backward runs in the
    G update), D runs forward on the real and fake batches in the D update and on the fake batch
    in the G update.
    """
    def linear_macs(dims: list[int]) -> int:
        return sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))

    g_dims = [c.z_dim] + [c.size_g] * (c.n_layers_g - 1) + [IMAGE_DIM]
    if c.is_ebgan:
        d_dims = [IMAGE_DIM] + [c.size_d] * (c.n_layers_d - 1) + [IMAGE_DIM]
    else:
        d_dims = [IMAGE_DIM] + [c.size_d] * (c.n_layers_d - 1) + [1]
    g, d = linear_macs(g_dims), linear_macs(d_dims)
    # forward 2 FLOPs per MAC; backward ~2x forward.
    per_sample = 2 * (3 * g + 3 * d * 2 + 3 * d)
    return per_sample * c.batch_size
