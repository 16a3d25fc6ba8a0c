"""A study's work without Ray: plan bundles of runs, prepare shared inputs, train a bundle.

A bundle is several runs trained by one worker one after another (or fused, when they share an
architecture): thousands of tiny runs would otherwise be dominated by per-trial overhead. The
unit of the results table stays the run. ``gridstudy.tune`` adapts this to Ray Tune.

A bundle can also hand out snapshots of the run or fused group it is training, and continue
from one (:mod:`gridstudy.snapshot`), so a killed worker loses at most the training since the
last snapshot.
"""

from __future__ import annotations

import hashlib
import math
import platform
import traceback
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from gridstudy.classifier import Classifier, Scorer, prepare_classifier
from gridstudy.config import RunConfig
from gridstudy.data import load_dataset
from gridstudy.errors import UserError
from gridstudy.results import CURVE_KEY
from gridstudy.snapshot import SnapshotPolicy, usable, warn_ignored
from gridstudy.train import GRID_SAMPLES, RunResult, library_versions, train_run

# Called after each run of a bundle with every result so far (for checkpointing and progress).
OnRunDone = Callable[[list[RunResult]], None]


@dataclass(frozen=True)
class SharedInputs:
    """What the runs of one data set need: its training digits, and the classifier and real
    test digits' features that score runs with ``scored_on`` this data set. Prepared once on
    the driver, shared with workers."""

    train_x: torch.Tensor
    classifier_state: dict
    real_features: np.ndarray

    def scorer(self) -> Scorer:
        return Scorer.from_features(Classifier.from_state(self.classifier_state),
                                    self.real_features)


def prepare_inputs(datasets: set[str], data_dir: str | None) -> dict[str, SharedInputs]:
    """Load each data set and its classifier once (training the classifier on first use).

    ``datasets``: those the runs train on and those they are scored on
    (:func:`datasets_of`)."""
    inputs = {}
    for name in sorted(datasets):
        data = load_dataset(name, data_dir)
        classifier = prepare_classifier(name, data_dir, data=data)
        scorer = Scorer(classifier, data.test_x)
        inputs[name] = SharedInputs(data.train_x, classifier.state(), scorer.real_features)
    return inputs


def datasets_of(runs: list[RunConfig]) -> set[str]:
    """The data sets a study needs: each run's training set and the one it is scored on."""
    return {r.dataset for r in runs} | {r.scored_on for r in runs}


def training_digits(train_x: torch.Tensor, c: RunConfig) -> torch.Tensor:
    """The digits run ``c`` trains on: the first ``train_size`` of its data set's training split
    (all when 0), so a study made on a subset is reproduced exactly from the full set."""
    if c.train_size > len(train_x):
        raise UserError(f"config: train_size: {c.train_size:,} is more than the {len(train_x):,} "
                        f"training digits of {c.dataset}; lower it or use a larger data set")
    return train_x[:c.train_size] if c.train_size else train_x


def plan_bundles(runs: list[RunConfig], max_size: int, workers: int = 1) -> list[list[RunConfig]]:
    """Group runs by architecture and cut each group into bundles of at most ``max_size``.

    Bundles never mix architectures (so a fused trainer can take a whole bundle) and are sized
    so that there are at least ``4 * workers`` of them when the study allows, keeping every
    worker busy to the end (the last bundles finish at about the same time).
    """
    if max_size < 1:
        raise ValueError("bundle size must be at least 1")
    size = max(1, min(max_size, math.ceil(len(runs) / max(1, 4 * workers))))
    groups: dict[tuple, list[RunConfig]] = defaultdict(list)
    for run in runs:
        groups[run.architecture].append(run)
    bundles = []
    for group in groups.values():
        # even sizes: 13 runs at size 12 are 7 + 6, not 12 + 1
        n = math.ceil(len(group) / size)
        base, extra = divmod(len(group), n)
        start = 0
        for i in range(n):
            end = start + base + (i < extra)
            bundles.append(group[start:end])
            start = end
    # A bundle count that is a multiple of the workers lets them finish together: split the
    # largest bundles until it is (one worker idling through a whole last bundle otherwise).
    while workers > 1 and len(bundles) % workers and max(map(len, bundles)) > 1:
        largest = max(range(len(bundles)), key=lambda i: len(bundles[i]))
        bundle = bundles.pop(largest)
        half = (len(bundle) + 1) // 2
        bundles += [bundle[:half], bundle[half:]]
    return bundles


def bundle_id(runs: list[RunConfig]) -> str:
    """A stable name for a bundle, from its runs' ids."""
    digest = hashlib.sha256("".join(sorted(r.run_id() for r in runs)).encode())
    return digest.hexdigest()[:12]


