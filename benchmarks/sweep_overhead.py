"""Scheduling overhead of a sweep: wall time of a study of tiny runs against the runs' own time.

Runs the same 200-run study of tiny runs twice on one local Ray instance (started once, not
timed), one Tune trial per run (``--bundle-size 1``) and bundled (12 runs per trial), both
trained one at a time (fusion off, so only scheduling differs). A run's own time is its
``train_seconds + score_seconds``; with W workers the ideal wall time is their sum / W, and

    overhead = 1 - sum(own times) / (W * wall time)

is the share of the study's worker time not spent training or scoring a run.

    python benchmarks/sweep_overhead.py [--runs 200] [--steps 100]

Prints one line per mode and a final line ``bundled_overhead=<fraction>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from gridstudy.results import load_results
from gridstudy.spaces import load_space
from gridstudy.tune import SweepOptions, run_sweep, start_ray

SPACE = """
model: gan
axes:
  lr: [{lrs}]
  optim_d: [adam, sgd]
fixed: {{size_g: 32, size_d: 16, steps: {steps}, n_eval: 500, batch_size: 32}}
seeds: [{seeds}]
"""


def measure(space_file: Path, root: Path, bundle_size: int, workers: int) -> dict[str, float]:
    space = load_space([space_file])
    options = SweepOptions(study=f"b{bundle_size}", results_dir=root, bundle_size=bundle_size,
                           fuse=False, num_cpus=workers)
    start = time.perf_counter()
    run_sweep(space, options)
    wall = time.perf_counter() - start
    frame = load_results(root / f"b{bundle_size}")
    own = float((frame["train_seconds"] + frame["score_seconds"]).sum())
    return {"runs": len(frame), "wall": wall, "own": own, "overhead": 1 - own / (workers * wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lrs = ", ".join(f"{10 ** (-2 - i / 10):.6g}" for i in range(10))
    seeds = ", ".join(str(s) for s in range(max(1, args.runs // 20)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        space_file = root / "tiny.yaml"
        space_file.write_text(SPACE.format(lrs=lrs, steps=args.steps, seeds=seeds))
        start_ray(None, args.workers)
        results = {}
        for bundle_size in (1, 12):
            r = measure(space_file, root, bundle_size, args.workers)
            results[bundle_size] = r
            print(f"bundle size {bundle_size:2d}: {r['runs']} runs, wall {r['wall']:.1f} s, "
                  f"runs' own time {r['own']:.1f} s over {args.workers} workers, "
                  f"overhead {r['overhead']:.1%}", flush=True)
    print(f"unbundled_overhead={results[1]['overhead']:.3f}")
    print(f"bundled_overhead={results[12]['overhead']:.3f}")


if __name__ == "__main__":
    main()
