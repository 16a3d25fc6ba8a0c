"""The results table's schema: the one home of its column names, labels and score registry.

Training (``gridstudy``) writes rows in this schema and analysis reads them, so both packages
import this module, and it imports nothing of either except the pure score functions of
:mod:`analysis.scores`. It holds:

* :data:`PAPER_NAMES`: the label of every config column (the paper's names for the grid's axes,
  EBGAN, Zhao et al. 2017, Table 1: nLayerG, sizeD, ...; readable names for the rest);
* :data:`STATUSES`: the values of the ``status`` column;
* :data:`SCORES`: the score registry, name -> :class:`Score` (label, direction, how it is
  computed, whether it is also computed at every evaluation during training), and
  :func:`compute_scores`, which evaluates it;
* :data:`CURVE_COLUMNS`: the columns of the training curves' table.

docs/schema.md documents every column in prose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from analysis import scores as _s

# Labels of the config columns; every RunConfig field but ``model`` and ``seed`` has one
# (tests/test_schema.py checks this against the dataclass).
PAPER_NAMES: dict[str, str] = {
    "n_layers_g": "nLayerG",
    "size_g": "sizeG",
    "n_layers_d": "nLayerD",
    "size_d": "sizeD",
    "dropout_d": "dropoutD",
    "dropout_rate": "dropout rate",
    "optim_d": "optimD",
    "optim_g": "optimG",
    "lr": "lr",
    "margin": "m",
    "margin_schedule": "m schedule",
    "margin_end": "m end",
    "pt_weight": "PT weight",
    "z_dim": "z dim",
    "batch_size": "batch size",
    "steps": "steps",
    "dataset": "dataset",
    "train_size": "training digits",
    "scorer": "scored on",
    "adam_beta1": "Adam beta1",
    "sgd_momentum": "SGD momentum",
    "init_std_d": "init std D",
    "init_std_g": "init std G",
    "g_loss": "G loss",
    "n_eval": "n eval",
    "eval_every": "eval every",
    "n_eval_curve": "n eval (curve)",
}

# A run's outcome: ``ok``; ``diverged`` (a non-finite loss, weight or sample; still scored when
# its samples are finite); ``failed`` (it raised or its trial was lost for good; never scored).
STATUSES: tuple[str, ...] = ("ok", "diverged", "failed")


@dataclass(frozen=True)
class Score:
    """One score column: how it is labelled, read and computed."""

    name: str  # the column
    label: str  # what figures and tables show
    higher_is_better: bool
    compute: Callable[[_s.SampleOutputs], float]
    in_curve: bool  # also computed at every evaluation during training (cheap enough)


SCORES: dict[str, Score] = {s.name: s for s in (
    Score("i_prime", "I'", True, lambda o: _s.i_prime(o.probs, o.eps), True),
    Score("inception_score", "IS", True, lambda o: _s.inception_score(o.probs, o.eps), True),
    Score("n_classes_covered", "classes covered", True,
          lambda o: float(o.coverage.n_covered), True),
    Score("class_kl_uniform", "KL(p(y) || uniform)", False, lambda o: o.coverage.kl_uniform,
          True),
    Score("frechet_distance", "Fréchet distance (classifier features)", False,
          lambda o: o.frechet, True),
    Score("precision", "precision", True, lambda o: o.precision_recall[0], False),
    Score("recall", "recall", True, lambda o: o.precision_recall[1], False),
)}
SCORE_NAMES: tuple[str, ...] = tuple(SCORES)
CURVE_SCORES: tuple[str, ...] = tuple(s.name for s in SCORES.values() if s.in_curve)

# Columns of curves.parquet, one row per (run_id, step): the statistics a trainer sums over the
# steps since the previous point (means recorded), the curve's scores, and EBGAN's margin then.
STEP_STATS: tuple[str, ...] = ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g",
                               "energy_real", "energy_fake")
CURVE_COLUMNS: tuple[str, ...] = ("run_id", "step", "final", "n_samples", *STEP_STATS,
                                  *CURVE_SCORES, "margin")


def compute_scores(probs: np.ndarray, features: np.ndarray, real_features: np.ndarray, *,
                   eps: float = _s.PROB_EPS, names: Iterable[str] | None = None,
                   real_gaussian: _s.Gaussian | None = None) -> dict[str, float]:
    """The registry's scores of one set of generated samples, as one record.

    probs: (n, k) classifier probabilities of the samples; features: (n, d) the classifier's
    penultimate features of the samples; real_features: (m, d) the same for real test digits.
    Keys: ``names`` (default every score, in registry order) plus ``prob_eps`` (the clamp used).
    ``n_classes_covered`` is a whole number stored as float so the record can hold NaN. If any
    input holds a non-finite value (a diverged generator), every score is NaN instead of an
    exception. ``real_gaussian``: ``scores.fit_gaussian(real_features)``, when a caller scoring
    many sample sets has fitted it once.
    """
    names = list(SCORE_NAMES if names is None else names)
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise ValueError(f"unknown score {unknown[0]!r}; scores: {', '.join(SCORE_NAMES)}")
    arrays = [np.asarray(a) for a in (probs, features, real_features)]
    if any(a.size == 0 or not np.isfinite(a).all() for a in arrays):
        return {**dict.fromkeys(names, math.nan), "prob_eps": float(eps)}
    outputs = _s.SampleOutputs(*arrays, eps=eps, real_gaussian=real_gaussian)
    return {**{n: float(SCORES[n].compute(outputs)) for n in names}, "prob_eps": float(eps)}
