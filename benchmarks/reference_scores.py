"""Reference values of every score, the classifier's accuracy, and what each score costs.

Needs the official t10k files (and optionally a larger training set) in standard IDX files:

    python benchmarks/reference_scores.py --data-dir ../shared/data/mnist-subset [--steps 2000]

Prints, as Markdown tables:
1. the classifier's accuracy on the t10k digits when trained on ``mnist5k`` (the default, 4,000
   training digits) and on the training files in ``--data-dir``;
2. the scores (mnist5k classifier, the mnist5k test split as the real reference, as in a run)
   of: the real t10k digits, a single class (7), two classes (0 and 1), uniform noise, and a
   GAN and an EBGAN trained for ``--steps`` steps on mnist5k;
3. the time each score adds to a run for 5,000 samples (median of 5).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from analysis import scores as S
from analysis.schema import compute_scores
from gridstudy.classifier import Scorer, evaluate_accuracy, prepare_classifier
from gridstudy.config import RunConfig
from gridstudy.data import load_dataset, read_idx_split
from gridstudy.train import train_run

ROWS = ("i_prime", "inception_score", "n_classes_covered", "class_kl_uniform",
        "frechet_distance", "precision", "recall")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def fmt(value: float) -> str:
    return f"{value:.3f}" if isinstance(value, float) and abs(value) < 1000 else f"{value:.4g}"


def timed(fn, repeats: int = 5) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    t10k_x, t10k_y = read_idx_split(args.data_dir, "test")
    mnist5k = load_dataset("mnist5k")
    small = prepare_classifier("mnist5k", data=mnist5k, verbose=False)
    local = load_dataset("mnist", args.data_dir)
    large = prepare_classifier("mnist", str(args.data_dir), data=local)
    print("## Classifier accuracy on the official t10k digits\n")
    print(table(["trained on", "training digits", "t10k accuracy"], [
        ["mnist5k", f"{len(mnist5k.train_y):,}", f"{evaluate_accuracy(small, t10k_x, t10k_y):.4f}"],
        [str(args.data_dir), f"{len(local.train_y):,}",
         f"{evaluate_accuracy(large, t10k_x, t10k_y):.4f}"]]))

    scorer = Scorer(small, mnist5k.test_x)
    sets = {
        "real t10k (5,000)": t10k_x[:5000],
        "one class (7)": t10k_x[t10k_y == 7],
        "two classes (0, 1)": t10k_x[(t10k_y == 0) | (t10k_y == 1)],
        "uniform noise": torch.rand(5000, 784, generator=torch.Generator().manual_seed(0)) * 2 - 1,
    }
    rows = [[name, *(fmt(scorer.score(x)[k]) for k in ROWS)] for name, x in sets.items()]
    for model, extra in (("gan", {"lr": 1e-4}), ("ebgan", {"lr": 1e-3})):
        c = RunConfig(model=model, n_layers_g=3, size_g=400, n_layers_d=3, size_d=128,
                      steps=args.steps, **extra)
        row = train_run(c, mnist5k.train_x, scorer).row
        rows.append([f"{model.upper()} 3/400/3/128 lr {c.lr:g}, {args.steps} steps",
                     *(fmt(row[k]) for k in ROWS)])
    print(f"\n## Scores (classifier trained on mnist5k, PROB_EPS {S.PROB_EPS:g})\n")
    print(table(["samples", *ROWS], rows))

    probs, feats = small.predict(t10k_x[:5000])
    real = scorer.real_features
    costs = {
        "classifier pass (5,000 samples)": timed(lambda: small.predict(t10k_x[:5000])),
        "i_prime": timed(lambda: S.i_prime(probs)),
        "inception_score": timed(lambda: S.inception_score(probs)),
        "class coverage (both)": timed(lambda: S.class_coverage(probs)),
        "frechet_distance": timed(lambda: S.frechet_distance(feats, real)),
        "precision + recall": timed(lambda: S.precision_recall(real, feats)),
        "all scores (compute_scores)": timed(lambda: compute_scores(probs, feats, real)),
    }
    print("\n## Time each score adds to a run (5,000 samples, median of 5, 2 threads)\n")
    print(table(["step", "seconds"], [[k, f"{v:.3f}"] for k, v in costs.items()]))
    total = costs["classifier pass (5,000 samples)"] + costs["all scores (compute_scores)"]
    print(f"\nscoring_seconds_per_run={total:.3f}")
    np.set_printoptions(precision=3)


if __name__ == "__main__":
    main()
