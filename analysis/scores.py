"""Scores of a set of generated digits, computed from a classifier's outputs on them.

Everything a study records about sample quality is a pure NumPy/SciPy function of three arrays:
the classifier's class probabilities on the generated samples (n, k), its penultimate-layer
features on them (n, d), and the same features on real test digits (m, d). Nothing here knows
about training or torch, so every score can be recomputed later from saved outputs.

* ``i_prime``: the modified inception score I' that EBGAN (Zhao et al. 2017, Section 4.1) uses
  for its grid search; ``inception_score``: the standard IS (Salimans et al. 2016).
* ``n_classes_covered`` / ``class_kl_uniform``: mode coverage read off the argmax labels.
* ``frechet_distance``: the FID formula (Heusel et al. 2017) in the classifier's feature space.
* ``precision`` / ``recall``: k-NN manifold precision and recall (Kynkäänniemi et al. 2019).

:class:`SampleOutputs` bundles the three arrays; the score registry that names, labels and
evaluates these functions is :data:`analysis.schema.SCORES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
from scipy import linalg, special

# Lower clamp on classifier probabilities inside every log, stored with each run as ``prob_eps``.
# I' = E_x KL(p(y) || p(y|x)) is unbounded as p(y|x) -> 0: a confident classifier gives
# p(y|x) ~ 1e-30 for the wrong classes, and the score is then set by how far the clamp lets the
# log fall, not by the generator. The clamp is the ceiling of I' (about log(1/eps)), so runs are
# comparable only at one eps. Measured on real t10k digits: I' 10.23 at 1e-12, 8.06 at 1e-6,
# 3.77 at 1e-3, while IS barely moves (its KL weights the log by p(y|x), which vanishes).
PROB_EPS: float = 1e-12
# A class counts as covered when it holds at least this share of the samples (by argmax): a
# fifth of the uniform share 1/10. A ~99 % accurate classifier scatters its ~1 % errors over
# nine classes (~0.1 % each), far below it, and a balanced set of 5,000 samples sits at
# 0.10 +- 0.004, far above it, so the count moves only when a mode is really missing or rare.
COVERAGE_MIN_SHARE: float = 0.02
# k of the k-NN radii that define each manifold (the value Kynkäänniemi et al. 2019 recommend).
PR_K: int = 3
# Precision/recall compare at most this many samples of each set (a seeded random subset): the
# cost is quadratic, and 5,000 is the sample count of a scored run.
PR_MAX_SAMPLES: int = 5000
PR_SEED: int = 0  # seed of that subset, fixed so a run's scores are reproducible
_BLOCK_ROWS: int = 1024  # rows per distance block: 1024 x 5,000 float32 is 20 MB

class Coverage(NamedTuple):
    """Mode coverage of a sample set, read off the classifier's argmax labels."""

    n_covered: int  # classes holding at least min_share of the samples
    kl_uniform: float  # KL(p_hat(y) || uniform) in nats: 0 balanced, log(k) one class


