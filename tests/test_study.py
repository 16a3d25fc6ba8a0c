"""Bundle planning and bundle training (no Ray)."""

import math

import pytest

from gridstudy.config import RunConfig
from gridstudy.study import (
    SharedInputs,
    bundle_id,
    failed_result,
    plan_bundles,
    train_bundle,
)


def runs_of(n, **kw):
    return [RunConfig(seed=i, **kw) for i in range(n)]


def test_bundles_never_mix_architectures_and_cover_every_run():
    runs = runs_of(13, size_g=50) + runs_of(5, size_g=100) + runs_of(3, model="ebgan")
    bundles = plan_bundles(runs, max_size=12, workers=1)
    assert sorted(r.run_id() for b in bundles for r in b) == sorted(r.run_id() for r in runs)
    for bundle in bundles:
        assert len({r.architecture for r in bundle}) == 1
    # the 13 runs of one architecture are split evenly (bundle sizes differ by at most 1)
    sizes = [len(b) for b in bundles if b[0].size_g == 50]
    assert sum(sizes) == 13 and max(sizes) - min(sizes) <= 1
    assert [len(b) for b in plan_bundles(runs_of(13), max_size=12, workers=0)] == [7, 6]


def test_bundles_are_small_enough_to_keep_workers_busy():
    bundles = plan_bundles(runs_of(24), max_size=12, workers=2)
    assert len(bundles) == 8 and max(len(b) for b in bundles) == 3  # 4 bundles per worker
    with pytest.raises(ValueError):
        plan_bundles(runs_of(2), max_size=0)


def test_bundle_id_is_order_free():
    runs = runs_of(3)
    assert bundle_id(runs) == bundle_id(runs[::-1]) != bundle_id(runs[:2])


def test_failed_result_row():
    run = RunConfig()
    try:
        raise RuntimeError("out of memory\nsecond line")
    except RuntimeError as exc:
        result = failed_result(run, exc)
    assert result.row["status"] == "failed" and result.row["run_id"] == run.run_id()
    assert result.row["error"].startswith("RuntimeError: out of memory at test_study.py:")
    assert math.isnan(result.row["loss_d"])


def tiny(**kw):
    return RunConfig(size_g=16, size_d=8, steps=3, n_eval=50, batch_size=8, **kw)


def test_train_bundle_records_a_crashing_run_and_goes_on(mnist5k, scorer, monkeypatch):
    import gridstudy.study as study

    real_train = study.train_run

    def flaky(c, *args, **kwargs):
        if c.seed == 1:
            raise ValueError("boom")
        return real_train(c, *args, **kwargs)

    monkeypatch.setattr(study, "train_run", flaky)
    inputs = {"mnist5k": SharedInputs(mnist5k.train_x, scorer.classifier.state(),
                                      scorer.real_features)}
    seen = []
    runs = [tiny(seed=s) for s in range(3)]
    results = train_bundle(runs, inputs, device="cpu", on_run_done=lambda r: seen.append(len(r)))
    assert [r.row["status"] for r in results] == ["ok", "failed", "ok"]
    assert "ValueError: boom" in results[1].row["error"]
    assert seen == [1, 2, 3]
    again = train_bundle(runs, inputs, device="cpu", done=results[:2])
    assert [r.row["run_id"] for r in again] == [r.run_id() for r in runs]  # only the third re-ran


def test_bundle_count_is_a_multiple_of_the_workers_when_it_can_be():
    bundles = plan_bundles(runs_of(200), max_size=12, workers=2)
    assert len(bundles) % 2 == 0 and sum(map(len, bundles)) == 200
    assert len(plan_bundles(runs_of(1), max_size=12, workers=2)) == 1


def test_a_run_trains_on_the_first_train_size_digits(mnist5k):
    from gridstudy.errors import UserError
    from gridstudy.study import training_digits

    x = mnist5k.train_x
    assert training_digits(x, RunConfig()) is x
    assert training_digits(x, RunConfig(train_size=100)).data_ptr() == x.data_ptr()
    assert len(training_digits(x, RunConfig(train_size=100))) == 100
    with pytest.raises(UserError, match="train_size: 4,001 is more than the 4,000 training"):
        training_digits(x, RunConfig(train_size=4001))


def test_runs_are_scored_by_the_data_set_they_name(mnist5k, monkeypatch):
    """A study across data sets scores every run with one classifier (scorer=...), and each
    row records which; runs with another train_size are another fused group."""
    from gridstudy.study import datasets_of
    from tests.test_fused import MomentScorer

    class Named(MomentScorer):
        def __init__(self, name):
            self.name = name

    monkeypatch.setattr(SharedInputs, "scorer", lambda self: Named(self.classifier_state))
    inputs = {"mnist5k": SharedInputs(mnist5k.train_x, "own", None),
              "mnist": SharedInputs(mnist5k.train_x[:500], "shared", None)}
    tiny = {"size_g": 16, "size_d": 8, "steps": 2, "n_eval": 50, "batch_size": 8}
    runs = [RunConfig(seed=1, scorer="mnist", **tiny), RunConfig(seed=2, **tiny)]
    assert datasets_of(runs) == {"mnist5k", "mnist"}
    assert runs[0].architecture != runs[1].architecture
    rows = [r.row for r in train_bundle(runs, inputs, device="cpu")]
    assert [r["classifier"] for r in rows] == ["shared", "own"]
    assert [r["scorer"] for r in rows] == ["mnist", ""]
