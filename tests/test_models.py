"""Network shapes, layer layout, initialisation and the seeded dropout."""

import torch
from torch import nn

from gridstudy.config import RunConfig
from gridstudy.models import (
    EbganDiscriminator,
    GanDiscriminator,
    SeededDropout,
    build_models,
    use_generator,
)


def linears(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def test_generator_layout_and_output_range():
    c = RunConfig(n_layers_g=4, size_g=32, z_dim=8)
    g, _ = build_models(c)
    shapes = [(m.in_features, m.out_features) for m in linears(g)]
    assert shapes == [(8, 32), (32, 32), (32, 32), (32, 784)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in g.modules()) == 3  # all but the output
    out = g(torch.randn(5, 8))
    assert out.shape == (5, 784) and out.abs().max() <= 1


def test_gan_discriminator_layout():
    d = GanDiscriminator(RunConfig(n_layers_d=3, size_d=16, dropout_d=True))
    assert [(m.in_features, m.out_features) for m in linears(d)] == [(784, 16), (16, 16), (16, 1)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in d.modules()) == 1  # not on the input layer
    assert sum(isinstance(m, SeededDropout) for m in d.modules()) == 2
    assert d(torch.randn(4, 784)).shape == (4,)


def test_ebgan_discriminator_counts_the_decoder_layer():
    d = EbganDiscriminator(RunConfig(model="ebgan", n_layers_d=2, size_d=16))
    assert [(m.in_features, m.out_features) for m in linears(d)] == [(784, 16), (16, 784)]
    x = torch.rand(3, 784) * 2 - 1
    energy, code = d(x)
    assert energy.shape == (3,) and code.shape == (3, 16)
    expected = (d.decoder(d.encoder(x)) - x).norm(dim=1)
    assert torch.allclose(energy, expected)


def test_initialisation_stds_and_zero_biases():
    torch.manual_seed(0)
    g, d = build_models(RunConfig(size_g=512, size_d=512))
    for net, std in ((g, 0.02), (d, 0.002)):
        for m in linears(net):
            assert torch.all(m.bias == 0)
        weight = linears(net)[1].weight
        assert abs(weight.std().item() - std) / std < 0.05


def test_seeded_dropout_depends_on_its_generator_only():
    d = GanDiscriminator(RunConfig(dropout_d=True, size_d=8))
    x = torch.randn(4, 784)
    use_generator(d, torch.Generator().manual_seed(3))
    a = d(x)
    torch.manual_seed(123)  # the global RNG must not matter
    use_generator(d, torch.Generator().manual_seed(3))
    assert torch.equal(a, d(x))
    d.eval()
    assert torch.equal(d(x), d(x))


def test_seeded_dropout_keeps_expectation():
    drop = SeededDropout(0.5)
    drop.generator = torch.Generator().manual_seed(0)
    out = drop(torch.ones(100_000))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert abs(out.mean().item() - 1.0) < 0.02
