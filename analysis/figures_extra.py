"""Figures beyond the paper: the score's empirical CDF per model, the median score per level
of every hyperparameter, and the EBGAN margin study (score against margin and schedule per
nLayerD). Same split as ``analysis.figures``: numbers first, drawing second.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.canvas import FIGURE_STEMS, POOLING_NOTE, save_figure, score_axis_label
from analysis.stats import margin_table, margins_vary
from analysis.table import (
    EBGAN_MODELS,
    MODEL_COLORS,
    axis_label,
    is_scored,
    model_label,
    models_present,
    score_label,
    varying_axes,
)

SCHEDULE_STYLES: dict[str, str] = {"constant": "-o", "linear": "--s", "cosine": ":^"}


def ecdf_info(df: pd.DataFrame, score: str = "i_prime") -> pd.DataFrame:
    """Per model: sorted scored values and the fraction of scored runs at or below each."""
    parts = []
    for model in models_present(df):
        values = np.sort(df.loc[(df["model"] == model) & is_scored(df, score), score]
                         .to_numpy(float))
        n_not = int(((df["model"] == model) & ~is_scored(df, score)).sum())
        parts.append(pd.DataFrame({"model": model, "value": values,
                                   "fraction": np.arange(1, len(values) + 1) / len(values),
                                   "n_scored": len(values), "n_not_scored": n_not}))
    return pd.concat(parts, ignore_index=True)


def plot_ecdf(info: pd.DataFrame, score: str, title: str) -> Figure:
    """Step plot of each model's empirical CDF, counts in the legend."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for model, grp in info.groupby("model", sort=False):
        label = (f"{model_label(model)} (n={grp['n_scored'].iloc[0]}, "
                 f"{grp['n_not_scored'].iloc[0]} not scored)")
        ax.step(grp["value"], grp["fraction"], where="post", color=MODEL_COLORS.get(model),
                label=label)
    ax.set_xlabel(score_axis_label(score))
    ax.set_ylabel("fraction of scored runs <= x")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.supxlabel(textwrap.fill(POOLING_NOTE, 110), fontsize=7)
    return fig


def axis_medians(df: pd.DataFrame, score: str = "i_prime") -> pd.DataFrame:
    """Median, quartiles and run count of the score per model, axis and level; an axis is
    included for a model only when it varies among that model's runs."""
    rows = []
    scored = df[is_scored(df, score)]
    for model in models_present(scored):
        sub = scored[scored["model"] == model]
        for axis in varying_axes(sub):
            for level, grp in sub.groupby(axis, sort=True):
                values = grp[score].to_numpy(float)
                rows.append({"model": model, "axis": axis, "level": level, "n": len(values),
                             "median": np.median(values), "q25": np.quantile(values, 0.25),
                             "q75": np.quantile(values, 0.75)})
    return pd.DataFrame(rows)


def _level_text(level: object) -> str:
    return f"{level:g}" if isinstance(level, float) else str(level)


def plot_axis_medians(info: pd.DataFrame, score: str, title: str, ncols: int = 4) -> Figure:
    """One panel per axis: median (IQR bars) per level, one line per model."""
    axes_names = list(dict.fromkeys(info["axis"]))
    nrows = max(int(np.ceil(len(axes_names) / ncols)), 1)
    fig = Figure(figsize=(3.4 * ncols, 2.6 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    models = list(dict.fromkeys(info["model"]))
    for ax, name in zip(axes, axes_names, strict=False):
        sub = info[info["axis"] == name]
        levels = sorted(sub["level"].unique(), key=lambda v: (str(type(v)), v))
        pos = {level: i for i, level in enumerate(levels)}
        for j, model in enumerate(models):
            grp = sub[sub["model"] == model]
            x = grp["level"].map(pos).to_numpy(float) + 0.08 * (j - (len(models) - 1) / 2)
            ax.errorbar(x, grp["median"], yerr=[grp["median"] - grp["q25"],
                        grp["q75"] - grp["median"]], fmt="-o", ms=3, capsize=2, lw=1,
                        color=MODEL_COLORS.get(model), label=model_label(model))
        ax.set_xticks(range(len(levels)), [_level_text(v) for v in levels], fontsize=7)
        ax.set_xlabel(axis_label(name))
        ax.grid(alpha=0.3)
    for ax in axes[len(axes_names):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(f"median {score_label(score)}")
    if axes_names:
        axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.supxlabel("Points: median over scored runs at that level (other axes and seeds "
             "pooled); bars: interquartile range.", fontsize=7)
    return fig


def plot_margins(table: pd.DataFrame, score: str, title: str) -> Figure:
    """EBGAN models in rows, nLayerD in columns: median score against margin (log2 axis) per
    margin schedule, bars spanning the interquartile range over runs."""
    models = [m for m in EBGAN_MODELS if m in set(table["model"])]
    depths = sorted(table["n_layers_d"].unique()) if "n_layers_d" in table else [None]
    fig = Figure(figsize=(3.2 * len(depths), 2.8 * len(models) + 0.6), layout="constrained")
    axes = fig.subplots(len(models), len(depths), sharex=True, sharey=True, squeeze=False)
    for r, model in enumerate(models):
        for c, depth in enumerate(depths):
            ax = axes[r, c]
            sub = table[table["model"] == model]
            sub = sub if depth is None else sub[sub["n_layers_d"] == depth]
            for sched, grp in sub.groupby("margin_schedule", sort=True):
                ax.errorbar(grp["margin"], grp["median"], yerr=[grp["median"] - grp["q25"],
                            grp["q75"] - grp["median"]], fmt=SCHEDULE_STYLES.get(sched, "-o"),
                            ms=3, capsize=2, lw=1, label=f"{sched} (n={grp['n_runs'].sum()})")
            ax.set_xscale("log", base=2)
            ax.set_title(f"{model_label(model)}, nLayerD={depth}", fontsize=9)
            if sub.empty:  # e.g. EBGAN-PT was not run at this depth
                ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.legend(fontsize=6)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel(f"{axis_label('margin')} (start of training)")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"median {score_label(score)}")
    fig.suptitle(title)
    fig.supxlabel("Points: median over scored runs (other axes and seeds pooled); bars: "
                  "interquartile range over runs. Seed-to-seed spread per configuration is in "
                  "the report's margin table.", fontsize=7)
    return fig


def plot_extra(df: pd.DataFrame, out_dir: Path, *, study: str, score: str) -> list[Path]:
    """Write the ECDF, median-per-axis and (when margins vary) margin figures."""
    label = score_label(score)
    paths = save_figure(plot_ecdf(ecdf_info(df, score), score, f"{study}: empirical CDF of "
                                  f"{label} per model"), out_dir, FIGURE_STEMS["ecdf"])
    medians = axis_medians(df, score)
    if len(medians):
        paths += save_figure(plot_axis_medians(medians, score, f"{study}: median {label} per "
                                               "hyperparameter level"), out_dir,
                             FIGURE_STEMS["axes"])
    if margins_vary(df):
        paths += save_figure(plot_margins(margin_table(df, score), score, f"{study}: EBGAN "
                                          f"{label} against margin and schedule"), out_dir,
                             FIGURE_STEMS["margin"])
    return paths
