"""Snapshots of training in progress (gridstudy/snapshot.py): taking one changes nothing, and a
run, a fused group or a bundle resumed from one (once or twice) ends bit for bit where the
uninterrupted one ends; a snapshot that cannot continue is ignored with a warning; a corrupt or
foreign file is a one-line UserError and is never unpickled."""

from __future__ import annotations

import math
import pickle
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import gridstudy.fused
import gridstudy.snapshot
from gridstudy.errors import UserError
from gridstudy.fused import train_fused
from gridstudy.models import build_models
from gridstudy.snapshot import (
    CHECK_EVERY_STEPS,
    PeriodicSnapshots,
    load_snapshot,
    save_snapshot,
)
from gridstudy.study import train_bundle
from gridstudy.train import RunResult, train_run
from tests.test_evaluation import assert_same_curve, same
from tests.test_fused import MomentScorer, cheap_inputs, one_thread, tiny  # noqa: F401 (fixture)

TIMING = ("train_seconds", "score_seconds", "curve_seconds", "started_at")


def assert_identical(a: RunResult, b: RunResult) -> None:
    """The same row (timings aside, every value exactly), samples and curve."""
    assert a.row.keys() == b.row.keys()
    bad = [k for k in a.row if k not in TIMING and not same(a.row[k], b.row[k])]
    assert not bad, {k: (a.row[k], b.row[k]) for k in bad}
    assert (a.samples == b.samples).all()
    assert_same_curve(a.curve, b.curve)


def assert_all_identical(a: list[RunResult], b: list[RunResult]) -> None:
    by_id = {r.row["run_id"]: r for r in b}
    assert sorted(by_id) == sorted(r.row["run_id"] for r in a)
    for result in a:
        assert_identical(result, by_id[result.row["run_id"]])


