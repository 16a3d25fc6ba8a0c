"""The adapter between a study and Ray Tune: the only module that imports Ray.

Ray Tune schedules the bundles (one trial each), retries failed trials (``FailureConfig``),
restores an interrupted study (``Tuner.restore``) and collects results. Each trial reports a
checkpoint after every run it finishes (the bundle's rows and samples so far), so a retried or
restored trial skips finished runs, and a driver-side callback turns those checkpoints into the
study's results table as they arrive.

The driver is the one voice of a study: Ray's and Tune's own log lines stay off the terminal
(unless ``--verbose``); a lost node, a dead worker or a failed trial is one line that says what
happens next; warnings raised in a trial travel with its reports and are printed once each.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

from gridstudy.config import RunConfig
from gridstudy.errors import UserError, one_line
from gridstudy.isolation import (
    StudyPlace,
    acquire_driver_lock,
    check_study_state,
    claim_experiment,
)
from gridstudy.progress import StudyProgress
from gridstudy.results import (
    CURVE_KEY,
    ResultsTable,
    read_bundle_records,
    recover_unrecorded,
    write_bundle_records,
    write_study_info,
)
from gridstudy.snapshot import (
    SNAPSHOT_SECONDS,
    PeriodicSnapshots,
    load_snapshot,
    save_snapshot,
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
SNAPSHOT_FILE = "snapshot.pt"  # training in progress, beside a checkpoint's finished runs
CHECKPOINT_SECONDS = 10.0  # a trial checkpoints its bundle at most this often, and at its end
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a folder name on every system


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
    verbose: bool = False  # let Ray's and Tune's own log lines through
    snapshot_seconds: float = SNAPSHOT_SECONDS  # wall time between snapshots of training

    def __post_init__(self) -> None:
        if not (self.snapshot_seconds > 0 and math.isfinite(self.snapshot_seconds)):
            raise UserError(f"--snapshot-seconds {self.snapshot_seconds}: give a positive number "
                            f"of seconds (default {SNAPSHOT_SECONDS:g})")
        if not STUDY_NAME.fullmatch(self.study):
            raise UserError(f"--study {one_line(repr(self.study), 60)}: use letters, digits, '.', "
                            "'_' and '-' (at most 100, not starting with '.', '_' or '-')")

    @property
    def study_dir(self) -> Path:
        return (self.results_dir / self.study).resolve()

    @property
    def place(self) -> StudyPlace:
        """Where the study lives. Tune's experiment folder is named after the study inside
        --storage, so studies sharing a storage folder never share records; without --storage
        it is ``STUDY_DIR/tune``."""
        if not self.storage:
            return StudyPlace(self.study, self.study_dir, str(self.study_dir / "tune"))
        storage = self.storage.rstrip("/")
        if "://" not in storage:
            storage = str(Path(storage).expanduser().resolve())
            if Path(storage) == self.results_dir.resolve():
                raise UserError(f"--storage {self.storage}: is the results folder; give another "
                                "folder (Tune's records go to STORAGE/STUDY)")
        return StudyPlace(self.study, self.study_dir, f"{storage}/{self.study}")


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


def start_ray(address: str | None, num_cpus: int | None = None, verbose: bool = False) -> None:
    """Join ``address``, or start a local instance that listens on 127.0.0.1 only.

    A cluster with token authentication (Ray's default) needs ``RAY_AUTH_MODE=token`` and its
    token in ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``. Without
    ``verbose``, Ray's and Tune's own log lines are kept off the terminal (:func:`quiet_ray`).
    """
    configure_ray_env(local=address is None or _is_loopback(address))
    import ray

    if ray.is_initialized():
        return
    if address and address != "auto":
        _check_reachable(address)
    common: dict[str, Any] = {"log_to_driver": verbose,
                              "logging_level": "INFO" if verbose else "ERROR"}
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
        reason = one_line(str(exc) or type(exc).__name__, 200)
        raise UserError(f"cannot reach Ray at {target}: {reason}; check --address, that the "
                        "cluster is up, and RAY_AUTH_MODE=token with its token") from None
    if not verbose:
        quiet_ray()


def quiet_ray() -> None:
    """Keep Ray's and Tune's own lines off the terminal: the study's callback says what matters.

    Their loggers are raised above CRITICAL (Tune's "Trials did not complete", its tracebacks of
    failed trials). Ray's driver also prints the cluster's error messages itself ("(raylet) ...
    has been marked dead", with colour codes), whatever ``log_to_driver`` says, through
    ``ray._private.worker.print_to_stdstream``: a private function, so it is wrapped only where it
    exists, and everything but those raylet messages still goes through.
    """
    for name in ("ray", "ray.tune", "ray.train", "ray.air", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "gridstudy_quiet", False):
        return

    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original(data, ignore_prefix=ignore_prefix)

    print_to_stdstream.gridstudy_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream


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
    """One Tune trial: train a bundle, checkpointing after each run.

    Its first report says where it runs and how many runs its checkpoint already holds; every
    report carries the warnings raised in the trial since the one before (each once), since
    Ray runs with ``log_to_driver=False`` and they would otherwise be lost.
    """
    import torch
    from ray import tune

    cpus = int(config.get("cpus", 1))
    if torch.get_num_threads() != cpus:  # once per (reused) worker process
        torch.set_num_threads(cpus)
    device = "cuda" if config.get("gpus", 0) > 0 and torch.cuda.is_available() else "cpu"
    runs = [RunConfig(**d) for d in config["runs"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outbox = _Outbox(caught)
        done, resume = _load_checkpoint(tune.get_checkpoint())
        saved = len(done)  # runs in the newest checkpoint
        step = resume["step"] if resume else 0  # of the training in progress it holds
        tune.report(_metrics(done, runs, saved, outbox, node=_node_label(), step=step))
        last, finished = time.monotonic(), done

        def checkpoint(results: list[RunResult], snapshot: dict[str, Any] | None) -> None:
            nonlocal last, saved
            last, saved = time.monotonic(), len(results)
            with tempfile.TemporaryDirectory() as tmp:
                write_bundle_records(Path(tmp), *rows_and_samples(results))
                if snapshot is not None:
                    save_snapshot(Path(tmp) / SNAPSHOT_FILE, snapshot)
                tune.report(_metrics(results, runs, saved, outbox,
                                     step=snapshot["step"] if snapshot else 0),
                            checkpoint=tune.Checkpoint.from_directory(tmp))

        def report(results: list[RunResult]) -> None:
            # Checkpoint every CHECKPOINT_SECONDS and at the bundle's end: a crash loses at most
            # that much work, and tiny runs do not pay a checkpoint each.
            nonlocal finished
            finished = list(results)
            if len(results) < len(runs) and time.monotonic() - last < CHECKPOINT_SECONDS:
                if outbox.pending():
                    tune.report(_metrics(results, runs, saved, outbox))
                return
            checkpoint(results, None)

        # Training in progress is snapshotted into the same checkpoint, with the runs finished
        # so far, every SNAPSHOT_SECONDS: a retried trial goes on from there, bit for bit.
        snapshots = PeriodicSnapshots(
            lambda state: checkpoint(finished, state),
            seconds=float(config.get("snapshot_seconds", SNAPSHOT_SECONDS)))
        results = train_bundle(runs, inputs or {}, device=device, done=done, on_run_done=report,
                               fuse=bool(config.get("fuse", False)), snapshots=snapshots,
                               resume=resume)
        if outbox.pending():
            tune.report(_metrics(results, runs, saved, outbox))


class _Outbox:
    """The distinct warnings a trial has raised and not yet reported, as one-line texts."""

    def __init__(self, caught: list[warnings.WarningMessage]) -> None:
        self.caught = caught
        self.sent: set[str] = set()

    def pending(self) -> bool:
        return any(_warning_text(w) not in self.sent for w in self.caught)

    def take(self) -> list[str]:
        new = []
        for text in map(_warning_text, self.caught):
            if text not in self.sent:
                self.sent.add(text)
                new.append(text)
        self.caught.clear()
        return new


def _warning_text(w: warnings.WarningMessage) -> str:
    return one_line(f"{w.category.__name__}: {w.message}", 300)


def _metrics(results: list[RunResult], runs: list[RunConfig], saved: int, outbox: _Outbox,
             node: str | None = None, step: int | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"runs_done": len(results), "runs_total": len(runs),
                               "runs_saved": saved, "messages": outbox.take()}
    if step is not None:
        metrics["snapshot_step"] = step  # steps of the training in progress in the checkpoint
    if node:
        metrics["node"] = node
    return metrics


def _node_label() -> str:
    """The Ray node id of this worker, by which the driver tells which node a trial ran on."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _load_checkpoint(checkpoint: Any) -> tuple[list[RunResult], dict[str, Any] | None]:
    """The finished runs of a bundle's checkpoint and its snapshot of training in progress
    (None without one); nothing (with a warning) where either is damaged."""
    if checkpoint is None:
        return [], None
    with checkpoint.as_directory() as folder:
        try:
            rows, samples = read_bundle_records(Path(folder))
            snapshot_file = Path(folder) / SNAPSHOT_FILE
            snapshot = load_snapshot(snapshot_file) if snapshot_file.exists() else None
        except UserError as exc:
            warnings.warn(f"{exc}; the bundle starts over", stacklevel=2)
            return [], None
    blank = np.zeros((64, 28, 28), dtype=np.uint8)
    return [RunResult({k: v for k, v in r.items() if k != CURVE_KEY},
                      samples.get(r["run_id"], blank), r.get(CURVE_KEY) or [])
            for r in rows], snapshot


@dataclass(frozen=True)
class SweepOutcome:
    """How a sweep ended: its results table, and runs left unfinished by an interruption."""

    table: ResultsTable
    unfinished: int


def run_sweep(space: SearchSpace, options: SweepOptions) -> SweepOutcome:
    """Launch (or resume) a study on Ray Tune; return its table and unfinished runs when it ends.

    Everything the study already holds is read and checked before Ray starts: a second driver
    of the study, Tune records of another study where this one's go, a
    damaged table or study.json are each a one-line UserError, and nothing is written.
    """
    configure_ray_env(local=options.address is None or _is_loopback(options.address))
    _check_writable(options.study_dir)
    lock = acquire_driver_lock(options.study_dir, options.study)
    try:
        return _sweep(space, options)
    finally:
        lock.release()


def _sweep(space: SearchSpace, options: SweepOptions) -> SweepOutcome:
    global _ACTIVE
    from ray import tune

    runs = list(space.runs)
    run_ids = [r.run_id() for r in runs]
    place = options.place
    study_dir, experiment = place.study_dir, place.experiment
    uid = check_study_state(place, options.resume, run_ids, tune.Tuner.can_restore)
    table = ResultsTable(study_dir, options.study, run_ids=run_ids)
    start_ray(options.address, options.num_cpus, options.verbose)
    inputs = prepare_inputs(datasets_of(runs), options.data_dir)
    bundles = plan_bundles(runs, options.bundle_size, _worker_slots(options))
    write_study_info(study_dir, {
        "study": options.study, "study_uid": uid, "description": space.description,
        "spaces": sorted({b.source for b in space.blocks}), "overrides": space.overrides,
        "run_ids": run_ids, "n_runs": len(runs), "n_bundles": len(bundles),
        "classifier_accuracy": {k: v.classifier_state["test_accuracy"] for k, v in inputs.items()},
        "storage": place.storage,
        "tune_experiment": experiment,
    })
    claim_experiment(experiment, {"study": options.study, "study_uid": uid,
                                  "study_dir": str(study_dir), "host": socket.gethostname()})
    _ACTIVE = progress = StudyProgress(table, len(runs), node_status)
    _recover(table, options, progress)
    try:
        grid = _tuner(options, bundles, inputs).fit()
    finally:
        _ACTIVE = None
        table.flush()
    unfinished = _account_for_missing(table, runs, grid)
    progress.progress(force=True)
    return SweepOutcome(table, unfinished)


def _recover(table: ResultsTable, options: SweepOptions, progress: StudyProgress) -> None:
    """On --resume, add the study's runs that only Tune's checkpoints hold to the table."""
    if table.foreign:
        progress.say(f"{table.foreign} rows of runs outside this study were dropped from its "
                     "table (an earlier version mixed studies that shared --storage)")
    experiment = options.place.experiment
    if not options.resume or "://" in experiment:
        return
    recovered = recover_unrecorded(table, Path(experiment))
    table.flush()
    if recovered:
        progress.say(f"{recovered} finished runs were only in Tune's checkpoints (the last "
                     "driver was killed); added them to the table")


def _tuner(options: SweepOptions, bundles: list[list[RunConfig]],
           inputs: dict[str, SharedInputs]) -> Any:
    """A new Tuner for the study's bundles, or the restored one on --resume."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(_trainable, inputs=inputs),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    experiment = options.place.experiment
    if options.resume and tune.Tuner.can_restore(experiment):
        return tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    storage, name = experiment.rsplit("/", 1)
    param_space = {"runs": tune.grid_search([[r.to_dict() for r in b] for b in bundles]),
                   "cpus": options.cpus_per_trial, "gpus": options.gpus_per_trial,
                   "fuse": options.fuse, "snapshot_seconds": options.snapshot_seconds}
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True,
                                    max_concurrent_trials=options.max_concurrent,
                                    trial_dirname_creator=_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0, callbacks=[StudyCallback()],
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


# The driver's study state. Tuner.restore unpickles the callbacks of the original launch, so
# the callback holds no state of its own and forwards to whatever study this process runs now.
_ACTIVE: StudyProgress | None = None


class StudyCallback(Callback):
    """Forwards Tune's checkpoint, result and error events to the active study (``_ACTIVE``)."""

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        pass

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):  # noqa: ANN001
        if _ACTIVE is None:
            return
        with checkpoint.as_directory() as folder:
            _ACTIVE.checkpoint(trial.trial_id, _bundle(trial), Path(folder))

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        if _ACTIVE is not None:
            _ACTIVE.result(trial.trial_id, _bundle(trial), result)

    def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
        _report_failure(trial, retrying=True)

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
        _report_failure(trial, retrying=False)


def _bundle(trial: Any) -> str:
    return bundle_id([RunConfig(**d) for d in trial.config["runs"]])


def _report_failure(trial: Any, retrying: bool) -> None:
    if _ACTIVE is None:
        return
    tries = getattr(getattr(trial, "run_metadata", None), "num_failures", 0)
    _ACTIVE.failure(trial.trial_id, _bundle(trial), _error_line(trial.error_file), retrying,
                    tries)


def _error_line(error_file: str | None) -> str:
    """The last line of a Tune error file: the exception, without the traceback."""
    try:
        lines = [ln for ln in Path(error_file).read_text().splitlines() if ln.strip()]
    except (OSError, TypeError, ValueError):
        return "see Ray's logs"
    return lines[-1].strip() if lines else "see Ray's logs"


def node_status(node_id: str) -> tuple[str, bool]:
    """A Ray node's address and whether it is lost: marked dead by Ray, or its raylet does not
    answer (Ray marks a node dead only after missed health checks, seconds later)."""
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            host, port = node.get("NodeManagerAddress", "?"), node.get("NodeManagerPort", 0)
            return f"{host}:{port}", not node.get("Alive") or not _answers(host, port)
    return node_id[:12], False


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


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


def _check_writable(study_dir: Path) -> None:
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        probe = study_dir / f".write-test-{os.getpid()}"
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
            lines = str(result.error).strip().splitlines()
            message = one_line(f"trial error: {lines[-1] if lines else type(result.error)}", 300)
            for d in result.config.get("runs", []):
                errors[RunConfig(**d).run_id()] = message
    missing = [r for r in runs if r.run_id() not in table.rows]
    failed = [r for r in missing if r.run_id() in errors]
    if failed:
        table.add([failed_result(r, errors[r.run_id()]).row for r in failed])
        print(f"[{table.study}] {len(failed)} runs recorded as failed (their bundles were given "
              "up); `gridstudy sweep ... --resume` runs them again", file=sys.stderr)
    table.flush()
    return len(missing) - len(failed)
