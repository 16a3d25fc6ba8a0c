"""The results table: typed round trip, atomic writes, corrupt files, query, samples."""

import math
import os
import re
import stat
import zipfile

import numpy as np
import pandas as pd
import pytest

from gridstudy.config import RunConfig
from gridstudy.errors import UserError
from gridstudy.results import (
    ResultsTable,
    export_study,
    load_results,
    load_samples,
    query_results,
    read_bundle_records,
    read_study_info,
    rebuild_results,
    recover_unrecorded,
    rows_to_frame,
    sample_run_ids,
    write_bundle_records,
    write_samples,
    write_study_info,
    write_table,
)


def row(**kw):
    c = RunConfig(**{k: v for k, v in kw.items() if k in RunConfig.__dataclass_fields__})
    base = {"run_id": c.run_id(), **c.to_dict(), "i_prime": 1.0, "n_classes_covered": 10.0,
            "status": "ok", "error": "", "diverged_step": None}
    return {**base, **{k: v for k, v in kw.items() if k not in c.to_dict()}}


def test_round_trip_keeps_types(tmp_path):
    rows = [row(lr=1e-3), row(lr=1e-4, status="diverged", diverged_step=17, i_prime=math.nan,
                              n_classes_covered=math.nan)]
    write_table(rows_to_frame(rows), tmp_path)
    frame = load_results(tmp_path)
    assert len(frame) == 2
    assert frame["size_g"].dtype == "int64" and frame["dropout_d"].dtype == bool
    assert str(frame["diverged_step"].dtype) == "Int64"
    assert frame["diverged_step"].tolist()[1] == 17 and pd.isna(frame["diverged_step"][0])
    assert str(frame["n_classes_covered"].dtype) == "Int64"
    assert math.isnan(frame["i_prime"][1])
    assert load_results(tmp_path / "runs.parquet").equals(frame)


