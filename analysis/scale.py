"""Scores along the ladders of scale: width, training length and data size.

A study that varies a run's scale (``search_spaces/scale_cpu.yaml``) asks whether a model's
success depends on it. Each ladder is one or more config columns; along it, per model and
level, :func:`ladder_info` gives the share of successful runs with its exact (Clopper-Pearson)
interval and the median score with a bootstrap interval. A ladder is read on its own slice:
the configurations run at every one of its levels (:func:`ladder_slice`), so that, say, the
width ladder is not pooled with runs that also trained 4 times longer, and the steps ladder is
not pooled with depths it was not run at. :func:`plot_ladders` draws
them side by side. Numbers first, drawing second, like the other figure modules.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.stats import default_threshold, median_interval, success_rates
from analysis.table import MODEL_COLORS, axis_label, model_label, models_present, score_label
from gridstudy.config import FIELDS

# name -> the config columns that make one level of the ladder
LADDERS: dict[str, tuple[str, ...]] = {
    "width": ("size_g", "size_d"),
    "steps": ("steps",),
    "data size": ("dataset", "train_size"),
}


def varying_ladders(df: pd.DataFrame) -> list[str]:
    """The ladders whose columns take more than one level in ``df``."""
    return [name for name, cols in LADDERS.items()
            if set(cols) <= set(df.columns) and len(df[list(cols)].drop_duplicates()) > 1]


def ladder_slice(df: pd.DataFrame, ladder: str) -> pd.DataFrame:
    """The rows on which ``ladder`` is read: the configurations run at every one of its levels.

    Two runs share a configuration when they agree on every config column but the ladder's
    own, the seed, and the columns that follow the ladder's level (one value within each level,
    such as ``eval_every`` set to a tenth of ``steps``). Each level is then compared with the
    others on the same configurations only: in ``search_spaces/scale_cpu.yaml`` the steps ladder
    on depth (3, 3) at widths 200/64 and 400/128, without the width ladder's other depths and
    widths at 3,000 steps. Where no configuration is run at every level, those run at the most
    levels are kept.
    """
    cols = list(LADDERS[ladder])
    level = df[cols].astype(str).agg("/".join, axis=1)
    others = [c for c in FIELDS if c in df.columns and c not in cols and c != "seed"]
    others = [c for c in others if not _follows(df[c], level)]
    if not others:
        return df
    config = df[others].astype(str).agg("/".join, axis=1)
    levels_run = level.groupby(config).nunique()
    return df[config.map(levels_run) == levels_run.max()]


def _follows(column: pd.Series, level: pd.Series) -> bool:
    """Whether ``column`` takes several values, one per level of ``level``."""
    values = column.astype(str)
    return values.nunique() > 1 and bool((values.groupby(level).nunique() == 1).all())


def level_label(values: tuple, columns: tuple[str, ...]) -> str:
    """A level's label: ``200/64`` for a width, ``mnist/12484`` for a data size (``all`` for
    train_size 0: every training digit of the data set)."""
    return "/".join("all" if c == "train_size" and v == 0 else
                    f"{v:g}" if isinstance(v, float) else str(v)
                    for c, v in zip(columns, values, strict=True))


def ladder_info(df: pd.DataFrame, ladder: str, score: str = "i_prime",
                threshold: float | None = None, seed: int = 0) -> pd.DataFrame:
    """Per model and level of ``ladder`` (on :func:`ladder_slice`): runs, successes, share with
    its exact 95% interval, and the median score with a 95% percentile bootstrap interval.
    Levels run from small to large (a data size by its number of digits, then its data set).

    Success and its denominator are :func:`analysis.stats.success_rates`' (diverged runs
    without a score count as failures; failed runs are excluded and counted).
    """
    cols = list(LADDERS[ladder])
    sub = ladder_slice(df, ladder)
    threshold = default_threshold(df, score) if threshold is None else threshold
    rates = success_rates(sub, score, threshold, by=cols)
    rng = np.random.default_rng(seed)
    medians = []
    for _, row in rates.iterrows():
        sel = sub["model"] == row["model"]
        for col in cols:
            sel &= sub[col] == row[col]
        values = sub.loc[sel, score].to_numpy(float)
        values = values[np.isfinite(values)]
        low, high = median_interval(values, rng)
        medians.append((float(np.median(values)) if len(values) else np.nan, low, high))
    rates[["median", "median_low", "median_high"]] = medians
    rates["level"] = [level_label(tuple(r[c] for c in cols), tuple(cols))
                      for _, r in rates.iterrows()]
    rates["ladder"] = ladder
    # last column first: a data size reads 4000 before 12484 whatever the data set's name
    return rates.sort_values(["model", *reversed(cols)], kind="stable", ignore_index=True)


def plot_ladders(infos: dict[str, pd.DataFrame], score: str, title: str) -> Figure:
    """Success share (top) and median score (bottom) along each ladder, one line per model,
    with their intervals as bars."""
    fig = Figure(figsize=(4.4 * len(infos), 6.4), layout="constrained")
    axes = fig.subplots(2, len(infos), squeeze=False)
    for j, (ladder, info) in enumerate(infos.items()):
        levels = list(dict.fromkeys(info["level"]))
        for model in models_present(info):
            part = info[info["model"] == model].set_index("level").reindex(levels)
            x = np.arange(len(levels)) + 0.06 * (models_present(info).index(model) - 1)
            color = MODEL_COLORS.get(model)
            for ax, (mid, low, high) in zip(axes[:, j], (("share", "ci_low", "ci_high"),
                                                         ("median", "median_low",
                                                          "median_high")), strict=True):
                err = np.vstack([part[mid] - part[low], part[high] - part[mid]])
                ax.errorbar(x, part[mid], yerr=np.nan_to_num(err), fmt="-o", ms=4, capsize=3,
                            color=color, label=f"{model_label(model)} (n={int(part['n'].sum())})")
        cols = LADDERS[ladder]
        for ax in axes[:, j]:
            ax.set_xticks(range(len(levels)), levels)
            ax.set_xlabel(" / ".join(axis_label(c) for c in cols))
        axes[0, j].set_title(ladder)
        axes[0, j].set_ylim(-0.02, 1.02)
        axes[0, j].legend(fontsize=7)
    thr = info["threshold"].iloc[0]
    axes[0, 0].set_ylabel(f"share with {score_label(score)} >= {thr:g} (exact 95% CI)")
    axes[1, 0].set_ylabel(f"median {score_label(score)} (bootstrap 95% CI)")
    fig.suptitle(title)
    return fig
