"""A synthetic results table with the schema's columns, for analysis tests and benchmarks.

Configurations are drawn from the paper's grid (Section 4.1) with a seeded numpy Generator;
each configuration is run under a few seeds. Scores follow a simple made-up law (EBGAN better
and more stable than GAN, deep nets and lr=0.01 worse) so that the statistics have something to
find. Some runs diverge (a few of them still scored) and some fail (never scored).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

GRID: dict[str, list] = {
    "n_layers_g": [2, 3, 4, 5],
    "size_g": [400, 800, 1600, 3200],
    "n_layers_d": [2, 3, 4, 5],
    "size_d": [128, 256, 512, 1024],
    "dropout_d": [True, False],
    "optim_d": ["adam", "sgd"],
    "optim_g": ["adam", "sgd"],
    "lr": [0.01, 0.001, 0.0001],
}
MARGINS = [1.0, 2.0, 4.0, 8.0, 16.0]
SCHEDULES = ["constant", "linear", "cosine"]
MODELS = ["gan", "ebgan", "ebgan_pt"]


def _draw_configs(rng: np.random.Generator, n_configs: int) -> pd.DataFrame:
    cols = {k: rng.choice(np.array(v, dtype=object), n_configs) for k, v in GRID.items()}
    df = pd.DataFrame(cols).astype({"n_layers_g": int, "size_g": int, "n_layers_d": int,
                                    "size_d": int, "dropout_d": bool, "lr": float})
    df["model"] = rng.choice(MODELS, n_configs, p=[0.4, 0.4, 0.2])
    ebgan = df["model"] != "gan"
    df["margin"] = np.where(ebgan, rng.choice(MARGINS, n_configs), 1.0)
    df["margin_schedule"] = np.where(ebgan, rng.choice(SCHEDULES, n_configs), "constant")
    df["margin_end"] = np.where(df["margin_schedule"] == "constant", df["margin"], 0.0)
    df["pt_weight"] = np.where(df["model"] == "ebgan_pt", 0.1, 0.0)
    return df


def _true_score(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    depth = (df["n_layers_g"] + df["n_layers_d"]).to_numpy(dtype=float)
    base = np.where(df["model"] == "gan", 3.0, 5.0) + np.where(df["model"] == "ebgan_pt", 0.5, 0)
    base = base - 0.35 * (depth - 4) - 1.5 * (df["lr"].to_numpy() == 0.01)
    base = base - 0.3 * np.abs(np.log2(df["margin"].to_numpy()) - 2) * (df["model"] != "gan")
    noise = rng.normal(0.0, np.where(df["model"] == "gan", 2.0, 1.0))
    return np.clip(base + noise, 0.05, 9.5)


def make_results(n_runs: int = 600, *, n_seeds: int = 3, seed: int = 0,
                 study: str = "synthetic") -> pd.DataFrame:
    """A results table of about ``n_runs`` rows (configs x ``n_seeds``) in the schema's columns."""
    rng = np.random.default_rng(seed)
    configs = _draw_configs(rng, max(1, -(-n_runs // n_seeds)))
    df = configs.loc[configs.index.repeat(n_seeds)].reset_index(drop=True)
    df["seed"] = np.tile(np.arange(n_seeds), len(configs))
    df = df.iloc[:n_runs].copy()
    df["study"] = study
    df["run_id"] = [hashlib.sha1(f"{study}-{i}".encode()).hexdigest()[:16] for i in range(len(df))]
    df["dropout_rate"], df["z_dim"], df["batch_size"], df["steps"] = 0.5, 100, 64, 2000
    df["dataset"] = "mnist5k"
    i_prime = _true_score(df, rng)
    status = rng.choice(["ok", "diverged", "failed"], len(df), p=[0.88, 0.09, 0.03])
    unscored = (status == "failed") | ((status == "diverged") & (rng.random(len(df)) < 0.7))
    i_prime[unscored] = np.nan
    df["status"] = status
    df["error"] = np.where(status == "failed", "RuntimeError: CUDA out of memory", "")
    df["diverged_step"] = pd.array(np.where(status == "diverged", 500, pd.NA), dtype="Int64")
    df["i_prime"] = i_prime
    df["inception_score"] = 1.0 + 0.9 * i_prime
    df["frechet_distance"] = 200.0 / (1.0 + i_prime)
    df["n_classes_covered"] = np.round(np.clip(i_prime + 1, 1, 10))
    df["class_kl_uniform"] = np.log(10) / (1.0 + i_prime)
    df["precision"] = np.clip(i_prime / 10, 0, 1)
    df["recall"] = np.clip(i_prime / 12, 0, 1)
    df["prob_eps"] = 1e-6
    df["loss_d"], df["loss_g"] = rng.normal(0.5, 0.1, len(df)), rng.normal(1.0, 0.2, len(df))
    df["train_seconds"] = rng.uniform(30, 90, len(df))
    return df


def make_samples(run_ids: list[str], *, seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 sample grids (64, 28, 28), one per run id."""
    rng = np.random.default_rng(seed)
    return {rid: rng.integers(0, 256, (64, 28, 28), dtype=np.uint8) for rid in run_ids}


def _curve_level(runs: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """The I' a run's curve climbs towards: its final I', or a drawn one where that is NaN."""
    final = runs["i_prime"].to_numpy(dtype=float)
    gan = (runs["model"] == "gan").to_numpy()
    drawn = np.clip(rng.normal(np.where(gan, 2.0, 4.0), 1.0), 0.05, 9.5)
    level = np.where(np.isfinite(final), final, drawn)
    # A GAN often was better during training than at its end.
    return level * np.where(gan, rng.uniform(1.0, 1.5, len(runs)), 1.0)


def make_curves(runs_frame: pd.DataFrame, points: int = 13, seed: int = 0) -> pd.DataFrame:
    """A curves table (docs/schema.md) for the rows of ``make_results``: ``points`` evaluations
    per finished run, the last one at ``steps`` with the run's final scores.

    I' climbs towards a level with noise; GAN curves are noisier and often collapse for a few
    evaluations, EBGAN curves are steadier. Diverged runs stop at ``diverged_step`` (their final
    point has the run's I', NaN when not scored); failed runs have no curve or the first few
    points of one, without a final point.
    """
    rng = np.random.default_rng(seed)
    runs = runs_frame.reset_index(drop=True)
    steps = runs["steps"].to_numpy(np.int64)
    every = -(-steps // points)
    level = _curve_level(runs, rng)
    gan = (runs["model"] == "gan").to_numpy()
    idx = np.repeat(np.arange(len(runs)), points)
    k = np.tile(np.arange(1, points + 1), len(runs))
    step = np.minimum(k * every[idx], steps[idx])
    frac = step / steps[idx]
    noise = rng.normal(0.0, np.where(gan, 0.25, 0.06)[idx]) * level[idx]
    value = level[idx] * (1 - np.exp(-4 * frac)) + noise
    collapse_at = np.where(rng.random(len(runs)) < np.where(gan, 0.5, 0.05),
                           rng.integers(3, points, len(runs)), points + 1)
    down = (k >= collapse_at[idx]) & (k < collapse_at[idx] + rng.integers(1, 4, len(idx)))
    value = np.clip(np.where(down, 0.1 * value, value), 0.0, None)
    status = runs["status"].to_numpy()
    diverged = runs["diverged_step"].to_numpy(dtype=float, na_value=np.nan)
    end = np.where(status == "diverged", diverged, steps).astype(np.int64)
    kept = np.where(status == "failed", rng.integers(0, 4, len(runs)), points)
    keep = (step < end[idx]) & (k <= kept[idx])
    final_rows = np.flatnonzero(status != "failed")
    idx = np.r_[idx[keep], final_rows]
    curves = pd.DataFrame({"run_id": runs["run_id"].to_numpy()[idx],
                           "step": np.r_[step[keep], end[final_rows]].astype(np.int64),
                           "final": np.r_[np.zeros(keep.sum(), bool), np.ones(len(final_rows),
                                                                               bool)],
                           "i_prime": np.r_[value[keep], runs["i_prime"].to_numpy(float)[
                               final_rows]]})
    curves["n_samples"] = np.where(curves["final"], 2000, 500).astype(np.int64)
    return _fill_curve_columns(curves, runs.iloc[idx].reset_index(drop=True), rng)


def _fill_curve_columns(curves: pd.DataFrame, runs: pd.DataFrame,
                        rng: np.random.Generator) -> pd.DataFrame:
    """The columns derived from I' (as in make_results), losses, gradients and energies."""
    i_prime, n = curves["i_prime"].to_numpy(float), len(curves)
    ebgan = (runs["model"] != "gan").to_numpy()
    curves["loss_d"], curves["loss_g"] = rng.normal(0.5, 0.1, n), rng.normal(1.0, 0.2, n)
    curves["grad_norm_d"], curves["grad_norm_g"] = rng.lognormal(0, 0.5, n), rng.lognormal(0, 0.5,
                                                                                            n)
    curves["inception_score"] = 1.0 + 0.9 * i_prime
    curves["class_kl_uniform"] = np.log(10) / (1.0 + i_prime)
    curves["frechet_distance"] = 200.0 / (1.0 + i_prime)
    curves["n_classes_covered"] = np.round(np.clip(i_prime + 1, 1, 10))
    frac = curves["step"].to_numpy() / runs["steps"].to_numpy()
    decay = (runs["margin_schedule"] != "constant").to_numpy()
    margin = runs["margin"].to_numpy(float) * np.where(decay, 1 - frac, 1.0)
    curves["margin"] = np.where(ebgan, margin, np.nan)
    curves["energy_real"] = np.where(ebgan, rng.uniform(0.1, 1.0, n), np.nan)
    curves["energy_fake"] = np.where(ebgan, curves["energy_real"] + rng.uniform(0, 2, n), np.nan)
    return curves.sort_values(["run_id", "step"], kind="stable", ignore_index=True)
