"""Fused training: each run of a fused group equals the same run trained alone by train_run.

Equality is bit for bit on CPU (see gridstudy/stacked.py for why nothing less would do with
Adam); batch sizes are multiples of 32 so that per-run vectors fill whole SIMD blocks, as the
default batch of 64 does. Losses are compared with a relative tolerance of 1e-6 only so that a
platform's sign of zero cannot fail a test; a real difference would be far larger (chaos).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gridstudy.config import RunConfig
from gridstudy.fused import UnsupportedOption, check_fused_kernels, train_fused
from gridstudy.stacked import StackedLinear, batch_norm_kernel, linear_kernels
from gridstudy.study import SharedInputs, train_bundle
from gridstudy.train import train_run


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread, as a sweep's workers train (two threads on a busy 2-core machine crawl)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class MomentScorer:
    """A cheap stand-in for the classifier's scores: two moments of the samples (NaN-aware)."""

    name = "moments"

    def score(self, samples: torch.Tensor, names: object = None) -> dict[str, float]:
        x = samples.double()
        return {"i_prime": x.mean().item(), "frechet_distance": x.std().item()}


def tiny(**kw: object) -> RunConfig:
    base = {"size_g": 32, "size_d": 16, "n_layers_g": 3, "n_layers_d": 3, "steps": 40,
            "n_eval": 200, "batch_size": 32}
    return RunConfig(**{**base, **kw})


GAN_GROUP = [
    tiny(seed=1, dropout_d=True),
    tiny(seed=2, dropout_d=True, optim_d="sgd", lr=0.01, g_loss="minimax", dropout_rate=0.3),
    tiny(seed=3, dropout_d=True, optim_g="sgd", sgd_momentum=0.9, lr=0.01, dropout_rate=0.0),
    tiny(seed=4, dropout_d=True, optim_d="sgd", optim_g="sgd", lr=1e6),  # diverges
    tiny(seed=5, dropout_d=True, adam_beta1=0.9, lr=2e-4),
]
EBGAN_GROUP = [
    tiny(seed=1, model="ebgan", margin_schedule="cosine", margin=5.0),
    tiny(seed=2, model="ebgan_pt", pt_weight=0.3, optim_d="sgd", lr=0.01),
    tiny(seed=3, model="ebgan_pt", margin_schedule="linear", margin_end=1.0, optim_g="sgd",
         lr=0.01),
    tiny(seed=4, model="ebgan", optim_d="sgd", optim_g="sgd", sgd_momentum=0.5, lr=0.01),
]


def assert_same_result(fused, alone) -> None:
    assert fused.row.keys() == alone.row.keys()
    for key in ("run_id", "status", "diverged_step", "error", "device"):
        assert fused.row[key] == alone.row[key], key
    for key in ("loss_d", "loss_g", "i_prime", "frechet_distance"):
        a, b = fused.row[key], alone.row[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6), key
    assert np.array_equal(fused.samples, alone.samples)


@pytest.mark.parametrize("group", [GAN_GROUP, EBGAN_GROUP], ids=["gan", "ebgan"])
def test_every_fused_run_equals_the_run_alone(mnist5k, group):
    scorer = MomentScorer()
    fused = train_fused(group, mnist5k.train_x, scorer)
    assert [r.row["run_id"] for r in fused] == [c.run_id() for c in group]
    for c, result in zip(group, fused, strict=True):
        assert_same_result(result, train_run(c, mnist5k.train_x, scorer))


def test_a_diverging_run_stops_alone(mnist5k):
    scorer = MomentScorer()
    group = [GAN_GROUP[0], GAN_GROUP[3], GAN_GROUP[4]]
    fused = train_fused(group, mnist5k.train_x, scorer)
    assert fused[1].row["status"] == "diverged" and fused[1].row["diverged_step"] < 40
    assert [r.row["status"] for r in (fused[0], fused[2])] == ["ok", "ok"]
    without = train_fused([group[0], group[2]], mnist5k.train_x, scorer)
    for a, b in zip((fused[0], fused[2]), without, strict=True):
        assert_same_result(a, b)


def test_runs_of_different_architectures_are_refused(mnist5k):
    with pytest.raises(ValueError, match="architecture"):
        train_fused([tiny(), tiny(size_d=32)], mnist5k.train_x, MomentScorer())


def cheap_inputs(mnist5k, scorer, monkeypatch) -> dict[str, SharedInputs]:
    """train_bundle's inputs, scoring with MomentScorer (the Fréchet distance takes seconds)."""
    monkeypatch.setattr(SharedInputs, "scorer", lambda self: MomentScorer())
    return {"mnist5k": SharedInputs(mnist5k.train_x, scorer.classifier.state(),
                                    scorer.real_features)}


def test_train_bundle_falls_back_to_one_at_a_time(mnist5k, scorer, monkeypatch):
    import gridstudy.fused

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no fused kernels here")

    monkeypatch.setattr(gridstudy.fused, "train_fused", broken)
    inputs = cheap_inputs(mnist5k, scorer, monkeypatch)
    runs = [tiny(seed=s, steps=3) for s in range(2)]
    seen: list[int] = []
    with pytest.warns(UserWarning, match="one run at a time"):
        results = train_bundle(runs, inputs, device="cpu", fuse=True,
                               on_run_done=lambda r: seen.append(len(r)))
    assert [r.row["status"] for r in results] == ["ok", "ok"] and seen == [1, 2]


