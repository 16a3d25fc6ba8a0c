"""The adapter between a study and Ray Tune: the only module that imports Ray.

Ray Tune schedules the bundles (one trial each), retries failed trials (``FailureConfig``),
restores an interrupted study (``Tuner.restore``) and collects results. Each trial reports a
checkpoint after every run it finishes (the bundle's rows and samples so far), so a retried or
restored trial skips finished runs, and a driver-side callback turns those checkpoints into the
study's results table as they arrive.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

from gridstudy.config import RunConfig
from gridstudy.errors import UserError
from gridstudy.results import (
    CURVE_KEY,
    ResultsTable,
    read_bundle_records,
    read_study_info,
    recover_unrecorded,
    write_bundle_records,
    write_samples,
    write_study_info,
)
from gridstudy.spaces import SearchSpace
from gridstudy.study import (
    SharedInputs,
    bundle_id,
    datasets_of,
    failed_result,
    plan_bundles,
    prepare_inputs,
    rows_and_samples,
    train_bundle,
)
from gridstudy.train import RunResult

LOOPBACK = "127.0.0.1"
CHECKPOINT_SECONDS = 10.0  # a trial checkpoints its bundle at most this often, and at its end


@dataclass(frozen=True)
class SweepOptions:
    """How to launch a study (the ``gridstudy sweep`` flags)."""

    study: str
    results_dir: Path = Path("results")
    address: str | None = None
    storage: str | None = None
    gpus_per_trial: float = 0.0
    cpus_per_trial: int = 1
    max_concurrent: int | None = None
    bundle_size: int = 12
    fuse: bool = True
    max_failures: int = 2
    resume: bool = False
    data_dir: str | None = None
    num_cpus: int | None = None  # of a local instance; default: all cores

    @property
    def study_dir(self) -> Path:
        return (self.results_dir / self.study).resolve()


def configure_ray_env(local: bool) -> None:
    """Environment Ray reads at import: call before anything imports ray.

    Ray 2.60 on Linux replaces a node IP of 127.0.0.1 with the machine's routable address, and
    its servers then listen on every interface. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` turns off
    that replacement, so a local instance's node IP is 127.0.0.1 and every server (GCS, raylet,
    workers, agents) binds to loopback only (checked by tests/test_tune.py with ``ss``). It is set
    only for a local instance: a driver joining a multi-node cluster keeps Ray's default.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # report nothing home
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress line replaces Tune's
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # rows live in checkpoints
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        if "ray" in sys.modules:  # imported earlier in this process: the constant is read then
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False


def start_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join ``address``, or start a local instance that listens on 127.0.0.1 only.

    A cluster with token authentication (Ray's default) needs ``RAY_AUTH_MODE=token`` and its
    token in ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.
    """
    configure_ray_env(local=address is None or _is_loopback(address))
    import ray

    if ray.is_initialized():
        return
    if address and address != "auto":
        _check_reachable(address)
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    # Trial failures are reported by StudyCallback in one line; Tune's own traceback is noise.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            # address="local": always a new instance of our own, never a cluster that happens
            # to be running here (or a stale record of one) or one named by $RAY_ADDRESS.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     _node_ip_address=LOOPBACK, **common)
    except Exception as exc:  # ConnectionError, TimeoutError, AuthenticationError, ...
        target = address or "a local instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot reach Ray at {target}: {first[:300]}; check --address, that the "
                        "cluster is up, and RAY_AUTH_MODE=token with its token") from None


def _host_port(address: str) -> tuple[str, int | None]:
    """``ray://host:10001`` or ``host:6379`` -> (host, port)."""
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    if not host:
        return rest, None
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return host, None


def _is_loopback(address: str) -> bool:
    host, _ = _host_port(address)
    return host in ("127.0.0.1", "localhost", "::1")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address`` (Ray retries long)."""
    import socket

    host, port = _host_port(address)
    if port is None:
        raise UserError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"--address {address}: unreachable ({exc.strerror or exc}); check the "
                        "address and that the cluster is up") from None


def _trainable(config: dict[str, Any], inputs: dict[str, SharedInputs] | None = None) -> None:
    """One Tune trial: train a bundle, checkpointing after each run."""
    import torch
    from ray import tune

    cpus = int(config.get("cpus", 1))
    if torch.get_num_threads() != cpus:  # once per (reused) worker process
        torch.set_num_threads(cpus)
    device = "cuda" if config.get("gpus", 0) > 0 and torch.cuda.is_available() else "cpu"
    runs = [RunConfig(**d) for d in config["runs"]]
    done = _load_checkpoint(tune.get_checkpoint())
    last = time.monotonic()

    def report(results: list[RunResult]) -> None:
        # Checkpoint every CHECKPOINT_SECONDS and at the bundle's end: a crash loses at most that
        # much work, and tiny runs do not pay a checkpoint each.
        nonlocal last
        if len(results) < len(runs) and time.monotonic() - last < CHECKPOINT_SECONDS:
            return
        last = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            write_bundle_records(Path(tmp), *rows_and_samples(results))
            tune.report({"runs_done": len(results), "runs_total": len(runs)},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    train_bundle(runs, inputs or {}, device=device, done=done, on_run_done=report,
                 fuse=bool(config.get("fuse", False)))


def _load_checkpoint(checkpoint: Any) -> list[RunResult]:
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as folder:
        rows, samples = read_bundle_records(Path(folder))
    blank = np.zeros((64, 28, 28), dtype=np.uint8)
    return [RunResult({k: v for k, v in r.items() if k != CURVE_KEY},
                      samples.get(r["run_id"], blank), r.get(CURVE_KEY) or []) for r in rows]


class _StudyCallback:
    """Driver side: checkpoints -> results table and samples; prints progress."""

    def __init__(self, table: ResultsTable, total: int) -> None:
        self.table = table
        self.total = total
        self.start = time.monotonic()
        self.done_at_start = len(table.rows)
        self.trial_errors = 0
        self.last_print = 0.0

    def checkpoint(self, trial_id: str, bundle: str, folder: Path) -> None:
        rows, samples = read_bundle_records(folder)
        if samples:
            write_samples(samples, self.table.study_dir, bundle)
        self.table.add(rows)
        self.progress()

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_print < 2.0:
            return
        self.last_print = now
        done = len(self.table.rows)
        counts = self.table.status_counts()
        elapsed = now - self.start
        new = done - self.done_at_start
        left = "?"
        if new > 0 and done < self.total:
            left = _fmt_seconds(elapsed / new * (self.total - done))
        elif done >= self.total:
            left = "0s"
        print(f"[{self.table.study}] {done}/{self.total} runs (ok {counts['ok']}, diverged "
              f"{counts['diverged']}, failed {counts['failed']}), trial errors "
              f"{self.trial_errors}, {_fmt_seconds(elapsed)} elapsed, ~{left} left", flush=True)


def _fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@dataclass(frozen=True)
class SweepOutcome:
    """How a sweep ended: its results table, and runs left unfinished by an interruption."""

    table: ResultsTable
    unfinished: int


def run_sweep(space: SearchSpace, options: SweepOptions) -> SweepOutcome:
    """Launch (or resume) a study on Ray Tune; return its table and unfinished runs when it ends."""
    configure_ray_env(local=options.address is None or _is_loopback(options.address))
    from ray import tune

    runs = list(space.runs)
    study_dir = options.study_dir
    tune_dir = study_dir / "tune"
    storage = options.storage or str(study_dir)
    experiment = f"{storage.rstrip('/')}/tune"
    _check_study_state(study_dir, tune_dir, runs, options, experiment)
    start_ray(options.address, options.num_cpus)
    inputs = prepare_inputs(datasets_of(runs), options.data_dir)
    workers = _worker_slots(options)
    bundles = plan_bundles(runs, options.bundle_size, workers)
    write_study_info(study_dir, {
        "study": options.study, "description": space.description,
        "spaces": sorted({b.source for b in space.blocks}), "overrides": space.overrides,
        "run_ids": [r.run_id() for r in runs], "n_runs": len(runs), "n_bundles": len(bundles),
        "classifier_accuracy": {k: v.classifier_state["test_accuracy"] for k, v in inputs.items()},
        "tune_experiment": experiment,
    })
    global _ACTIVE
    table = ResultsTable(study_dir, options.study)
    if options.resume and "://" not in experiment:
        recovered = recover_unrecorded(table, Path(experiment))
        if recovered:
            table.flush()
            print(f"[{options.study}] {recovered} finished runs were only in Tune's checkpoints "
                  "(the last sweep was killed); added them to the table", file=sys.stderr)
    _ACTIVE = progress = _StudyCallback(table, len(runs))
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, inputs=inputs),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    if options.resume and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    else:
        param_space = {"runs": tune.grid_search([[r.to_dict() for r in b] for b in bundles]),
                       "cpus": options.cpus_per_trial, "gpus": options.gpus_per_trial,
                       "fuse": options.fuse}
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(reuse_actors=True,
                                        max_concurrent_trials=options.max_concurrent,
                                        trial_dirname_creator=_dirname),
            run_config=tune.RunConfig(
                name="tune", storage_path=storage, verbose=0, callbacks=[StudyCallback()],
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
    try:
        grid = tuner.fit()
    finally:
        _ACTIVE = None
        table.flush()
    unfinished = _account_for_missing(table, runs, grid)
    progress.progress(force=True)
    return SweepOutcome(table, unfinished)


# The driver's study state. Tuner.restore unpickles the callbacks of the original launch, so
# the callback holds no state of its own and forwards to whatever study this process runs now.
_ACTIVE: _StudyCallback | None = None


class StudyCallback(Callback):
    """Forwards Tune's checkpoint and error events to the active study (see ``_ACTIVE``)."""

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        pass

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):  # noqa: ANN001
        if _ACTIVE is None:
            return
        bundle = bundle_id([RunConfig(**d) for d in trial.config["runs"]])
        with checkpoint.as_directory() as folder:
            _ACTIVE.checkpoint(trial.trial_id, bundle, Path(folder))

    def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
        _report_failure(trial, "retrying from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
        _report_failure(trial, "for good; its unfinished runs are recorded as failed")


def _report_failure(trial: Any, outcome: str) -> None:
    if _ACTIVE is None:
        return
    _ACTIVE.trial_errors += 1
    print(f"[{_ACTIVE.table.study}] trial {trial.trial_id} failed "
          f"({_first_line(trial.error_file)}); {outcome}", file=sys.stderr, flush=True)
    _ACTIVE.progress(force=True)


def _first_line(error_file: str | None) -> str:
    """The last line of a Tune error file: the exception, without the traceback."""
    try:
        lines = [ln for ln in Path(error_file).read_text().splitlines() if ln.strip()]
    except (OSError, TypeError):
        return "see Ray's logs"
    return lines[-1][:200] if lines else "see Ray's logs"


def _dirname(trial: Any) -> str:
    return f"bundle_{trial.trial_id}"


def _worker_slots(options: SweepOptions) -> int:
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    slots = cpus / max(options.cpus_per_trial, 1e-9)
    if options.gpus_per_trial > 0:
        slots = min(slots, ray.cluster_resources().get("GPU", 0) / options.gpus_per_trial)
    if options.max_concurrent:
        slots = min(slots, options.max_concurrent)
    return max(1, math.floor(slots))


def _check_study_state(study_dir: Path, tune_dir: Path, runs: list[RunConfig],
                       options: SweepOptions, experiment: str) -> None:
    from ray import tune

    info = read_study_info(study_dir)
    exists = bool(info) or tune_dir.exists()
    if exists and not options.resume:
        raise UserError(f"{study_dir}: study {options.study!r} exists; add --resume to finish it, "
                        "or choose another --study name")
    if options.resume:
        if not exists or not tune.Tuner.can_restore(experiment):
            raise UserError(f"{study_dir}: nothing to resume for study {options.study!r}; "
                            "launch it without --resume")
        if info and sorted(info.get("run_ids", [])) != sorted(r.run_id() for r in runs):
            raise UserError(f"{study_dir}: the search space differs from the one this study was "
                            "launched with; resume with the same files and --set values")
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        probe = study_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{study_dir}: results folder is not writable ({exc.strerror}); "
                        "choose another --results-dir") from None


def _account_for_missing(table: ResultsTable, runs: list[RunConfig], grid: Any) -> int:
    """Record the runs of errored trials as failed, so none goes missing; return how many runs
    are unfinished because the study was interrupted (Ctrl-C) rather than failed."""
    errors = {}
    for result in grid:
        if result.error is not None:
            message = str(result.error).strip().splitlines()
            for d in result.config.get("runs", []):
                errors[RunConfig(**d).run_id()] = f"trial error: {message[-1] if message else ''}"
    missing = [r for r in runs if r.run_id() not in table.rows]
    failed = [r for r in missing if r.run_id() in errors]
    if failed:
        table.add([failed_result(r, errors[r.run_id()]).row for r in failed])
        print(f"{len(failed)} runs recorded as failed (their trials errored); "
              "`gridstudy sweep ... --resume` re-runs them", file=sys.stderr)
    table.flush()
    return len(missing) - len(failed)
