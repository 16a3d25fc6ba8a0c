"""What the driver of a running study prints: progress, lost nodes and failed bundles, warnings.

Each event is one line, prefixed with the study's name, that says what happened and what happens
next, e.g. ``[smoke] node 10.0.0.7:41230 lost; bundle 3f2a9c1b7d2e resumes from its last
checkpoint (2 of 6 runs done) on another worker``. A warning raised in a trial is printed once,
however many trials raise it. This module knows nothing about Ray: ``gridstudy.tune`` feeds it
Tune's events, and a function that says whether a node is lost.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridstudy.errors import UserError, one_line
from gridstudy.results import ResultsTable, read_bundle_records, write_samples

# node id -> (its address, whether it is lost); gridstudy.tune asks Ray.
NodeStatus = Callable[[str], tuple[str, bool]]
# The errors Ray raises for a trial whose worker process (or its node) went away.
_WORKER_GONE = re.compile(r"ActorDiedError|ActorUnavailableError|RayActorError|WorkerCrashed"
                          r"|NodeDiedError|OwnerDiedError|actor died|SYSTEM_ERROR")


@dataclass
class TrialView:
    """What the driver knows about one trial (one bundle) from its reports."""

    bundle: str
    node: str | None = None  # Ray node id it runs on
    saved: int = 0  # runs in its newest checkpoint
    step: int = 0  # steps of the training in progress snapshotted in it
    total: int = 0  # runs in the bundle
    failed_at: float | None = None  # when it last failed, until it reports again


class StudyProgress:
    """The driver's state of a running study: checkpoints -> table and samples; printed lines."""

    def __init__(self, table: ResultsTable, total: int, node_status: NodeStatus) -> None:
        self.table = table
        self.total = total
        self.node_status = node_status
        self.start = time.monotonic()
        self.done_at_start = len(table.rows)
        self.trial_errors = 0
        self.last_print = 0.0
        self.trials: dict[str, TrialView] = {}
        self.messages: set[str] = set()  # worker warnings printed so far

    def view(self, trial_id: str, bundle: str) -> TrialView:
        return self.trials.setdefault(trial_id, TrialView(bundle))

    def checkpoint(self, trial_id: str, bundle: str, folder: Path) -> None:
        """A trial's new checkpoint: its rows go to the table, its samples beside it."""
        try:
            rows, samples = read_bundle_records(folder)
        except UserError as exc:
            self.say(f"{exc}; bundle {bundle}'s runs stay in Tune's records "
                     "(`gridstudy results rebuild` reads them)")
            return
        if samples:
            write_samples(samples, self.table.study_dir, bundle)
        self.table.add(rows)
        self.view(trial_id, bundle).saved = len(rows)
        self.progress()

    def result(self, trial_id: str, bundle: str, result: dict[str, Any]) -> None:
        """A trial's report: where it runs, how far its checkpoint is, the warnings it raised."""
        view = self.view(trial_id, bundle)
        view.node = result.get("node") or view.node
        view.saved = int(result.get("runs_saved", view.saved))
        view.step = int(result.get("snapshot_step", view.step))
        view.total = int(result.get("runs_total", view.total))
        for text in result.get("messages") or []:
            if text not in self.messages:
                self.messages.add(text)
                self.say(f"warning from bundle {bundle}: {text}")
        if view.failed_at is not None and "node" in result:  # the first report of a retry
            address = self.node_status(view.node)[0] if view.node else "?"
            self.say(f"bundle {bundle} resumed on node {address} "
                     f"{time.monotonic() - view.failed_at:.1f} s after it stopped "
                     f"({view.saved} of {view.total} runs done"
                     + (f", the next from step {view.step:,})" if view.step else ")"))
            view.failed_at = None

    def failure(self, trial_id: str, bundle: str, error: str, retrying: bool, tries: int) -> None:
        """A trial failed: say why in one line, and whether it resumes or is given up."""
        view = self.view(trial_id, bundle)
        self.trial_errors += 1
        view.failed_at = time.monotonic()
        address, lost = self.node_status(view.node) if view.node else ("?", False)
        done = f"{view.saved} of {view.total or '?'} runs done"
        if view.step:
            done += f", the next at step {view.step:,}"
        if lost:
            cause, where = f"node {address} lost", "on another worker"
        elif _WORKER_GONE.search(error):
            cause, where = f"the worker of bundle {bundle} died", "on the next free worker"
        else:
            cause, where = f"bundle {bundle} failed ({one_line(error, 160)})", "on a worker"
        if retrying:
            outcome = f"bundle {bundle} resumes from its last checkpoint ({done}) {where}"
        else:
            outcome = (f"bundle {bundle} is given up after {tries} tries ({done}): its "
                       "unfinished runs are recorded as failed; --resume runs them again")
        self.say(f"{cause}; {outcome}")
        self.progress(force=True)

    def say(self, text: str) -> None:
        print(f"[{self.table.study}] {one_line(text, 400)}", file=sys.stderr, flush=True)

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
            left = fmt_seconds(elapsed / new * (self.total - done))
        elif done >= self.total:
            left = "0s"
        print(f"[{self.table.study}] {done}/{self.total} runs (ok {counts['ok']}, diverged "
              f"{counts['diverged']}, failed {counts['failed']}), trial errors "
              f"{self.trial_errors}, {fmt_seconds(elapsed)} elapsed, ~{left} left", flush=True)


def fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