def train_bundle(runs: list[RunConfig], inputs: dict[str, SharedInputs], *, device: str,
                 done: list[RunResult] | None = None, on_run_done: OnRunDone | None = None,
                 fuse: bool = False, snapshots: SnapshotPolicy | None = None,
                 resume: dict[str, Any] | None = None) -> list[RunResult]:
    """Train every run of a bundle not already in ``done``; a run that raises becomes a
    ``failed`` row and the bundle goes on.

    ``on_run_done`` is called as each run ends (fused runs: as their group ends).
    ``snapshots`` is handed snapshots of the run or fused group in training
    (:mod:`gridstudy.snapshot`); ``resume``, the last of them, makes its runs continue from it
    (the others start fresh). A snapshot that cannot continue here (another format, torch or
    device, runs that are not among the unfinished ones, or a fused group's snapshot where runs
    are trained alone, and the reverse) is ignored with a warning: its runs start over.
    Exceptions from ``on_run_done`` and ``snapshots.save`` propagate.
    """
    results = list(done or [])
    finished = {r.row["run_id"] for r in results}
    todo = [r for r in runs if r.run_id() not in finished]
    scorers = {name: inputs[name].scorer() for name in {r.scored_on for r in todo}}
    resume = usable(resume, [r.run_id() for r in todo], device)
    guarded = None if snapshots is None else _GuardedPolicy(snapshots)

    def report(result: RunResult) -> None:
        results.append(result)
        if on_run_done:
            _guard(on_run_done, results)

    try:
        _train_todo(todo, inputs, scorers, device, report, fuse, guarded, resume)
    except _CallbackFailed as exc:  # the caller's own error, not a training failure
        assert exc.__cause__ is not None
        raise exc.__cause__ from None
    return results


def _train_todo(todo: list[RunConfig], inputs: dict[str, SharedInputs],
                scorers: dict[str, Scorer], device: str, report: Callable[[RunResult], None],
                fuse: bool, snapshots: SnapshotPolicy | None, resume: dict[str, Any] | None
                ) -> None:
    """Train ``todo`` fused if asked and possible, else one run at a time, reporting each."""
    kind = resume["kind"] if resume else None
    if fuse and (len(todo) > 1 or kind == "fused"):
        fused_resume = resume if kind == "fused" else None
        todo = _train_fused(todo, inputs, scorers, device, report, snapshots, fused_resume)
        if not todo:
            if kind == "solo":
                warn_ignored("it is of a run trained alone, and this bundle was trained fused")
            return
        resume = None if kind == "fused" else resume  # the fallback starts the group over
    elif kind == "fused":
        warn_ignored("it is of a fused group, and this bundle trains its runs one at a time")
        resume = None
    if resume is not None:  # the run in progress first
        todo = sorted(todo, key=lambda r: r.run_id() != resume["run_ids"][0])
    for run in todo:
        own = resume if resume is not None and resume["run_ids"] == [run.run_id()] else None
        try:
            result = train_run(run, training_digits(inputs[run.dataset].train_x, run),
                               scorers[run.scored_on], device=device, snapshots=snapshots,
                               resume=own)
        except _CallbackFailed:
            raise
        except Exception as exc:  # a bug or resource error in one run must not lose the others
            result = failed_result(run, exc)
        report(result)


def _train_fused(todo: list[RunConfig], inputs: dict[str, SharedInputs],
                 scorers: dict[str, Scorer], device: str, report: Callable[[RunResult], None],
                 snapshots: SnapshotPolicy | None, resume: dict[str, Any] | None
                 ) -> list[RunConfig]:
    """Train ``todo`` fused, reporting each group's runs as the group ends, and return the runs
    left to train: none, or where fused training fails, with a warning, those not reported."""
    from gridstudy.fused import train_fused  # noqa: PLC0415 (optional fast path)

    reported: set[str] = set()

    def group_done(group: list[RunResult]) -> None:
        for result in group:
            reported.add(result.row["run_id"])
            report(result)

    first = todo[0]
    try:
        train_fused(todo, training_digits(inputs[first.dataset].train_x, first),
                    scorers[first.scored_on], device=device, snapshots=snapshots,
                    resume=resume, on_group_done=group_done)
    except _CallbackFailed:
        raise
    except Exception as exc:  # an optimisation only: the runs go on one at a time
        warnings.warn(f"fused training failed ({type(exc).__name__}: {exc}); "
                      "training the bundle one run at a time", stacklevel=4)
        return [r for r in todo if r.run_id() not in reported]
    return []


class _CallbackFailed(Exception):
    """The caller's callback raised inside a trainer: re-raised as it was, never taken for a
    failed run or a failed fused group."""


def _guard(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception as exc:
        raise _CallbackFailed from exc


class _GuardedPolicy:
    """A snapshot policy whose ``save`` errors reach train_bundle's caller (see _CallbackFailed)."""

    def __init__(self, policy: SnapshotPolicy) -> None:
        self.policy = policy

    def due(self, step: int) -> bool:
        return self.policy.due(step)

    def save(self, state: dict[str, Any]) -> None:
        _guard(self.policy.save, state)


def failed_result(run: RunConfig, exc: BaseException | str) -> RunResult:
    """The row of a run that could not finish: status ``failed``, NaN scores, the error."""
    if isinstance(exc, BaseException):
        last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"{type(exc).__name__}: {text}{where}"
    else:
        message = exc
    row = {"run_id": run.run_id(), **run.to_dict(), "status": "failed",
           "error": message.splitlines()[0][:500] if message else "failed",
           "diverged_step": None, "loss_d": math.nan, "loss_g": math.nan, "fused": False,
           "classifier": "",
           "train_seconds": math.nan, "score_seconds": math.nan, "device": "",
           "host": platform.node(),
           "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           **library_versions()}
    return RunResult(row, np.zeros((GRID_SAMPLES, 28, 28), dtype=np.uint8))


def rows_and_samples(
    results: list[RunResult],
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The table rows of a bundle's results, each with its curve (key ``curve``), and the
    samples of those that ran."""
    rows = [{**r.row, CURVE_KEY: r.curve} for r in results]
    samples = {r.row["run_id"]: r.samples for r in results if r.row["status"] != "failed"}
    return rows, samples