def test_a_failed_write_leaves_the_old_table(tmp_path, monkeypatch):
    write_table(rows_to_frame([row()]), tmp_path)

    def explode(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", explode)
    with pytest.raises(OSError):
        write_table(rows_to_frame([row(), row(seed=1)]), tmp_path)
    monkeypatch.undo()
    assert len(load_results(tmp_path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["runs.parquet"]  # no temporary left behind


def test_corrupt_or_missing_table_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no results table"):
        load_results(tmp_path)
    write_table(rows_to_frame([row()]), tmp_path)
    data = (tmp_path / "runs.parquet").read_bytes()
    (tmp_path / "runs.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as info:
        load_results(tmp_path)
    assert "corrupt results table" in str(info.value)
    assert "gridstudy results rebuild" in str(info.value)


def test_results_table_upserts_by_run_id(tmp_path):
    table = ResultsTable(tmp_path, "s", flush_seconds=0)
    table.add([row(), row(seed=1)])
    table.add([row(i_prime=2.0)])  # the same run reported again (a retried bundle)
    frame = load_results(tmp_path)
    assert len(frame) == 2 and sorted(frame["i_prime"]) == [1.0, 2.0]
    assert set(frame["study"]) == {"s"}
    assert ResultsTable(tmp_path, "s").status_counts() == {"ok": 2, "diverged": 0, "failed": 0}


def test_samples_round_trip(tmp_path):
    a = np.arange(64 * 28 * 28, dtype=np.uint8).reshape(64, 28, 28)
    write_samples({"r1": a, "r2": a[::-1]}, tmp_path, "b1")
    write_samples({"r3": a}, tmp_path, "b2")
    (tmp_path / "samples" / "torn.npz").write_bytes(b"PK\x03\x04 not really")
    found = load_samples(tmp_path)
    assert set(found) == {"r1", "r2", "r3"} and np.array_equal(found["r2"], a[::-1])
    assert set(load_samples(tmp_path, ["r3"])) == {"r3"}
    assert sample_run_ids(tmp_path) == {"r1", "r2", "r3"}  # the torn file is skipped here too


@pytest.fixture
def frame():
    return rows_to_frame([
        row(model="gan", lr=1e-3, i_prime=1.0), row(model="gan", lr=1e-4, i_prime=3.0),
        row(model="ebgan", i_prime=2.0), row(model="ebgan", seed=1, i_prime=4.0)])


def test_query_filter_sort_top(frame):
    out = query_results(frame, "model == 'gan'", columns=["lr", "i_prime"], sort="i_prime",
                        desc=True, top=1)
    assert out.to_dict("records") == [{"lr": 1e-4, "i_prime": 3.0}]


def test_query_group_by(frame):
    out = query_results(frame, group_by=["model"], agg=["median", "count"])
    assert out.set_index("model").to_dict("index") == {
        "ebgan": {"i_prime_median": 3.0, "i_prime_count": 2},
        "gan": {"i_prime_median": 2.0, "i_prime_count": 2}}


@pytest.mark.parametrize("kwargs, message", [
    ({"expression": "model =="}, "bad query expression"),
    ({"expression": "nonexistent > 1"}, "bad query expression"),
    ({"columns": ["nope"]}, "unknown column 'nope'"),
    ({"sort": "nope"}, "unknown column 'nope'"),
    ({"group_by": ["model"], "agg": ["bogus"]}, "--agg bogus"),
])
def test_query_errors(frame, kwargs, message):
    expression = kwargs.pop("expression", None)
    with pytest.raises(UserError, match=message):
        query_results(frame, expression, **kwargs)


def test_export_keeps_every_row_and_the_best_samples(tmp_path):
    rows = [row(model="gan", lr=lr, i_prime=s) for lr, s in ((1e-2, 1.0), (1e-3, 3.0), (1e-4, 2.0))]
    rows += [row(model="ebgan", seed=k, i_prime=s) for k, s in ((0, 5.0), (1, math.nan))]
    src = tmp_path / "study"
    write_table(rows_to_frame(rows), src)
    images = {r["run_id"]: np.full((64, 28, 28), i, np.uint8) for i, r in enumerate(rows)}
    write_samples(images, src, "b1")
    write_study_info(src, {"study": "s", "tune_experiment": str(src / "tune")})
    counts = export_study(src, tmp_path / "shared", best=2)
    assert counts == {"runs": 5, "samples": 3, "curves": 0}
    assert len(load_results(tmp_path / "shared")) == 5
    kept = load_samples(tmp_path / "shared")
    assert set(kept) == {rows[1]["run_id"], rows[2]["run_id"], rows[3]["run_id"]}
    assert np.array_equal(kept[rows[3]["run_id"]], images[rows[3]["run_id"]])
    assert not (tmp_path / "shared" / "samples").exists()
    assert read_study_info(tmp_path / "shared") == {"study": "s"}  # nothing to resume from
    with pytest.raises(UserError, match="different folder"):
        export_study(src, src)
    with pytest.raises(UserError, match="--score nope"):
        export_study(src, tmp_path / "x", score="nope")


def test_resume_recovers_runs_only_tunes_checkpoints_hold(tmp_path):
    rows = [row(model="gan", lr=lr) for lr in (1e-2, 1e-3, 1e-4)]
    images = {r["run_id"]: np.full((64, 28, 28), i, np.uint8) for i, r in enumerate(rows)}
    trial = tmp_path / "tune" / "bundle_1"
    for n, upto in ((0, 1), (1, 3)):  # cumulative checkpoints: the newest holds every run
        folder = trial / f"checkpoint_00000{n}"
        folder.mkdir(parents=True)
        write_bundle_records(folder, rows[:upto], {k: images[k] for k in list(images)[:upto]})
    table = ResultsTable(tmp_path / "study", "s")
    table.add(rows[:1])  # the driver was killed before the last two reached the table
    assert recover_unrecorded(table, tmp_path / "tune") == 2
    assert set(table.rows) == set(images)
    kept = load_samples(tmp_path / "study")
    assert set(kept) == {rows[1]["run_id"], rows[2]["run_id"]}
    assert recover_unrecorded(table, tmp_path / "tune") == 0
    assert recover_unrecorded(table, tmp_path / "nowhere") == 0


def curve_of(r: dict, steps=(300, 600), i_prime=(1.0, 2.0)) -> list[dict]:
    from analysis.schema import CURVE_COLUMNS

    points = []
    for step, score in zip(steps, i_prime, strict=True):
        point = dict.fromkeys(CURVE_COLUMNS, math.nan)
        point.update(run_id=r["run_id"], step=step, final=step == steps[-1], n_samples=500,
                     i_prime=score)
        points.append(point)
    return points


def test_a_study_interrupted_before_its_first_run_keeps_a_readable_table(tmp_path):
    """A snapshot checkpoint arrives before any run of its bundle ends: it adds no row, writes
    nothing, and a table of no rows (written by any path) still reads, and resumes, as a table."""
    table = ResultsTable(tmp_path, "s", flush_seconds=0)
    table.add([])
    table.flush()
    assert not (tmp_path / "runs.parquet").exists()
    write_table(rows_to_frame([]), tmp_path)
    empty = load_results(tmp_path)
    assert len(empty) == 0 and {"run_id", "model", "status", "lr"} <= set(empty.columns)
    again = ResultsTable(tmp_path, "s", run_ids=["a"])
    assert again.rows == {}
    again.add([row(seed=0)])
    again.flush()  # the run_ids filter dropped the row (not "a"): the table stays empty
    assert len(load_results(tmp_path)) == 0


def test_curves_travel_with_their_rows_into_curves_parquet(tmp_path):
    from gridstudy.results import CURVE_KEY, load_curves

    a, b = row(seed=0), row(seed=1)
    table = ResultsTable(tmp_path, "s", flush_seconds=0)
    table.add([{**a, CURVE_KEY: curve_of(a)}, {**b, CURVE_KEY: curve_of(b)}])
    table.add([{**a, CURVE_KEY: curve_of(a, (300, 600, 900), (1.0, 2.0, 0.5))}])  # upsert
    curves = load_curves(tmp_path)
    assert list(curves.groupby("run_id").size().loc[[a["run_id"], b["run_id"]]]) == [3, 2]
    assert curves["step"].dtype == "int64" and curves["final"].dtype == "bool"
    assert CURVE_KEY not in load_results(tmp_path).columns
    again = ResultsTable(tmp_path, "s")  # a resumed driver starts from both tables
    assert len(again.curves[a["run_id"]]) == 3
    joined = load_curves(tmp_path, configs=True)
    assert {"model", "lr", "status", "study"} <= set(joined.columns) and len(joined) == 5
    assert joined.columns.is_unique  # "model" is a config field too: once, so it can be grouped
    with pytest.raises(UserError, match="no training curves"):
        load_curves(tmp_path / "elsewhere")
    (tmp_path / "curves.parquet").write_bytes(b"PAR1 torn")
    with pytest.raises(UserError, match="corrupt curves table"):
        load_curves(tmp_path)


def test_recovery_and_export_keep_the_curves(tmp_path):
    from gridstudy.results import CURVE_KEY, load_curves

    rows = [row(model="gan", lr=lr) for lr in (1e-2, 1e-3)]
    folder = tmp_path / "tune" / "bundle_1" / "checkpoint_000000"
    folder.mkdir(parents=True)
    write_bundle_records(folder, [{**r, CURVE_KEY: curve_of(r)} for r in rows],
                         {r["run_id"]: np.zeros((64, 28, 28), np.uint8) for r in rows})
    table = ResultsTable(tmp_path / "study", "s")
    assert recover_unrecorded(table, tmp_path / "tune") == 2
    table.flush()
    assert len(load_curves(tmp_path / "study")) == 4
    counts = export_study(tmp_path / "study", tmp_path / "copy")
    assert counts["curves"] == 2 and len(load_curves(tmp_path / "copy")) == 4


def checkpoint(folder, rows, value=0):
    folder.mkdir(parents=True)
    write_bundle_records(folder, rows, {r["run_id"]: np.full((64, 28, 28), value, np.uint8)
                                        for r in rows})


def test_recovery_and_rebuild_read_only_the_studys_own_runs(tmp_path):
    own = [row(model="gan", lr=lr) for lr in (1e-2, 1e-3)]
    foreign = [row(model="ebgan", seed=s) for s in range(3)]
    experiment = tmp_path / "shared"
    checkpoint(experiment / "bundle_1" / "checkpoint_000000", own[:1] + foreign[:1])
    checkpoint(experiment / "bundle_2" / "checkpoint_000000", foreign[1:])
    checkpoint(experiment / "bundle_3" / "checkpoint_000000", own[1:])
    (experiment / "bundle_3" / "checkpoint_000001").mkdir()  # a damaged newer checkpoint
    (experiment / "bundle_3" / "checkpoint_000001" / "rows.json").write_text("[{")
    ids = [r["run_id"] for r in own]
    table = ResultsTable(tmp_path / "a", "a", run_ids=ids)
    assert recover_unrecorded(table, experiment) == 2
    assert set(table.rows) == set(ids) and set(load_samples(tmp_path / "a")) == set(ids)
    write_study_info(tmp_path / "a", {"study": "a", "run_ids": ids,
                                      "tune_experiment": str(experiment)})
    (tmp_path / "a" / "runs.parquet").write_bytes(b"PAR1 torn")
    rebuilt = rebuild_results(tmp_path / "a")
    assert set(rebuilt.rows) == set(ids) and set(load_results(tmp_path / "a")["study"]) == {"a"}
    assert (tmp_path / "a" / "runs.parquet.damaged").read_bytes() == b"PAR1 torn"


def test_a_table_keeps_only_its_studys_runs(tmp_path):
    rows = [row(lr=1e-3), row(lr=1e-4, study="other")]
    write_table(rows_to_frame(rows), tmp_path)
    table = ResultsTable(tmp_path, "s", run_ids=[rows[0]["run_id"]])
    assert list(table.rows) == [rows[0]["run_id"]] and table.foreign == 1
    table.add(rows)
    table.flush()
    assert list(load_results(tmp_path)["run_id"]) == [rows[0]["run_id"]]


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"model": ["gan"], "status": ["ok"]}), "no run_id column"),
    (pd.DataFrame({"run_id": ["a", "a"], "model": "gan", "status": "ok"}), "run a appears twice"),
    (pd.DataFrame({"run_id": ["a", None], "model": "gan", "status": "ok"}), "missing or not text"),
    (pd.DataFrame({"run_id": ["a"], "model": "gan", "status": ["done"]}), "unknown status 'done'"),
])
def test_a_table_without_the_columns_readers_rely_on_is_refused(tmp_path, frame, message):
    frame.to_parquet(tmp_path / "runs.parquet")
    with pytest.raises(UserError, match=re.escape(message)):
        load_results(tmp_path)


