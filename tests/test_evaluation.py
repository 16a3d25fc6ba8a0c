"""Evaluation during training (gridstudy/evaluation.py): the curve's points, and that recording
it changes nothing about training, alone or fused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gridstudy.train
from analysis.schema import CURVE_SCORES
from gridstudy.evaluation import STEP_STATS, CurveRecorder, eval_noise, generate, grad_norms
from gridstudy.fused import train_fused
from gridstudy.models import build_models
from gridstudy.train import train_run
from tests.test_fused import MomentScorer, one_thread, tiny  # noqa: F401 (fixture)


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_same_curve(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for pa, pb in zip(a, b, strict=True):
        assert pa.keys() == pb.keys()
        bad = [k for k in pa if not same(pa[k], pb[k])]
        assert not bad, (pa["step"], {k: (pa[k], pb[k]) for k in bad})


def trained_weights(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Capture G's weights as each run ends (finish_run's argument)."""
    seen: list[dict] = []
    original = gridstudy.train.finish_run

    def capture(c, g_net, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append({k: v.clone() for k, v in g_net.state_dict().items()})
        return original(c, g_net, *args, **kwargs)

    monkeypatch.setattr(gridstudy.train, "finish_run", capture)
    return seen


@pytest.mark.parametrize("model", ["gan", "ebgan_pt"])
def test_evaluation_changes_nothing_about_training(mnist5k, monkeypatch, model):
    weights = trained_weights(monkeypatch)
    scorer = MomentScorer()
    on = train_run(tiny(model=model, eval_every=7, dropout_d=True), mnist5k.train_x, scorer)
    off = train_run(tiny(model=model, eval_every=0, dropout_d=True), mnist5k.train_x, scorer)
    assert len(on.curve) == 6 and off.curve == []  # 7, 14, ..., 35, and the final 40
    for key in ("loss_d", "loss_g", "i_prime", "frechet_distance", "status"):
        assert same(on.row[key], off.row[key]), key
    assert np.array_equal(on.samples, off.samples)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_points_record(mnist5k):
    c = tiny(model="ebgan", eval_every=10, margin_schedule="linear", margin_end=0.0)
    curve = train_run(c, mnist5k.train_x, MomentScorer()).curve
    assert [p["step"] for p in curve] == [10, 20, 30, 40]
    assert [p["final"] for p in curve] == [False, False, False, True]
    assert [p["n_samples"] for p in curve] == [200, 200, 200, 200]  # n_eval_curve capped
    expected = [10 * (1 - (s - 1) / 39) for s in (10, 20, 30, 40)]
    assert [p["margin"] for p in curve] == pytest.approx(expected)
    for p in curve:
        assert set(p) == {"run_id", "step", "final", "n_samples", *STEP_STATS, *CURVE_SCORES,
                          "margin"}
        assert all(math.isfinite(p[k]) for k in STEP_STATS) and p["grad_norm_d"] > 0
    gan = train_run(tiny(eval_every=20), mnist5k.train_x, MomentScorer()).curve
    assert [p["step"] for p in gan] == [20, 40] and math.isnan(gan[0]["energy_real"])
    assert math.isnan(gan[0]["margin"])


def test_interval_means_are_means_of_the_steps(mnist5k, monkeypatch):
    """The curve's loss at a point is the mean of the losses of the steps since the last one."""
    losses: list[float] = []
    original = gridstudy.train.train_step

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = original(*args, **kwargs)
        losses.append(out[0].item())
        return out

    monkeypatch.setattr(gridstudy.train, "train_step", spy)
    curve = train_run(tiny(eval_every=10, steps=20), mnist5k.train_x, MomentScorer()).curve
    assert curve[0]["loss_d"] == pytest.approx(np.mean(losses[:10]), rel=1e-6)
    assert curve[1]["loss_d"] == pytest.approx(np.mean(losses[10:]), rel=1e-6)


def test_a_diverged_run_ends_its_curve_where_it_stopped(mnist5k):
    c = tiny(optim_d="sgd", optim_g="sgd", lr=1e6, eval_every=1)
    result = train_run(c, mnist5k.train_x, MomentScorer())
    assert result.row["status"] == "diverged"
    assert result.curve[-1]["step"] == result.row["diverged_step"] + 1
    assert result.curve[-1]["final"] and not result.curve[-2]["final"]


@pytest.mark.parametrize("kind", ["gan", "ebgan"])
def test_a_fused_run_gets_the_curve_it_gets_alone(mnist5k, kind):
    base = {"eval_every": 8, "dropout_d": True}
    if kind == "gan":
        group = [tiny(seed=1, **base), tiny(seed=2, optim_d="sgd", lr=0.01, **base),
                 tiny(seed=3, optim_d="sgd", optim_g="sgd", lr=1e6, **base)]  # diverges
    else:
        group = [tiny(seed=1, model="ebgan", margin_schedule="cosine", **base),
                 tiny(seed=2, model="ebgan_pt", pt_weight=0.3, **base)]
    scorer = MomentScorer()
    for c, fused in zip(group, train_fused(group, mnist5k.train_x, scorer), strict=True):
        assert_same_curve(fused.curve, train_run(c, mnist5k.train_x, scorer).curve)


def test_sampling_leaves_batch_norm_and_random_streams_alone():
    c = tiny(n_eval=300)
    torch.manual_seed(0)
    g_net, _ = build_models(c)
    g_net.train()(torch.randn(32, c.z_dim))  # some running statistics
    buffers = {k: v.clone() for k, v in g_net.state_dict().items()}
    rng_state = torch.get_rng_state()
    recorder = CurveRecorder(c, MomentScorer(), torch.device("cpu"))
    recorder.evaluate(g_net, 10, None)
    assert all(torch.equal(buffers[k], v) for k, v in g_net.state_dict().items())
    assert torch.equal(rng_state, torch.get_rng_state()) and g_net.training
    # the curve's noise is the first rows of the final evaluation's noise
    assert torch.equal(eval_noise(c, 100), eval_noise(c)[:100])
    assert generate(g_net, c, torch.device("cpu")).shape == (300, 784)


def test_grad_norms_alone_and_stacked():
    grads = [torch.tensor([[3.0, 0.0], [0.0, 0.0]]), torch.tensor([4.0, 0.0])]
    assert grad_norms(grads).item() == 5.0
    stacked = [torch.stack([g, 2 * g]) for g in grads]
    assert grad_norms(stacked, runs=2).tolist() == [5.0, 10.0]
