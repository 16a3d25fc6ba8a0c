"""Losses against values worked out by hand."""

import math

import pytest
import torch

from gridstudy.losses import (
    ebgan_d_loss,
    ebgan_g_loss,
    energy,
    gan_d_loss,
    gan_g_loss,
    pulling_away_term,
    scheduled_margin,
)


def test_gan_d_loss_at_zero_logits_is_two_log_two():
    # sigma(0) = 1/2: -log(1/2) - log(1 - 1/2) = 2 log 2.
    zeros = torch.zeros(4)
    assert gan_d_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))


def test_gan_d_loss_hand_values():
    # real logit log(3): sigma = 3/4, -log(3/4); fake logit log(1/3): sigma = 1/4, -log(3/4).
    real = torch.tensor([math.log(3.0)])
    fake = torch.tensor([math.log(1 / 3)])
    assert gan_d_loss(real, fake).item() == pytest.approx(-2 * math.log(0.75), rel=1e-6)


def test_gan_g_losses_hand_values():
    fake = torch.tensor([math.log(1 / 3)])  # sigma = 1/4
    assert gan_g_loss(fake).item() == pytest.approx(-math.log(0.25), rel=1e-6)
    assert gan_g_loss(fake, "minimax").item() == pytest.approx(math.log(0.75), rel=1e-6)
    with pytest.raises(ValueError):
        gan_g_loss(fake, "wasserstein")


def test_ebgan_d_loss_applies_the_hinge_per_sample():
    real = torch.tensor([1.0, 3.0])  # mean 2
    fake = torch.tensor([4.0, 12.0])  # [10-4]^+ = 6, [10-12]^+ = 0, mean 3
    assert ebgan_d_loss(real, fake, margin=10.0).item() == pytest.approx(5.0)
    assert ebgan_d_loss(real, fake, margin=0.0).item() == pytest.approx(2.0)


def test_ebgan_g_loss_is_mean_fake_energy():
    assert ebgan_g_loss(torch.tensor([4.0, 12.0])).item() == pytest.approx(8.0)


def test_pulling_away_term_orthogonal_parallel_and_mixed():
    assert pulling_away_term(torch.eye(3)).item() == pytest.approx(0.0)
    parallel = torch.tensor([[1.0, 0], [2.0, 0], [-3.0, 0]])
    assert pulling_away_term(parallel).item() == pytest.approx(1.0)
    # s1=(1,0), s2=(1,1): cos^2 = 1/2 for the one pair, counted twice over N(N-1)=2.
    assert pulling_away_term(torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(0.5)
    # three vectors at 0, 60 and 120 degrees: cos^2 = 1/4 for each of the 3 pairs -> mean 1/4.
    angles = torch.tensor([0.0, math.pi / 3, 2 * math.pi / 3])
    codes = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor([[1.0], [2.0], [5.0]])
    assert pulling_away_term(codes).item() == pytest.approx(0.25, abs=1e-6)


def test_pulling_away_term_needs_two_samples_and_survives_zero_vectors():
    with pytest.raises(ValueError):
        pulling_away_term(torch.ones(1, 4))
    value = pulling_away_term(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert math.isfinite(value.item()) and value.item() == pytest.approx(0.0)


def test_pulling_away_term_has_gradients():
    codes = torch.randn(5, 3, requires_grad=True)
    pulling_away_term(codes).backward()
    assert codes.grad is not None and torch.isfinite(codes.grad).all()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_margin_schedule_first_middle_last(schedule):
    assert scheduled_margin(10.0, schedule, 0, 101, margin_end=2.0) == pytest.approx(10.0)
    assert scheduled_margin(10.0, schedule, 50, 101, margin_end=2.0) == pytest.approx(6.0)
    assert scheduled_margin(10.0, schedule, 100, 101, margin_end=2.0) == pytest.approx(2.0)


def test_linear_and_cosine_differ_at_a_quarter():
    # linear: 10 - 8 * 1/4 = 8; cosine: 2 + 8 * (1 + cos(pi/4)) / 2 = 2 + 4 (1 + sqrt(2)/2).
    assert scheduled_margin(10.0, "linear", 25, 101, 2.0) == pytest.approx(8.0)
    assert scheduled_margin(10.0, "cosine", 25, 101, 2.0) == pytest.approx(6 + 2 * math.sqrt(2))


def test_constant_schedule_gives_the_constant_margin_loss():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([4.0, 12.0])
    for step in (0, 50, 99):
        m = scheduled_margin(10.0, "constant", step, 100, margin_end=0.0)
        assert m == 10.0
        assert ebgan_d_loss(real, fake, m).item() == ebgan_d_loss(real, fake, 10.0).item()


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError):
        scheduled_margin(10.0, "step", 3, 10)


def test_losses_keep_a_leading_run_dimension():
    """Both trainers call these functions: on (K, B) inputs each run gets its own loss, with one
    margin and one PT weight per run, exactly what the run alone gets."""
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen).abs() * 4
    codes = torch.randn(3, 8, 5, generator=gen)
    margins, weights = torch.tensor([[1.0], [4.0], [10.0]]), torch.tensor([0.0, 0.1, 0.3])
    d_gan, g_gan = gan_d_loss(real, fake), gan_g_loss(fake, "minimax")
    d_eb = ebgan_d_loss(real.abs(), fake, margins)
    g_eb = ebgan_g_loss(fake, codes, weights)
    for k in range(3):
        assert torch.equal(d_gan[k], gan_d_loss(real[k], fake[k]))
        assert torch.equal(g_gan[k], gan_g_loss(fake[k], "minimax"))
        assert torch.equal(d_eb[k], ebgan_d_loss(real[k].abs(), fake[k], margins[k].item()))
        alone = ebgan_g_loss(fake[k], codes[k], weights[k].item())
        assert torch.allclose(g_eb[k], alone, rtol=0, atol=1e-7)
    assert torch.equal(ebgan_g_loss(fake, codes, 0.0), fake.mean(-1))  # EBGAN: exactly Eq. 2


def test_energy_is_the_reconstruction_norm():
    x = torch.zeros(2, 4)
    reconstruction = torch.tensor([[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert energy(reconstruction, x).tolist() == [5.0, 2.0]


def test_an_unknown_generator_loss_is_refused():
    with pytest.raises(ValueError, match="unknown generator loss 'wasserstein'"):
        gan_g_loss(torch.zeros(4), "wasserstein")
