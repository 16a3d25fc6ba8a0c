"""Per-run stability measures from a run's training curve, and the model comparison on them.

A *curve* is the I' of one run at each evaluation during training (``curves.parquet``, see
docs/schema.md); the last point is the final evaluation. ``stability_measures`` turns one
curve into the run's stability columns (the trainer calls it when it writes a run's row);
``add_stability`` recomputes them for a whole results table at once. ``compare_stability``,
``stability_shares``, ``final_vs_best`` and ``learned_runs`` are the numbers of the report's
stability section.

NaN handling, shared by every measure: a point with a NaN I' (samples not finite, i.e. the
generator diverged) is skipped by the best, the mean and the spread, since treating it as 0
would invent a score; it *ends* a good phase in ``collapse_count``; and a NaN final point makes
``final_drop`` NaN (a diverged run has no final score to drop to). Points are taken in step
order. This module reads arrays and tables only: it imports no training code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.stats import DEFAULT_THRESHOLDS, compare_two, share_interval
from analysis.table import models_present

# The columns stability_measures returns and add_stability writes, in order.
STABILITY_COLUMNS: tuple[str, ...] = ("best_i_prime", "best_step", "final_drop",
                                      "first_success_step", "collapse_count", "curve_auc",
                                      "late_oscillation")
# Whether a larger value is the more stable run (None: no direction, e.g. best_step).
MEASURE_HIGHER_IS_BETTER: dict[str, bool | None] = {
    "best_i_prime": True, "best_step": None, "final_drop": False, "first_success_step": False,
    "collapse_count": False, "curve_auc": True, "late_oscillation": False}
SUCCESS_THRESHOLD: float = DEFAULT_THRESHOLDS["i_prime"]
# collapse_count's hysteresis: a run turns good at >= GOOD_FRACTION of its running best (and at
# least COLLAPSE_FLOOR), and collapses below COLLAPSE_FRACTION of it. The floor keeps a collapsed
# GAN's noise (I' 0.01 -> 0.004) from counting; I' 1 is far below a 10-class generator's ~4.
COLLAPSE_FLOOR: float = 1.0
GOOD_FRACTION: float = 0.8
COLLAPSE_FRACTION: float = 0.5
_INT_COLUMNS = ("best_step", "first_success_step", "collapse_count")


def _check_hysteresis(floor: float, good_fraction: float, collapse_fraction: float) -> None:
    # floor > 0 and good > collapse make "good" and "collapsed" points mutually exclusive.
    if not (floor > 0 and 0 < collapse_fraction < good_fraction <= 1):
        raise ValueError("need floor > 0 and 0 < collapse_fraction < good_fraction <= 1, got "
                         f"{floor}, {collapse_fraction}, {good_fraction}")


def collapse_count(i_prime: np.ndarray, *, floor: float = COLLAPSE_FLOOR,
                   good_fraction: float = GOOD_FRACTION,
                   collapse_fraction: float = COLLAPSE_FRACTION) -> int:
    """How often a run that was doing well fell back: entries into a collapsed state.

    With b_t the running best (max of the finite I' up to and including point t), a run
    starts *not good*; it turns *good* at a point with I'_t >= ``floor`` and
    I'_t >= ``good_fraction`` * b_t; a good run *collapses* (counted) at a point with
    I'_t < ``collapse_fraction`` * b_t or I'_t NaN, and is not good again until it meets the
    good condition anew. The gap between the two fractions (hysteresis) keeps one noisy point
    near the boundary from counting twice. Points must be in step order.
    """
    _check_hysteresis(floor, good_fraction, collapse_fraction)
    best, good, count = -np.inf, False, 0
    for value in np.asarray(i_prime, dtype=float):
        if np.isfinite(value):
            best = max(best, value)
        if good and not value >= collapse_fraction * best:  # NaN compares False: a collapse
            good, count = False, count + 1
        elif not good and value >= floor and value >= good_fraction * best:
            good = True
    return count


def stability_measures(steps: np.ndarray, i_prime: np.ndarray,
                       threshold: float = SUCCESS_THRESHOLD) -> dict[str, float | int | None]:
    """The stability columns of one run from its curve (steps and I' at each evaluation).

    * ``best_i_prime``: max of the finite I'; ``best_step``: the first step where it occurs.
    * ``final_drop``: best_i_prime - I' at the last point (NaN when that I' is NaN).
    * ``first_success_step``: the first step with I' >= ``threshold``; None if none.
    * ``collapse_count``: see ``collapse_count`` (None for an empty curve).
    * ``curve_auc``: mean of the finite I' over every evaluated point, the final one included.
    * ``late_oscillation``: standard deviation (ddof=1) of the finite I' at points with
      step > last step / 2 (the second half of what the run trained; a diverged run's last step
      is its divergence); NaN with fewer than 2 such points. It measures spread, so a run still
      climbing late also scores above 0.

    The points are sorted by step first. Intermediate points are scored on fewer samples than
    the final one, so the best of them is a slightly optimistic estimate.
    """
    steps, values = np.asarray(steps, dtype=np.int64), np.asarray(i_prime, dtype=float)
    if steps.ndim != 1 or steps.shape != values.shape:
        raise ValueError(f"steps and i_prime must be 1-d of one length, got {steps.shape} and "
                         f"{values.shape}")
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    out: dict[str, float | int | None] = {
        "best_i_prime": np.nan, "best_step": None, "final_drop": np.nan,
        "first_success_step": None, "collapse_count": None, "curve_auc": np.nan,
        "late_oscillation": np.nan}
    if len(steps) == 0:
        return out
    finite = np.isfinite(values)
    out["collapse_count"] = collapse_count(values)
    if finite.any():
        best = float(values[finite].max())
        out.update(best_i_prime=best, best_step=int(steps[values == best][0]),
                   final_drop=best - float(values[-1]), curve_auc=float(values[finite].mean()))
    success = finite & (values >= threshold)
    if success.any():
        out["first_success_step"] = int(steps[success][0])
    late = values[finite & (steps > steps[-1] / 2)]
    if len(late) >= 2:
        out["late_oscillation"] = float(late.std(ddof=1))
    return out


def _collapse_counts(values: pd.Series, codes: np.ndarray, run_best: pd.Series) -> pd.Series:
    """``collapse_count`` of every run at once: the good/collapsed state is the last "up" or
    "down" event so far (up and down cannot both hold at a point, see _check_hysteresis)."""
    _check_hysteresis(COLLAPSE_FLOOR, GOOD_FRACTION, COLLAPSE_FRACTION)
    up = (values >= COLLAPSE_FLOOR) & (values >= GOOD_FRACTION * run_best)
    down = ~(values >= COLLAPSE_FRACTION * run_best)
    event = pd.Series(np.select([up, down], [1.0, -1.0], np.nan), index=values.index)
    state = event.groupby(codes).ffill().fillna(-1.0)
    before = state.groupby(codes).shift(1).fillna(-1.0)
    return (down & (before == 1.0)).groupby(codes).sum()


def add_stability(runs: pd.DataFrame, curves: pd.DataFrame,
                  threshold: float = SUCCESS_THRESHOLD) -> pd.DataFrame:
    """``runs`` with ``STABILITY_COLUMNS`` (re)computed from ``curves``, one groupby pass.

    Equal to ``stability_measures`` run by run; runs without a curve get NaN / <NA>. Integer
    columns are nullable ``Int64``.
    """
    merged = runs.drop(columns=[c for c in STABILITY_COLUMNS if c in runs.columns])
    return merged.join(_measures_frame(curves, threshold), on="run_id")


def _measures_frame(curves: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """``STABILITY_COLUMNS`` per run_id of ``curves`` (the work of ``add_stability``)."""
    pts = curves[["run_id", "step", "i_prime"]].sort_values(["run_id", "step"], kind="stable")
    if pts.empty:
        empty = pd.DataFrame(index=pd.Index([], name="run_id"), columns=list(STABILITY_COLUMNS),
                             dtype=float)
        return empty.astype({c: "Int64" for c in _INT_COLUMNS})
    codes, ids = pd.factorize(pts["run_id"], sort=False)
    step = pts["step"].to_numpy(np.int64)
    values = pd.Series(pts["i_prime"].to_numpy(float))
    by = values.groupby(codes)
    best = by.transform("max")
    last = np.flatnonzero(np.r_[codes[1:] != codes[:-1], True])  # the final point of each run
    late = values.where(step > np.repeat(step[last], np.diff(np.r_[-1, last])) / 2)
    run_best = by.cummax().groupby(codes).ffill()
    out = pd.DataFrame({
        "best_i_prime": by.max().to_numpy(),
        "best_step": pd.Series(np.where(values == best, step, np.nan)).groupby(codes).min(),
        "final_drop": by.max().to_numpy() - values.to_numpy()[last],
        "first_success_step": pd.Series(np.where(values >= threshold, step, np.nan))
        .groupby(codes).min(),
        "collapse_count": _collapse_counts(values, codes, run_best),
        "curve_auc": by.mean(),
        "late_oscillation": late.groupby(codes).std(ddof=1),
    })
    out.index = pd.Index(ids, name="run_id")
    return out.astype({c: "Int64" for c in _INT_COLUMNS})


def counted_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Runs that trained and have a curve: failed runs (often infrastructure) are left out."""
    status = table["status"] if "status" in table else pd.Series("ok", index=table.index)
    return table[(status != "failed") & table["collapse_count"].notna()]


def learned_runs(table: pd.DataFrame, floor: float = COLLAPSE_FLOOR) -> pd.DataFrame:
    """The counted runs whose best I' during training reached ``floor`` (collapse_count's
    floor, 1 by default): runs that learned more than one class at some point.

    A generator collapsed from its first evaluation has a flat curve, so it scores as
    perfectly "stable" on final_drop, collapse_count and late_oscillation; comparing models
    on these runs only asks whether the runs that learned kept what they learned.
    """
    sub = counted_runs(table)
    return sub[sub["best_i_prime"].astype(float) >= floor]


def _pairs(table: pd.DataFrame) -> list[tuple[str, str]]:
    present = models_present(table)
    return [(m, "gan") for m in ("ebgan", "ebgan_pt") if m in present and "gan" in present]


def _better(delta: float, higher: bool | None, a: str, b: str) -> str:
    if higher is None:
        return "n/a"
    if not np.isfinite(delta) or delta == 0:
        return "tie"
    return a if (delta > 0) == higher else b


def compare_stability(table: pd.DataFrame,
                      measures: tuple[str, ...] = STABILITY_COLUMNS) -> pd.DataFrame:
    """EBGAN (and EBGAN-PT) vs GAN on each measure: Mann-Whitney U, Cliff's delta, better.

    ``table`` is the output of ``add_stability``. Failed runs and runs without a curve are
    left out; each measure uses the runs where it is finite (``first_success_step`` thus only
    the runs that succeeded).
    """
    sub = counted_runs(table)
    rows = []
    for measure in measures:
        values = sub[measure].astype(float)
        for a, b in _pairs(sub):
            row = {"measure": measure, "model_a": a, "model_b": b,
                   **compare_two(values[sub["model"] == a], values[sub["model"] == b])}
            row["better"] = _better(row["cliffs_delta"], MEASURE_HIGHER_IS_BETTER[measure], a, b)
            rows.append(row)
    return pd.DataFrame(rows)


def stability_shares(table: pd.DataFrame, threshold: float = SUCCESS_THRESHOLD) -> pd.DataFrame:
    """Per model, shares of runs with exact 95% intervals (failed and curve-less runs left out):

    * ``success_final``: final I' (``i_prime``) >= threshold;
    * ``success_any``: I' >= threshold at some evaluation (``first_success_step`` set);
    * ``success_lost``: success at some evaluation, final I' below threshold or NaN;
    * ``collapsed``: ``collapse_count`` >= 1.
    """
    sub = counted_runs(table)
    final_ok = sub["i_prime"].to_numpy(float) >= threshold
    reached = sub["first_success_step"].notna().to_numpy()
    events = {"success_final": final_ok, "success_any": reached,
              "success_lost": reached & ~final_ok,
              "collapsed": (sub["collapse_count"] >= 1).to_numpy()}
    rows = []
    for model in models_present(sub):
        mask = (sub["model"] == model).to_numpy()
        for event, hits in events.items():
            k, n = int(hits[mask].sum()), int(mask.sum())
            low, high = share_interval(k, n)
            rows.append({"model": model, "event": event, "k": k, "n": n,
                         "share": k / n if n else np.nan, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def final_vs_best(table: pd.DataFrame) -> pd.DataFrame:
    """The model comparison on the final I' (``i_prime``) and on the best I' during training,
    on the same runs: those where both are finite (so diverged runs with a NaN final I' are
    left out of both)."""
    sub = counted_runs(table)
    sub = sub[np.isfinite(sub["i_prime"].astype(float)) & np.isfinite(sub["best_i_prime"])]
    rows = []
    for point, column in (("final", "i_prime"), ("best", "best_i_prime")):
        for a, b in _pairs(sub):
            row = {"point": point, "model_a": a, "model_b": b,
                   **compare_two(sub.loc[sub["model"] == a, column],
                                 sub.loc[sub["model"] == b, column])}
            row["better"] = _better(row["cliffs_delta"], True, a, b)
            rows.append(row)
    return pd.DataFrame(rows)
