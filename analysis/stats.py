"""Statistics of a grid study: GAN vs EBGAN score distributions and what drives them.

Pure functions from the results table to DataFrames. Conventions shared by all of them:

* A run counts as *scored* when its score is finite; diverged runs that were still scored are
  included like any other, runs with a NaN score are counted (``n_not_scored``), never dropped
  silently.
* Effect sizes are oriented on the raw values: ``cliffs_delta = P(a > b) - P(a < b)`` and
  ``cles = P(a > b) + P(a = b) / 2`` (the common-language effect size; the rank-biserial
  correlation of Mann-Whitney U equals Cliff's delta). Whether larger is better comes from the
  ``better`` column, which reads ``HIGHER_IS_BETTER``.
* Shares (of successful runs, say) carry exact Clopper-Pearson intervals
  (``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``), which keep their coverage
  at 0 and at n: 0 successes of 768 runs give [0, 0.48%], never [0, 0]. Intervals of medians
  are percentile bootstraps by ``scipy.stats.bootstrap`` with a seeded generator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps

from analysis.table import (
    EBGAN_MODELS,
    config_ids,
    depth_panels,
    higher_is_better,
    is_scored,
    model_label,
    models_present,
    optim_panels,
    score_columns,
    varying_axes,
)

# Default success thresholds. I' = E_x KL(p(y) || p(y|x)) is 0 for a collapsed generator and,
# for one covering the ten digits evenly, 3.8 / 4.9 / 5.9 when the classifier gives its samples
# 0.99 / 0.997 / 0.999 confidence: 5.0 asks for every class *and* sharp digits. (The ceiling,
# set by the probability clamp prob_eps, is far higher, so "half the best possible" would say
# nothing.) IS 5.0 is half a perfect 10-class score. Scores without an entry use the median of
# all scored runs pooled across models, i.e. "better than the typical run".
DEFAULT_THRESHOLDS: dict[str, float] = {"i_prime": 5.0, "inception_score": 5.0,
                                        "n_classes_covered": 8.0}


def default_threshold(df: pd.DataFrame, score: str) -> float:
    """The success threshold used when the user gives none (see ``DEFAULT_THRESHOLDS``)."""
    if score in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[score]
    return float(np.nanmedian(df[score].to_numpy(dtype=float)))


def _finite(values: pd.Series | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """Cliff's delta P(a > b) - P(a < b) over all pairs, in O((n + m) log m)."""
    a, b = _finite(a), np.sort(_finite(b))
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    below = np.searchsorted(b, a, side="left").sum()  # pairs with b < a
    above = len(b) - np.searchsorted(b, a, side="right")  # pairs with b > a
    return float((below - above.sum()) / (len(a) * len(b)))