def assert_same_state(a: Any, b: Any, where: str = "snapshot") -> None:
    """Two snapshots hold the same values (tensors bit for bit), wall times aside."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        bits = [t.reshape(-1).view(torch.uint8) for t in (a, b)]  # NaN equals NaN
        assert torch.equal(*bits), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            if key not in ("elapsed", "seconds", "train_seconds"):
                assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert same(a, b), (where, a, b)


def snapshots_to(folder: Path, every: int) -> tuple[PeriodicSnapshots, dict[int, Path]]:
    """A policy writing a snapshot file every ``every`` steps, and the files by step."""
    folder.mkdir()
    paths: dict[int, Path] = {}

    def save(state: dict[str, Any]) -> None:
        paths[state["step"]] = folder / f"step{state['step']}.pt"
        save_snapshot(paths[state["step"]], state)

    return PeriodicSnapshots(save, steps=every), paths


@pytest.mark.parametrize("c", [
    tiny(seed=1, dropout_d=True, eval_every=8),
    tiny(seed=2, model="ebgan_pt", margin_schedule="linear", margin_end=1.0, eval_every=8),
], ids=["gan-dropout", "ebgan-pt-margin-schedule"])
def test_a_run_resumed_once_or_twice_ends_where_it_would(mnist5k, tmp_path, c):
    x, scorer = mnist5k.train_x, MomentScorer()
    plain = train_run(c, x, scorer)
    policy, saved = snapshots_to(tmp_path / "first", every=12)
    assert_identical(train_run(c, x, scorer, snapshots=policy), plain)  # snapshots change nothing
    assert sorted(saved) == [12, 24, 36]  # 12 and 36 fall between curve points (every 8)
    first = load_snapshot(saved[12])
    assert (first["kind"], first["run_ids"], first["step"]) == ("solo", [c.run_id()], 12)
    policy, again = snapshots_to(tmp_path / "again", every=12)
    once = train_run(c, x, scorer, snapshots=policy, resume=first)
    assert_identical(once, plain)
    assert once.row["started_at"] == first["started_at"]
    assert sorted(again) == [24, 36]
    assert_same_state(load_snapshot(again[36]), load_snapshot(saved[36]))
    assert_identical(train_run(c, x, scorer, resume=load_snapshot(again[36])), plain)


FUSED = [
    tiny(seed=1, dropout_d=True, eval_every=8),
    tiny(seed=4, dropout_d=True, optim_d="sgd", optim_g="sgd", lr=1e6, eval_every=8),
    tiny(seed=2, dropout_d=True, dropout_rate=0.0, optim_d="sgd", optim_g="sgd", lr=100.0,
         eval_every=8),
    tiny(seed=3, dropout_d=True, optim_g="sgd", sgd_momentum=0.9, lr=0.01, dropout_rate=0.3,
         eval_every=8),
]


def test_a_fused_group_resumed_once_or_twice_ends_where_it_would(mnist5k, tmp_path):
    x, scorer = mnist5k.train_x, MomentScorer()
    plain = train_fused(FUSED, x, scorer)
    # one run stops before the first snapshot (step 5), one after it
    assert [r.row["diverged_step"] for r in plain] == [None, 2, 8, None]
    policy, saved = snapshots_to(tmp_path / "first", every=5)
    assert_all_identical(train_fused(FUSED, x, scorer, snapshots=policy), plain)
    first = load_snapshot(saved[5])
    assert first["run_ids"] == [c.run_id() for c in FUSED] and first["kind"] == "fused"
    assert len(first["state"]["gens"]) == 3  # the run that stopped at step 2 is out
    # G's optimizer keeps Adam's moments and SGD's momentum; D's has no run with momentum
    assert first["state"]["opt_g"]["momentum"] is not None
    assert first["state"]["opt_d"]["momentum"] is None
    policy, again = snapshots_to(tmp_path / "again", every=5)
    assert_all_identical(train_fused(FUSED, x, scorer, snapshots=policy, resume=first), plain)
    assert_same_state(load_snapshot(again[20]), load_snapshot(saved[20]))  # between points
    assert_all_identical(train_fused(FUSED, x, scorer, resume=load_snapshot(again[20])), plain)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "alone"])
def test_a_bundle_resumes_its_run_in_progress_after_its_finished_runs(
        mnist5k, scorer, tmp_path, monkeypatch, fuse):
    """Fused, the bundle's four runs are trained as two groups of two (a small
    CPU_GROUP_WEIGHTS), and the first group's runs are reported before the second group
    starts, so a snapshot of the second group comes with the first group's results."""
    runs = [tiny(seed=s, dropout_d=True, eval_every=8, steps=30) for s in range(4)]
    weights = sum(p.numel() for net in build_models(runs[0]) for p in net.parameters())
    monkeypatch.setattr(gridstudy.fused, "CPU_GROUP_WEIGHTS", 2 * weights)
    inputs = cheap_inputs(mnist5k, scorer, monkeypatch)
    plain = train_bundle(runs, inputs, device="cpu", fuse=fuse)
    reported: list[RunResult] = []
    taken: list[tuple[list[RunResult], dict[str, Any], Path]] = []

    def save(state: dict[str, Any]) -> None:
        taken.append((list(reported), state, tmp_path / f"{len(taken)}.pt"))
        save_snapshot(taken[-1][2], state)

    watched = train_bundle(runs, inputs, device="cpu", fuse=fuse, snapshots=PeriodicSnapshots(
        save, steps=12), on_run_done=lambda results: reported.extend(results[len(reported):]))
    assert_all_identical(watched, plain)
    per_unit = 2 if fuse else 1
    assert [(len(done), s["step"]) for done, s, _ in taken] == [
        (n, step) for n in range(0, 4, per_unit) for step in (12, 24)]
    done, state, path = taken[-2]  # the last group or run at step 12
    assert state["run_ids"] == [c.run_id() for c in runs[4 - per_unit:]]
    resumed = train_bundle(runs, inputs, device="cpu", fuse=fuse, done=done,
                           resume=load_snapshot(path))
    assert_all_identical(resumed, plain)


@pytest.mark.parametrize("change", ["format", "torch", "runs", "kind"])
def test_a_snapshot_that_cannot_continue_is_ignored_and_its_runs_start_over(
        mnist5k, scorer, tmp_path, monkeypatch, change):
    runs = [tiny(seed=s, eval_every=8, steps=16) for s in range(2)]
    inputs = cheap_inputs(mnist5k, scorer, monkeypatch)
    plain = train_bundle(runs, inputs, device="cpu", fuse=True)
    save = lambda state: save_snapshot(tmp_path / "s.pt", state)  # noqa: E731
    if change == "kind":  # a snapshot of a run trained alone, given to a fused bundle
        train_run(runs[0], inputs["mnist5k"].train_x, MomentScorer(),
                  snapshots=PeriodicSnapshots(save, steps=10))
    else:
        train_bundle(runs, inputs, device="cpu", fuse=True,
                     snapshots=PeriodicSnapshots(save, steps=10))
    snapshot = load_snapshot(tmp_path / "s.pt")
    edits = {"format": {"format": 0}, "torch": {"torch": "1.0"},
             "runs": {"run_ids": ["0123456789abcdef"]}, "kind": {}}
    with pytest.warns(UserWarning, match="not resuming from the snapshot.*start over"):
        results = train_bundle(runs, inputs, device="cpu", fuse=True,
                               resume={**snapshot, **edits[change]})
    assert_all_identical(results, plain)