def _as_probs(probs: np.ndarray) -> np.ndarray:
    """``probs`` as float64 (n, k) with rows summing to 1, or ValueError."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty (n, k) array, got shape {p.shape}")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("rows of probs must sum to 1 (class probabilities, not logits)")
    return p


def _log_clamped(p: np.ndarray, eps: float) -> np.ndarray:
    """log(clip(p, eps, 1)): the one clamp of PROB_EPS. Being finite, a term p * log(...) with
    p = 0 is exactly 0, which is the 0 log 0 = 0 convention of the KL divergence.
    """
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    return np.log(np.clip(p, eps, 1.0))


def i_prime(probs: np.ndarray, eps: float = PROB_EPS) -> float:
    """The EBGAN paper's modified inception score I' = E_x KL(p(y) || p(y|x)).

    Zhao et al. 2017, Section 4.1: the inception score with the two KL arguments swapped and no
    exponential. p(y) = E_x p(y|x) is the marginal over the samples. Per sample,
    KL(p(y) || p(y|x)) = sum_y p(y) (log p(y) - log p(y|x)); both logs take max(p, eps), and
    classes with p(y) = 0 contribute 0. Higher is better; 0 for a set whose rows are all equal.

    probs: (n, k) class probabilities of the n generated samples, rows summing to 1.
    """
    p = _as_probs(probs)
    p_y = p.mean(axis=0)
    # E_x sum_y p(y) (log p(y) - log p(y|x)) = sum_y p(y) (log p(y) - E_x log p(y|x))
    return float(np.sum(p_y * (_log_clamped(p_y, eps) - _log_clamped(p, eps).mean(axis=0))))


def inception_score(probs: np.ndarray, eps: float = PROB_EPS) -> float:
    """The inception score IS = exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016).

    Same marginal p(y) = E_x p(y|x) and the same clamp inside the logs as :func:`i_prime`;
    terms with p(y|x) = 0 contribute 0. Ranges from 1 (all rows equal) to k (confident, balanced).
    """
    p = _as_probs(probs)
    p_y = p.mean(axis=0)
    kl = np.sum(p * (_log_clamped(p, eps) - _log_clamped(p_y, eps)[None, :]), axis=1)
    return float(np.exp(kl.mean()))


def class_coverage(probs: np.ndarray, min_share: float = COVERAGE_MIN_SHARE) -> Coverage:
    """How many classes the samples cover, and how far their label histogram is from uniform.

    p_hat(y) is the share of samples whose argmax label is y. Returns the number of classes with
    p_hat(y) >= min_share and KL(p_hat || uniform) = sum_y p_hat(y) log(k p_hat(y)), which is 0
    for a perfectly balanced set and log(k) (log 10 for digits) when every sample is one class.
    """
    p = _as_probs(probs)
    k = p.shape[1]
    share = np.bincount(p.argmax(axis=1), minlength=k) / p.shape[0]
    kl = float(np.sum(special.rel_entr(share, np.full(k, 1.0 / k))))
    return Coverage(int(np.sum(share >= min_share)), kl)


def _as_features(feats: np.ndarray, name: str, dtype: type = np.float64) -> np.ndarray:
    x = np.asarray(feats, dtype=dtype)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be an (n, d) array with n >= 2, got shape {x.shape}")
    return x


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance matrix; rounding-level negative eigenvalues -> 0."""
    w, v = linalg.eigh(s, driver="evd")  # divide and conquer: the fastest with eigenvectors
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


class Gaussian(NamedTuple):
    """A Gaussian fitted to a feature set: the mean, covariance and its symmetric square root."""

    mean: np.ndarray
    cov: np.ndarray
    cov_root: np.ndarray


