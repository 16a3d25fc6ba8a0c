"""Every input file gridstudy reads, fed damaged and made-up versions by hypothesis.

Kinds: search spaces, ``runs.parquet``, ``curves.parquet``, ``study.json``, bundle checkpoints
(``rows.json`` and ``samples.npz``), IDX data files and the cached classifier. Each starts from
a valid file and is emptied, truncated, overwritten with bytes, corrupted in place, re-encoded
(text kinds) or padded to megabytes; the text and table kinds also get documents of made-up
structure. The reader must then either succeed or raise a one-line UserError (exit code 2 from
the CLI, no traceback), and what was recorded before must still be there. Cases per kind are
fixed (``EXAMPLES``) and derandomized, so a run is bounded and repeatable.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import shutil
import struct

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.schema import CURVE_COLUMNS
from analysis.stability import add_stability
from gridstudy.cli import main
from gridstudy.config import FIELDS, RunConfig
from gridstudy.errors import UserError
from gridstudy.results import (
    ResultsTable,
    curves_to_frame,
    load_curves,
    load_results,
    read_bundle_records,
    read_study_info,
    rows_to_frame,
    write_bundle_records,
    write_study_info,
    write_table,
)

EXAMPLES = {"space": 200, "space_structure": 150, "table": 80, "table_structure": 60,
            "curves": 80, "curves_structure": 60, "study_file": 120, "checkpoint": 100,
            "idx": 120, "classifier": 60}


def fuzz(kind: str) -> settings:
    return settings(max_examples=EXAMPLES[kind], deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


def flip(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in changes:
        out[position % len(out)] = value
    return bytes(out)


def damaged(valid: bytes, text: bool = False) -> st.SearchStrategy[bytes]:
    """Broken versions of a valid file: empty, noise, truncated, corrupted, huge, re-encoded."""
    kinds = [
        st.just(b""),
        st.binary(min_size=1, max_size=4096),
        st.integers(1, len(valid) - 1).map(lambda n: valid[:n]),
        st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1,
                 max_size=8).map(lambda changes: flip(valid, changes)),
        st.integers(1, 3).map(lambda mb: valid + b"\0\xff" * (mb << 19)),
    ]
    if text:
        kinds.append(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"]).map(
            lambda codec: ("# é ü\n" + valid.decode()).encode(codec)))
    return st.one_of(kinds)


def one_line_or_none(call) -> str | None:  # noqa: ANN001
    """None if ``call()`` succeeds; its UserError's message if it raises one (checked to be one
    line). Any other exception propagates and fails the test."""
    try:
        call()
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return message
    return None


def cli(*argv: str) -> tuple[int, str]:
    """Run the CLI; return its exit code and stderr, checked for a clean outcome."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    text = err.getvalue()
    assert code in (0, 2), (code, text)
    assert "Traceback" not in text
    if code == 2:
        assert text.count("\n") == 1 and text.startswith("gridstudy: error: "), text
    return code, text


# ---- search spaces ---------------------------------------------------------------------------

SPACE = b"""description: a tiny grid
blocks:
  - name: gan
    model: gan
    axes: {lr: [0.001, 0.0001], n_layers_d: [2, 3]}
    fixed: {size_g: 16, size_d: 8, steps: 5}
    seeds: [0, 1]
  - model: [ebgan, ebgan_pt]
    fixed: {margin: 5}
"""
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(),
                    st.text(max_size=12), st.sampled_from(["adam", "sgd", "gan", "ebgan", "x"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8) | st.sampled_from(list(FIELDS)), inner, max_size=4), max_leaves=12)
BLOCKS = st.fixed_dictionaries({}, optional={
    "name": VALUES, "model": st.sampled_from(["gan", "ebgan", "ebgan_pt"]) | VALUES,
    "axes": st.dictionaries(st.sampled_from(list(FIELDS)), st.lists(SCALARS, max_size=4) | VALUES,
                            max_size=4) | VALUES,
    "fixed": st.dictionaries(st.sampled_from(list(FIELDS)), SCALARS, max_size=4) | VALUES,
    "seeds": st.lists(st.integers(-2, 3), max_size=3) | VALUES,
    "extra": VALUES})
SPACE_DOCS = st.one_of(BLOCKS, st.fixed_dictionaries(
    {"blocks": st.lists(BLOCKS, max_size=3) | VALUES}, optional={"description": VALUES}), VALUES)


