"""The numbers behind ``gridstudy explore``: one self-contained HTML page per study.

``explore_info`` computes what the page is given from the results table (the runs it carries,
filters, shared histogram bins, the report's headline statistics, the embedded samples and
training curves) as an :class:`ExploreInfo` that tests check with pandas; ``analysis.
explore_page`` draws it, and its script (``analysis/explore.js``) filters and counts the runs in
the browser, which the browser tests check against pandas. ``explore_page.write_explorer``
loads a study folder, computes, draws and writes the file.

Policies the issue left open:

* **Filters.** ``model``, every hyperparameter that varies (``varying_axes``) and ``seed``.
  Columns with at most ``MAX_CHECKBOX_LEVELS`` levels (or not numeric) get one checkbox per
  level, a missing value being a level of its own; numeric columns with more levels get a
  range, and their missing values always pass it.
* **Samples.** Each model's best run first, then each model's second best, and so on (by the
  main score, unscored runs last), each run whose samples were kept is embedded as an 8x8 PNG
  until the samples take ``SAMPLE_BUDGET`` bytes of the page. The page says which runs had
  samples kept but not embedded.
* **Training curves.** At most ``CURVE_POINTS`` points per run (first and last step kept,
  evenly thinned in between), values to 4 significant digits.
"""

from __future__ import annotations

import base64
import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis import stats
from analysis.figures import shared_edges
from analysis.table import (
    higher_is_better,
    models_present,
    score_columns,
    status_counts,
    varying_axes,
)
from gridstudy import results
from gridstudy.errors import UserError
from gridstudy.images import encode_png, tile

MAX_CHECKBOX_LEVELS = 12  # more numeric levels than this: a range instead of checkboxes
SAMPLE_BUDGET = 8_000_000  # bytes of PNG data URIs in the page: ~150 runs' grids of digits
CURVE_POINTS = 25  # most points of one run's training curve in the page
# The columns of curves.parquet (analysis.schema.CURVE_COLUMNS) that the page plots.
PAGE_CURVE_COLUMNS: tuple[str, ...] = ("step", "i_prime", "n_classes_covered", "loss_d",
                                       "loss_g")
HISTOGRAM_BINS = 25
CURVES_FILE = results.CURVES
_SAMPLE_CHUNK = 64  # runs whose samples are read from disk at once


class FilterSpec(NamedTuple):
    """One filter control: checkboxes for ``levels``, or a range from ``low`` to ``high``."""

    column: str
    kind: str  # "levels" or "range"
    levels: list[Any]  # the column's distinct values in display order (levels kind; else [])
    low: float  # smallest finite value (range kind; NaN otherwise)
    high: float  # largest finite value (range kind; NaN otherwise)


class Headline(NamedTuple):
    """The headline statistics of ``report.md``, from ``analysis.stats``."""

    counts: pd.DataFrame  # per model: runs, ok, diverged, failed, scored, not_scored
    comparison: pd.DataFrame  # stats.headline_table: EBGAN(-PT) vs GAN under every score
    panels: pd.DataFrame  # stats.compare_models: per Figure 2 panel, main score
    success: pd.DataFrame  # stats.success_rates: share of runs beating the threshold


class SampleInfo(NamedTuple):
    """Which runs' samples the page shows."""

    images: dict[str, str]  # run_id -> PNG data URI of its 8x8 grid
    kept: set[str]  # every run whose samples the study kept (embedded or not)
    budget: int  # SAMPLE_BUDGET used


class ExploreInfo(NamedTuple):
    """Everything the explorer page shows, before drawing."""

    study: str
    runs: pd.DataFrame  # the page's rows: run_id, model, seed, status, axes and scores
    score: str  # the score selected when the page opens
    scores: list[str]  # every score column with a finite value (the registry's order)
    edges: dict[str, np.ndarray]  # shared histogram bin edges per score
    filters: list[FilterSpec]
    axes: list[str]  # the varying hyperparameters (table, run description)
    parallel: list[str]  # the parallel coordinates' axes before the score: model (if it
    # varies) and the varying hyperparameters
    headline: Headline
    samples: SampleInfo
    curves: pd.DataFrame | None  # PAGE_CURVE_COLUMNS + run_id, thinned; None: no curves file


