"""Studies on Ray Tune: the trainable alone, then end to end on a real local Ray instance
(loopback only, resume, rebuild, isolation of studies sharing a storage folder).

The end-to-end tests are marked slow: each starts Ray (a few seconds) and trains tiny runs.
"""

import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from gridstudy.config import RunConfig
from gridstudy.errors import UserError
from gridstudy.results import load_curves, load_results, load_samples, write_table
from gridstudy.spaces import load_space
from tests.processes import reference_rows, trial_workers
from tests.test_evaluation import assert_same_curve, same

TINY = """
blocks:
  - model: gan
    axes: {lr: [0.001, 0.0001]}
    fixed: {size_g: 16, size_d: 8, steps: %(steps)d, n_eval: 100, batch_size: 8}
  - model: ebgan
    axes: {n_layers_d: [2, 3]}
    fixed: {size_g: 16, size_d: 8, steps: %(steps)d, n_eval: 100, batch_size: 8}
"""


def space_file(tmp_path: Path, steps: int = 5, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(TINY % {"steps": steps})
    return path


def ray_listen_addresses() -> list[tuple[str, str]]:
    """(address, process) of every listening socket owned by a Ray process of this machine."""
    out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        names = re.findall(r'\("([^"]+)"', line)
        if any(n in ("gcs_server", "raylet") or n.startswith("ray::") or n == "python"
               for n in names):
            found.append((line.split()[3], ",".join(names)))
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "*":
        return False
    ip = ipaddress.ip_address(host)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


@pytest.mark.slow
def test_four_run_study_end_to_end_on_loopback_only(tmp_path):
    import ray

    from gridstudy.tune import SweepOptions, run_sweep

    space = load_space([space_file(tmp_path)])
    options = SweepOptions(study="t", results_dir=tmp_path / "results", bundle_size=2,
                           fuse=False, num_cpus=2)
    try:
        outcome = run_sweep(space, options)
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        listeners = ray_listen_addresses()
        assert any("gcs_server" in p for _, p in listeners)
        exposed = [(a, p) for a, p in listeners if not is_loopback(a)]
        assert not exposed, f"Ray listens beyond loopback: {exposed}"
    finally:
        ray.shutdown()
    frame = load_results(tmp_path / "results" / "t")
    assert len(frame) == 4 == len(outcome.table.rows) and outcome.unfinished == 0
    assert sorted(frame["run_id"]) == sorted(c.run_id() for c in space.runs)
    assert set(frame["status"]) == {"ok"} and set(frame["study"]) == {"t"}
    assert set(load_samples(tmp_path / "results" / "t")) == set(frame["run_id"])
    with pytest.raises(UserError, match="exists; add --resume"):
        run_sweep(space, options)


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "gridstudy.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


@pytest.mark.slow
def test_resume_after_the_driver_is_killed(tmp_path):
    space = space_file(tmp_path, steps=400)
    results = tmp_path / "results"
    args = [str(space), "--study", "r", "--results-dir", str(results), "--bundle-size", "1",
            "--num-cpus", "1", "--no-fuse"]
    driver = cli("sweep", *args)
    table = results / "r" / "runs.parquet"
    deadline = time.monotonic() + 240
    while not table.exists() and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert table.exists(), driver.communicate()[0] if driver.poll() is not None else "timed out"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
    driver.wait()
    before = load_results(results / "r").set_index("run_id")["started_at"].to_dict()
    assert 1 <= len(before) < 4
    resumed = cli("sweep", *args, "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    after = load_results(results / "r")
    assert len(after) == 4 and after["run_id"].is_unique
    assert set(after["status"]) == {"ok"}
    # runs finished before the kill were not run again
    for run_id, started in before.items():
        assert after.set_index("run_id").loc[run_id, "started_at"] == started


@pytest.mark.slow
def test_rebuild_a_corrupt_table_from_tunes_records(tmp_path):
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "gridstudy.cli", "sweep",
                           str(space_file(tmp_path)), "--study", "c", "--results-dir",
                           str(results), "--num-cpus", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    table = results / "c" / "runs.parquet"
    original = load_results(results / "c")
    table.write_bytes(table.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt results table"):
        load_results(results / "c")
    rebuilt = subprocess.run([sys.executable, "-m", "gridstudy.cli", "results", "rebuild",
                              str(results / "c")], capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = load_results(results / "c")
    assert sorted(again["run_id"]) == sorted(original["run_id"])
    cols = ["run_id", "i_prime", "status"]
    assert again.sort_values("run_id")[cols].reset_index(drop=True).equals(
        original.sort_values("run_id")[cols].reset_index(drop=True))


RAY_NOISE = re.compile(r"\(raylet\)|\x1b\[|Trials did not complete|Traceback|\bERROR\b")


@pytest.mark.slow
def test_a_bundle_given_up_fails_its_runs_exits_3_and_resume_finishes_them(tmp_path):
    results = tmp_path / "results"
    args = [str(space_file(tmp_path, steps=300)), "--study", "k", "--results-dir", str(results),
            "--bundle-size", "2", "--num-cpus", "2", "--no-fuse"]
    driver = cli("sweep", *args, "--max-failures", "0")
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        workers = trial_workers(driver.pid)
        if workers:
            time.sleep(1.0)  # mid-trial: the worker has started training its bundle
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.2)
    assert killed is not None, "no trial worker appeared"
    output = driver.communicate(timeout=300)[0]
    assert driver.returncode == 3, output
    assert re.search(r"\[k\] the worker of bundle \w+ died; bundle \w+ is given up after 1 "
                     r"tries \(0 of 1 runs done\)", output), output
    assert "runs failed; their errors are in the table" in output
    assert not RAY_NOISE.search(output), output
    frame = load_results(results / "k")
    assert len(frame) == 4 and frame["run_id"].is_unique and "failed" in set(frame["status"])
    resumed = cli("sweep", *args, "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    frame = load_results(results / "k")
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}


SNAPSHOT_SPACE = """
blocks:
  - model: ebgan_pt
    fixed: {size_g: 64, size_d: 32, steps: 4000, eval_every: 400, n_eval: 200, batch_size: 32}
"""
SCORES = ("i_prime", "inception_score", "loss_d", "loss_g", "frechet_distance", "precision",
          "recall", "class_kl_uniform", "n_classes_covered", "status", "best_i_prime")


@pytest.mark.slow
def test_a_worker_killed_mid_training_resumes_from_its_snapshot_bit_for_bit(tmp_path):
    """SIGKILL a real trial worker after its run's training in progress is in a checkpoint: the
    retried bundle goes on from that step and ends exactly where the same run trained without
    interruption ends (scores, losses, every curve point). Fused groups resume the same way
    (tests/test_snapshot.py, in-process)."""
    space = tmp_path / "space.yaml"
    space.write_text(SNAPSHOT_SPACE)
    results = tmp_path / "results"
    driver = cli("sweep", str(space), "--study", "snap", "--results-dir", str(results),
                 "--num-cpus", "1", "--snapshot-seconds", "1")
    checkpoints = results / "snap" / "tune"
    killed, deadline = None, time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and driver.poll() is None:
        if any(checkpoints.rglob("snapshot.pt")):
            time.sleep(2.5)  # the driver has taken in that checkpoint's report (one a second)
            workers = trial_workers(driver.pid)
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                killed = workers[0]
        time.sleep(0.1)
    assert killed is not None, driver.communicate(timeout=60)[0] if driver.poll() is not None \
        else "no snapshot within 240 s"
    output = driver.communicate(timeout=300)[0]
    assert driver.returncode == 0, output
    died = re.search(r"\[snap\] the worker of bundle (\w+) died; bundle \1 resumes from its last "
                     r"checkpoint \(0 of 1 runs done, the next at step ([\d,]+)\) on the next "
                     r"free worker", output)
    assert died, output
    step = int(died[2].replace(",", ""))
    assert 0 < step < 4000
    assert re.search(rf"bundle {died[1]} resumed on node \S+ [\d.]+ s after it stopped \(0 of 1 "
                     rf"runs done, the next from step {died[2]}\)", output), output
    assert not RAY_NOISE.search(output), output
    frame = load_results(results / "snap").set_index("run_id")
    curves = load_curves(results / "snap")
    reference = reference_rows(space)
    assert sorted(frame.index) == sorted(reference) and len(curves) == 10
    for run_id, row in reference.items():
        for score in SCORES:
            assert same(frame.loc[run_id, score], row[score]), (run_id, score)
        points = curves[curves["run_id"] == run_id].to_dict("records")
        assert_same_curve(points, row["curve"])


@pytest.mark.slow
def test_ctrl_c_leaves_unfinished_runs_for_resume_not_failed(tmp_path):
    results = tmp_path / "results"
    args = [str(space_file(tmp_path, steps=400)), "--study", "i", "--results-dir", str(results),
            "--bundle-size", "1", "--num-cpus", "1", "--no-fuse"]
    driver = cli("sweep", *args)
    table = results / "i" / "runs.parquet"
    deadline = time.monotonic() + 240
    while not table.exists() and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)
    output = driver.communicate(timeout=120)[0]
    assert driver.returncode == 130, output
    assert "runs unfinished; add --resume" in output
    frame = load_results(results / "i")
    assert len(frame) < 4 and set(frame["status"]) == {"ok"}  # nothing recorded as failed
    resumed = cli("sweep", *args, "--resume")
    assert resumed.wait(timeout=300) == 0
    assert len(load_results(results / "i")) == 4


@pytest.mark.slow
def test_joins_a_running_cluster_with_address(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(  # its own process group: stopping it touches no other Ray
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         f"--port={port}", "--num-cpus=2", "--node-ip-address=127.0.0.1",
         "--include-dashboard=false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        done = subprocess.run(
            [sys.executable, "-m", "gridstudy.cli", "sweep", str(space_file(tmp_path)), "--study",
             "a", "--results-dir", str(tmp_path / "results"), "--address", f"127.0.0.1:{port}"],
            env={**os.environ, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True,
            timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(load_results(tmp_path / "results" / "a")) == 4
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # ray start --block stops its cluster and cleans up
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


@pytest.mark.slow
def test_studies_sharing_a_storage_folder_each_keep_their_own_runs(tmp_path):
    """Issue 16: a resumed study picked up another study's runs from a shared --storage."""
    import ray

    from gridstudy.tune import SweepOptions, run_sweep

    spaces = {"a": load_space([space_file(tmp_path)]),
              "b": load_space([space_file(tmp_path, steps=3, name="b.yaml")])}
    common = {"results_dir": tmp_path / "results", "storage": str(tmp_path / "storage"),
              "num_cpus": 2, "bundle_size": 2}
    try:
        for name, space in spaces.items():
            run_sweep(space, SweepOptions(study=name, **common))
        assert sorted(p.name for p in (tmp_path / "storage").iterdir()) == ["a", "b"]
        stray = load_results(tmp_path / "results" / "b").iloc[:1]
        for name in spaces:  # lose runs (a killed driver) and add a stray row of b to a's table
            frame = load_results(tmp_path / "results" / name).iloc[:2]
            write_table(frame if name == "b" else pd.concat([frame, stray]),
                        tmp_path / "results" / name)
        for name, space in spaces.items():
            run_sweep(space, SweepOptions(study=name, resume=True, **common))
    finally:
        ray.shutdown()
    for name, space in spaces.items():
        frame = load_results(tmp_path / "results" / name)
        assert sorted(frame["run_id"]) == sorted(r.run_id() for r in space.runs)
        assert set(frame["study"]) == {name}


def test_trial_warnings_travel_with_its_reports_once_each(monkeypatch, tmp_path, capsys):
    """Issue 14: warnings raised in a trial reach the driver's terminal, once each."""
    from ray import tune as ray_tune

    from gridstudy import tune
    from gridstudy.progress import StudyProgress
    from gridstudy.results import ResultsTable
    from gridstudy.study import failed_result

    reports = []
    monkeypatch.setattr(ray_tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(ray_tune, "report", lambda m, checkpoint=None: reports.append(
        (m, checkpoint)))
    monkeypatch.setattr(tune, "_node_label", lambda: "node-1")

    def train_bundle(runs, inputs, *, device, done, on_run_done, fuse, snapshots, resume):
        warnings.warn("fused training failed (boom); training the bundle one run at a time",
                      stacklevel=1)
        results = []
        for run in runs:
            warnings.warn("data problem", RuntimeWarning, stacklevel=1)  # twice: sent once
            results.append(failed_result(run, "x"))
            on_run_done(results)
        warnings.warn("after the last run", stacklevel=1)
        return results

    monkeypatch.setattr(tune, "train_bundle", train_bundle)
    runs = [RunConfig(lr=1e-3), RunConfig(lr=1e-4)]
    tune._trainable({"runs": [r.to_dict() for r in runs]})
    sent = [m for metrics, _ in reports for m in metrics["messages"]]
    assert sent == ["UserWarning: fused training failed (boom); training the bundle one run at a "
                    "time", "RuntimeWarning: data problem", "UserWarning: after the last run"]
    assert reports[0][0] == {"runs_done": 0, "runs_total": 2, "runs_saved": 0, "messages": [],
                             "node": "node-1", "snapshot_step": 0}
    assert [c is not None for _, c in reports] == [False, False, True, False]
    progress = StudyProgress(ResultsTable(tmp_path, "s"), 2, lambda node: ("127.0.0.1:1", False))
    for trial in ("t1", "t2"):  # two trials raising the same warnings
        for metrics, _ in reports:
            progress.result(trial, "b1", metrics)
    printed = capsys.readouterr().err.splitlines()
    assert printed == [f"[s] warning from bundle b1: {m}" for m in sent]


def test_ray_lines_stay_off_the_terminal_unless_verbose(monkeypatch, capsys):
    import logging

    from ray._private import worker

    from gridstudy.tune import quiet_ray

    printed = []
    monkeypatch.setattr(worker, "print_to_stdstream",
                        lambda data, ignore_prefix: printed.append(data["lines"]))
    for name in ("ray", "ray.tune"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    quiet_ray()
    worker.print_to_stdstream({"lines": ["node marked dead"], "pid": "raylet", "is_err": False},
                              ignore_prefix=False)
    worker.print_to_stdstream({"lines": ["hello"], "pid": 7, "is_err": False},
                              ignore_prefix=False)
    logging.getLogger("ray.tune.tune").error("Trials did not complete")
    assert printed == [["hello"]]
    assert "Trials did not complete" not in capsys.readouterr().err
