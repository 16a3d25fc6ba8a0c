"""Scores against values worked out by hand on toy arrays (analysis/scores.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg

from analysis.scores import (
    PROB_EPS,
    class_coverage,
    frechet_distance,
    i_prime,
    inception_score,
    precision_recall,
)

LN2, LN10 = math.log(2.0), math.log(10.0)


def one_hots(labels: list[int], k: int = 10) -> np.ndarray:
    return np.eye(k)[labels]


# --- I' and IS -----------------------------------------------------------------------------


def test_identical_one_hot_rows_score_zero_and_one():
    probs = one_hots([3] * 50)
    # p(y) = p(y|x) for every x: both KL divergences are 0.
    assert i_prime(probs) == pytest.approx(0.0, abs=1e-12)
    assert inception_score(probs) == pytest.approx(1.0)


def test_uniform_rows_score_zero_and_one():
    probs = np.full((20, 10), 0.1)
    assert i_prime(probs) == pytest.approx(0.0, abs=1e-12)
    assert inception_score(probs) == pytest.approx(1.0)


def test_two_opposite_one_hots():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    # p(y) = [.5, .5]. For x = [1, 0], with p(y|x) clamped to eps = 1e-12:
    #   KL(p(y) || p(y|x)) = .5 log(.5 / 1) + .5 log(.5 / 1e-12)
    #                      = .5 (-ln 2) + .5 (-ln 2 + 12 ln 10) = -ln 2 + 6 ln 10 = 13.12236...
    # and x = [0, 1] gives the same, so the mean over x is the same.
    assert i_prime(probs) == pytest.approx(-LN2 + 6 * LN10, rel=1e-12)
    assert i_prime(probs) == pytest.approx(13.122363377, rel=1e-9)
    # IS: KL(p(y|x) || p(y)) = 1 * log(1 / .5) = ln 2 for both, exp(ln 2) = 2.
    assert inception_score(probs) == pytest.approx(2.0, rel=1e-12)


def test_ten_balanced_confident_classes():
    probs = one_hots(list(range(10)) * 3)
    # p(y) = .1 each. Per sample: .1 log(.1 / 1) + 9 * .1 log(.1 / 1e-12)
    #   = -.1 ln 10 + .9 (-ln 10 + 12 ln 10) = -.1 ln 10 + 9.9 ln 10 = 9.8 ln 10 = 22.565...
    assert i_prime(probs) == pytest.approx(9.8 * LN10, rel=1e-12)
    # IS: log(1 / .1) = ln 10 per sample -> IS = 10, the maximum for 10 classes.
    assert inception_score(probs) == pytest.approx(10.0, rel=1e-12)


@pytest.mark.parametrize("eps, expected", [
    (1e-12, -LN2 + 6.0 * LN10),  # .5 log .5 + .5 log(.5 / eps) = -ln 2 - .5 ln eps
    (1e-6, -LN2 + 3.0 * LN10),   # 6.2146
    (1e-3, -LN2 + 1.5 * LN10),   # 2.7607
])
def test_clamp_sets_the_ceiling_of_i_prime(eps, expected):
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert i_prime(probs, eps=eps) == pytest.approx(expected, rel=1e-12)
    assert inception_score(probs, eps=eps) == pytest.approx(2.0, rel=1e-12)


def test_clamp_moves_i_prime_but_barely_is_on_confident_soft_probs():
    tiny = 1e-20  # a confident classifier's wrong-class probability
    probs = np.array([[1 - tiny, tiny], [tiny, 1 - tiny]])
    # Lowering eps from 1e-6 to 1e-12 lowers the clamped log p(y|x) of the wrong class by
    # ln 1e6, weighted by p(y) = .5: I' rises by .5 * 6 ln 10 = 3 ln 10.
    assert i_prime(probs, 1e-12) - i_prime(probs, 1e-6) == pytest.approx(3 * LN10, rel=1e-9)
    assert inception_score(probs, 1e-12) == pytest.approx(inception_score(probs, 1e-6), rel=1e-12)
    assert PROB_EPS == 1e-12


def test_logits_are_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        i_prime(np.array([[2.0, -1.0], [0.5, 0.3]]))


# --- class coverage ------------------------------------------------------------------------


def test_coverage_one_class():
    n, kl = class_coverage(one_hots([7] * 40))
    assert n == 1
    assert kl == pytest.approx(LN10)  # 1 * log(1 / .1)


def test_coverage_two_classes():
    n, kl = class_coverage(one_hots([2, 5] * 20))
    assert n == 2
    assert kl == pytest.approx(math.log(5.0))  # 2 * .5 log(.5 / .1) = log 5


def test_coverage_all_ten_balanced():
    cov = class_coverage(one_hots(list(range(10)) * 5))
    assert cov.n_covered == 10
    assert cov.kl_uniform == pytest.approx(0.0, abs=1e-12)


def test_coverage_threshold_is_inclusive():
    # 100 samples: 97 of class 0, 2 of class 1 (share .02), 1 of class 2 (share .01).
    probs = one_hots([0] * 97 + [1] * 2 + [2])
    assert class_coverage(probs).n_covered == 2
    assert class_coverage(probs, min_share=0.01).n_covered == 3


def test_coverage_uses_argmax_of_soft_probs():
    probs = np.array([[0.6, 0.4], [0.3, 0.7]])
    n, kl = class_coverage(probs)
    assert n == 2
    assert kl == pytest.approx(0.0, abs=1e-12)


# --- Fréchet distance ----------------------------------------------------------------------

# Four points whose columns are +-1 and orthogonal with mean 0 (columns of a Hadamard matrix):
# their sample covariance (ddof=1) is exactly diag(4 / 3, 4 / 3).
_PLUS_MINUS = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])


def _with_moments(mean: list[float], var: list[float]) -> np.ndarray:
    """Four points with sample mean ``mean`` and sample covariance exactly diag(``var``)."""
    return np.asarray(mean) + _PLUS_MINUS * np.sqrt(np.asarray(var) * 3.0 / 4.0)


def test_frechet_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_shift_is_squared_mean_difference():
    x = np.random.default_rng(1).normal(size=(300, 16))
    shift = np.arange(16) / 4.0
    # Same covariance, so the trace term vanishes: d^2 = ||shift||^2 = sum (i/4)^2 = 1240 / 16.
    assert frechet_distance(x, x + shift) == pytest.approx(1240.0 / 16.0, rel=1e-9)


def test_frechet_diagonal_gaussians():
    a = _with_moments([1.0, 2.0], [4.0, 9.0])
    b = _with_moments([0.0, 0.0], [1.0, 16.0])
    # Diagonal covariances commute: Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) = sum (sqrt a - sqrt b)^2
    # = (2 - 1)^2 + (3 - 4)^2 = 2; mean term 1^2 + 2^2 = 5; total 7.
    assert frechet_distance(a, b) == pytest.approx(7.0, rel=1e-12)
    assert frechet_distance(b, a) == pytest.approx(7.0, rel=1e-12)


def test_frechet_matches_the_general_sqrtm_form():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 1.0
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    mu = a.mean(0) - b.mean(0)
    expected = mu @ mu + np.trace(s_a + s_b - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_rank_deficient_features_stay_finite():
    # More dimensions than samples, as with collapsed generators: singular covariances.
    x = np.random.default_rng(3).normal(size=(10, 40))
    d = frechet_distance(x, x[::-1] + 1.0)
    assert np.isfinite(d)
    assert d == pytest.approx(40.0, rel=1e-6)  # same rows, so same covariance; shift 1 x 40


# --- precision and recall ------------------------------------------------------------------


def test_precision_recall_identical_sets():
    x = np.random.default_rng(4).normal(size=(400, 8))
    assert precision_recall(x, x) == (1.0, 1.0)


def test_precision_recall_disjoint_sets():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 100.0
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_precision_recall_one_mode_of_two():
    rng = np.random.default_rng(6)
    mode_a, mode_b = np.zeros(2), np.array([50.0, 0.0])
    real = np.concatenate([rng.normal(size=(500, 2)) + mode_a, rng.normal(size=(500, 2)) + mode_b])
    fake = rng.normal(size=(500, 2)) + mode_a
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9  # every fake sample is a plausible mode-a sample
    assert 0.4 < recall <= 0.5  # the fake manifold covers mode a's half of the real set only


def test_precision_recall_subsample_is_seeded():
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 0.5
    first = precision_recall(real, fake, max_samples=100, seed=3)
    assert precision_recall(real, fake, max_samples=100, seed=3) == first
    assert first != precision_recall(real, fake)  # the full sets give a different estimate


def test_precision_recall_needs_more_than_k_samples():
    with pytest.raises(ValueError, match="more than 3"):
        precision_recall(np.zeros((3, 2)), np.ones((10, 2)))