def filter_columns(df: pd.DataFrame) -> list[str]:
    """The filtered columns: model, the varying hyperparameters, seed."""
    return [c for c in ("model", *varying_axes(df), "seed") if c in df.columns]


def _is_range(values: pd.Series) -> bool:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return numeric and values.nunique(dropna=True) > MAX_CHECKBOX_LEVELS


def _levels(df: pd.DataFrame, column: str) -> list[Any]:
    if column == "model":
        return models_present(df) + ([None] if df["model"].isna().any() else [])
    values = df[column]
    present = values.dropna().unique().tolist()
    with contextlib.suppress(TypeError):  # mixed types keep the order they first appear in
        present = sorted(present)
    return present + ([None] if values.isna().any() else [])


def filter_specs(df: pd.DataFrame) -> list[FilterSpec]:
    """One :class:`FilterSpec` per filtered column (see the module docstring)."""
    specs = []
    for column in filter_columns(df):
        values = df[column]
        if _is_range(values):
            finite = values.to_numpy(dtype=float)
            finite = finite[np.isfinite(finite)]
            specs.append(FilterSpec(column, "range", [], float(finite.min()),
                                    float(finite.max())))
        else:
            specs.append(FilterSpec(column, "levels", _levels(df, column), math.nan, math.nan))
    return specs


def level_codes(values: pd.Series, levels: list[Any]) -> np.ndarray:
    """Each value's position in ``levels`` (None in ``levels`` stands for a missing value)."""
    codes = np.full(len(values), -1, dtype=np.int64)
    for i, level in enumerate(levels):
        hit = values.isna() if level is None else values == level
        codes[hit.to_numpy(dtype=bool)] = i
    return codes


def headline(df: pd.DataFrame, score: str) -> Headline:
    """The report's headline numbers for the page (all runs on the page)."""
    return Headline(status_counts(df, score), stats.headline_table(df),
                    stats.compare_models(df, score), stats.success_rates(df, score))


def sample_order(df: pd.DataFrame, score: str, higher: bool) -> list[str]:
    """Run ids, each model's best first, then each model's second best, ...; unscored last."""
    value = df[score].to_numpy(dtype=float)
    key = pd.Series(np.where(np.isfinite(value), -value if higher else value, np.inf),
                    index=df.index)
    rank = key.groupby(df["model"]).rank(method="first")
    order = {m: i for i, m in enumerate(models_present(df))}
    frame = pd.DataFrame({"rank": rank, "unscored": ~np.isfinite(value),
                          "model": df["model"].map(order), "run_id": df["run_id"]})
    frame = frame.sort_values(["unscored", "rank", "model"], kind="stable")
    return frame["run_id"].tolist()


def data_uri(samples: np.ndarray) -> str:
    """A run's kept samples (n, 28, 28) as one PNG grid, 8 per row, in a data URI."""
    png = encode_png(tile(np.asarray(samples, dtype=np.uint8), columns=8))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def embed_samples(order: list[str], kept: set[str],
                  load: Callable[[list[str]], dict[str, np.ndarray]],
                  budget: int = SAMPLE_BUDGET) -> SampleInfo:
    """Data URIs of the kept samples, runs in ``order``, until they would pass ``budget``."""
    wanted = [rid for rid in order if rid in kept]
    images: dict[str, str] = {}
    used = 0
    for start in range(0, len(wanted), _SAMPLE_CHUNK):
        chunk = wanted[start:start + _SAMPLE_CHUNK]
        loaded = load(chunk)
        for rid in chunk:
            if rid not in loaded:
                continue
            uri = data_uri(loaded[rid])
            if used + len(uri) > budget:
                return SampleInfo(images, kept, budget)
            images[rid] = uri
            used += len(uri)
    return SampleInfo(images, kept, budget)


