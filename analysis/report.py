"""The Markdown report of a grid study: what a researcher pastes into a lab notebook.

``write_report`` gathers the numbers of ``analysis.stats`` (study size and status counts, the
GAN-vs-EBGAN tests under every score, success shares, hyperparameter importance, budget curve,
seed spread, best configurations, margins) into one Markdown file, and links the figures that
``analysis.figures.plot_study`` wrote. Tables go through a small formatter here, so the report
needs no ``tabulate``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import scale, stability, stats
from analysis.canvas import FIGURE_STEMS
from analysis.table import (
    axis_label,
    config_ids,
    higher_is_better,
    model_label,
    models_present,
    score_columns,
    score_label,
    status_counts,
    top_configurations,
    varying_axes,
)

FIGURE_CAPTIONS: dict[str, str] = {
    "fig2": "Figure 2: score histograms per model (all runs; both depths <= 4; both <= 3)",
    "fig3": "Figure 3: GAN per optimD, optimG, lr, with EBGAN of the same panel",
    "fig4": "Figure 4: samples of the best run per model",
    "ecdf": "Empirical CDF of the score per model",
    "axes": "Median score per level of every hyperparameter",
    "margin": "EBGAN score against margin and margin schedule per nLayerD",
    "traj": "Score and classes covered during training per model (Figure 2's panels)",
    "traj_optim": "GAN score during training per optimD, optimG, lr, with the EBGAN median",
    "traj_optim_classes": "GAN classes covered during training per optimD, optimG, lr",
    "best_final": "Best I' during training against final I', per model",
    "scale": "Success share and median score along width, training length and data size",
}
BUDGETS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (floats to ``digits`` significant digits)."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(_cell(v, digits) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _size_section(df: pd.DataFrame, score: str) -> list[str]:
    ids = config_ids(df)
    seeds = ids.value_counts()
    counts = status_counts(df, score).assign(model=lambda t: t["model"].map(model_label))
    return ["## Study size", "",
            f"{len(df)} runs, {ids.nunique()} configurations, {seeds.min()}-{seeds.max()} "
            f"seeds per configuration; models: "
            f"{', '.join(map(model_label, models_present(df)))}. 'not scored' = NaN "
            f"{score_label(score)} (failed, or diverged before scoring); diverged runs with a "
            "score count as scored everywhere.", "", markdown_table(counts), ""]


def _figure_section(out_file: Path, figures_dir: Path | None) -> list[str]:
    lines = ["## Figures", ""]
    if figures_dir is None:
        return [*lines, "No figures directory given.", ""]
    for key, stem in FIGURE_STEMS.items():
        png, pdf = figures_dir / f"{stem}.png", figures_dir / f"{stem}.pdf"
        if png.exists():
            rel = Path(os.path.relpath(png, out_file.parent)).as_posix()
            rel_pdf = Path(os.path.relpath(pdf, out_file.parent)).as_posix()
            lines += [f"**{FIGURE_CAPTIONS[key]}** ([PDF]({rel_pdf}))", "",
                      f"![{FIGURE_CAPTIONS[key]}]({rel})", ""]
        elif key == "fig4":
            lines += ["Figure 4 not drawn: no samples were given.", ""]
    return lines


def _comparison_frame(table: pd.DataFrame, first: str, first_label: str) -> pd.DataFrame:
    out = stats.label_models(table)
    out.insert(0, first_label, out.pop(first))
    out.insert(1, "comparison", out["model_a"] + " vs " + out["model_b"])
    keep = [first_label, "comparison", "n_a", "n_b", "median_a", "median_b", "u_pvalue",
            "ks_stat", "ks_pvalue", "cliffs_delta", "cles", "better"]
    return out[keep]


def _comparison_section(df: pd.DataFrame, score: str) -> list[str]:
    headline = stats.headline_table(df)
    if headline.empty:
        return []
    headline["score"] = headline["score"].map(
        lambda s: f"{score_label(s)} ({'higher' if higher_is_better(s) else 'lower'} better)")
    panels = stats.compare_models(df, score)
    return ["## GAN vs EBGAN", "",
            "Mann-Whitney U and two-sample KS on scored runs; cliffs_delta = P(a > b) - "
            "P(a < b) (equal to the rank-biserial correlation), cles = P(a > b) + P(a = b)/2, "
            "both on raw values: 'better' reads the score's direction.", "",
            "### Under every score (all runs)", "",
            markdown_table(_comparison_frame(headline, "score", "score")), "",
            f"### Per Figure 2 panel ({score_label(score)})", "",
            markdown_table(_comparison_frame(panels, "panel", "panel")), ""]


def _model_columns(df: pd.DataFrame, columns: pd.Index) -> list[str]:
    """The models among ``columns`` in paper order (GAN, EBGAN, EBGAN-PT)."""
    return [m for m in models_present(df) if m in set(columns)]


def _share_value(value: float) -> str:
    """Two decimals, or two significant digits below 0.01, so that a bound is never shown as 0
    unless it is 0 (the exact upper bound for 0 of 768 is 0.0048)."""
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2g}"


def _share_text(row: pd.Series) -> str:
    return (f"{_share_value(row['share'])} [{_share_value(row['ci_low'])}, "
            f"{_share_value(row['ci_high'])}] (n={row['n']})")


def _success_section(df: pd.DataFrame, score: str, threshold: float | None) -> list[str]:
    overall = stats.success_rates(df, score, threshold)
    thr = overall["threshold"].iloc[0]
    sign = ">=" if higher_is_better(score) else "<="
    per_panel = stats.panel_success_rates(df, score, thr)
    origin = "user threshold" if threshold is not None else "default, stats.DEFAULT_THRESHOLDS"
    lines = ["## Successful runs", "",
             f"A run succeeds when {score_label(score)} {sign} {thr:g} ({origin}). "
             "Share [exact 95% Clopper-Pearson interval] (n). Diverged runs "
             "without a score count as unsuccessful; failed runs are excluded "
             f"({int(overall['n_excluded'].sum())} excluded, with ok runs not scored).", "",
             markdown_table(pd.DataFrame({"model": overall["model"].map(model_label),
                                          "share [CI] (n)": overall.apply(_share_text, axis=1),
                                          "successes": overall["n_success"]})), ""]
    if len(per_panel):
        per_panel["cell"] = per_panel.apply(_share_text, axis=1)
        pivot = per_panel.pivot(index="panel", columns="model", values="cell")
        pivot = pivot.reindex(index=list(dict.fromkeys(per_panel["panel"])),
                              columns=_model_columns(df, pivot.columns))
        pivot.columns = [model_label(m) for m in pivot.columns]
        lines += ["Per Figure 3 panel:", "", markdown_table(pivot.reset_index()), ""]
    return lines


def _importance_section(df: pd.DataFrame, score: str) -> list[str]:
    imp = stats.hyperparameter_importance(df, score)
    if imp.empty:
        return []
    imp["cell"] = [f"{e:.3f} (p={p:.2g})" for e, p in zip(imp["eta_squared"], imp["kruskal_p"],
                                                          strict=True)]
    pivot = imp.pivot(index="axis", columns="model", values="cell").fillna("")
    order = imp.groupby("axis")["eta_squared"].max().sort_values(ascending=False).index
    pivot = pivot.reindex(index=order, columns=_model_columns(df, pivot.columns))
    pivot.index = [" / ".join(axis_label(c) for c in a.split("/")) for a in pivot.index]
    pivot.columns = [model_label(m) for m in pivot.columns]
    return ["## Which hyperparameters matter", "",
            "eta squared (share of score variance between the axis' levels, other axes pooled) "
            "and the Kruskal-Wallis p-value across levels; axes varied together (sizeG and "
            "sizeD in a zip) are one row.", "",
            markdown_table(pivot.rename_axis("axis").reset_index()), ""]


def _budget_section(df: pd.DataFrame, score: str) -> list[str]:
    curve = stats.budget_curve(df, score, ks=None)
    curve = curve[curve["k"].isin(BUDGETS)]
    pivot = curve.pivot(index="k", columns="model", values="expected_best")
    pivot = pivot[_model_columns(df, pivot.columns)]
    pivot.columns = [model_label(m) for m in pivot.columns]
    spread = stats.label_models(stats.seed_spread(df, score))
    return ["## Budget curve and seed spread", "",
            f"Expected best {score_label(score)} among k runs drawn at random without "
            "replacement (exact order statistics, Lucic et al. 2018); diverged unscored runs "
            "are draws that found nothing, failed runs are left out.", "",
            markdown_table(pivot.reset_index()), "",
            "Seed-to-seed spread (median within-configuration std) against the spread across "
            "configurations (std of configuration medians):", "", markdown_table(spread), ""]


def _best_section(df: pd.DataFrame, score: str) -> list[str]:
    lines = ["## Best configurations (top 5 per model)", ""]
    top = top_configurations(df, score, k=5, higher=higher_is_better(score))
    for model in models_present(top):
        axes = varying_axes(df[df["model"] == model])
        cols = [c for c in ("run_id", "seed", "status", score, *axes) if c in top.columns]
        part = top.loc[top["model"] == model, cols]
        part = part.rename(columns={**{a: axis_label(a) for a in axes},
                                    score: score_label(score)})
        lines += [f"### {model_label(model)}", "", markdown_table(part), ""]
    return lines


def _margin_section(df: pd.DataFrame, score: str) -> list[str]:
    if not stats.margins_vary(df):
        return []
    best = stats.label_models(stats.best_margin_range(df, score))
    table = stats.label_models(stats.margin_table(df, score))
    table["cell"] = [f"{m:.3g} [{a:.3g}, {b:.3g}] ({n})" for m, a, b, n in
                     zip(table["median"], table["q25"], table["q75"], table["n_runs"],
                         strict=True)]
    keys = [c for c in ("model", "n_layers_d", "margin_schedule") if c in table]
    pivot = table.pivot_table(index=keys, columns="margin", values="cell", aggfunc="first")
    pivot.columns = [f"m={m:g}" for m in pivot.columns]
    seed = table.groupby(keys)["seed_range"].median().rename("seed range")
    pivot = pivot.join(seed).reset_index().rename(columns={k: axis_label(k) for k in keys})
    return ["## EBGAN margin", "",
            f"Median {score_label(score)} [IQR] (runs) per margin; other axes and seeds pooled. "
            "'seed range' is the median over configurations of max - min across seeds.", "",
            markdown_table(pivot), "",
            "Best margin range: the margin with the best median, a 95% percentile bootstrap CI "
            "of that median (scipy.stats.bootstrap, 1000 resamples, seed 0), and the margins "
            "whose median lies in the CI.", "",
            markdown_table(best.rename(columns={k: axis_label(k) for k in keys})), ""]


def _direction(measure: str) -> str:
    higher = stability.MEASURE_HIGHER_IS_BETTER[measure]
    return measure if higher is None else f"{measure} ({'higher' if higher else 'lower'} better)"


def _pair_frame(table: pd.DataFrame, first: str, keep: list[str]) -> pd.DataFrame:
    out = stats.label_models(table)
    out.insert(1, "comparison", out.pop("model_a") + " vs " + out.pop("model_b"))
    return out[[first, "comparison", *keep]]


def _share_pivot(shares: pd.DataFrame) -> pd.DataFrame:
    """Events in rows, models in columns, cells 'k/n = share [low, high]'."""
    shares = stats.label_models(shares)
    shares["cell"] = [f"{k}/{n} = {_share_value(p)} [{_share_value(lo)}, {_share_value(hi)}]"
                      if n else "" for k, n, p, lo, hi
                      in zip(shares["k"], shares["n"], shares["share"], shares["ci_low"],
                             shares["ci_high"], strict=True)]
    pivot = shares.pivot(index="event", columns="model", values="cell")
    pivot = pivot.reindex(index=list(dict.fromkeys(shares["event"])),
                          columns=list(dict.fromkeys(shares["model"])))
    return pivot.rename_axis("event").reset_index()


def _delta_shift(final: float, best: float) -> str:
    if not (np.isfinite(final) and np.isfinite(best)):
        return "cannot be compared (too few runs)"
    change = ("about the same" if abs(abs(best) - abs(final)) < 0.05 else
              "smaller" if abs(best) < abs(final) else "larger")
    return f"is {final:+.2f} on the final I' and {best:+.2f} on the best I': the gap is {change}"


def _final_best_lines(table: pd.DataFrame) -> list[str]:
    points = stability.final_vs_best(table)
    lines = ["### Judged at the final step or at the best point", "",
             "The same runs (final and best I' both finite) compared on each. Intermediate "
             "evaluations score fewer samples than the final one, so a best point is slightly "
             "optimistic.", ""]
    for (a, b), grp in points.groupby(["model_a", "model_b"], sort=False):
        delta = grp.set_index("point")["cliffs_delta"]
        lines.append(f"- {model_label(a)} vs {model_label(b)}: Cliff's delta "
                     f"{_delta_shift(delta['final'], delta['best'])}.")
    keep = ["n_a", "n_b", "median_a", "median_b", "u_pvalue", "cliffs_delta"]
    return [*lines, "", markdown_table(_pair_frame(points, "point", keep)), ""]


def _scale_section(df: pd.DataFrame, score: str, threshold: float | None) -> list[str]:
    ladders = scale.varying_ladders(df)
    if not ladders:
        return []
    lines = ["## Scale", "",
             "Each ladder is read on its own slice: the configurations run at every one of "
             "its levels (same model, depths, optimizer settings and other ladders' levels; "
             "seeds pooled). Share of successful runs [exact 95% Clopper-Pearson interval] "
             "and median score [95% percentile bootstrap interval, scipy.stats.bootstrap].", ""]
    for name in ladders:
        info = scale.ladder_info(df, name, score, threshold)
        info["cell"] = [f"{_share_text(r)}; median {r['median']:.3g} [{r['median_low']:.3g}, "
                        f"{r['median_high']:.3g}]" for _, r in info.iterrows()]
        pivot = info.pivot(index="level", columns="model", values="cell")
        pivot = pivot.reindex(index=list(dict.fromkeys(info["level"])),
                              columns=_model_columns(df, pivot.columns))
        pivot.columns = [model_label(m) for m in pivot.columns]
        lines += [f"### {name}", "", markdown_table(pivot.rename_axis(name).reset_index()), ""]
    return lines


def _stability_section(df: pd.DataFrame, curves: pd.DataFrame, threshold: float) -> list[str]:
    table = stability.add_stability(df, curves, threshold)
    n_runs = len(stability.counted_runs(table))
    lines = ["## Training dynamics and stability", ""]
    if n_runs == 0:
        return [*lines, "No curves for these runs.", ""]
    lines += [f"From curves.parquet: I' at every evaluation of {n_runs} runs (failed runs "
              "left out). Per run (docs/schema.md): best I' and its step; final_drop = best - "
              f"final I' (NaN when the final I' is NaN); first step with I' >= {threshold:g}; "
              "collapse_count = entries into a collapsed state (a run that reached >= "
              f"{stability.GOOD_FRACTION:g} of its running best and I' >= "
              f"{stability.COLLAPSE_FLOOR:g} falls below {stability.COLLAPSE_FRACTION:g} of its "
              "running best, or to NaN); curve_auc = mean I' over all evaluations, final one "
              "included; late_oscillation = std of I' over the second half. NaN points are "
              "skipped by the means and maxima.", ""]
    compared = stability.compare_stability(table)
    if len(compared):
        lines += ["Mann-Whitney U and Cliff's delta on the runs where the measure is finite "
                  "(first_success_step: only runs that succeeded).", "",
                  _measure_table(compared), ""]
    lines += ["Shares k/n [exact Clopper-Pearson 95% CI]: success_final = final I' >= "
              f"{threshold:g}; success_any = I' >= {threshold:g} at some evaluation; "
              "success_lost = success at some evaluation, final I' below it or NaN; collapsed "
              "= collapse_count >= 1.", "",
              markdown_table(_share_pivot(stability.stability_shares(table, threshold))), ""]
    if not len(compared):
        return lines
    return lines + _learned_lines(table, n_runs) + _final_best_lines(table)


def _measure_table(compared: pd.DataFrame) -> str:
    """A compare_stability frame as Markdown, each measure labelled with its direction."""
    compared = compared.assign(measure=compared["measure"].map(_direction))
    keep = ["n_a", "n_b", "median_a", "median_b", "u_pvalue", "cliffs_delta", "better"]
    return markdown_table(_pair_frame(compared, "measure", keep))


def _learned_lines(table: pd.DataFrame, n_runs: int) -> list[str]:
    learned = stability.learned_runs(table)
    floor = stability.COLLAPSE_FLOOR
    compared = stability.compare_stability(learned, ("final_drop", "collapse_count",
                                                     "late_oscillation"))
    lines = [f"### Among the runs that learned (best I' >= {floor:g})", "",
             "A run collapsed from the start has a flat curve and so looks stable on every "
             f"measure above. These rows compare only the runs whose best I' reached {floor:g} "
             f"({len(learned)} of {n_runs}): did they keep what they learned?", ""]
    if not len(compared):
        return [*lines, "Too few models among them to compare.", ""]
    return [*lines, _measure_table(compared), ""]


def write_report(df: pd.DataFrame, out_file: str | Path, *, study: str,
                 figures_dir: str | Path | None = None, threshold: float | None = None,
                 score: str = "i_prime", selection: str | None = None,
                 curves: pd.DataFrame | None = None) -> Path:
    """Write the Markdown report of ``df`` to ``out_file`` and return its path.

    ``score`` is the main score (its figures, successes, importance, margins); the headline
    table covers every score column present. ``threshold`` overrides the success threshold.
    ``selection`` says which of the study's runs ``df`` holds, when not all of them. With
    ``curves`` (curves.parquet) a stability section compares the models' training dynamics on
    I' (with ``threshold`` as its success threshold when the main score is I').
    """
    out_file = Path(out_file)
    present = score_columns(df)
    score = score if score in present or not present else present[0]
    lines = [f"# Grid study report: {study}", "",
             f"Main score: {score_label(score)} (`{score}`, "
             f"{'higher' if higher_is_better(score) else 'lower'} is better).", ""]
    if selection:
        lines += [f"Runs: {selection}.", ""]
    lines += _size_section(df, score)
    lines += _figure_section(out_file, Path(figures_dir) if figures_dir else None)
    lines += _comparison_section(df, score)
    lines += _success_section(df, score, threshold)
    lines += _importance_section(df, score)
    lines += _budget_section(df, score)
    lines += _best_section(df, score)
    lines += _margin_section(df, score)
    lines += _scale_section(df, score, threshold)
    if curves is not None:
        stable = threshold if threshold is not None and score == "i_prime" else None
        lines += _stability_section(df, curves, stability.SUCCESS_THRESHOLD if stable is None
                                    else stable)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("\n".join(lines))
    return out_file
