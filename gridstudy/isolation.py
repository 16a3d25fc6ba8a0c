"""What keeps studies apart: one driver per study, and one study per Tune experiment folder.

**One study per Tune folder.** Tune's experiment folder is named after the study inside
``--storage``, and the launch records in it which study it belongs to (:data:`OWNER_FILE`: the
study's name, uid and results folder; the uid is kept in study.json too). Launching a study where
a folder already exists, or resuming one whose folder holds another study's uid, is refused, so
an old study of the same name, or one from another results folder, is recognised.

**One driver per study.** Two drivers of one study would both write its table and both ask Tune
to run its bundles. The first ``gridstudy sweep`` of a study creates ``.driver.lock`` (pid,
host, process start time, wall-clock start) with ``O_EXCL``; a second is refused with a line
that names the first. A lock whose process is gone (a driver killed outright) is taken over: on
the same host that is checked with the pid and the process's start time, so a reused pid does
not count as alive. A lock from another host cannot be checked from here and is never taken over.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyarrow import ArrowException

from gridstudy.errors import UserError, one_line
from gridstudy.results import TABLE, read_study_info

LOCK_FILE = ".driver.lock"
OWNER_FILE = "gridstudy-study.json"  # in Tune's experiment folder: which study it belongs to
_WRITING_SECONDS = 10.0  # an empty or half-written lock younger than this is being written


@dataclass(frozen=True)
class DriverLock:
    """A held lock; :meth:`release` removes it if it is still this driver's."""

    path: Path
    token: str

    def release(self) -> None:
        holder = _read(self.path)
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)


def acquire_driver_lock(study_dir: Path, study: str) -> DriverLock:
    """Take the study's driver lock, or raise a UserError naming the driver that holds it."""
    path = study_dir / LOCK_FILE
    study_dir.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _proc_start(),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "token": uuid.uuid4().hex}
    for _ in range(3):  # a stale lock is moved aside, then the create is tried again
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _refuse_or_clear(path, study)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return DriverLock(path, record["token"])
    raise UserError(f"{path}: could not take the driver lock; another driver keeps taking it")


def _refuse_or_clear(path: Path, study: str) -> None:
    holder = _read(path)
    if holder is None:
        if _age(path) < _WRITING_SECONDS:
            raise UserError(f"study {study!r} is starting in another driver ({path} was just "
                            "created); wait for it, or retry in a few seconds")
    elif _alive(holder):
        raise UserError(f"study {study!r} is already running: {_describe(holder)}; wait for it "
                        f"to finish or stop it (if it is not running, delete {path})")
    stale = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, stale)
        stale.unlink()
    except FileNotFoundError:
        pass  # another driver cleared it first; the next create decides


def _describe(holder: dict[str, Any]) -> str:
    text = (f"driver pid {holder.get('pid')} on host {holder.get('host')} since "
            f"{holder.get('started_at')}")
    return one_line(text, 160)


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's driver may still run: True unless shown dead on this host."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, run by another user
    recorded, current = holder.get("proc_start"), _proc_start(pid)
    return recorded is None or current is None or recorded == current


def _proc_start(pid: int | None = None) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), None elsewhere."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _age(path: Path) -> float:
    try:
        return datetime.now().timestamp() - path.stat().st_mtime
    except OSError:
        return _WRITING_SECONDS


def read_experiment_owner(experiment: str) -> dict[str, Any] | None:
    """The study a Tune experiment folder (a path or URI) belongs to, as its launch recorded it
    in :data:`OWNER_FILE`; None when the folder or the file is missing or unreadable."""
    fs, path = _filesystem(experiment)
    try:
        with fs.open_input_stream(f"{path}/{OWNER_FILE}") as f:
            owner = json.loads(f.read(1 << 16).decode("utf-8"))
    except (OSError, ValueError, RecursionError, ArrowException):
        return None
    return owner if isinstance(owner, dict) else None