def thin_curves(curves: pd.DataFrame, run_ids: pd.Series,
                points: int = CURVE_POINTS) -> pd.DataFrame:
    """The curves of ``run_ids`` in PAGE_CURVE_COLUMNS, at most ``points`` steps per run."""
    missing = [c for c in ("run_id", *PAGE_CURVE_COLUMNS) if c not in curves.columns]
    if missing:
        raise UserError(f"{CURVES_FILE}: missing columns {', '.join(missing)}")
    frame = curves.loc[curves["run_id"].isin(set(run_ids)), ["run_id", *PAGE_CURVE_COLUMNS]]
    frame = frame.sort_values(["run_id", "step"], kind="stable").reset_index(drop=True)
    rank = frame.groupby("run_id").cumcount().to_numpy()
    size = frame.groupby("run_id")["step"].transform("size").to_numpy()
    spacing = np.maximum(size - 1, 1) / max(points - 2, 1)
    bucket = np.floor(rank / spacing)
    previous = np.floor(np.maximum(rank - 1, 0) / spacing)
    keep = (size <= points) | (rank == 0) | (rank == size - 1) | (bucket != previous)
    return frame[keep].reset_index(drop=True)


def load_curves(study_dir: Path) -> pd.DataFrame | None:
    """The study's training curves (one row per run and step), or None when it has none."""
    return results.load_curves(study_dir) if (study_dir / CURVES_FILE).exists() else None


def page_columns(df: pd.DataFrame, scores: list[str]) -> list[str]:
    """The run columns the page carries: identity, status, filtered columns, scores."""
    first = ["run_id", "model", "seed", "status"]
    cols = [*first, *[c for c in filter_columns(df) if c not in first], *scores]
    return [c for c in cols if c in df.columns]


def check_score(df: pd.DataFrame, score: str, study: str) -> list[str]:
    """The study's scores, after checking it has runs and that ``score`` is one of them."""
    if df.empty:
        raise UserError(f"study {study}: no runs to explore")
    scores = score_columns(df)
    if not scores:
        raise UserError(f"study {study}: no score column holds a finite value; nothing to plot")
    if score not in scores:
        raise UserError(f"--score {score}: not a score of this study (one of "
                        f"{', '.join(scores)})")
    return scores


def explore_info(df: pd.DataFrame, *, study: str, score: str = "i_prime",
                 samples: SampleInfo | None = None,
                 curves: pd.DataFrame | None = None) -> ExploreInfo:
    """Compute the explorer page's contents from a results table (see the module docstring)."""
    scores = check_score(df, score, study)
    runs = df[page_columns(df, scores)].reset_index(drop=True)
    edges = {s: shared_edges(runs[s].to_numpy(dtype=float), HISTOGRAM_BINS) for s in scores}
    samples = samples or SampleInfo({}, set(), SAMPLE_BUDGET)
    thinned = None if curves is None else thin_curves(curves, runs["run_id"])
    axes = [c for c in varying_axes(runs) if c != "model"]
    parallel = (["model"] if runs["model"].nunique(dropna=False) > 1 else []) + axes
    return ExploreInfo(study, runs, score, scores, edges, filter_specs(runs), axes, parallel,
                       headline(runs, score), samples, thinned)


def study_samples(study_dir: Path, df: pd.DataFrame, score: str) -> SampleInfo:
    """The samples the page embeds for a study folder (policy: module docstring)."""
    kept = results.sample_run_ids(study_dir) & set(df["run_id"])
    order = sample_order(df, score, higher_is_better(score))
    return embed_samples(order, kept, lambda ids: results.load_samples(study_dir, ids))
