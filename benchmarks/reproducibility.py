"""How far two trainings of the same runs agree: one study's table against another's, run by run.

A sweep is deterministic on one machine (the tests compare trainers bit for bit), but another
CPU's floating-point kernels (vectorisation, fused multiply-adds, thread blocking) round
differently, and GAN training amplifies the differences. This script measures by how much, on
the runs both tables hold (same ``run_id``, both ``ok``), per model and overall:

* ``equal``: runs whose score is exactly equal;
* ``median_abs_diff`` and ``max_abs_diff`` of the score;
* ``spearman``: Spearman's rank correlation of the two scores (``scipy.stats.spearmanr``);
* ``same_classes``: the share of runs covering the same number of digit classes;

then whether the study's conclusion moves: Cliff's δ of EBGAN (and EBGAN-PT) against the GAN
in each table (``analysis.stats.compare_models``).

Run from the repository root, e.g. to compare the kept reference study before and after its
rerun on another machine::

    git show 3656c07:results/reference-cpu/runs.parquet > /tmp/before.parquet
    PYTHONPATH=. python benchmarks/reproducibility.py /tmp/before.parquet results/reference-cpu
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.stats import compare_models
from gridstudy.results import load_results


def agreement(a: pd.DataFrame, b: pd.DataFrame, score: str = "i_prime") -> pd.DataFrame:
    """Per model (and ``all``), how the ok runs both tables hold agree on ``score``."""
    keep = ["run_id", "model", score, "n_classes_covered"]
    ok_a, ok_b = a[a["status"] == "ok"][keep], b[b["status"] == "ok"][keep]
    both = ok_a.merge(ok_b, on=["run_id", "model"], suffixes=("_a", "_b"))
    rows = []
    for model, grp in [*both.groupby("model", sort=False), ("all", both)]:
        x, y = grp[f"{score}_a"].to_numpy(float), grp[f"{score}_b"].to_numpy(float)
        diff = np.abs(x - y)
        rows.append({"model": model, "runs": len(grp), "equal": int((x == y).sum()),
                     "median_abs_diff": float(np.nanmedian(diff)),
                     "max_abs_diff": float(np.nanmax(diff)),
                     "spearman": float(sps.spearmanr(x, y, nan_policy="omit").statistic),
                     "same_classes": float((grp["n_classes_covered_a"]
                                            == grp["n_classes_covered_b"]).mean())})
    return pd.DataFrame(rows)


def conclusion(table: pd.DataFrame, score: str = "i_prime") -> dict[str, float]:
    """Cliff's δ of each EBGAN variant against the GAN on ``score`` over all ok runs: the
    report's headline comparison (``analysis.stats.compare_models``, its first panel)."""
    rows = compare_models(table[table["status"] == "ok"], score)
    rows = rows[rows["panel"] == rows["panel"].iloc[0]]
    return dict(zip(rows["model_a"], rows["cliffs_delta"], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", help="a study folder or its runs.parquet")
    parser.add_argument("second", help="another training of the same runs")
    parser.add_argument("--score", default="i_prime")
    parser.add_argument("--where", default=None, help="a pandas query applied to both tables")
    args = parser.parse_args()
    a, b = load_results(args.first), load_results(args.second)
    if args.where:
        a, b = a.query(args.where), b.query(args.where)
    print(agreement(a, b, args.score).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for name, table in (("first", a), ("second", b)):
        deltas = ", ".join(f"{m} vs gan {d:+.3f}" for m, d in conclusion(table, args.score).items())
        print(f"cliffs_delta ({name}): {deltas}")


if __name__ == "__main__":
    main()
