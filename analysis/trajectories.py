"""Training dynamics figures: scores against the training step, and best-during-training
against final I'. Numbers first (DataFrames that tests check), drawing second (a ``Figure``).

* Trajectories: per model, the median and interquartile band of a score at each evaluation,
  in Figure 2's depth panels, and for the GAN per optimizer setting (Figure 3's panels) with
  the EBGAN median of the study as a reference line.
* Best against final: each run's best I' during training against its final I'.

Step alignment. Runs are put on one grid of fractions of training (step / the run's
``steps``). When the runs that trained to the end share one evaluation schedule (the usual
case), the grid is that schedule and nothing moves. Otherwise the grid is n even fractions,
n the fewest evaluations of such a run. Each point goes to the first grid point at or after
it, and a run keeps its latest point per grid point. A diverged run's last point thus lands on
the grid point after its last regular evaluation, where its NaN I' makes it unscored; it has
no value at later grid points. Quantiles are over the runs scored at a grid point; the others
(diverged earlier, NaN score, failed, no curve) are counted in ``n_missing``.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.canvas import FIGURE_STEMS, save_figure, score_axis_label
from analysis.stability import add_stability
from analysis.table import (
    MODEL_COLORS,
    depth_panels,
    model_label,
    models_present,
    optim_panels,
    score_label,
)

log = logging.getLogger(__name__)
_TOL = 1e-9  # fractions are ratios of integers; this absorbs their rounding
ALIGN_NOTE = ("Runs are aligned on fractions of their training; lines: median over the runs "
              "scored at that point, bands: interquartile range. Runs drop out after they "
              "diverge; the legend counts the runs scored at the last point.")


def _grid(points: pd.DataFrame) -> np.ndarray:
    """The grid of fractions (see the module docstring) for aligned ``points``."""
    last = points.groupby("run_id")["fraction"].transform("max")
    done = points[(last - 1.0).abs() < _TOL]
    if done.empty:
        n = int(points.groupby("run_id").size().max())
        return np.arange(1, n + 1) / n
    fractions = np.unique(done["fraction"].round(9))
    sizes = done.groupby("run_id").size()
    if (sizes == len(fractions)).all():  # every finished run was evaluated at the same points
        return fractions
    n = int(sizes.min())
    return np.arange(1, n + 1) / n


def align_curves(runs: pd.DataFrame, curves: pd.DataFrame, score: str = "i_prime"
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Each run's ``score`` on the common grid: (run_id, point, fraction, value), and the grid.

    ``point`` indexes the grid; runs need ``run_id`` and ``steps``.
    """
    points = curves[["run_id", "step", score]].merge(runs[["run_id", "steps"]], on="run_id")
    points = points.assign(fraction=points["step"] / points["steps"])
    if points.empty:
        return pd.DataFrame(columns=["run_id", "point", "fraction", "value"]), np.array([])
    grid = _grid(points)
    where = np.searchsorted(grid, points["fraction"].to_numpy() - _TOL, side="left")
    points["point"] = np.minimum(where, len(grid) - 1)
    points = points.sort_values(["run_id", "step"], kind="stable")
    points = points.drop_duplicates(["run_id", "point"], keep="last")
    out = pd.DataFrame({"run_id": points["run_id"], "point": points["point"],
                        "fraction": grid[points["point"]], "value": points[score].astype(float)})
    return out.reset_index(drop=True), grid


