"""Time to regenerate every figure and the report of a 10,000-run synthetic study.

Run from the repository root: ``PYTHONPATH=. python benchmarks/analysis_speed.py``. Prints one
line per repeat and a final ``analysis_seconds=<median of the repeats>``. ``--curves`` adds a
13-point training curve per run, and with it the training-dynamics figures and report section.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis.figures import best_runs, plot_study
from analysis.report import write_report
from tests.synthetic import make_curves, make_results, make_samples


def regenerate(df: pd.DataFrame, samples: dict, out_dir: Path,
               curves: pd.DataFrame | None = None) -> float:
    """Seconds to write all figures and the report of ``df`` into ``out_dir``."""
    start = time.perf_counter()
    plot_study(df, out_dir / "figures", study="bench", samples=samples, curves=curves)
    write_report(df, out_dir / "report.md", study="bench", figures_dir=out_dir / "figures",
                 curves=curves)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000, help="rows of the synthetic table")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median printed)")
    parser.add_argument("--curves", action="store_true", help="add training curves (13 points)")
    args = parser.parse_args()
    df = make_results(args.runs, n_seeds=3, seed=0)
    curves = make_curves(df, points=13) if args.curves else None
    samples = make_samples(list(best_runs(df)["run_id"]))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            times.append(regenerate(df, samples, Path(tmp) / str(i), curves))
            print(f"repeat {i}: {times[-1]:.2f} s ({len(df)} runs)")
    print(f"analysis_seconds={statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
