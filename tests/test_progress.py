"""The driver's lines about a running study: lost nodes, failed bundles, worker warnings."""

import re

import pytest

from gridstudy.progress import StudyProgress
from gridstudy.results import ResultsTable, write_bundle_records

NODE_ERROR = ("ray.exceptions.ActorUnavailableError: The actor 2f93 is unavailable: The actor "
              "is temporarily unavailable: RpcError: RPC error: Socket closed rpc_code: 14. The "
              "task may or may not have been executed on the actor.")


def make_progress(tmp_path, lost=False):
    table = ResultsTable(tmp_path, "s", flush_seconds=0)
    return StudyProgress(table, 4, lambda node: ("127.0.0.1:41230", lost))


def lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if not re.search(r"\d+/4 runs", ln)]


def test_a_lost_node_is_one_line_saying_what_happens_next(tmp_path, capsys):
    progress = make_progress(tmp_path, lost=True)
    progress.result("t1", "b1", {"node": "n1", "runs_saved": 1, "runs_total": 3, "messages": []})
    progress.failure("t1", "b1", NODE_ERROR, retrying=True, tries=1)
    assert lines(capsys) == ["[s] node 127.0.0.1:41230 lost; bundle b1 resumes from its last "
                             "checkpoint (1 of 3 runs done) on another worker"]
    progress.result("t1", "b1", {"node": "n2", "runs_saved": 1, "runs_total": 3, "messages": []})
    (line,) = lines(capsys)
    assert re.fullmatch(r"\[s\] bundle b1 resumed on node 127\.0\.0\.1:41230 [\d.]+ s after it "
                        r"stopped \(1 of 3 runs done\)", line)


@pytest.mark.parametrize("error, retrying, expected", [
    (NODE_ERROR, True, "[s] the worker of bundle b1 died; bundle b1 resumes from its last "
                       "checkpoint (0 of 2 runs done) on the next free worker"),
    ("ValueError: " + "word " * 60, False, "[s] bundle b1 failed (ValueError: word word"),
])
def test_a_failed_bundle_is_one_line_never_cut_inside_a_word(tmp_path, capsys, error, retrying,
                                                              expected):
    progress = make_progress(tmp_path)
    progress.result("t1", "b1", {"node": "n1", "runs_saved": 0, "runs_total": 2, "messages": []})
    progress.failure("t1", "b1", error, retrying=retrying, tries=3)
    (line,) = lines(capsys)
    assert line.startswith(expected)
    if not retrying:
        assert "word…); bundle b1 is given up after 3 tries (0 of 2 runs done)" in line
        assert "--resume runs them again" in line


def test_each_worker_warning_is_printed_once(tmp_path, capsys):
    progress = make_progress(tmp_path)
    for trial in ("t1", "t2"):
        progress.result(trial, "b", {"messages": ["UserWarning: fused training failed"]})
    progress.result("t1", "b", {"messages": ["UserWarning: data problem"]})
    assert lines(capsys) == ["[s] warning from bundle b: UserWarning: fused training failed",
                             "[s] warning from bundle b: UserWarning: data problem"]


def test_a_damaged_checkpoint_loses_no_recorded_run(tmp_path, capsys):
    progress = make_progress(tmp_path)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    write_bundle_records(folder, [], {})
    (folder / "rows.json").write_bytes(b"\xff\xfe garbage")
    progress.checkpoint("t1", "b1", folder)
    (line,) = lines(capsys)
    assert "unreadable checkpoint" in line and "gridstudy results rebuild" in line
    assert progress.table.rows == {}
