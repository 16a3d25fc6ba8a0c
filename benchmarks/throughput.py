"""Runs per hour of fused training (``train_fused``) against one run at a time (``train_run``).

Measured in one process, torch on one thread (a sweep runs one single-threaded worker per core),
with K = 12 runs per fused group: the 12 optimizer settings of the paper's grid for one
architecture (optimD x optimG x lr in {1e-2, 1e-3, 1e-4}), GAN, seed 0. Each case is timed
``--repeats`` times, fused and one at a time alternating, after an untimed warm-up; the median is
reported. Runs are sampled (64 images from the fixed noise) but not scored: a stub scorer stands
in for the classifier, whose cost is the same per run either way.

Cases:
1. the paper's smallest architecture (nLayerG 2, sizeG 400, nLayerD 2, sizeD 128);
2. the width-scaled grid of the reference study (sizeG in {50, 100, 200, 400}, sizeD in
   {16, 32, 64, 128}, nLayerG and nLayerD in {2, ..., 5}): a stratified sample, every layer-count
   pair at the smallest (50, 16) and largest (400, 128) widths. Each sampled architecture stands
   for the 8 of the full grid's 16 width pairs nearest it, so the study-level figure is total
   runs over total time with equal weights.

Each line also gives the roofline: the share of a plain 1-thread float32 matmul's GFLOP/s that
one-at-a-time and fused training reach (FLOPs from ``count_flops_per_step``), and the bound on
any fusion's speedup, one-at-a-time time over the time the same FLOPs take at matmul speed.

Prints one line per case, then ``fused_speedup_bound=<ratio>`` and, last,
``fused_speedup=<ratio>`` for case 2.

Run: ``python benchmarks/throughput.py`` from the repository root (about 15 minutes on a busy
2-core machine); ``--quick`` keeps the four corner layer-count pairs of case 2.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from step_time import matmul_gflops  # benchmarks/ is on sys.path when run as a script

from gridstudy.config import RunConfig
from gridstudy.data import load_dataset
from gridstudy.fused import train_fused
from gridstudy.models import count_flops_per_step
from gridstudy.train import GRID_SAMPLES, train_run

PAPER_SMALLEST = {"n_layers_g": 2, "size_g": 400, "n_layers_d": 2, "size_d": 128}
GRID_WIDTHS = ({"size_g": 50, "size_d": 16}, {"size_g": 400, "size_d": 128})
LAYERS = (2, 3, 4, 5)


class NoScores:
    """Stands in for the classifier: scoring costs the same per run, fused or not."""

    name = "none"

    def score(self, samples: torch.Tensor, names: object = None) -> dict[str, float]:
        return {}


def bundle(arch: dict[str, int], steps: int) -> list[RunConfig]:
    """The grid's 12 optimizer settings for one architecture."""
    settings = itertools.product(("adam", "sgd"), ("adam", "sgd"), (1e-2, 1e-3, 1e-4))
    # eval_every 0: this measures training alone (benchmarks/curve_cost.py measures the curves)
    return [RunConfig(**arch, optim_d=d, optim_g=g, lr=lr, steps=steps, n_eval=GRID_SAMPLES,
                      eval_every=0)
            for d, g, lr in settings]


def time_case(runs: list[RunConfig], data: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds for the whole bundle: (one at a time, fused)."""
    scorer = NoScores()
    warm = [c.replace(steps=2) for c in runs]
    train_fused(warm, data, scorer)
    train_run(warm[0], data, scorer)
    solo, fused = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for c in runs:
            train_run(c, data, scorer)
        solo.append(time.perf_counter() - start)
        start = time.perf_counter()
        train_fused(runs, data, scorer)
        fused.append(time.perf_counter() - start)
    return statistics.median(solo), statistics.median(fused)


def bundle_flops(runs: list[RunConfig]) -> float:
    return float(sum(count_flops_per_step(c) * c.steps for c in runs))


def report(name: str, n_runs: int, solo: float, fused: float, flops: float, peak: float) -> None:
    at_peak = flops / (peak * 1e9)
    print(f"{name:<34} one-at-a-time {3600 * n_runs / solo:8.0f} runs/h   "
          f"fused {3600 * n_runs / fused:8.0f} runs/h   speedup {solo / fused:5.2f}x   "
          f"of matmul: {at_peak / solo:4.0%} / {at_peak / fused:4.0%}   "
          f"bound {solo / at_peak:5.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="timings per case (median)")
    parser.add_argument("--quick", action="store_true", help="only layer counts 2 and 5")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist5k").train_x
    peak = matmul_gflops(threads=1)
    print(f"torch {torch.__version__}, 1 thread, K=12, {args.steps} steps, "
          f"median of {args.repeats}; sampling timed, scoring not; "
          f"matmul 1024x1024 float32 {peak:.1f} GFLOP/s")
    runs = bundle(PAPER_SMALLEST, args.steps)
    solo, fused = time_case(runs, data, args.repeats)
    report("paper smallest (2, 400, 2, 128)", 12, solo, fused, bundle_flops(runs), peak)
    layers = (2, 5) if args.quick else LAYERS
    total_solo = total_fused = total_flops = 0.0
    for n_g, n_d, widths in itertools.product(layers, layers, GRID_WIDTHS):
        runs = bundle({"n_layers_g": n_g, "n_layers_d": n_d, **widths}, args.steps)
        solo, fused = time_case(runs, data, args.repeats)
        report(f"grid ({n_g}, {widths['size_g']}, {n_d}, {widths['size_d']})", 12, solo, fused,
               bundle_flops(runs), peak)
        total_solo, total_fused = total_solo + solo, total_fused + fused
        total_flops += bundle_flops(runs)
    n_runs = 12 * len(layers) ** 2 * len(GRID_WIDTHS)
    report("grid, study level (equal weights)", n_runs, total_solo, total_fused, total_flops, peak)
    print(f"fused_speedup_bound={total_solo * peak * 1e9 / total_flops:.2f}")
    print(f"fused_speedup={total_solo / total_fused:.2f}")


if __name__ == "__main__":
    main()