def trajectory_info(runs: pd.DataFrame, curves: pd.DataFrame, score: str = "i_prime",
                    panels: list[tuple[str, pd.Series]] | None = None,
                    models: list[str] | None = None) -> pd.DataFrame:
    """Per score, panel, model and grid point: median, q25, q75 over the scored runs, n of them
    and n_missing (runs of the panel not scored there). ``step`` is the grid point in steps when
    all runs train for the same ``steps``, else NaN; ``fraction`` always."""
    panels = panels if panels is not None else depth_panels(runs)
    models = models or models_present(runs)
    aligned, grid = align_curves(runs, curves, score)
    total = runs["steps"].unique()
    steps = np.round(grid * total[0]) if len(total) == 1 else np.full(len(grid), np.nan)
    scored = aligned[np.isfinite(aligned["value"])].merge(runs[["run_id", "model"]])
    parts = []
    for title, mask in panels:
        ids = runs.loc[mask, "run_id"]
        sub = scored[scored["run_id"].isin(ids) & scored["model"].isin(models)]
        full = pd.MultiIndex.from_product([models, range(len(grid))], names=["model", "point"])
        grouped = sub.groupby(["model", "point"])["value"]
        desc = grouped.quantile([0.25, 0.5, 0.75]).unstack().reindex(columns=[0.25, 0.5, 0.75])
        desc = desc.assign(count=grouped.size()).reindex(full)
        model, point = full.get_level_values("model"), full.get_level_values("point").to_numpy()
        n_runs = runs.loc[mask, "model"].value_counts().reindex(model, fill_value=0).to_numpy()
        n = desc["count"].fillna(0).astype(int).to_numpy()
        parts.append(pd.DataFrame({
            "score": score, "panel": title, "model": model, "point": point,
            "fraction": grid[point], "step": steps[point], "median": desc[0.5].to_numpy(),
            "q25": desc[0.25].to_numpy(), "q75": desc[0.75].to_numpy(), "n": n,
            "n_missing": n_runs - n}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _x(info: pd.DataFrame) -> tuple[str, str]:
    """The x column and its label: steps when every run trained as long, else % of training."""
    return ("step", "training step") if info["step"].notna().all() else (
        "fraction", "fraction of training")


def _draw_panel(ax, info: pd.DataFrame, x: str, reference: pd.DataFrame | None) -> None:
    for model, grp in info.groupby("model", sort=False):
        if grp["n"].sum() == 0:
            continue
        color = MODEL_COLORS.get(model, "gray")
        end = grp.iloc[-1]
        label = f"{model_label(model)} ({end['n']} of {end['n'] + end['n_missing']} scored)"
        ax.fill_between(grp[x], grp["q25"], grp["q75"], color=color, alpha=0.2, lw=0)
        ax.plot(grp[x], grp["median"], "-o", ms=2.5, lw=1.3, color=color, label=label)
    if reference is not None and len(reference):
        for model, grp in reference.groupby("model", sort=False):
            ax.plot(grp[x], grp["median"], "--", lw=1.2, color=MODEL_COLORS.get(model, "gray"),
                    label=f"{model_label(model)} median, all its runs (reference)")
    if info["n"].sum() == 0:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=6, loc="best")
    ax.grid(alpha=0.3)


def plot_trajectories(info: pd.DataFrame, title: str, ncols: int = 3,
                      reference: pd.DataFrame | None = None) -> Figure:
    """Median line and IQR band per model against the step: one row of panels per score
    (``info`` from ``trajectory_info``, concatenated over scores); ``reference`` (same columns,
    one panel) is drawn dashed in every panel."""
    scores = list(dict.fromkeys(info["score"]))
    panels = list(dict.fromkeys(info["panel"]))
    rows_per = int(np.ceil(len(panels) / ncols))
    nrows = rows_per * len(scores)
    fig = Figure(figsize=(4.0 * ncols, 2.7 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    x, xlabel = _x(info)
    for s, score in enumerate(scores):
        block = axes[s * rows_per:(s + 1) * rows_per].ravel()
        ref = None if reference is None else reference[reference["score"] == score]
        for ax, panel in zip(block, panels, strict=False):
            part = info[(info["score"] == score) & (info["panel"] == panel)]
            _draw_panel(ax, part, x, ref)
            ax.set_title(panel, fontsize=8)
            if ax is not block[0]:  # one y scale per score
                ax.sharey(block[0])
        for ax in block[len(panels):]:
            ax.set_visible(False)
        for ax in block[::ncols]:
            ax.set_ylabel(score_axis_label(score), fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    fig.suptitle(title)
    fig.supxlabel(textwrap.fill(ALIGN_NOTE, 40 * ncols), fontsize=7)
    return fig


class BestFinalInfo(NamedTuple):
    """Numbers behind the best-against-final figure."""

    points: pd.DataFrame  # run_id, model, final (runs' i_prime), best (best_i_prime)
    summary: pd.DataFrame  # per model: n, n_final_nan, medians of final, best and the drop


def best_final_info(table: pd.DataFrame) -> BestFinalInfo:
    """Per run, best I' during training and final I' (``table`` from ``add_stability``);
    failed runs and runs without a finite best are left out. The medians are over the runs
    with both values finite; ``n_final_nan`` counts those whose final I' is NaN (diverged)."""
    keep = np.isfinite(table["best_i_prime"].to_numpy(float))
    if "status" in table:
        keep &= (table["status"] != "failed").to_numpy()
    points = pd.DataFrame({"run_id": table["run_id"], "model": table["model"],
                           "final": table["i_prime"].astype(float),
                           "best": table["best_i_prime"].astype(float)})[keep]
    rows = []
    for model in models_present(points):
        sub = points[points["model"] == model]
        both = sub[np.isfinite(sub["final"])]
        rows.append({"model": model, "n": len(both), "n_final_nan": len(sub) - len(both),
                     "median_final": both["final"].median(), "median_best": both["best"].median(),
                     "median_drop": (both["best"] - both["final"]).median(),
                     "share_best_above_final": float((both["best"] > both["final"]).mean())
                     if len(both) else np.nan})
    return BestFinalInfo(points.reset_index(drop=True), pd.DataFrame(rows))


def plot_best_final(info: BestFinalInfo, title: str) -> Figure:
    """Scatter of best against final I' per model, the diagonal, and each model's medians."""
    fig = Figure(figsize=(6.0, 5.2), layout="constrained")
    ax = fig.subplots()
    for row in info.summary.itertuples(index=False):
        sub = info.points[(info.points["model"] == row.model) & np.isfinite(info.points["final"])]
        color = MODEL_COLORS.get(row.model, "gray")
        label = f"{model_label(row.model)} (n={row.n}" + (
            f"; {row.n_final_nan} with NaN final not shown)" if row.n_final_nan else ")")
        ax.scatter(sub["final"], sub["best"], s=6, alpha=0.35, color=color, lw=0, label=label)
        ax.plot(row.median_final, row.median_best, marker="X", ms=11, color=color, mec="black",
                ls="none", label=f"{model_label(row.model)} medians ({row.median_final:.2f}, "
                f"{row.median_best:.2f})")
    finite = info.points[["final", "best"]].to_numpy(float)
    top = float(np.nanmax(finite)) if np.isfinite(finite).any() else 1.0
    ax.plot([0, top], [0, top], color="gray", lw=0.8, ls=":", label="best = final")
    ax.set_xlabel(f"final {score_label('i_prime')}")
    ax.set_ylabel(f"best {score_label('i_prime')} during training")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.supxlabel(textwrap.fill("Best: max over the evaluations during training (intermediate "
                                "ones score fewer samples); a run on the diagonal ended at its "
                                "best. Crosses: medians over the runs shown.", 95), fontsize=7)
    return fig


def plot_dynamics(df: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, *, study: str,
                  score: str = "i_prime") -> list[Path]:
    """Write the trajectory figures (depth panels; GAN per optimizer setting, main score and
    classes covered) and the best-against-final figure; return the paths."""
    if not curves["run_id"].isin(df["run_id"]).any():
        log.info("Training-dynamics figures skipped: no curves for study %s's runs", study)
        return []
    score = score if score in curves.columns else "i_prime"
    scores = list(dict.fromkeys([score, "n_classes_covered"]))
    info = pd.concat([trajectory_info(df, curves, s) for s in scores], ignore_index=True)
    paths = save_figure(plot_trajectories(info, f"{study}: {score_label(score)} and classes "
                                          "covered during training (Figure 2's panels)"),
                        out_dir, FIGURE_STEMS["traj"])
    if "gan" in set(df["model"]) and {"optim_d", "optim_g", "lr"} <= set(df.columns):
        ncols = max(df["lr"].nunique(), 1)
        for s, key in zip(scores, ("traj_optim", "traj_optim_classes"), strict=False):
            ref = trajectory_info(df, curves, s, [("all", pd.Series(True, df.index))], ["ebgan"])
            gan = trajectory_info(df, curves, s, optim_panels(df), ["gan"])
            paths += save_figure(plot_trajectories(
                gan, f"{study}: GAN {score_label(s)} during training per optimD, optimG, lr "
                "(Figure 3's panels)", ncols, ref), out_dir, FIGURE_STEMS[key])
    paths += save_figure(plot_best_final(best_final_info(add_stability(df, curves)),
                                         f"{study}: best {score_label('i_prime')} during "
                                         "training against final"), out_dir,
                         FIGURE_STEMS["best_final"])
    return paths


# One run's curve: (panel title, [(column, label)], y label) per panel.
RUN_CURVE_PANELS: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    ("losses", (("loss_d", "L_D"), ("loss_g", "L_G")), "mean over the interval"),
    ("gradient norms", (("grad_norm_d", "D"), ("grad_norm_g", "G")), "mean L2 norm"),
    ("scores", (("i_prime", "I'"), ("n_classes_covered", "classes covered")), ""),
    ("EBGAN energies", (("energy_real", "real"), ("energy_fake", "fake"), ("margin", "m")),
     "mean energy D(x)"),
)


def plot_run_curve(curve: pd.DataFrame, title: str) -> Figure:
    """One run's training curve (curves.parquet rows of one run_id): losses, gradient norms,
    scores and, for EBGAN, energies against the margin. The last point is the final evaluation,
    scored on more samples than the others (a hollow marker)."""
    curve = curve.sort_values("step")
    panels = [p for p in RUN_CURVE_PANELS
              if curve[[c for c, _ in p[1]]].notna().to_numpy().any()]
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    final = curve["final"].to_numpy(bool)
    for ax, (name, columns, ylabel) in zip(axes, panels, strict=True):
        twin = ax.twinx() if name == "scores" else None
        for i, (column, label) in enumerate(columns):
            target = twin if (twin is not None and i == 1) else ax
            line, = target.plot(curve["step"], curve[column], "-o", ms=3, label=label,
                                color=f"C{i}")
            target.plot(curve["step"][final], curve[column][final], "o", mfc="white",
                        color=line.get_color())
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel or score_label("i_prime"))
        if twin is not None:
            twin.set_ylabel(score_label("n_classes_covered"))
            twin.set_ylim(0, 10.5)
        handles = ax.get_legend_handles_labels()[0] + (
            twin.get_legend_handles_labels()[0] if twin is not None else [])
        ax.legend(handles=handles, fontsize=7)
    fig.suptitle(title)
    return fig
