"""Tests of analysis.stats on hand-made tables with values worked out by hand or by scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats
from tests.synthetic import make_results


def _table(model: list[str], score: list[float], **cols: list) -> pd.DataFrame:
    n = len(model)
    base = {"model": model, "i_prime": score, "status": ["ok"] * n, "n_layers_g": [2] * n,
            "n_layers_d": [2] * n, "seed": list(range(n))}
    base.update(cols)
    return pd.DataFrame(base)


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([3, 4], [1, 2], 1.0),
    ([1], [2], -1.0),
    ([1, 2, 3], [2, 2], 0.0),
    ([1, 3], [2, 2, 4], -1 / 3),  # 1 loses 3 pairs; 3 wins 2, loses 1
])
def test_cliffs_delta_hand_cases(a, b, expected):
    assert stats.cliffs_delta(np.array(a), np.array(b)) == pytest.approx(expected)


def test_cliffs_delta_is_rank_biserial_of_mann_whitney():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(0, 6, 30).astype(float)
    u = sps.mannwhitneyu(a, b).statistic
    assert stats.cliffs_delta(a, b) == pytest.approx(2 * u / (len(a) * len(b)) - 1)


def test_compare_two_matches_scipy_and_ignores_nan():
    a, b = np.array([1.0, 5.0, 3.0, np.nan, 7.0]), np.array([2.0, 2.5, 0.5, np.inf])
    out = stats.compare_two(a, b)
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    assert out["n_a"] == 4 and out["n_b"] == 3
    assert out["u_pvalue"] == pytest.approx(sps.mannwhitneyu(fa, fb).pvalue)
    assert out["ks_stat"] == pytest.approx(sps.ks_2samp(fa, fb).statistic)
    assert out["ks_pvalue"] == pytest.approx(sps.ks_2samp(fa, fb).pvalue)
    assert out["cles"] == pytest.approx((out["cliffs_delta"] + 1) / 2)
    assert out["median_a"] == 4.0


def test_compare_models_panels_filter_depths_and_count_unscored():
    df = _table(["gan", "gan", "gan", "ebgan", "ebgan", "ebgan"], [1, 2, np.nan, 3, 4, 5],
                n_layers_g=[2, 4, 2, 2, 5, 3], n_layers_d=[2, 2, 2, 3, 2, 3])
    out = stats.compare_models(df).set_index("panel")
    assert list(out["n_b"]) == [2, 2, 1]  # GAN scored: all; <=4; <=3
    assert list(out["n_a"]) == [3, 2, 2]
    assert list(out["n_not_scored_b"]) == [1, 1, 1]
    assert set(out["better"]) == {"ebgan"}


def test_headline_table_respects_direction_of_every_score():
    df = _table(["gan"] * 3 + ["ebgan"] * 3, [1, 2, 3, 4, 5, 6],
                frechet_distance=[9, 8, 7, 3, 2, 1])
    out = stats.headline_table(df).set_index("score")
    assert set(out.index) == {"i_prime", "frechet_distance"}
    assert out.loc["i_prime", "cliffs_delta"] == 1.0
    assert out.loc["frechet_distance", "cliffs_delta"] == -1.0
    assert (out["better"] == "ebgan").all()


@pytest.mark.parametrize(("values", "k", "expected"), [
    ([1, 2, 3, 4], 2, 20 / 6),
    ([1, 2, 3, 4], 1, 2.5),
    ([4, 1, 3, 2], 4, 4.0),
])
def test_expected_max_hand_cases(values, k, expected):
    best, p_none = stats.expected_max(np.array(values, float), k)
    assert best == pytest.approx(expected) and p_none == 0.0


def test_expected_max_with_unscored_draws_enumerated():
    # Draws from {unscored, 1, 2}: k=1 -> scored half the time with mean 1.5; k=2 -> 1, 2, 2.
    assert stats.expected_max(np.array([1.0, 2.0]), 1, 1) == pytest.approx((1.5, 1 / 3))
    assert stats.expected_max(np.array([1.0, 2.0]), 2, 1) == pytest.approx((5 / 3, 0.0))
    values = np.array([0.3, 1.7, 2.2, 2.2, 5.0, 9.1])
    for k in range(1, 7):
        brute = np.mean([max(c) for c in itertools.combinations(values, k)])
        assert stats.expected_max(values, k)[0] == pytest.approx(brute)


def test_budget_curve_minimises_lower_is_better_scores():
    df = _table(["gan"] * 4, [1, 2, 3, 4], frechet_distance=[10.0, 20.0, 30.0, 40.0])
    curve = stats.budget_curve(df, "frechet_distance")
    assert list(curve["k"]) == [1, 2, 3, 4]
    assert curve["expected_best"].iloc[0] == pytest.approx(25.0)
    assert curve["expected_best"].iloc[-1] == pytest.approx(10.0)


def test_eta_squared_is_one_when_score_depends_on_one_axis_alone():
    grid = pd.DataFrame(list(itertools.product([1e-2, 1e-3, 1e-4], [2, 3], ["adam", "sgd"])),
                        columns=["lr", "n_layers_g", "optim_d"])
    grid["i_prime"] = grid["lr"].map({1e-2: 1.0, 1e-3: 4.0, 1e-4: 6.0})
    grid["model"], grid["status"] = "gan", "ok"
    out = stats.hyperparameter_importance(grid).set_index("axis")
    assert out.loc["lr", "eta_squared"] == pytest.approx(1.0)
    assert out.loc["n_layers_g", "eta_squared"] == pytest.approx(0.0)
    h = sps.kruskal([1.0] * 4, [4.0] * 4, [6.0] * 4)
    assert out.loc["lr", "kruskal_p"] == pytest.approx(h.pvalue)


def test_success_rates_counts_diverged_as_failures_and_excludes_failed():
    df = _table(["gan"] * 5, [6.0, 4.0, 7.0, np.nan, np.nan])
    df["status"] = ["ok", "ok", "diverged", "diverged", "failed"]
    row = stats.success_rates(df, threshold=5.0).iloc[0]
    assert (row["n"], row["n_success"], row["n_excluded"]) == (4, 2, 1)
    assert row["share"] == 0.5 and row["ci_low"] <= 0.5 <= row["ci_high"]


@pytest.mark.parametrize("k, n, low, high", [
    (0, 768, 0.0, 1 - 0.025 ** (1 / 768)),  # 0.0048: never [0, 0]
    (0, 64, 0.0, 1 - 0.025 ** (1 / 64)),  # 0.056
    (64, 64, 0.025 ** (1 / 64), 1.0),
    (1, 2, 1 - 0.975 ** 0.5, 0.975 ** 0.5),
])
def test_share_interval_is_exact_clopper_pearson(k, n, low, high):
    """k = 0 and k = n have closed forms; for 1 of 2 the lower bound solves
    P(X >= 1) = 1 - (1 - p)^2 = 0.025 and the upper P(X <= 1) = 1 - p^2 = 0.025."""
    lo, hi = stats.share_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-6) and hi == pytest.approx(high, abs=1e-6)


def test_share_interval_of_nothing_is_nan():
    assert all(np.isnan(stats.share_interval(0, 0)))


def test_success_rates_intervals_cover_the_share_and_zero_is_not_certain():
    df = make_results(300, seed=3)
    a = stats.success_rates(df, threshold=3.0)
    assert (a["ci_low"] <= a["share"]).all() and (a["share"] <= a["ci_high"]).all()
    none = stats.success_rates(df, threshold=100.0)
    assert (none["n_success"] == 0).all() and (none["ci_high"] > 0).all()


def test_success_rates_lower_is_better_and_default_thresholds():
    df = _table(["gan"] * 4, [1, 2, 3, 4], frechet_distance=[10.0, 20.0, 30.0, 40.0])
    assert stats.default_threshold(df, "i_prime") == 5.0
    assert stats.default_threshold(df, "frechet_distance") == 25.0
    assert stats.success_rates(df, "frechet_distance")["n_success"].iloc[0] == 2


def test_panel_success_rates_one_row_per_panel_and_model():
    df = make_results(600, seed=2)
    out = stats.panel_success_rates(df, threshold=3.0)
    assert out["panel"].nunique() == 12
    assert len(out) == 12 * 3


def test_seed_spread_hand_case():
    df = _table(["gan"] * 4, [1.0, 3.0, 5.0, 7.0], size_g=[400, 400, 800, 800])
    row = stats.seed_spread(df).iloc[0]
    assert row["n_configs"] == 2 and row["n_multi_seed"] == 2
    assert row["median_within_std"] == pytest.approx(np.sqrt(2))
    assert row["std_config_medians"] == pytest.approx(np.std([2.0, 6.0], ddof=1))


def _margin_table() -> pd.DataFrame:
    margins = [1.0] * 4 + [2.0] * 4 + [4.0] * 4
    scores = [1.0, 1.1, 0.9, 1.0, 5.0, 5.2, 4.8, 5.1, 4.9, 5.0, 5.1, 4.95]
    return _table(["ebgan"] * 12, scores, margin=margins, margin_schedule=["constant"] * 12,
                  size_g=[400, 400, 800, 800] * 3)


def test_margin_table_medians_and_seed_range():
    out = stats.margin_table(_margin_table()).set_index("margin")
    assert list(out["n_runs"]) == [4, 4, 4] and list(out["n_configs"]) == [2, 2, 2]
    assert out.loc[1.0, "median"] == pytest.approx(1.0)
    assert out.loc[1.0, "seed_range"] == pytest.approx(np.median([0.1, 0.1]))


def test_best_margin_range_keeps_margins_within_the_ci_of_the_best():
    out = stats.best_margin_range(_margin_table(), seed=0).iloc[0]
    assert out["best_margin"] == 2.0
    assert out["margins_in_range"] == "2, 4"
    assert (out["margin_low"], out["margin_high"]) == (2.0, 4.0)
    again = stats.best_margin_range(_margin_table(), seed=0).iloc[0]
    assert again["ci_low"] == out["ci_low"]
    assert stats.margins_vary(_margin_table())


def test_axes_varied_together_are_one_row_of_importance():
    grid = pd.DataFrame(list(itertools.product([(50, 16), (400, 128)], [2, 3])),
                        columns=["width", "n_layers_g"])
    grid["size_g"], grid["size_d"] = zip(*grid.pop("width"), strict=True)
    grid["i_prime"] = grid["size_g"].map({50: 1.0, 400: 6.0})
    grid["model"], grid["status"] = "gan", "ok"
    assert stats.confounded_axes(grid, ["size_g", "n_layers_g", "size_d"]) == [
        ["size_g", "size_d"], ["n_layers_g"]]
    out = stats.hyperparameter_importance(grid).set_index("axis")
    assert list(out.index) == ["size_g/size_d", "n_layers_g"]
    assert out.loc["size_g/size_d", "eta_squared"] == pytest.approx(1.0)