@fuzz("space")
@given(data=damaged(SPACE, text=True))
def test_damaged_search_spaces(tmp_path, data):
    path = tmp_path / "space.yaml"
    path.write_bytes(data)
    cli("sweep", str(path), "--study", "s", "--results-dir", str(tmp_path / "r"), "--dry-run")


@fuzz("space_structure")
@given(doc=SPACE_DOCS)
def test_made_up_search_spaces(tmp_path, doc):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc))
    cli("sweep", str(path), "--study", "s", "--results-dir", str(tmp_path / "r"), "--dry-run")


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """Nine anchors, each ten of the one before: printing the axis whole would take 10^9 items."""
    keys = ["n_layers_g", "size_g", "n_layers_d", "size_d", "dropout_rate", "optim_d",
            "optim_g", "margin", "z_dim"]
    anchors = [f"{keys[0]}: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    anchors += [f"{k}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i, k in enumerate(keys)][1:]
    path = tmp_path / "bomb.yaml"
    path.write_text("model: gan\nfixed:\n  " + "\n  ".join(anchors) + "\naxes: {lr: [*a8]}\n")
    code, err = cli("sweep", str(path), "--study", "s", "--dry-run")
    assert code == 2 and "axes.lr: expected one value, got [[" in err and len(err) < 500


# ---- runs.parquet ----------------------------------------------------------------------------

def rows(n: int = 3) -> list[dict]:
    out = []
    for i in range(n):
        config = RunConfig(lr=10.0 ** -(i + 1), steps=5)
        out.append({"run_id": config.run_id(), **config.to_dict(), "i_prime": float(i),
                    "n_classes_covered": 10, "status": "ok", "error": "",
                    "diverged_step": None})
    return out


def table_bytes(tmp_path) -> bytes:
    write_table(rows_to_frame(rows()), tmp_path)
    return (tmp_path / "runs.parquet").read_bytes()


def check_table(folder) -> None:  # noqa: ANN001
    before = (folder / "runs.parquet").read_bytes()
    code, _ = cli("query", str(folder), "--group-by", "model", "--agg", "count")
    message = one_line_or_none(lambda: ResultsTable(folder, "s"))
    assert (code == 2) == (message is not None)
    assert (folder / "runs.parquet").read_bytes() == before  # reading never rewrites