def compare_two(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mann-Whitney U, two-sample KS and effect sizes of a against b (finite values only)."""
    a, b = _finite(a), _finite(b)
    out = {"n_a": len(a), "n_b": len(b), "median_a": np.nan, "median_b": np.nan,
           "u_stat": np.nan, "u_pvalue": np.nan, "ks_stat": np.nan, "ks_pvalue": np.nan,
           "cles": np.nan, "cliffs_delta": np.nan}
    if len(a) == 0 or len(b) == 0:
        return out
    u = sps.mannwhitneyu(a, b, alternative="two-sided")
    ks = sps.ks_2samp(a, b)
    delta = cliffs_delta(a, b)
    out.update(median_a=float(np.median(a)), median_b=float(np.median(b)),
               u_stat=float(u.statistic), u_pvalue=float(u.pvalue),
               ks_stat=float(ks.statistic), ks_pvalue=float(ks.pvalue),
               cles=(delta + 1) / 2, cliffs_delta=delta)
    return out


def _pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    present = models_present(df)
    return [(m, "gan") for m in ("ebgan", "ebgan_pt") if m in present and "gan" in present]


def _better(row: dict, score: str) -> str:
    if not np.isfinite(row["cliffs_delta"]) or row["cliffs_delta"] == 0:
        return "tie"
    a_higher = row["cliffs_delta"] > 0
    return row["model_a"] if a_higher == higher_is_better(score) else row["model_b"]


def compare_models(df: pd.DataFrame, score: str = "i_prime") -> pd.DataFrame:
    """EBGAN (and EBGAN-PT) vs GAN per Figure 2 panel: tests, effect sizes, better model."""
    scored = is_scored(df, score)
    rows = []
    for panel, mask in depth_panels(df):
        for a, b in _pairs(df):
            sel_a, sel_b = mask & (df["model"] == a), mask & (df["model"] == b)
            row = {"panel": panel, "model_a": a, "model_b": b,
                   **compare_two(df.loc[sel_a, score], df.loc[sel_b, score]),
                   "n_not_scored_a": int((sel_a & ~scored).sum()),
                   "n_not_scored_b": int((sel_b & ~scored).sum())}
            row["better"] = _better(row, score)
            rows.append(row)
    return pd.DataFrame(rows)


def headline_table(df: pd.DataFrame, scores: list[str] | None = None) -> pd.DataFrame:
    """The GAN-vs-EBGAN comparison (all runs) under every score column present."""
    rows = []
    for score in scores or score_columns(df):
        for a, b in _pairs(df):
            row = {"score": score, "model_a": a, "model_b": b,
                   **compare_two(df.loc[df["model"] == a, score],
                                 df.loc[df["model"] == b, score])}
            row["higher_is_better"] = higher_is_better(score)
            row["better"] = _better(row, score)
            rows.append(row)
    return pd.DataFrame(rows)


def share_interval(successes: int, n: int, ci: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial share ``successes / n``.

    Clopper and Pearson (1934): the bounds are the Beta(k, n - k + 1) and Beta(k + 1, n - k)
    quantiles at (1 - ci)/2 and (1 + ci)/2; for k = 0 the lower bound is 0 and the upper
    1 - ((1 - ci)/2)^(1/n), for k = n symmetrically. Its coverage is at least ``ci`` for every
    true share. (nan, nan) when n = 0.
    """
    if n == 0:
        return float("nan"), float("nan")
    interval = sps.binomtest(successes, n).proportion_ci(confidence_level=ci, method="exact")
    return float(interval.low), float(interval.high)


def success_rates(df: pd.DataFrame, score: str = "i_prime", threshold: float | None = None, *,
                  by: list[str] | None = None, ci: float = 0.95) -> pd.DataFrame:
    """Share of runs beating ``threshold`` per model (and per ``by`` group), with its exact
    (Clopper-Pearson) interval, :func:`share_interval`.

    Denominator: scored runs plus diverged runs without a score (a diverged run is a failed
    training). Excluded and counted in ``n_excluded``: failed runs (errors, often
    infrastructure) and ok runs not scored yet.
    """
    threshold = default_threshold(df, score) if threshold is None else threshold
    values = df[score].to_numpy(dtype=float)
    good = values >= threshold if higher_is_better(score) else values <= threshold
    scored = np.isfinite(values)
    status = df["status"] if "status" in df else pd.Series("ok", index=df.index)
    counted = scored | (status == "diverged").to_numpy()
    frame = pd.DataFrame({"model": df["model"], "good": good & scored, "counted": counted})
    keys = ["model", *(by or [])]
    for col in by or []:
        frame[col] = df[col]
    rows = []
    for key, grp in frame.groupby(keys, sort=True, dropna=False):
        n, k = int(grp["counted"].sum()), int((grp["good"] & grp["counted"]).sum())
        lo, hi = share_interval(k, n, ci)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key, strict=True)), "n": n, "n_success": k,
                     "share": k / n if n else np.nan, "ci_low": lo, "ci_high": hi,
                     "n_excluded": int((~grp["counted"]).sum()), "threshold": threshold})
    order = {m: i for i, m in enumerate(models_present(df))}
    return pd.DataFrame(rows).sort_values("model", key=lambda s: s.map(order), kind="stable",
                                          ignore_index=True)


def panel_success_rates(df: pd.DataFrame, score: str = "i_prime",
                        threshold: float | None = None, **kwargs) -> pd.DataFrame:
    """``success_rates`` per Figure 3 panel (optimD, optimG, lr) and model."""
    out = []
    for title, mask in optim_panels(df):
        rates = success_rates(df[mask], score, threshold, **kwargs)
        out.append(rates.assign(panel=title))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of ``values`` explained by group means (SS_between / SS_total)."""
    frame = pd.DataFrame({"v": values, "g": groups})
    total = ((frame["v"] - frame["v"].mean()) ** 2).sum()
    if total == 0:
        return float("nan")
    means = frame.groupby("g")["v"].transform("mean")
    return float(((means - frame["v"].mean()) ** 2).sum() / total)


def confounded_axes(df: pd.DataFrame, axes: list[str]) -> list[list[str]]:
    """``axes`` grouped by the partition of ``df``'s rows they make: axes varied together
    (a zip such as sizeG with sizeD, or steps with eval_every) cannot be told apart, so they
    form one group, in ``axes``' order."""
    groups: dict[bytes, list[str]] = {}
    for axis in axes:
        codes, _ = pd.factorize(df[axis].astype(str))
        groups.setdefault(codes.tobytes(), []).append(axis)
    return list(groups.values())