def experiment_exists(experiment: str) -> bool:
    """Whether a Tune experiment folder (a path or URI) exists."""
    from pyarrow.fs import FileType

    fs, path = _filesystem(experiment)
    try:
        return fs.get_file_info(path).type != FileType.NotFound
    except (OSError, ArrowException):
        return False


def claim_experiment(experiment: str, owner: dict[str, Any]) -> None:
    """Record in the experiment folder which study it belongs to (before Tune writes there)."""
    fs, path = _filesystem(experiment)
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{OWNER_FILE}") as f:
        f.write(json.dumps(owner, indent=2).encode())


def _filesystem(experiment: str) -> tuple[Any, str]:
    from pyarrow.fs import FileSystem

    try:
        return FileSystem.from_uri(experiment)
    except (ValueError, ArrowException) as exc:
        raise UserError(f"--storage {experiment}: {one_line(str(exc), 120)}") from None


@dataclass(frozen=True)
class StudyPlace:
    """Where a study lives: its results folder, and Tune's experiment folder (path or URI)."""

    study: str
    study_dir: Path
    experiment: str

    @property
    def storage(self) -> str | None:
        """The --storage folder holding the experiment; None for the default, STUDY_DIR/tune."""
        default = self.experiment == str(self.study_dir / "tune")
        return None if default else self.experiment.rsplit("/", 1)[0]


def check_study_state(place: StudyPlace, resume: bool, run_ids: list[str],
                      can_restore: Callable[[str], bool]) -> str:
    """Refuse a launch or resume that would mix studies; return the study's uid.

    ``can_restore`` says whether Tune can restore an experiment folder (Tune's own check).
    """
    info = read_study_info(place.study_dir)
    owner = read_experiment_owner(place.experiment)
    if not resume:
        if info or (place.study_dir / TABLE).exists() or _is_own(owner, info, place.study_dir):
            raise UserError(f"{place.study_dir}: study {place.study!r} exists; add --resume to "
                            "finish it, or choose another --study name")
        if experiment_exists(place.experiment):
            raise UserError(_foreign(place.experiment, owner))
        return uuid.uuid4().hex
    _check_resumable(place, info, owner, can_restore)
    if info.get("run_ids") is not None and sorted(info["run_ids"]) != sorted(run_ids):
        raise UserError(f"{place.study_dir}: the search space differs from the one this study "
                        "was launched with; resume with the same files and --set values")
    return info.get("study_uid") or (owner or {}).get("study_uid") or uuid.uuid4().hex


def _check_resumable(place: StudyPlace, info: dict[str, Any], owner: dict[str, Any] | None,
                     can_restore: Callable[[str], bool]) -> None:
    study_dir, experiment = place.study_dir, place.experiment
    if "storage" in info and info["storage"] != place.storage:
        raise UserError(f"{study_dir}: study {place.study!r} keeps its Tune records at "
                        f"{info.get('tune_experiment')}; resume with the --storage it was "
                        "launched with")
    if not experiment_exists(experiment) or not can_restore(experiment):
        raise UserError(f"{study_dir}: nothing to resume for study {place.study!r} (no Tune "
                        f"records at {experiment}); launch it without --resume")
    legacy = owner is None and place.storage is None  # a private folder, from before owner files
    if not legacy and not _is_own(owner, info, study_dir):
        raise UserError(_foreign(experiment, owner))


def _is_own(owner: dict[str, Any] | None, info: dict[str, Any], study_dir: Path) -> bool:
    """Whether an experiment folder's owner record is this study's."""
    if owner is None:
        return False
    if info.get("study_uid"):
        return owner.get("study_uid") == info["study_uid"]
    return owner.get("study_dir") == str(study_dir)


def _foreign(experiment: str, owner: dict[str, Any] | None) -> str:
    who = (f"study {one_line(repr(owner.get('study')), 60)} (results in "
           f"{one_line(str(owner.get('study_dir')), 160)})" if owner else
           "another study (no gridstudy record says which)")
    return (f"{experiment} holds the Ray Tune records of {who}; studies must not share them: "
            "choose another --study name or --storage")
