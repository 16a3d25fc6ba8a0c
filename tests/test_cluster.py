"""A study on a three-node Ray cluster on this machine, one worker node killed mid-study.

The cluster is the one of issue 16: a head node with 0 CPUs and two worker nodes with 1 CPU
each, started with ``ray start`` on 127.0.0.1 with ports and an auth token of the test's own.
Ray refuses a worker node with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the setting that keeps a
local instance on loopback, so these nodes run with Ray's default and the machine's own address.
Every process the test starts is stopped by its id: the ``ray start`` processes (each its own
process group) and everything below them, trial workers included (they set their own groups).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gridstudy.results import load_results
from tests.processes import descendants, kill_quietly, reference_rows
from tests.test_evaluation import same

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
SPACE = """
blocks:
  - model: gan
    axes: {lr: [0.001, 0.0001]}
    fixed: {size_g: 16, size_d: 8, steps: 200, n_eval: 100, batch_size: 8}
  - model: ebgan
    axes: {n_layers_d: [2, 3]}
    fixed: {size_g: 16, size_d: 8, steps: 200, n_eval: 100, batch_size: 8}
"""
SCORES = ("i_prime", "inception_score", "loss_d", "loss_g", "frechet_distance", "precision",
          "recall", "class_kl_uniform", "n_classes_covered", "status")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A head (0 CPUs) and worker nodes (1 CPU each), each a ``ray start --block`` of ours."""

    def __init__(self, workers: int = 2) -> None:
        self.temp = tempfile.mkdtemp(prefix="gs-ray-", dir="/tmp")  # short: socket paths
        self.port = free_port()
        self.token = secrets.token_hex(32)
        self.env = {k: v for k, v in os.environ.items()
                    if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
        self.env.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                         "RAY_AUTH_TOKEN": self.token})
        self.nodes: list[subprocess.Popen] = []
        self.start(["--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false",
                    f"--dashboard-port={free_port()}"])
        for _ in range(workers):
            self.start([f"--address=127.0.0.1:{self.port}", "--num-cpus=1"])

    def start(self, args: list[str]) -> None:
        log = Path(self.temp) / f"node{len(self.nodes)}.log"
        with open(log, "w") as out:
            self.nodes.append(subprocess.Popen(
                [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp}",
                 f"--dashboard-agent-listen-port={free_port()}", *args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert self.nodes[-1].poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"node did not start: {log.read_text()[-2000:]}"
            time.sleep(0.3)

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``: its process group, and every process below it by id."""
        node = self.nodes[index]
        below = descendants(node.pid)  # before the kill: orphans are re-parented to init
        kill_quietly(os.killpg, node.pid)
        for pid in below:
            kill_quietly(os.kill, pid)
        node.wait()

    def stop(self) -> None:
        for index in range(len(self.nodes)):
            self.kill(index)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def cluster():
    started = Cluster()
    try:
        yield started
    finally:
        started.stop()


class Driver:
    """``gridstudy sweep`` in a subprocess, its output lines kept with the time they came."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gridstudy.cli", "sweep", *args],
            env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        self.reader.join(timeout=10)
        return code

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, pattern: str) -> float | None:
        return next((t for t, line in self.lines if re.search(pattern, line)), None)


def wait_for_a_trial_on(cluster: Cluster, index: int, driver: Driver, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.process.poll() is None:
        if any("ImplicitFunc.train" in a for a in descendants(cluster.nodes[index].pid).values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no trial ran on node {index}:\n{driver.output()}")


def test_a_lost_worker_node_costs_no_run_and_changes_no_score(cluster, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    results = tmp_path / "results"
    driver = Driver([str(space), "--study", "lost-node", "--results-dir", str(results),
                     "--address", f"127.0.0.1:{cluster.port}", "--storage",
                     str(tmp_path / "storage"), "--no-fuse"], cluster.env)
    wait_for_a_trial_on(cluster, 1, driver, timeout=150)
    time.sleep(1.0)  # the trial is training its bundle
    killed_at = time.monotonic()
    cluster.kill(1)
    assert driver.wait(timeout=150) == 0, driver.output()
    output = driver.output()
    assert re.search(r"\[lost-node\] node [\d.]+:\d+ lost; bundle \w+ resumes from its last "
                     r"checkpoint \(0 of 1 runs done\) on another worker", output), output
    resumed = driver.first(r"bundle \w+ resumed on node")
    assert resumed is not None, output
    assert not re.search(r"\(raylet\)|\x1b\[|Trials did not complete|Traceback", output), output
    frame = load_results(results / "lost-node").set_index("run_id")
    reference = reference_rows(space)
    assert len(frame) == 4 and frame.index.is_unique and set(frame.index) == set(reference)
    for run_id, row in reference.items():
        for score in SCORES:
            if score in row:
                assert same(frame.loc[run_id, score], row[score]), (run_id, score)
    started = driver.lines[0][0]
    print("\n".join(f"{t - started:6.1f} {line}" for t, line in driver.lines))
    print(f"\nnode killed -> bundle lost line {driver.first(r'lost;') - killed_at:.1f} s, "
          f"-> bundle resumed {resumed - killed_at:.1f} s")
