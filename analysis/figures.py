"""The paper's figures for a grid study (EBGAN, Zhao et al. 2017, Section 4.1), and
``plot_study`` which writes every figure of a study as PNG and PDF.

Each figure is two functions: one returns the numbers (a NamedTuple or DataFrame that tests
check), the other draws them and returns a ``matplotlib.figure.Figure``. Figures are built
without pyplot, so no backend or global state is involved and nothing is ever shown.

* Figure 2: histograms of the score per model, three depth panels.
* Figure 3: GAN histograms per (optimD, optimG, lr), EBGAN of the same panel as reference.
* Figure 4: sample grids of the best run of each model.

The figures beyond the paper (ECDF, median per axis level, margins) are in
``analysis.figures_extra``; what every figure module shares (file names, saving) in
``analysis.canvas``.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import figures_extra, scale, trajectories
from analysis.canvas import FIGURE_STEMS, POOLING_NOTE, save_figure, score_axis_label
from analysis.table import (
    MODEL_COLORS,
    depth_panels,
    describe_config,
    higher_is_better,
    is_scored,
    model_label,
    models_present,
    optim_panels,
    score_label,
    top_configurations,
    varying_axes,
)

log = logging.getLogger(__name__)

class HistogramInfo(NamedTuple):
    """Numbers behind a histogram figure; bins are shared by every panel and model."""

    edges: np.ndarray  # shared bin edges
    bars: pd.DataFrame  # panel, model, bin, left, right, count, percent (of scored runs)
    counts: pd.DataFrame  # panel, model, n_runs, n_scored, n_not_scored, n_diverged_scored


def shared_edges(values: np.ndarray, bins: int = 25) -> np.ndarray:
    """Bin edges over the finite values of every model compared (one set for all panels)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return np.histogram_bin_edges(finite if len(finite) else np.zeros(1), bins=bins)


def histogram_info(df: pd.DataFrame, score: str, panels: list[tuple[str, pd.Series]],
                   models: list[str] | None = None, bins: int = 25) -> HistogramInfo:
    """Per panel and model: counts and percentages of scored runs per shared bin."""
    models = models or models_present(df)
    in_models = df["model"].isin(models)
    edges = shared_edges(df.loc[in_models, score].to_numpy(float), bins)
    scored = is_scored(df, score)
    diverged = df["status"] == "diverged" if "status" in df else pd.Series(False, df.index)
    bars, counts = [], []
    for title, mask in panels:
        for model in models:
            sel = mask & (df["model"] == model)
            values = df.loc[sel & scored, score].to_numpy(float)
            count, _ = np.histogram(values, bins=edges)
            percent = 100.0 * count / len(values) if len(values) else np.zeros_like(count, float)
            bars.append(pd.DataFrame({"panel": title, "model": model, "bin": np.arange(len(count)),
                                      "left": edges[:-1], "right": edges[1:], "count": count,
                                      "percent": percent}))
            counts.append({"panel": title, "model": model, "n_runs": int(sel.sum()),
                           "n_scored": len(values), "n_not_scored": int((sel & ~scored).sum()),
                           "n_diverged_scored": int((sel & scored & diverged).sum())})
    return HistogramInfo(edges, pd.concat(bars, ignore_index=True), pd.DataFrame(counts))


def figure2_info(df: pd.DataFrame, score: str = "i_prime", bins: int = 25) -> HistogramInfo:
    """Figure 2: every model, panels all / both depths <= 4 / both <= 3."""
    return histogram_info(df, score, depth_panels(df), bins=bins)


def figure3_info(df: pd.DataFrame, score: str = "i_prime", bins: int = 25) -> HistogramInfo:
    """Figure 3: GAN per (optimD, optimG, lr), with EBGAN runs of the same panel as reference."""
    models = [m for m in ("gan", "ebgan") if m in models_present(df)]
    return histogram_info(df, score, optim_panels(df), models=models, bins=bins)


def _legend_label(row: pd.Series) -> str:
    text = f"{model_label(row['model'])} (n={row['n_scored']} scored"
    if row["n_diverged_scored"]:
        text += f" incl. {row['n_diverged_scored']} diverged"
    if row["n_not_scored"]:
        text += f"; {row['n_not_scored']} not scored"
    return text + ")"


def plot_histograms(info: HistogramInfo, score: str, title: str, ncols: int = 3) -> Figure:
    """Overlaid per-model histograms (percent of scored runs per bin), one axes per panel."""
    panels = list(dict.fromkeys(info.bars["panel"]))
    nrows = int(np.ceil(len(panels) / ncols))
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        for model, bars in info.bars[info.bars["panel"] == panel].groupby("model", sort=False):
            row = info.counts[(info.counts["panel"] == panel) & (info.counts["model"] == model)]
            color = MODEL_COLORS.get(model, "gray")
            ax.stairs(bars["percent"], info.edges, fill=True, alpha=0.3, color=color)
            ax.stairs(bars["percent"], info.edges, color=color, lw=1.2,
                      label=_legend_label(row.iloc[0]))
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    # Headroom above the tallest bar so the legends never hide bars.
    axes[0].set_ylim(0, max(float(info.bars["percent"].max()), 1.0) * 1.45)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[(nrows - 1) * ncols:]:
        ax.set_xlabel(score_axis_label(score))
    for ax in axes[::ncols]:
        ax.set_ylabel("% of scored runs")
    fig.suptitle(title)
    fig.supxlabel(textwrap.fill(POOLING_NOTE, 150), fontsize=7)
    return fig