@fuzz("table")
@given(data=st.data())
def test_damaged_results_tables(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("table")
    valid = table_bytes(folder)
    (folder / "runs.parquet").write_bytes(data.draw(damaged(valid)))
    check_table(folder)


COLUMN_VALUES = st.one_of(st.lists(SCALARS, min_size=3, max_size=3),
                          st.sampled_from([["a", "a", "b"], [None, "x", "y"], [1, 2, 3],
                                           ["ok", "done", "failed"], [math.nan] * 3]))


def write_made_up(frame: pd.DataFrame, replace: dict, path) -> bool:  # noqa: ANN001
    """Write ``frame`` with the columns of ``replace`` replaced; False where pyarrow cannot
    store them (no file to read, nothing to check)."""
    for column, values in replace.items():
        frame[column] = pd.Series(values, dtype=object)
    try:
        frame.to_parquet(path)
    except Exception:
        return False
    return True


@fuzz("table_structure")
@given(drop=st.sets(st.sampled_from(["run_id", "model", "status", "lr", "study"])),
       replace=st.dictionaries(st.sampled_from(["run_id", "model", "status", "lr", "i_prime"]),
                               COLUMN_VALUES, max_size=2))
def test_made_up_results_tables(tmp_path_factory, drop, replace):
    folder = tmp_path_factory.mktemp("table")
    frame = rows_to_frame(rows()).drop(columns=[c for c in drop if c != "study"])
    if write_made_up(frame, replace, folder / "runs.parquet"):
        check_table(folder)


# ---- curves.parquet --------------------------------------------------------------------------

def points() -> list[dict]:
    """Three points of each run of :func:`rows`, as a trainer records them."""
    return [{"run_id": row["run_id"], "step": step, "final": step == 30, "n_samples": 100,
             **dict.fromkeys(CURVE_COLUMNS[4:], 0.5 + step / 10)}
            for row in rows() for step in (10, 20, 30)]


def curves_folder(tmp_path):
    write_table(rows_to_frame(rows()), tmp_path)
    write_table(curves_to_frame(points()), tmp_path, "curves.parquet")
    return tmp_path


def check_curves(folder) -> None:  # noqa: ANN001
    """Every reader of the curves: the API, ``query --curves``, a resuming driver's table, the
    stability measures; a refusal is one line and nothing is rewritten."""
    before = {name: (folder / name).read_bytes() for name in ("runs.parquet", "curves.parquet")}
    message = one_line_or_none(lambda: load_curves(folder, configs=True))
    code, _ = cli("query", str(folder), "--curves", "--group-by", "model", "--agg", "count")
    assert (code == 2) == (message is not None)
    assert (one_line_or_none(lambda: ResultsTable(folder, "s")) is None) == (message is None)
    if message is None:
        add_stability(load_results(folder), load_curves(folder))
    assert {name: (folder / name).read_bytes() for name in before} == before


@fuzz("curves")
@given(data=st.data())
def test_damaged_curves_tables(tmp_path_factory, data):
    folder = curves_folder(tmp_path_factory.mktemp("curves"))
    valid = (folder / "curves.parquet").read_bytes()
    (folder / "curves.parquet").write_bytes(data.draw(damaged(valid)))
    check_curves(folder)


CURVE_VALUES = st.one_of(st.lists(SCALARS, min_size=9, max_size=9),
                         st.sampled_from([[-1] * 9, [10, 10, 20] * 3, [None] * 9, ["x"] * 9,
                                          [math.inf] * 9, [True, False, True] * 3]))


@fuzz("curves_structure")
@given(drop=st.sets(st.sampled_from(["run_id", "step", "final", "i_prime", "margin"])),
       replace=st.dictionaries(st.sampled_from(["run_id", "step", "final", "n_samples",
                                                "i_prime", "n_classes_covered"]),
                               CURVE_VALUES, max_size=2))
def test_made_up_curves_tables(tmp_path_factory, drop, replace):
    folder = curves_folder(tmp_path_factory.mktemp("curves"))
    frame = curves_to_frame(points()).drop(columns=list(drop))
    if write_made_up(frame, replace, folder / "curves.parquet"):
        check_curves(folder)


# ---- study.json ------------------------------------------------------------------------------

STUDY = json.dumps({"study": "s", "study_uid": "u", "run_ids": [r["run_id"] for r in rows()],
                    "tune_experiment": "/nowhere", "storage": None}).encode()


def study_folder(tmp_path):
    """A study with a table and Tune records: what a damaged study.json must not cost."""
    folder = tmp_path / "s"
    write_table(rows_to_frame(rows()), folder)
    checkpoint = folder / "tune" / "bundle_1" / "checkpoint_000000"
    checkpoint.mkdir(parents=True)
    write_bundle_records(checkpoint, rows(), {})
    return folder


@fuzz("study_file")
@given(data=st.one_of(damaged(STUDY, text=True),
                      st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                                   | st.dictionaries(st.sampled_from(
                                       ["study", "study_uid", "run_ids", "tune_experiment",
                                        "storage", "x"]), inner, max_size=5), max_leaves=10)
                      .map(lambda doc: json.dumps(doc).encode())))
def test_damaged_study_files(tmp_path_factory, data):
    from gridstudy.isolation import StudyPlace, check_study_state

    folder = study_folder(tmp_path_factory.mktemp("study"))
    (folder / "study.json").write_bytes(data)
    table = (folder / "runs.parquet").read_bytes()
    one_line_or_none(lambda: read_study_info(folder))
    place = StudyPlace("s", folder, str(folder / "tune"))
    one_line_or_none(lambda: check_study_state(place, True, [r["run_id"] for r in rows()],
                                               lambda experiment: True))
    code, _ = cli("results", "rebuild", str(folder))
    if code == 2:
        assert (folder / "runs.parquet").read_bytes() == table
    assert len(load_results(folder)) == 3  # nothing recorded is lost


# ---- bundle checkpoints ----------------------------------------------------------------------

def checkpoint_files(tmp_path) -> dict[str, bytes]:
    folder = tmp_path / "valid"
    folder.mkdir()
    write_bundle_records(folder, rows(2), {r["run_id"]: np.full((64, 28, 28), 7, np.uint8)
                                           for r in rows(2)})
    return {name: (folder / name).read_bytes() for name in ("rows.json", "samples.npz")}


ROWS = st.lists(st.dictionaries(st.sampled_from(["run_id", "status", "lr", "seed", "model", "x"]),
                                SCALARS | VALUES, max_size=5), max_size=3)


