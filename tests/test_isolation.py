"""Studies kept apart: one driver per study (the lock), one study per Tune experiment folder."""

import json
import os
import socket
import subprocess
import sys

import pytest

from gridstudy.errors import UserError
from gridstudy.isolation import (
    LOCK_FILE,
    StudyPlace,
    acquire_driver_lock,
    check_study_state,
    claim_experiment,
    read_experiment_owner,
)
from gridstudy.results import write_study_info


def place(tmp_path, study="a", storage=None):
    study_dir = tmp_path / "results" / study
    experiment = f"{storage}/{study}" if storage else str(study_dir / "tune")
    return StudyPlace(study, study_dir, experiment)


def launch(p, uid="uid-" + "a"):
    """What a launch leaves behind: study.json and the owner record in Tune's folder."""
    write_study_info(p.study_dir, {"study": p.study, "study_uid": uid, "run_ids": ["r1"],
                                   "storage": p.storage, "tune_experiment": p.experiment})
    claim_experiment(p.experiment, {"study": p.study, "study_uid": uid,
                                    "study_dir": str(p.study_dir)})


def can_restore(experiment):
    return True


def test_a_second_driver_is_refused_naming_the_first(tmp_path):
    lock = acquire_driver_lock(tmp_path, "s")
    with pytest.raises(UserError) as info:
        acquire_driver_lock(tmp_path, "s")
    message = str(info.value)
    assert f"driver pid {os.getpid()} on host {socket.gethostname()} since" in message
    assert "already running" in message and "\n" not in message
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()
    acquire_driver_lock(tmp_path, "s").release()


def test_a_stale_lock_from_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = {"pid": int(dead.stdout), "host": socket.gethostname(), "started_at": "then",
             "token": "old"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    lock = acquire_driver_lock(tmp_path, "s")
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path):
    reused = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": 1,
              "started_at": "then", "token": "old"}  # our pid, but another process's start
    (tmp_path / LOCK_FILE).write_text(json.dumps(reused))
    acquire_driver_lock(tmp_path, "s").release()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    remote = {"pid": 1, "host": "elsewhere", "started_at": "then", "token": "x"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(remote))
    with pytest.raises(UserError, match="driver pid 1 on host elsewhere"):
        acquire_driver_lock(tmp_path, "s")


def test_release_leaves_a_lock_taken_over_by_another_driver(tmp_path):
    lock = acquire_driver_lock(tmp_path, "s")
    (tmp_path / LOCK_FILE).write_text(json.dumps({"token": "someone else"}))
    lock.release()
    assert (tmp_path / LOCK_FILE).exists()


def test_launching_where_another_study_keeps_its_records_is_refused(tmp_path):
    storage = str(tmp_path / "shared")
    other = StudyPlace("b", tmp_path / "elsewhere" / "b", f"{storage}/a")  # same name, other home
    launch(other, uid="uid-b")
    with pytest.raises(UserError) as info:
        check_study_state(place(tmp_path, storage=storage), False, ["r1"], can_restore)
    assert "holds the Ray Tune records of study 'b'" in str(info.value)
    assert str(tmp_path / "elsewhere" / "b") in str(info.value)


def test_resuming_onto_another_studys_records_is_refused(tmp_path):
    storage = str(tmp_path / "shared")
    mine = place(tmp_path, storage=storage)
    launch(mine, uid="uid-a")
    claim_experiment(mine.experiment, {"study": "a", "study_uid": "uid-other",
                                       "study_dir": "/other/a"})  # replaced by another launch
    with pytest.raises(UserError, match="holds the Ray Tune records of study 'a'"):
        check_study_state(mine, True, ["r1"], can_restore)


def test_own_study_resumes_and_keeps_its_uid(tmp_path):
    storage = str(tmp_path / "shared")
    mine = place(tmp_path, storage=storage)
    launch(mine, uid="uid-a")
    assert check_study_state(mine, True, ["r1"], can_restore) == "uid-a"
    (mine.study_dir / "study.json").unlink()  # a deleted study.json: the owner record decides
    assert check_study_state(mine, True, ["r1"], can_restore) == "uid-a"
    assert read_experiment_owner(mine.experiment)["study"] == "a"


@pytest.mark.parametrize("case, message", [
    ("exists", "exists; add --resume"),
    ("other storage", "resume with the --storage it was launched with"),
    ("nothing", "nothing to resume"),
    ("other space", "search space differs"),
    ("no owner", "no gridstudy record says which"),
])
def test_study_state_errors(tmp_path, case, message):
    storage = str(tmp_path / "shared")
    mine = place(tmp_path, storage=storage)
    resume, run_ids = True, ["r1"]
    if case == "exists":
        launch(mine)
        resume = False
    elif case == "other storage":
        launch(mine)
        mine = place(tmp_path, storage=str(tmp_path / "other"))
    elif case == "other space":
        launch(mine)
        run_ids = ["r2"]
    elif case == "no owner":
        (tmp_path / "shared" / "a").mkdir(parents=True)
    with pytest.raises(UserError) as info:
        check_study_state(mine, resume, run_ids, can_restore)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_fresh_launch_gets_a_new_uid(tmp_path):
    first = check_study_state(place(tmp_path), False, ["r1"], can_restore)
    second = check_study_state(place(tmp_path, study="b"), False, ["r1"], can_restore)
    assert first != second and len(first) == 32


def test_a_second_sweep_of_a_running_study_exits_2_naming_the_first(tmp_path, capsys):
    from gridstudy.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("model: gan\nfixed: {steps: 5}\n")
    lock = acquire_driver_lock(tmp_path / "results" / "s", "s")  # a driver of study s runs
    try:
        code = main(["sweep", str(space), "--study", "s", "--results-dir",
                     str(tmp_path / "results")])
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"study 's' is already running: driver pid {os.getpid()} on host" in err
