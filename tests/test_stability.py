"""Tests of analysis.stability: each measure on hand-made curves with values worked out by hand,
NaN points, and the whole-table version against the one-run version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.stability import (
    STABILITY_COLUMNS,
    add_stability,
    collapse_count,
    compare_stability,
    final_vs_best,
    learned_runs,
    stability_measures,
    stability_shares,
)
from tests.synthetic import make_curves, make_results


def test_every_measure_on_a_hand_made_curve():
    steps = np.array([100, 200, 300, 400, 500, 600])
    i_prime = np.array([1.0, 4.0, 6.0, 2.0, 5.5, 3.0])
    out = stability_measures(steps, i_prime, threshold=5.0)
    assert list(out) == list(STABILITY_COLUMNS)
    assert out["best_i_prime"] == 6.0 and out["best_step"] == 300
    assert out["final_drop"] == 3.0
    assert out["first_success_step"] == 300
    # good from the first point (1.0 >= floor 1), collapses at 2.0 < 0.5 * 6, good again at
    # 5.5 >= 0.8 * 6; the last point 3.0 is exactly half the best, which is not a collapse
    assert out["collapse_count"] == 1
    assert out["curve_auc"] == pytest.approx(21.5 / 6)
    # second half: steps > 300 -> 2.0, 5.5, 3.0; mean 3.5, squared deviations sum to 6.5
    assert out["late_oscillation"] == pytest.approx(np.sqrt(6.5 / 2))
    assert stability_measures(steps, i_prime, threshold=2.0)["first_success_step"] == 200


def test_collapse_hysteresis_counts_a_noisy_dip_once():
    # best 4: collapse at 1.9 < 2; 2.5 is above half the best but below 0.8 * 4 = 3.2, so the
    # run is not good again and the next 1.9 is no new collapse; 3.5 makes it good, 1.0 counts
    assert collapse_count(np.array([4.0, 1.9, 2.5, 1.9, 3.5, 1.0])) == 2
    # a single threshold at half the best (no hysteresis) would count the second 1.9 as well
    assert collapse_count(np.array([4.0, 1.9, 2.5, 1.9, 3.5, 1.0]), good_fraction=0.5 + 1e-9) == 3


def test_collapse_needs_the_floor_and_a_rise_to_the_running_best():
    assert collapse_count(np.array([0.02, 0.005, 0.03, 0.001])) == 0  # a collapsed GAN's noise
    # 2 is good; 0.9 collapses; 1.5 is above the floor but below 0.8 * 2, so 0.5 is no collapse
    assert collapse_count(np.array([2.0, 0.9, 1.5, 0.5])) == 1
    assert collapse_count(np.array([3.0, 3.1, 3.2, 3.3])) == 0
    with pytest.raises(ValueError, match="collapse_fraction"):
        collapse_count(np.array([1.0]), good_fraction=0.4, collapse_fraction=0.5)


def test_nan_points_are_skipped_collapse_and_make_a_nan_final_drop():
    out = stability_measures(np.array([10, 20, 30, 40]), np.array([2.0, np.nan, 3.0, np.nan]))
    assert out["best_i_prime"] == 3.0 and out["best_step"] == 30
    assert np.isnan(out["final_drop"])  # diverged: no final score to drop to
    assert out["first_success_step"] is None
    assert out["curve_auc"] == 2.5  # mean of 2 and 3, NaN skipped, not counted as 0
    assert out["collapse_count"] == 2  # good at 2, NaN; good at 3, NaN
    assert np.isnan(out["late_oscillation"])  # steps > 20: only 3.0 is finite


def test_all_nan_and_empty_curves():
    out = stability_measures(np.array([5, 9]), np.array([np.nan, np.nan]))
    assert np.isnan(out["best_i_prime"]) and out["best_step"] is None
    assert np.isnan(out["curve_auc"]) and np.isnan(out["final_drop"])
    assert out["collapse_count"] == 0
    empty = stability_measures(np.array([], int), np.array([]))
    assert empty["collapse_count"] is None and np.isnan(empty["best_i_prime"])
    with pytest.raises(ValueError, match="one length"):
        stability_measures(np.array([1, 2]), np.array([1.0]))


def test_points_are_sorted_and_ties_give_the_first_best_step():
    out = stability_measures(np.array([300, 100, 200]), np.array([5.0, 3.0, 5.0]))
    assert out["best_step"] == 200 and out["first_success_step"] == 200
    assert out["final_drop"] == 0.0
    # second half of 300 steps: 200 and 300, both 5.0
    assert out["late_oscillation"] == 0.0


def _same(a: object, b: object) -> bool:
    if a is None or (isinstance(a, float) and np.isnan(a)):
        return bool(pd.isna(b))
    return not pd.isna(b) and float(a) == pytest.approx(float(b))


def test_add_stability_equals_the_one_run_version():
    runs = make_results(300, seed=1)
    curves = make_curves(runs, points=9, seed=1).sample(frac=1.0, random_state=0)
    runs["best_i_prime"] = -1.0  # a stale column is replaced
    table = add_stability(runs, curves).set_index("run_id")
    assert len(table) == len(runs)
    assert str(table["collapse_count"].dtype) == "Int64"
    for run_id, curve in curves.groupby("run_id"):
        expected = stability_measures(curve["step"].to_numpy(), curve["i_prime"].to_numpy())
        for name, value in expected.items():
            assert _same(value, table.loc[run_id, name]), (run_id, name, value)
    no_curve = ~table.index.isin(curves["run_id"])
    assert no_curve.any() and table.loc[no_curve, list(STABILITY_COLUMNS)].isna().all().all()
    assert (table["collapse_count"] > 0).any() and table["first_success_step"].notna().any()


def _table(models: list[str], best: list[float], final: list[float], collapses: list[int],
           first: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(len(models))], "model": models,
                         "status": "ok", "i_prime": final, "best_i_prime": best,
                         "collapse_count": pd.array(collapses, dtype="Int64"),
                         "first_success_step": pd.array(first, dtype="Int64")})


def test_shares_use_exact_intervals_and_count_lost_successes():
    table = _table(["gan"] * 4 + ["ebgan"] * 2, best=[6, 6, 2, 1, 6, 3], final=[6, 4, 2, np.nan,
                   5.5, 3], collapses=[0, 1, 1, 0, 0, 0], first=[100, 200, None, None, 50, None])
    shares = stability_shares(table, threshold=5.0).set_index(["model", "event"])
    assert shares.loc[("gan", "success_any"), "k"] == 2
    assert shares.loc[("gan", "success_lost"), "k"] == 1  # reached 6, ended at 4
    assert shares.loc[("gan", "collapsed"), ["k", "n"]].tolist() == [2, 4]
    assert shares.loc[("ebgan", "success_final"), "share"] == 0.5
    # Clopper-Pearson (stats.share_interval): 1 of 4 collapsed EBGAN runs? none: 0 of 2
    none = shares.loc[("ebgan", "collapsed")]
    assert (none["k"], none["ci_low"]) == (0, 0.0)
    assert none["ci_high"] == pytest.approx(1 - 0.025 ** (1 / none["n"]))


def test_comparisons_orient_each_measure_and_use_the_same_runs():
    table = _table(["gan"] * 3 + ["ebgan"] * 3, best=[4, 5, 6, 1, 2, 3], final=[0, 1, np.nan,
                   1, 2, 3], collapses=[2, 2, 1, 0, 0, 0], first=[1, 1, 1, 1, 1, 1])
    compared = compare_stability(table, ("best_i_prime", "collapse_count")).set_index("measure")
    assert compared.loc["best_i_prime", "cliffs_delta"] == -1.0
    assert compared.loc["best_i_prime", "better"] == "gan"
    assert compared.loc["collapse_count", "better"] == "ebgan"  # fewer collapses
    points = final_vs_best(table).set_index("point")
    assert points.loc["final", ["n_a", "n_b"]].tolist() == [3, 2]  # the NaN final is left out
    assert points.loc["best", "n_b"] == 2 and points.loc["best", "cliffs_delta"] == -1.0
    assert points.loc["final", "cliffs_delta"] == pytest.approx((6 - 1) / 6)


def test_learned_runs_keep_runs_whose_best_reached_the_floor():
    # a GAN collapsed from the start (best 0.02) is left out; 1.0 exactly is kept; a failed
    # run and a run without a curve never count
    table = _table(["gan", "gan", "gan", "ebgan", "ebgan", "ebgan"], best=[0.02, 1.0, 3, 0.5,
                   6, 2], final=[0.02, 0.1, 3, 0.5, 6, 2], collapses=[0, 1, 0, 0, 0, 0],
                   first=[None] * 6)
    table.loc[5, "status"] = "failed"
    table.loc[2, "collapse_count"] = pd.NA
    assert learned_runs(table)["run_id"].tolist() == ["r1", "r4"]
    assert learned_runs(table, floor=0.4)["run_id"].tolist() == ["r1", "r3", "r4"]