def best_runs(df: pd.DataFrame, score: str = "i_prime") -> pd.DataFrame:
    """Figure 4: the best scored run of each model (one row per model)."""
    return top_configurations(df, score, k=1, higher=higher_is_better(score))


def plot_samples(df: pd.DataFrame, samples: dict[str, np.ndarray], score: str,
                 title: str) -> Figure:
    """Figure 4: 8x8 sample grid of each model's best run, captioned with its configuration."""
    best = best_runs(df, score)
    captions = [textwrap.fill(describe_config(row, varying_axes(df[df["model"] == row["model"]])),
                              48) + f"\nseed={row.get('seed', '?')}, run {row['run_id']}"
                for _, row in best.iterrows()]
    lines = max((c.count("\n") + 1 for c in captions), default=1)
    # 7-point caption lines are ~0.13 inch: grow the figure so the longest caption fits
    fig = Figure(figsize=(3.6 * max(len(best), 1), 4.6 + 0.13 * lines), layout="constrained")
    axes = fig.subplots(1, max(len(best), 1), squeeze=False).ravel()
    for ax, (_, row), caption in zip(axes, best.iterrows(), captions, strict=False):
        images = samples.get(row["run_id"])
        ax.set_xticks([])
        ax.set_yticks([])
        if images is None:
            ax.text(0.5, 0.5, f"no samples for run\n{row['run_id']}", ha="center", va="center")
        else:
            ax.imshow(sample_mosaic(images), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{model_label(row['model'])}: {score_label(score)} = {row[score]:.3g}",
                     fontsize=10)
        ax.set_xlabel(caption, fontsize=7)
    fig.suptitle(textwrap.fill(title, 14 * max(len(best), 2)))  # narrow figures wrap the title
    return fig


def sample_mosaic(images: np.ndarray, ncols: int = 8) -> np.ndarray:
    """Tile (n, h, w) images into one (rows*h, ncols*w) array, blank cells at the end."""
    images = np.asarray(images)
    n, h, w = images.shape
    nrows = int(np.ceil(n / ncols))
    padded = np.zeros((nrows * ncols, h, w), dtype=images.dtype)
    padded[:n] = images
    return padded.reshape(nrows, ncols, h, w).transpose(0, 2, 1, 3).reshape(nrows * h, ncols * w)


def plot_study(df: pd.DataFrame, out_dir: str | Path, *, study: str,
               samples: dict[str, np.ndarray] | None = None,
               score: str = "i_prime", curves: pd.DataFrame | None = None) -> list[Path]:
    """Write every figure of a study (PNG and PDF) into ``out_dir``; return the paths.

    Figure 4 is skipped, with a log message, when ``samples`` is None or empty; the margin
    figure only appears when EBGAN runs use several margins or schedules. With ``curves``
    (curves.parquet), the training-dynamics figures of ``analysis.trajectories`` are added.
    """
    out_dir, label = Path(out_dir), score_label(score)
    paths = save_figure(plot_histograms(
        figure2_info(df, score), score,
        f"{study}: {label} of {' vs '.join(map(model_label, models_present(df)))} (Figure 2)"),
        out_dir, FIGURE_STEMS["fig2"])
    if {"optim_d", "optim_g", "lr"} <= set(df.columns):
        info = figure3_info(df, score)
        paths += save_figure(plot_histograms(
            info, score, f"{study}: GAN {label} per optimD, optimG, lr; EBGAN of the same "
            "panel as reference (Figure 3)", ncols=max(df["lr"].nunique(), 1)),
            out_dir, FIGURE_STEMS["fig3"])
    if samples:
        paths += save_figure(plot_samples(df, samples, score, f"{study}: best run per model "
                                          f"by {label} (Figure 4)"), out_dir, FIGURE_STEMS["fig4"])
    else:
        log.info("Figure 4 skipped: no samples given for study %s", study)
    paths += figures_extra.plot_extra(df, out_dir, study=study, score=score)
    ladders = scale.varying_ladders(df)
    if ladders:
        infos = {name: scale.ladder_info(df, name, score) for name in ladders}
        paths += save_figure(scale.plot_ladders(infos, score, f"{study}: {label} along the "
                                                "ladders of scale"), out_dir, FIGURE_STEMS["scale"])
    if curves is not None:
        paths += trajectories.plot_dynamics(df, curves, out_dir, study=study, score=score)
    return paths