@fuzz("checkpoint")
@given(data=st.data())
def test_damaged_checkpoints(tmp_path_factory, data):
    from gridstudy.tune import _load_checkpoint

    tmp = tmp_path_factory.mktemp("ckpt")
    valid = checkpoint_files(tmp)
    name = data.draw(st.sampled_from(sorted(valid)))
    broken = data.draw(damaged(valid[name]) if name == "samples.npz" else st.one_of(
        damaged(valid[name], text=True), ROWS.map(lambda r: json.dumps(r).encode())))
    study = tmp / "s"
    good = study / "tune" / "bundle_1" / "checkpoint_000000"
    bad = study / "tune" / "bundle_2" / "checkpoint_000000"
    for folder, files in ((good, valid), (bad, {**valid, name: broken})):
        folder.mkdir(parents=True)
        for file, content in files.items():
            (folder / file).write_bytes(content)
    write_study_info(study, {"study": "s", "run_ids": [r["run_id"] for r in rows(3)]})

    class Checkpoint:
        @contextlib.contextmanager
        def as_directory(self):
            yield str(bad)

    unreadable = one_line_or_none(lambda: read_bundle_records(bad))
    with pytest.warns(UserWarning) if unreadable else contextlib.nullcontext():
        done, snapshot = _load_checkpoint(Checkpoint())
        assert isinstance(done, list) and (snapshot is None or isinstance(snapshot, dict))
    assert cli("results", "rebuild", str(study))[0] == 0  # the good trial's runs are rebuilt
    assert {r["run_id"] for r in rows(2)} <= set(load_results(study)["run_id"])


# ---- IDX data files --------------------------------------------------------------------------

def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(
            idx(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(
            idx(rng.integers(0, 10, 3, dtype=np.uint8)))
    return tmp_path


HEADERS = st.builds(lambda code, dims, body: bytes([0, 0, code, len(dims)])
                    + struct.pack(f">{len(dims)}I", *dims) + body,
                    st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
                    st.lists(st.integers(0, 2 ** 32 - 1) | st.integers(0, 30), max_size=4),
                    st.binary(max_size=3000))


@fuzz("idx")
@given(data=st.data())
def test_damaged_idx_files(tmp_path_factory, data):
    from gridstudy.data import load_idx_folder

    folder = idx_folder(tmp_path_factory.mktemp("idx"))
    name = data.draw(st.sampled_from(sorted(p.name for p in folder.iterdir())))
    broken = data.draw(st.one_of(damaged((folder / name).read_bytes()), HEADERS))
    if data.draw(st.booleans()):
        broken = gzip.compress(broken) if data.draw(st.booleans()) else b"\x1f\x8b" + broken
    (folder / name).write_bytes(broken)
    one_line_or_none(lambda: load_idx_folder(folder, "mnist"))


# ---- the cached classifier -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data():
    from gridstudy.data import Dataset

    x = torch.linspace(-1, 1, 20 * 784).reshape(20, 784)
    y = torch.arange(20) % 10
    return Dataset("tiny", x, y, x[:10], y[:10])


STATES = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from([1, 2, "1", None]), "dataset": SCALARS | VALUES,
    "fingerprint": SCALARS, "test_accuracy": SCALARS | VALUES,
    "state_dict": st.sampled_from(["ok", "empty", "shapes", "text", "list"])})


def state_from(spec: dict) -> dict:
    from gridstudy.classifier import ConvNet

    good = ConvNet().state_dict()
    made = {"ok": good, "empty": {}, "text": "weights", "list": [1, 2],
            "shapes": {k: torch.zeros(3) for k in good}}
    return {**spec, "state_dict": made[spec["state_dict"]]} if "state_dict" in spec else spec


@fuzz("classifier")
@given(data=st.data())
def test_damaged_classifier_checkpoints(tmp_path_factory, monkeypatch, tiny_data, data):
    from gridstudy.classifier import Classifier, ConvNet, classifier_path, load_or_train_classifier

    monkeypatch.setenv("GRIDSTUDY_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    path = classifier_path(tiny_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data.draw(st.booleans()):
        valid = io.BytesIO()
        torch.save(Classifier(ConvNet(), "tiny", tiny_data.fingerprint(), 0.5).state(), valid)
        path.write_bytes(data.draw(damaged(valid.getvalue())))
    else:
        torch.save(state_from(data.draw(STATES)), path)
    message = one_line_or_none(lambda: load_or_train_classifier(tiny_data))
    assert message is None or "delete it to retrain" in message
    assert path.exists()  # a bad checkpoint is reported, not silently replaced
    shutil.rmtree(path.parent)