def test_train_bundle_reports_each_fused_run_as_train_run_would(mnist5k, scorer, monkeypatch):
    inputs = cheap_inputs(mnist5k, scorer, monkeypatch)
    runs = [tiny(seed=s, steps=3) for s in range(3)]
    seen: list[int] = []
    results = train_bundle(runs, inputs, device="cpu", fuse=True,
                           on_run_done=lambda r: seen.append(len(r)))
    assert seen == [1, 2, 3]
    for c, result in zip(runs, results, strict=True):
        assert_same_result(result, train_run(c, mnist5k.train_x, MomentScorer()))


@pytest.mark.parametrize("d_in, d_out, batch", [(16, 1, 32), (784, 16, 16), (50, 784, 64)])
def test_stacked_linear_is_exact_per_run(d_in, d_out, batch):
    """Including a one-column output, where bmm and mm take different BLAS paths."""
    gen = torch.Generator().manual_seed(0)
    x, g = torch.randn(3, batch, d_in, generator=gen), torch.randn(3, batch, d_out, generator=gen)
    w = torch.randn(3, d_out, d_in, generator=gen).requires_grad_()
    b = torch.randn(3, d_out, generator=gen).requires_grad_()
    kernels = linear_kernels(3, batch, d_in, d_out, True, x.device, torch.get_num_threads())
    StackedLinear.apply(x, w, b, kernels).backward(g)
    for k in range(3):
        wk, bk = w[k].detach().requires_grad_(), b[k].detach().requires_grad_()
        y = F.linear(x[k], wk, bk)
        y.backward(g[k])
        assert torch.equal(y, kernels.forward(x, w, b)[k].detach())
        assert torch.equal(wk.grad, w.grad[k]) and torch.equal(bk.grad, b.grad[k])


@pytest.mark.parametrize("features", [16, 50])
def test_batch_norm_is_exact_per_run(features):
    """50 features are not a whole number of SIMD vectors: the check picks the loop."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 32, features, generator=gen)
    w, b = torch.rand(3, features, generator=gen), torch.rand(3, features, generator=gen)
    mean, var = torch.zeros(3, features), torch.ones(3, features)
    kernel = batch_norm_kernel(3, 32, features, x.device, torch.get_num_threads())
    y = kernel(x, mean, var, w, b, 0.1, 1e-5)
    for k in range(3):
        bn = torch.nn.BatchNorm1d(features)
        with torch.no_grad():
            bn.weight.copy_(w[k])
            bn.bias.copy_(b[k])
        assert torch.equal(bn(x[k]), y[k].detach())
        assert torch.equal(bn.running_mean, mean[k]) and torch.equal(bn.running_var, var[k])


def test_fused_rows_say_they_were_fused(mnist5k):
    scorer = MomentScorer()
    runs = [tiny(seed=1, steps=3), tiny(seed=2, steps=3)]
    assert [r.row["fused"] for r in train_fused(runs, mnist5k.train_x, scorer)] == [True, True]
    assert train_run(runs[0], mnist5k.train_x, scorer).row["fused"] is False


def test_an_option_value_fusion_does_not_implement_is_refused(mnist5k, monkeypatch):
    """A value added to the config (here a third optimizer) is refused by the fused trainer,
    never trained as adam or sgd; train_run refuses it too, so the run is recorded as failed."""
    import gridstudy.config

    monkeypatch.setattr(gridstudy.config, "OPTIMIZERS", ("adam", "sgd", "rmsprop"))
    runs = [tiny(seed=1, optim_d="rmsprop", steps=3), tiny(seed=2, steps=3)]
    with pytest.raises(UnsupportedOption, match="optim_d='rmsprop'.*--no-fuse"):
        train_fused(runs, mnist5k.train_x, MomentScorer())
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        train_run(runs[0], mnist5k.train_x, MomentScorer())


def test_the_private_kernels_pass_their_check_here():
    check_fused_kernels.cache_clear()
    check_fused_kernels("cpu")  # raises if torch._fused_adam_/_fused_sgd_ disagree with optim


def _double_steps(original):
    """A kernel whose every update is twice what it should be."""
    def kernel(params, grads, *args, **kwargs):
        before = [p.clone() for p in params]
        original(params, grads, *args, **kwargs)
        for p, b in zip(params, before, strict=True):
            p.add_(p - b)
    return kernel


def _raises(*args, **kwargs):
    raise TypeError("_fused_adam_() got an unexpected keyword argument 'lr'")


@pytest.mark.parametrize("fault, kernel", [
    ("raises", "_fused_adam_"), ("raises", "_fused_sgd_"),  # a changed private signature
    ("wrong", "_fused_adam_"), ("wrong", "_fused_sgd_"),  # a broken kernel
    ("misused", "_fused_adam_"),  # fusion calling it unlike torch.optim (another eps)
])
def test_a_private_kernel_that_disagrees_or_raises_means_one_run_at_a_time(
        mnist5k, scorer, monkeypatch, fault, kernel):
    import gridstudy.fused

    if fault == "misused":
        monkeypatch.setattr(gridstudy.fused, "ADAM_EPS", 1e-3)
    else:
        fake = _raises if fault == "raises" else _double_steps(getattr(torch, kernel))
        monkeypatch.setattr(torch, kernel, fake)
    check_fused_kernels.cache_clear()
    try:
        with pytest.raises(NotImplementedError, match=f"torch.{kernel}"):
            check_fused_kernels("cpu")
        inputs = cheap_inputs(mnist5k, scorer, monkeypatch)
        runs = [tiny(seed=s, steps=3) for s in range(2)]
        with pytest.warns(UserWarning, match="one run at a time"):
            results = train_bundle(runs, inputs, device="cpu", fuse=True)
        if fault != "raises":
            assert [r.row["fused"] for r in results] == [False, False]
            assert [r.row["status"] for r in results] == ["ok", "ok"]
    finally:
        monkeypatch.undo()
        check_fused_kernels.cache_clear()