def hyperparameter_importance(df: pd.DataFrame, score: str = "i_prime") -> pd.DataFrame:
    """Per model and varying axis: Kruskal-Wallis H and p across levels, and eta squared.

    Axes varied together in the model's runs (:func:`confounded_axes`) make one row, named by
    their columns joined with ``/`` (``size_g/size_d``).
    """
    rows = []
    for model in models_present(df):
        sub = df[(df["model"] == model) & is_scored(df, score)]
        for group in confounded_axes(sub, varying_axes(sub)):
            levels = sub[group[0]].astype(str).to_numpy()
            groups = [g[score].to_numpy(float) for _, g in sub.groupby(levels)]
            kw = sps.kruskal(*groups) if len(groups) > 1 else None
            rows.append({"model": model, "axis": "/".join(group), "n_levels": len(groups),
                         "n": len(sub), "kruskal_h": kw.statistic if kw else np.nan,
                         "kruskal_p": kw.pvalue if kw else np.nan,
                         "eta_squared": eta_squared(sub[score].to_numpy(float), levels)})
    out = pd.DataFrame(rows)
    return out.sort_values(["model", "eta_squared"], ascending=[True, False],
                           ignore_index=True) if len(out) else out


def _log_comb(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """log C(a, b) via log-gamma, exact enough for the weights of ``expected_max``."""
    return special.gammaln(a + 1) - special.gammaln(b + 1) - special.gammaln(np.subtract(a, b) + 1)


def expected_max(values: np.ndarray, k: int, n_unscored: int = 0) -> tuple[float, float]:
    """Exact E[max of k draws without replacement] from ``values`` plus ``n_unscored`` runs
    that have no score (worse than any scored run).

    With x sorted ascending over all n = len(values) + n_unscored draws,
    P(max = x_(i)) = C(i-1, k-1) / C(n, k). Returns (E[max | some draw scored],
    P(no draw scored)). Binomials are taken in log space so n can be large.
    """
    x = np.sort(_finite(values))
    m, n = n_unscored, len(x) + n_unscored
    if k < 1 or k > n or len(x) == 0:
        return float("nan"), float("nan")
    i = np.arange(m + 1, n + 1)  # ranks of the scored values
    weights = np.where(i >= k, np.exp(_log_comb(i - 1, k - 1) - _log_comb(n, k)), 0.0)
    p_none = float(np.exp(_log_comb(m, k) - _log_comb(n, k))) if m >= k else 0.0
    return float((weights * x).sum() / (1.0 - p_none)), p_none


def budget_curve(df: pd.DataFrame, score: str = "i_prime",
                 ks: list[int] | None = None) -> pd.DataFrame:
    """Expected best score when k runs are drawn at random from the grid, per model (Lucic et
    al. 2018). Diverged runs without a score are draws that found nothing; failed runs are
    left out. For lower-is-better scores "best" is the minimum."""
    sign = 1.0 if higher_is_better(score) else -1.0
    rows = []
    for model in models_present(df):
        sub = df[df["model"] == model]
        values = sign * sub[score].to_numpy(float)
        status = sub["status"] if "status" in sub else pd.Series("ok", index=sub.index)
        n_unscored = int(((~np.isfinite(values)) & (status == "diverged").to_numpy()).sum())
        n = int(np.isfinite(values).sum()) + n_unscored
        for k in ks or range(1, min(n, 100) + 1):
            best, p_none = expected_max(values, k, n_unscored)
            rows.append({"model": model, "k": k, "expected_best": sign * best,
                         "p_none_scored": p_none, "n": n})
    return pd.DataFrame(rows)


def seed_spread(df: pd.DataFrame, score: str = "i_prime") -> pd.DataFrame:
    """Per model: median within-configuration std over seeds against the std of configuration
    medians. Only configurations with at least two scored seeds take part."""
    sub = df[is_scored(df, score)].assign(_cfg=config_ids(df[is_scored(df, score)]))
    rows = []
    for model, grp in sub.groupby("model", sort=False):
        by_cfg = grp.groupby("_cfg")[score]
        sizes = by_cfg.size()
        multi = sizes[sizes >= 2].index
        within = by_cfg.std(ddof=1).loc[multi]
        across = by_cfg.median().std(ddof=1)
        rows.append({"model": model, "n_configs": len(sizes), "n_multi_seed": len(multi),
                     "median_within_std": float(within.median()) if len(multi) else np.nan,
                     "std_config_medians": float(across),
                     "ratio": float(within.median() / across) if len(multi) else np.nan})
    order = {m: i for i, m in enumerate(models_present(df))}
    return pd.DataFrame(rows).sort_values("model", key=lambda s: s.map(order), ignore_index=True)


def label_models(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace model codes by display names in the model columns of a result table."""
    out = frame.copy()
    for col in ("model", "model_a", "model_b", "better"):
        if col in out:
            out[col] = out[col].map(lambda m: model_label(m) if isinstance(m, str) else m)
    return out


def margin_table(df: pd.DataFrame, score: str = "i_prime",
                 by: tuple[str, ...] = ("n_layers_d",)) -> pd.DataFrame:
    """EBGAN runs: score per (model, ``by``, margin_schedule, margin), pooling the other axes.

    Columns: runs and configurations, median, quartiles and min-max over runs, and the seed
    spread (median over configurations of the max-min range across their seeds).
    """
    sub = df[df["model"].isin(EBGAN_MODELS) & is_scored(df, score)]
    sub = sub.assign(_cfg=config_ids(sub))
    keys = ["model", *by, "margin_schedule", "margin"]
    keys = [k for k in keys if k in sub.columns]
    seed_range = (sub.groupby([*keys, "_cfg"])[score].agg(lambda s: s.max() - s.min())
                  .where(sub.groupby([*keys, "_cfg"])[score].size() > 1)
                  .groupby(level=list(range(len(keys)))).median())
    grouped = sub.groupby(keys)[score]
    out = pd.DataFrame({"n_runs": grouped.size(), "n_configs": sub.groupby(keys)["_cfg"].nunique(),
                        "median": grouped.median(), "q25": grouped.quantile(0.25),
                        "q75": grouped.quantile(0.75), "min": grouped.min(), "max": grouped.max(),
                        "seed_range": seed_range})
    return out.reset_index()


def median_interval(values: np.ndarray, rng: np.random.Generator, n_boot: int = 1000,
                    ci: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (``scipy.stats.bootstrap``); (nan, nan) for
    fewer than two values, whose median has no sampling distribution to resample."""
    values = _finite(values)
    if len(values) < 2:
        return float("nan"), float("nan")
    result = sps.bootstrap((values,), np.median, n_resamples=n_boot, confidence_level=ci,
                           method="percentile", rng=rng)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def best_margin_range(df: pd.DataFrame, score: str = "i_prime",
                      by: tuple[str, ...] = ("n_layers_d",), *, n_boot: int = 1000,
                      seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Per (model, ``by``, margin_schedule): the margin with the best median score, a percentile
    bootstrap CI of that median (:func:`median_interval`), and the margins whose median falls
    inside the CI ("as good as the best within resampling noise"); ``margin_low``-``margin_high``
    spans them."""
    sub = df[df["model"].isin(EBGAN_MODELS) & is_scored(df, score)]
    keys = [k for k in ["model", *by, "margin_schedule"] if k in sub.columns]
    sign = 1.0 if higher_is_better(score) else -1.0
    rng = np.random.default_rng(seed)
    rows = []
    for key, grp in sub.groupby(keys, sort=True):
        medians = grp.groupby("margin")[score].median()
        best = (sign * medians).idxmax()
        lo, hi = median_interval(grp.loc[grp["margin"] == best, score].to_numpy(float),
                                 rng, n_boot, ci)
        inside = medians[(medians >= lo) & (medians <= hi)].index.to_numpy(float)
        inside = np.union1d(inside, [best])
        rows.append({**dict(zip(keys, key, strict=True)), "best_margin": float(best),
                     "best_median": float(medians[best]), "ci_low": lo, "ci_high": hi,
                     "margins_in_range": ", ".join(f"{m:g}" for m in inside),
                     "margin_low": float(inside.min()), "margin_high": float(inside.max())})
    return pd.DataFrame(rows)


def margins_vary(df: pd.DataFrame) -> bool:
    """Whether EBGAN runs in ``df`` use more than one margin or margin schedule."""
    sub = df[df["model"].isin(EBGAN_MODELS)]
    cols = [c for c in ("margin", "margin_schedule") if c in sub.columns]
    return len(sub) > 0 and any(sub[c].nunique() > 1 for c in cols)