def fit_gaussian(feats: np.ndarray, name: str = "feats") -> Gaussian:
    """Mean, covariance (ddof 1) and covariance square root of ``feats`` (n, d), float64."""
    x = _as_features(feats, name)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    return Gaussian(x.mean(axis=0), cov, _sqrtm_psd(cov))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray | Gaussian) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (lower is better).

    The FID formula (Heusel et al. 2017, "GANs trained by a two time-scale update rule ..."),
    here in the scoring classifier's features rather than Inception's:
    d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). Tr (S_a S_b)^(1/2) is computed
    in the symmetric form Tr (S_b^(1/2) S_a S_b^(1/2))^(1/2), whose matrix is positive
    semi-definite, so it needs symmetric eigen-decompositions only and no complex ``sqrtm``;
    rounding-level negative eigenvalues are clipped to 0. float64 throughout. ``feats_b`` may be
    given as its :func:`fit_gaussian` (real digits' features, fitted once for many runs), which
    leaves one eigenvalue decomposition per call.
    """
    a = _as_features(feats_a, "feats_a")
    b = feats_b if isinstance(feats_b, Gaussian) else fit_gaussian(feats_b, "feats_b")
    if a.shape[1] != b.mean.shape[0]:
        raise ValueError(f"feature widths differ: {a.shape[1]} vs {b.mean.shape[0]}")
    mu_diff = a.mean(axis=0) - b.mean
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    middle = b.cov_root @ s_a @ b.cov_root
    eig = linalg.eigvalsh((middle + middle.T) / 2.0)
    tr_covmean = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    d2 = float(mu_diff @ mu_diff) + float(np.trace(s_a) + np.trace(b.cov)) - 2.0 * tr_covmean
    return max(d2, 0.0)


def _sq_dists(x: np.ndarray, x_sq: np.ndarray, y: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ||x||^2 + ||y||^2 - 2 x.y, built in place in the product.

    Rounding can leave a distance slightly below 0; callers only compare these with radii
    floored at 0, so the sign of a near-zero distance never decides anything.
    """
    d2 = x @ y.T
    d2 *= -2.0
    d2 += x_sq[:, None]
    d2 += y_sq[None, :]
    return d2


def _knn_sq_radii(x: np.ndarray, x_sq: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from each row of x to its k-th nearest other row."""
    radii = np.empty(len(x), dtype=x.dtype)
    for start in range(0, len(x), _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, len(x))
        d2 = _sq_dists(x[start:stop], x_sq[start:stop], x, x_sq)
        d2[np.arange(stop - start), np.arange(start, stop)] = 0.0  # self: the 0-th neighbour
        radii[start:stop] = np.partition(d2, k, axis=1)[:, k]
    return np.maximum(radii, 0.0, out=radii)


def _subsample(x: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= max_samples:
        return x
    return x[np.sort(rng.choice(len(x), size=max_samples, replace=False))]


def precision_recall(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = PR_K, *,
                     max_samples: int = PR_MAX_SAMPLES, seed: int = PR_SEED) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, NeurIPS).

    Each set's manifold is the union of balls around its samples, with radius the distance to
    the sample's k-th nearest neighbour in the same set. Precision is the share of fake samples
    inside the real manifold (quality); recall the share of real samples inside the fake
    manifold (coverage). Sets larger than ``max_samples`` are replaced by a random subset drawn
    with ``seed``. Distances come in row blocks of float32 matrix products, which in 512
    dimensions is far faster than a k-d tree.
    """
    real = _as_features(real_feats, "real_feats", np.float32)
    fake = _as_features(fake_feats, "fake_feats", np.float32)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature widths differ: {real.shape[1]} vs {fake.shape[1]}")
    rng = np.random.default_rng(seed)
    real, fake = _subsample(real, max_samples, rng), _subsample(fake, max_samples, rng)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    real_sq, fake_sq = np.einsum("ij,ij->i", real, real), np.einsum("ij,ij->i", fake, fake)
    real_r2, fake_r2 = _knn_sq_radii(real, real_sq, k), _knn_sq_radii(fake, fake_sq, k)
    fake_in_real = np.zeros(len(fake), dtype=bool)
    real_in_fake = np.zeros(len(real), dtype=bool)
    for start in range(0, len(fake), _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, len(fake))
        d2 = _sq_dists(fake[start:stop], fake_sq[start:stop], real, real_sq)
        fake_in_real[start:stop] = (d2 <= real_r2[None, :]).any(axis=1)
        real_in_fake |= (d2 <= fake_r2[start:stop, None]).any(axis=0)
    return float(fake_in_real.mean()), float(real_in_fake.mean())


@dataclass(frozen=True)
class SampleOutputs:
    """The classifier's outputs on one set of generated samples, from which every score is read.

    probs: (n, k) class probabilities of the samples; features: (n, d) their penultimate-layer
    features; real_features: (m, d) the same for real test digits; eps: the probability clamp.
    Results shared by two scores (coverage, precision/recall) are computed once.
    """

    probs: np.ndarray
    features: np.ndarray
    real_features: np.ndarray
    eps: float = PROB_EPS
    real_gaussian: Gaussian | None = None  # fit_gaussian(real_features), when fitted already

    @cached_property
    def frechet(self) -> float:
        real = self.real_gaussian if self.real_gaussian is not None else self.real_features
        return frechet_distance(self.features, real)

    @cached_property
    def coverage(self) -> Coverage:
        return class_coverage(self.probs)

    @cached_property
    def precision_recall(self) -> tuple[float, float]:
        return precision_recall(self.real_features, self.features)
