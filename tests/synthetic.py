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


CURVE_SCORES: tuple[str, ...] = ("i_prime", "inception_score", "n_classes_covered",
                                 "class_kl_uniform", "frechet_distance")


def make_curves(runs: pd.DataFrame, points: int = 13, seed: int = 0) -> pd.DataFrame:
    """Training curves in the schema of curves.parquet: one row per (run_id, step).

    Each run is evaluated at ``points`` evenly spaced steps from 0 to its ``steps``. Its scores
    rise from a collapsed start towards its final score in ``runs``; a run without a final
    score (failed, or diverged before scoring) has NaN scores from its second half on.
    """
    rng = np.random.default_rng(seed)
    n = len(runs)
    frac = np.tile(np.linspace(0.0, 1.0, points), n)
    row = np.repeat(np.arange(n), points)
    final = runs["i_prime"].to_numpy(dtype=float)[row]
    lost = ~np.isfinite(final) & (frac > 0.5)
    i_prime = np.where(np.isfinite(final), final, 1.0) * (1 - np.exp(-4 * frac))
    i_prime = np.clip(i_prime + rng.normal(0, 0.05, len(row)), 0, None)
    i_prime[lost] = np.nan
    margin = runs["margin"].to_numpy(dtype=float)[row] if "margin" in runs else np.ones(len(row))
    frame = pd.DataFrame({
        "run_id": runs["run_id"].to_numpy()[row],
        "step": np.round(frac * runs["steps"].to_numpy()[row]).astype(np.int64),
        "loss_d": 0.5 + 0.5 * np.exp(-3 * frac) + rng.normal(0, 0.03, len(row)),
        "loss_g": 1.0 + 0.3 * frac + rng.normal(0, 0.05, len(row)),
        "grad_norm_d": rng.gamma(2.0, 0.5, len(row)),
        "grad_norm_g": rng.gamma(2.0, 0.5, len(row)),
        "i_prime": i_prime,
        "inception_score": 1.0 + 0.9 * i_prime,
        "n_classes_covered": np.round(np.clip(i_prime + 1, 1, 10)),
        "class_kl_uniform": np.log(10) / (1.0 + i_prime),
        "frechet_distance": 200.0 / (1.0 + i_prime),
        "margin": margin,
        "energy_real": rng.normal(0.2, 0.05, len(row)),
        "energy_fake": rng.normal(1.0, 0.2, len(row)),
        "n_samples": 1000,
    })
    for column in ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g", "energy_real",
                   "energy_fake"):
        frame.loc[lost, column] = np.nan
    return frame
