"""Snapshots of training in progress: what one holds, when one is taken, how it is stored.

A killed worker would otherwise lose every run it had not finished. So the trainers
(``train.train_run`` for one run, ``fused.train_fused`` for a fused group) hand a policy the whole
state of the training in progress every so often: weights, optimizer states, each run's random
generator state, the step, and the curve so far. A trainer given such a state back continues
from it and ends bit for bit where the uninterrupted run ends.

A snapshot is a dict of tensors, numbers, strings, bools, None and lists, tuples and dicts of
them, so it loads with ``torch.load(weights_only=True)`` and is never unpickled. Its top level:

- ``format``: :data:`SNAPSHOT_FORMAT`; a snapshot of another format is not used;
- ``kind``: ``"solo"`` (one run, ``train_run``) or ``"fused"`` (a group, ``train_fused``);
- ``device``: the device type it was trained on, ``torch``: the torch version (the last bits of
  a step depend on both, so a snapshot resumes only where it was made);
- ``run_ids``: the runs in progress, ``step``: the steps they have done;
- ``started_at``: when they started; ``state``: the trainer's own state (see each trainer).

The tensors in a snapshot handed to :meth:`SnapshotPolicy.save` share memory with the training:
``save`` must write them out (e.g. with :func:`save_snapshot`) before it returns, not keep them.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol

import torch

from gridstudy.errors import UserError

SNAPSHOT_FORMAT = 1  # bump when a trainer's state changes; older snapshots are then not used
SNAPSHOT_SECONDS = 10.0  # default wall time between snapshots of training in progress
CHECK_EVERY_STEPS = 16  # how often (in steps) a timed policy looks at the clock
KINDS = ("solo", "fused")


class SnapshotPolicy(Protocol):
    """When to take a snapshot, and what to do with it."""

    def due(self, step: int) -> bool:
        """Whether to take a snapshot now, after ``step`` steps of the run or group; called
        after every step, so it must be cheap."""
        ...

    def save(self, state: dict[str, Any]) -> None:
        """Store ``state`` (a snapshot, see the module docstring) before returning."""
        ...


class PeriodicSnapshots:
    """A snapshot every ``seconds`` of wall time, or every ``steps`` steps when given.

    The clock is read every :data:`CHECK_EVERY_STEPS` steps only and restarts after each save,
    so the time a save takes is not counted against the next interval.
    """

    def __init__(self, save: Callable[[dict[str, Any]], None], *,
                 seconds: float = SNAPSHOT_SECONDS, steps: int | None = None) -> None:
        if steps is not None and steps < 1:
            raise ValueError(f"snapshot interval must be at least one step, got {steps}")
        self._save, self.seconds, self.steps = save, seconds, steps
        self._last = time.monotonic()

    def due(self, step: int) -> bool:
        if self.steps is not None:
            return step % self.steps == 0
        return step % CHECK_EVERY_STEPS == 0 and time.monotonic() - self._last >= self.seconds

    def save(self, state: dict[str, Any]) -> None:
        self._save(state)
        self._last = time.monotonic()


def new_snapshot(kind: str, run_ids: list[str], step: int, device: torch.device,
                 started_at: str, state: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of ``kind`` for the runs ``run_ids`` after ``step`` steps (module docstring)."""
    assert kind in KINDS, kind
    return {"format": SNAPSHOT_FORMAT, "kind": kind, "device": device.type,
            "torch": str(torch.__version__), "run_ids": list(run_ids), "step": step,
            "started_at": started_at, "state": state}


def mismatch(snapshot: dict[str, Any], todo: Collection[str], device: str | torch.device
             ) -> str | None:
    """Why ``snapshot`` cannot continue here (None when it can): another format, torch or
    device type, or runs that are not among ``todo`` (the run ids still to train)."""
    device_type = torch.device(device).type
    if snapshot.get("format") != SNAPSHOT_FORMAT:
        return f"it has format {snapshot.get('format')!r}, not {SNAPSHOT_FORMAT}"
    if snapshot.get("kind") not in KINDS:
        return f"its kind {snapshot.get('kind')!r} is not one of {', '.join(KINDS)}"
    if snapshot.get("torch") != str(torch.__version__):
        return f"it was made with torch {snapshot.get('torch')}, this is {torch.__version__}"
    if snapshot.get("device") != device_type:
        return f"it was made on {snapshot.get('device')}, this is {device_type}"
    ids = snapshot.get("run_ids") or []
    if not ids or not set(ids) <= set(todo):
        return "its runs are not among the bundle's unfinished runs"
    return None


def usable(snapshot: dict[str, Any] | None, todo: Collection[str], device: str | torch.device
           ) -> dict[str, Any] | None:
    """``snapshot`` if it can continue here, else None with a warning saying why."""
    if snapshot is None:
        return None
    reason = mismatch(snapshot, todo, device)
    if reason is None:
        return snapshot
    warn_ignored(reason)
    return None


def warn_ignored(reason: str) -> None:
    warnings.warn(f"not resuming from the snapshot: {reason}; its runs start over",
                  stacklevel=3)


def save_snapshot(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a reader sees the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_snapshot(path: Path) -> dict[str, Any]:
    """Read a snapshot with ``torch.load(weights_only=True)``, tensors on the CPU.

    A file that is not a snapshot (corrupt, truncated, or holding anything but plain data)
    raises :class:`UserError` naming it; a missing one raises ``FileNotFoundError``.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling refused, truncated zip, wrong magic number, ...
        raise UserError(f"{path}: not a readable training snapshot ({type(exc).__name__}: "
                        f"{_reason(exc)}); delete it to start the bundle's in-progress runs "
                        "over") from None
    if not isinstance(state, dict) or "format" not in state:
        raise UserError(f"{path}: not a training snapshot (no format); delete it to start the "
                        "bundle's in-progress runs over")
    return state


def _reason(exc: Exception) -> str:
    """The line of ``exc`` that says what was wrong (torch's refusals open with advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if line.startswith("WeightsUnpickler error")]
    return ((named or lines or [""])[0])[:200]
