"""What snapshots of training in progress cost: build and save against the training between them.

On the reference study's architecture (search_spaces/reference_cpu.yaml: GAN, nLayerG 3, sizeG
200, nLayerD 3, sizeD 64, batch 64), a fused bundle of 12 runs (the paper's 12 optimizer
settings, optimD x optimG x lr) and the solo equivalent (one run, Adam/Adam lr 1e-3) train with
the default policy, ``PeriodicSnapshots(seconds=SNAPSHOT_SECONDS)``, saving each snapshot with
``save_snapshot`` into a folder on disk, as a trial writes its checkpoint. For each snapshot it
times the training since the previous one (the interval) and the snapshot's cost: from the step
the policy finds it due until the file is in place (building the state, ``torch.save``, rename).
Each case stops after ``--repeats`` snapshots and reports the medians and the median ratio of
cost to interval; the target is at most 2%. Then it times loading the last snapshot and
resuming from it (``load_snapshot`` plus rebuilding the trainer), which a restart pays once.

Training runs without curve points (``eval_every`` 0), so the intervals are pure training;
points would lengthen them and lower the ratio. Torch runs on one thread, as a sweep's workers
do. The first interval includes building the networks and checking the fused kernels.

    python benchmarks/snapshot_cost.py [--repeats 5] [--seconds 10] [--dir .]

Prints one line per case and, last, ``max_ratio=<cost / interval>`` over both cases.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gridstudy.config import RunConfig
from gridstudy.data import load_dataset
from gridstudy.fused import train_fused
from gridstudy.snapshot import (
    SNAPSHOT_SECONDS,
    PeriodicSnapshots,
    load_snapshot,
    save_snapshot,
)
from gridstudy.train import train_run

ARCH = {"model": "gan", "n_layers_g": 3, "size_g": 200, "n_layers_d": 3, "size_d": 64,
        "eval_every": 0, "n_eval": 64}
# The fused group precomputes a margin per run and step, so it trains the reference's 3,000
# steps (about 100 s here); a solo run (~10 ms a step) would end before five snapshots, so it
# gets more steps, which change nothing else about a GAN's training.
STEPS = {"fused": 3000, "solo": 10**6}
SETTINGS = [(d, g, lr) for d in ("adam", "sgd") for g in ("adam", "sgd")
            for lr in (1e-2, 1e-3, 1e-4)]


class _Enough(Exception):
    """Raised by the policy once it has timed enough snapshots."""


class TimedSnapshots(PeriodicSnapshots):
    """The default policy, writing each snapshot to ``path`` and timing it and the interval."""

    def __init__(self, path: Path, seconds: float, repeats: int, steps: int | None = None
                 ) -> None:
        super().__init__(self._write, seconds=seconds, steps=steps)
        self.path, self.repeats = path, repeats
        self.intervals: list[float] = []
        self.costs: list[float] = []
        self._since = self._due_at = time.perf_counter()

    def due(self, step: int) -> bool:
        if not super().due(step):
            return False
        self._due_at = time.perf_counter()
        self.intervals.append(self._due_at - self._since)
        return True

    def _write(self, state: dict[str, Any]) -> None:
        save_snapshot(self.path, state)
        self._since = time.perf_counter()
        self.costs.append(self._since - self._due_at)
        if len(self.costs) == self.repeats:
            raise _Enough


class StubScorer:
    def score(self, samples: torch.Tensor, names: object = None) -> dict[str, float]:
        return {"i_prime": samples.double().mean().item()}


def train(runs: list[RunConfig], train_x: torch.Tensor, policy: TimedSnapshots,
          resume: dict[str, Any] | None = None) -> None:
    """Train ``runs`` (fused if several) until ``policy`` has timed its snapshots."""
    try:
        if len(runs) > 1:
            train_fused(runs, train_x, StubScorer(), snapshots=policy, resume=resume)
        else:
            train_run(runs[0], train_x, StubScorer(), snapshots=policy, resume=resume)
    except _Enough:
        return
    raise RuntimeError("training ended before the snapshots were timed")


def measure(case: str, folder: Path, seconds: float, repeats: int) -> float:
    """Train ``case`` until ``repeats`` snapshots are timed; print its line, return the ratio."""
    train_x, path = load_dataset("mnist5k").train_x, folder / f"{case}.pt"
    arch = {**ARCH, "steps": STEPS[case]}
    runs = ([RunConfig(**arch, optim_d=d, optim_g=g, lr=lr) for d, g, lr in SETTINGS]
            if case == "fused" else [RunConfig(**arch)])
    policy = TimedSnapshots(path, seconds, repeats)
    train(runs, train_x, policy)
    start = time.perf_counter()
    resume = load_snapshot(path)
    load_seconds = time.perf_counter() - start
    step_time = sum(policy.intervals) / resume["step"]
    ratios = [c / i for c, i in zip(policy.costs, policy.intervals, strict=True)]
    resumed = TimedSnapshots(folder / f"{case}-resumed.pt", seconds, 1, steps=1)
    start = time.perf_counter()
    train(runs, train_x, resumed, resume)  # rebuild, restore, one step, one snapshot
    restore = time.perf_counter() - start - resumed.costs[0] - step_time
    print(f"{case:5s} runs={len(runs):2d} size={path.stat().st_size / 2**20:.1f}MiB "
          f"step={step_time * 1e3:.1f}ms interval={statistics.median(policy.intervals):.2f}s "
          f"cost={statistics.median(policy.costs) * 1e3:.0f}ms "
          f"ratio={statistics.median(ratios):.2%} (each {', '.join(f'{r:.2%}' for r in ratios)}) "
          f"resume: load={load_seconds * 1e3:.0f}ms rebuild+restore~{restore * 1e3:.0f}ms",
          flush=True)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="snapshots timed per case")
    parser.add_argument("--seconds", type=float, default=SNAPSHOT_SECONDS,
                        help="wall time between snapshots (default: the policy's default)")
    parser.add_argument("--dir", type=Path, default=Path("."),
                        help="where the snapshot files are written (a temporary folder in it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".snapshot-cost-") as tmp:
        ratios = [measure(case, Path(tmp), args.seconds, args.repeats)
                  for case in ("fused", "solo")]
    print(f"max_ratio={max(ratios):.4f}")


if __name__ == "__main__":
    main()
