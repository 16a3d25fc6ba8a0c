"""Helpers of the tests that start processes: Ray nodes, drivers, trial workers.

The process tree is read from /proc, so a test finds the processes it started (and only those)
and stops them by id. ``reference_rows`` trains a space's runs without Ray, the way a 1-CPU
trial does, for tests that compare a sweep's scores with an undisturbed run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path


def process_tree() -> dict[int, list[tuple[int, str]]]:
    """ppid -> [(pid, command line)] of every process, from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append((int(entry.name), args))
    return children


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below ``root``."""
    tree, found, todo = process_tree(), {}, [root]
    while todo:
        for pid, args in tree.get(todo.pop(), []):
            found[pid] = args
            todo.append(pid)
    return found


def trial_workers(root: int) -> list[int]:
    """The Ray trial workers (Tune's function trainables) below ``root``."""
    return [pid for pid, args in descendants(root).items() if "ImplicitFunc.train" in args]


def kill_quietly(kill, pid: int) -> None:  # noqa: ANN001
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signal.SIGKILL)


REFERENCE = """
import json, sys
from gridstudy.spaces import load_space
from gridstudy.study import prepare_inputs, train_bundle
runs = list(load_space([sys.argv[1]]).runs)
results = train_bundle(runs, prepare_inputs({"mnist5k"}, None), device="cpu",
                       fuse=sys.argv[2] == "fused")
print(json.dumps({r.row["run_id"]: {**r.row, "curve": r.curve} for r in results},
                 default=str))
"""


def reference_rows(space: Path, fuse: bool = False) -> dict[str, dict]:
    """run_id -> row (curve included) of the space's runs trained as one bundle without Ray, in
    a process with one thread for torch and BLAS, as Ray gives a 1-CPU trial
    (OMP_NUM_THREADS=1; the Frechet distance's linear algebra differs in the last digits with
    more threads)."""
    one = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", REFERENCE, str(space),
                           "fused" if fuse else "alone"], capture_output=True, text=True,
                          env={**os.environ, **one}, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])