@pytest.mark.parametrize("which", ["on_run_done", "snapshot"])
def test_a_callers_error_reaches_the_caller_not_the_fallback(mnist5k, scorer, monkeypatch,
                                                             which):
    def fail(*args: object) -> None:
        raise RuntimeError("disk full")

    inputs = cheap_inputs(mnist5k, scorer, monkeypatch)
    runs = [tiny(seed=s, steps=3) for s in range(2)]
    kwargs = ({"on_run_done": fail} if which == "on_run_done"
              else {"snapshots": PeriodicSnapshots(fail, steps=1)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "training the bundle one run at a time"
        with pytest.raises(RuntimeError, match="disk full"):
            train_bundle(runs, inputs, device="cpu", fuse=True, **kwargs)


def test_a_corrupt_or_foreign_file_is_a_one_line_user_error(tmp_path):
    path = tmp_path / "snapshot.pt"
    save_snapshot(path, {"format": 1, "weights": torch.ones(1000)})
    whole = path.read_bytes()
    for content in (whole[:len(whole) // 2], b"not a snapshot", b""):
        path.write_bytes(content)
        with pytest.raises(UserError, match="delete it to start the bundle's in-progress runs "
                                            "over") as info:
            load_snapshot(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    torch.save([1, 2], path)
    with pytest.raises(UserError, match="not a training snapshot"):
        load_snapshot(path)
    with pytest.raises(FileNotFoundError):
        load_snapshot(tmp_path / "missing.pt")


SPRUNG: list[str] = []


def _spring() -> str:
    SPRUNG.append("unpickled")
    return "trap"


class Trap:
    """An object whose unpickling runs code (here, harmless): a snapshot must never."""

    def __reduce__(self) -> tuple:
        return (_spring, ())


def test_loading_never_unpickles_an_object(tmp_path):
    path = tmp_path / "snapshot.pt"
    torch.save({"format": 1, "step": 3, "trap": Trap()}, path)
    with pytest.raises(UserError, match="weights_only|Unsupported global|_spring"):
        load_snapshot(path)
    assert SPRUNG == []
    assert torch.load(path, weights_only=False)["trap"] == "trap"  # what refusing prevents
    assert SPRUNG == ["unpickled"]
    plain = tmp_path / "plain.pkl"  # a plain pickle, not torch's zip format
    plain.write_bytes(pickle.dumps({"format": 1, "trap": Trap()}, protocol=2))
    with pytest.raises(UserError):
        load_snapshot(plain)
    assert SPRUNG == ["unpickled"]


def test_a_snapshot_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "snapshot.pt"
    save_snapshot(path, {"format": 1, "step": 1})

    def dies_half_way(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"half a snaps")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space"):
        save_snapshot(path, {"format": 1, "step": 2})
    monkeypatch.undo()
    assert load_snapshot(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.pt"]  # no temporary file left


def test_periodic_snapshots_read_the_clock_every_few_steps_and_restart_after_a_save(
        monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(gridstudy.snapshot, "time", types.SimpleNamespace(
        monotonic=lambda: clock[0]))
    saved: list[dict] = []
    policy = PeriodicSnapshots(saved.append, seconds=10.0)
    clock[0] = 105.0
    assert not policy.due(CHECK_EVERY_STEPS)
    clock[0] = 111.0
    assert not policy.due(CHECK_EVERY_STEPS + 1)  # the clock is not read at this step
    assert policy.due(2 * CHECK_EVERY_STEPS)
    policy.save({"step": 2 * CHECK_EVERY_STEPS})
    assert saved == [{"step": 2 * CHECK_EVERY_STEPS}]
    assert not policy.due(3 * CHECK_EVERY_STEPS)  # ten seconds from the save, not the start
    every = PeriodicSnapshots(saved.append, steps=5)
    assert [s for s in range(1, 16) if every.due(s)] == [5, 10, 15]
    with pytest.raises(ValueError):
        PeriodicSnapshots(saved.append, steps=0)
    assert math.isclose(PeriodicSnapshots(saved.append).seconds,
                        gridstudy.snapshot.SNAPSHOT_SECONDS)
