"""What evaluation during training costs: a study's wall time with curves on against off.

Two measurements:

1. ``--study DIR`` (no training): from a finished study's table, the share of each run's
   worker time spent on its curve's intermediate evaluations,
   sum(curve_seconds) / sum(train_seconds + score_seconds), overall and per width and model.
   Every run records the three times, so this is the cost at the study's own settings, measured
   on every one of its runs.
2. Default: fused bundles of the reference study's own architectures, trained and scored as a
   sweep's worker does (one thread, K = 12, the real classifier, ``n_eval`` 2,000, 3,000
   steps), once with ``eval_every`` 300 (the default) and once with 0, alternating, ``--repeats``
   times; the median wall time of each. Architectures: the four corner depth pairs
   ((2, 2), (2, 5), (5, 2), (5, 5)) at both widths (100, 32) and (200, 64), GAN and EBGAN.

Prints one line per case, then ``curve_overhead=<ratio - 1>`` for the whole set.

Run from the repository root: ``python benchmarks/curve_cost.py [--repeats 3] [--steps 3000]``
(about 40 minutes on an idle 2-core machine at the defaults) or
``python benchmarks/curve_cost.py --study results/NAME``; ``--quick`` times depth (3, 3) at
width (100, 32) only, the architecture where the curve's share is largest.
"""

from __future__ import annotations

import os

# One BLAS thread, as in a sweep's worker (Ray sets OMP_NUM_THREADS to a trial's CPUs): the
# Fréchet distance's matrix products and eigenvalues run in numpy's BLAS, which reads it at import.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from gridstudy.classifier import Scorer, prepare_classifier  # noqa: E402
from gridstudy.config import RunConfig  # noqa: E402
from gridstudy.data import load_dataset  # noqa: E402
from gridstudy.fused import train_fused  # noqa: E402
from gridstudy.results import load_results  # noqa: E402

WIDTHS = ({"size_g": 100, "size_d": 32}, {"size_g": 200, "size_d": 64})
CORNERS = ((2, 2), (2, 5), (5, 2), (5, 5))


def study_share(study: str) -> None:
    """Curve time as a share of each run's training plus scoring time, from a study's table."""
    runs = load_results(study)
    runs = runs[runs["status"] != "failed"]
    base = runs["train_seconds"] + runs["score_seconds"]
    share = runs["curve_seconds"].sum() / base.sum()
    by = runs.assign(base=base).groupby(["model", "size_g"])[["curve_seconds", "base"]].sum()
    for (model, size_g), row in by.iterrows():
        ratio = row["curve_seconds"] / row["base"]
        print(f"{model:<9} sizeG {size_g:<4} curves {row['curve_seconds']:8.0f} s of "
              f"{row['base']:8.0f} s training and scoring: {ratio:6.1%}")
    print(f"{len(runs)} runs, median eval_every {runs['eval_every'].median():g}")
    print(f"curve_overhead={share:.3f}")


def bundle(arch: dict, model: str, steps: int, eval_every: int) -> list[RunConfig]:
    """12 runs of one architecture: the GAN's optimizer grid, or EBGAN's setting x 12 seeds."""
    base = {**arch, "model": model, "steps": steps, "n_eval": 2000, "eval_every": eval_every}
    if model == "gan":
        settings = itertools.product(("adam", "sgd"), ("adam", "sgd"), (1e-2, 1e-3, 1e-4))
        return [RunConfig(**base, optim_d=d, optim_g=g, lr=lr) for d, g, lr in settings]
    return [RunConfig(**base, seed=s) for s in range(12)]


def timed(runs: list[RunConfig], data: torch.Tensor, scorer: Scorer) -> float:
    start = time.perf_counter()
    train_fused(runs, data, scorer)
    return time.perf_counter() - start


def measure(steps: int, repeats: int, quick: bool = False) -> None:
    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    scorer = Scorer(prepare_classifier("mnist5k", data=data), data.test_x)
    total_on = total_off = 0.0
    widths, corners = (WIDTHS[:1], ((3, 3),)) if quick else (WIDTHS, CORNERS)
    for arch, (n_g, n_d), model in itertools.product(widths, corners, ("gan", "ebgan")):
        shape = {**arch, "n_layers_g": n_g, "n_layers_d": n_d}
        on, off = bundle(shape, model, steps, 300), bundle(shape, model, steps, 0)
        timed([c.replace(steps=2) for c in on[:2]], data.train_x, scorer)  # warm-up
        t_on, t_off = [], []
        for _ in range(repeats):
            t_on.append(timed(on, data.train_x, scorer))
            t_off.append(timed(off, data.train_x, scorer))
        m_on, m_off = statistics.median(t_on), statistics.median(t_off)
        total_on, total_off = total_on + m_on, total_off + m_off
        print(f"{model:<6} ({n_g}, {arch['size_g']}, {n_d}, {arch['size_d']}): curves on "
              f"{m_on:6.1f} s, off {m_off:6.1f} s, overhead {m_on / m_off - 1:6.1%}", flush=True)
    print(f"curve_overhead={total_on / total_off - 1:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=None, help="read the cost off a finished study")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="only depth (3, 3) at width (100, 32), the cheapest runs")
    args = parser.parse_args()
    if args.study:
        study_share(args.study)
    else:
        measure(args.steps, args.repeats, args.quick)


if __name__ == "__main__":
    main()
