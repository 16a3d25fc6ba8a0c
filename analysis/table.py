"""The results table as analysis sees it: loading, names, labels and row filters.

Every other analysis module goes through here for three things: which columns are
hyperparameters (and their paper names: ``n_layers_g`` -> nLayerG, from the run config's one
mapping), which columns are scores (their labels and whether higher is better), both from
:mod:`analysis.schema`, and which rows a figure panel keeps.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from analysis.schema import PAPER_NAMES, SCORE_NAMES, SCORES

# Config columns that define a configuration; seed is left out so seeds of one config pool.
CONFIG_COLUMNS: tuple[str, ...] = ("model", *PAPER_NAMES)
MODEL_LABELS: dict[str, str] = {"gan": "GAN", "ebgan": "EBGAN", "ebgan_pt": "EBGAN-PT"}
MODEL_ORDER: tuple[str, ...] = ("gan", "ebgan", "ebgan_pt")
MODEL_COLORS: dict[str, str] = {"gan": "tab:red", "ebgan": "tab:blue", "ebgan_pt": "tab:green"}
EBGAN_MODELS: tuple[str, ...] = ("ebgan", "ebgan_pt")

def score_label(score: str) -> str:
    """The label a figure or table shows for a score column (``i_prime`` -> I')."""
    return SCORES[score].label if score in SCORES else score


def higher_is_better(score: str) -> bool:
    """Whether larger values of ``score`` mean a better generator (unknown scores: True)."""
    return SCORES[score].higher_is_better if score in SCORES else True


def axis_label(column: str) -> str:
    """The paper's name for a hyperparameter column (unknown columns keep their name)."""
    return PAPER_NAMES.get(column, column)


def model_label(model: str) -> str:
    """Display name of a model (``ebgan_pt`` -> EBGAN-PT)."""
    return MODEL_LABELS.get(model, model)


def models_present(df: pd.DataFrame) -> list[str]:
    """Models in the table, paper order first, then any others alphabetically."""
    present = set(df["model"].dropna().unique())
    return [m for m in MODEL_ORDER if m in present] + sorted(present - set(MODEL_ORDER))


def score_columns(df: pd.DataFrame) -> list[str]:
    """Known score columns of ``df`` that hold at least one finite value."""
    out = []
    for name in SCORE_NAMES:
        numeric = name in df.columns and pd.api.types.is_numeric_dtype(df[name])
        if numeric and np.isfinite(df[name].to_numpy(dtype=float)).any():
            out.append(name)
    return out


def is_scored(df: pd.DataFrame, score: str) -> pd.Series:
    """Boolean mask of rows whose ``score`` is finite (diverged runs included when scored)."""
    return pd.Series(np.isfinite(df[score].to_numpy(dtype=float)), index=df.index)


def config_columns(df: pd.DataFrame) -> list[str]:
    """The config columns present in ``df`` (everything that defines a run except its seed)."""
    return [c for c in CONFIG_COLUMNS if c in df.columns]


def varying_axes(df: pd.DataFrame, candidates: Iterable[str] | None = None) -> list[str]:
    """Hyperparameter columns with more than one level among the rows of ``df``."""
    cols = [c for c in (candidates or PAPER_NAMES) if c in df.columns]
    return [c for c in cols if df[c].nunique(dropna=False) > 1]


def config_ids(df: pd.DataFrame) -> pd.Series:
    """An integer id per configuration (same config, different seed -> same id)."""
    cols = config_columns(df)
    return df.groupby(cols, dropna=False, sort=False).ngroup()


def depth_mask(df: pd.DataFrame, max_layers: int | None) -> pd.Series:
    """Rows with ``n_layers_g <= max_layers`` and ``n_layers_d <= max_layers`` (None: all)."""
    if max_layers is None:
        return pd.Series(True, index=df.index)
    return (df["n_layers_g"] <= max_layers) & (df["n_layers_d"] <= max_layers)


# Figure 2 panels: (key, title, depth limit on both nets).
DEPTH_PANELS: tuple[tuple[str, str, int | None], ...] = (
    ("all", "all runs", None),
    ("depth<=4", "nLayerG <= 4 and nLayerD <= 4", 4),
    ("depth<=3", "nLayerG <= 3 and nLayerD <= 3", 3),
)


def depth_panels(df: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Figure 2 panels as (title, row mask)."""
    return [(title, depth_mask(df, limit)) for _, title, limit in DEPTH_PANELS]


OPTIM_AXES: tuple[str, ...] = ("optim_d", "optim_g", "lr")


def optim_panels(df: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Figure 3 panels: one (title, mask) per (optimD, optimG, lr) present, lr descending."""
    axes = [c for c in OPTIM_AXES if c in df.columns]
    combos = df[axes].drop_duplicates().sort_values(axes, ascending=[True] * (len(axes) - 1) + [
        False])
    panels = []
    for combo in combos.itertuples(index=False):
        mask = pd.Series(True, index=df.index)
        for col, value in zip(axes, combo, strict=True):
            mask &= df[col] == value
        title = ", ".join(f"{axis_label(c)}={v:g}" if isinstance(v, float) else
                          f"{axis_label(c)}={v}" for c, v in zip(axes, combo, strict=True))
        panels.append((title, mask))
    return panels


def describe_config(row: pd.Series, columns: Iterable[str]) -> str:
    """One-line configuration in paper names, e.g. ``nLayerG=3, sizeG=800, lr=0.001``."""
    parts = []
    for col in columns:
        value = row[col]
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(f"{axis_label(col)}={text}")
    return ", ".join(parts)


def status_counts(df: pd.DataFrame, score: str) -> pd.DataFrame:
    """Per model: runs, ok/diverged/failed, scored and not scored (NaN score) counts."""
    scored = is_scored(df, score)
    rows = []
    for model in models_present(df):
        sel = df["model"] == model
        status = df.loc[sel, "status"] if "status" in df else pd.Series("ok", index=df.index[sel])
        rows.append({
            "model": model,
            "runs": int(sel.sum()),
            "ok": int((status == "ok").sum()),
            "diverged": int((status == "diverged").sum()),
            "failed": int((status == "failed").sum()),
            "scored": int(scored[sel].sum()),
            "not_scored": int((~scored[sel]).sum()),
        })
    return pd.DataFrame(rows)


def top_configurations(df: pd.DataFrame, score: str, k: int = 5,
                       higher: bool = True) -> pd.DataFrame:
    """The ``k`` best scored runs per model (best first), with run_id, seed and varying axes."""
    axes = varying_axes(df)
    keep = [c for c in ("model", "run_id", "seed", "status", score, *axes) if c in df.columns]
    scored = df.loc[is_scored(df, score), keep]
    ranked = scored.sort_values(score, ascending=not higher, kind="stable")
    out = ranked.groupby("model", sort=False).head(k)
    order = {m: i for i, m in enumerate(models_present(df))}
    return out.sort_values("model", key=lambda s: s.map(order), kind="stable").reset_index(
        drop=True)