def test_checkpoint_samples_are_checked_before_they_are_read(tmp_path):
    rows = [row()]
    checkpoint(tmp_path / "c", rows)
    assert read_bundle_records(tmp_path / "c")[0] == rows
    big = np.lib.format.header_data_from_array_1_0(np.zeros((64, 28, 28), np.uint8))
    big["shape"] = (10**9, 28, 28)  # a forged header: reading it must allocate nothing
    with (zipfile.ZipFile(tmp_path / "c" / "samples.npz", "w") as archive,
          archive.open(f"{rows[0]['run_id']}.npy", "w") as f):
        np.lib.format.write_array_header_1_0(f, big)
    with pytest.raises(UserError, match=r"uint8 \(1000000000, 28, 28\), not uint8"):
        read_bundle_records(tmp_path / "c")


@pytest.mark.parametrize("text, message", [
    (b"\xff\xfe{", "corrupt study file (UnicodeDecodeError)"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"run_ids": "abc"}', "run_ids is not a list"),
    (b'{"run_ids": [1]}', "non-text id"),
])
def test_a_damaged_study_file_is_one_line(tmp_path, text, message):
    (tmp_path / "study.json").write_bytes(text)
    with pytest.raises(UserError) as info:
        read_study_info(tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_tables_get_the_mode_of_a_new_file_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_table(pd.DataFrame({"run_id": ["a"]}), tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by who shares the folder
        os.umask(0o077)
        assert stat.S_IMODE(write_table(pd.DataFrame({"run_id": ["a"]}), tmp_path)
                            .stat().st_mode) == 0o600
    finally:
        os.umask(old)
