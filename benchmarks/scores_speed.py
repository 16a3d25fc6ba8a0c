"""How long scoring one run takes: ``compute_scores`` on 5,000 generated samples.

Random 512-dim features stand in for the classifier's penultimate layer and Dirichlet rows for
its (10-class) probabilities; the cost depends only on the shapes. Cases: 5,000 fake against
1,000 and against 10,000 real feature vectors. Prints the median of 5 repeats per case (after
one untimed warm-up call) and, last, ``scores_seconds=<median for 5,000 x 10,000>``.

Run: ``python benchmarks/scores_speed.py`` from the repository root.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from analysis.schema import compute_scores

N_FAKE = 5000  # generated samples scored per run
N_REAL = (1000, 10000)  # reference sets: a small one and the full t10k test set
FEATURE_DIM = 512  # width of the classifier's penultimate layer
N_CLASSES = 10
REPEATS = 5


def time_case(n_real: int, rng: np.random.Generator) -> float:
    """Median wall time of compute_scores for N_FAKE fake against n_real real samples."""
    probs = rng.dirichlet(np.full(N_CLASSES, 0.1), size=N_FAKE)
    fake = rng.normal(size=(N_FAKE, FEATURE_DIM)).astype(np.float32)
    real = rng.normal(size=(n_real, FEATURE_DIM)).astype(np.float32)
    compute_scores(probs, fake, real)  # warm-up: BLAS threads, page faults
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        compute_scores(probs, fake, real)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    medians = {}
    for n_real in N_REAL:
        medians[n_real] = time_case(n_real, rng)
        print(f"compute_scores fake={N_FAKE} real={n_real} dim={FEATURE_DIM}: "
              f"median {medians[n_real]:.3f} s over {REPEATS} repeats")
    print(f"scores_seconds={medians[max(N_REAL)]:.3f}")


if __name__ == "__main__":
    main()
