"""The results table of a study: one row per run, stored as Parquet, and the runs' samples.

Layout of ``results/<study>/``:

- ``runs.parquet``: one row per run (columns: docs/schema.md), rewritten atomically (write to a
  temporary file, then ``os.replace``) so a crash never leaves a half-written table.
- ``curves.parquet``: each run's training curve, one row per (run_id, step), written alongside
  ``runs.parquet``. A run's curve travels inside its row (key ``curve``) wherever rows travel
  (trial checkpoints, recovery, rebuild), so it is upserted, recovered and rebuilt with it.
- ``samples/<bundle>.npz``: the 64 kept samples of each run, uint8 (64, 28, 28), keyed by run_id.
- ``study.json``: what the study is (name, search-space files, expected run ids, classifier,
  where its Tune records are).
- ``tune/``: Ray Tune's experiment folder (its per-trial records), from which the table can be
  rebuilt (:func:`rebuild_results`); with ``--storage`` it is ``STORAGE/<study>`` instead.

Every reader of these files treats them as untrusted: a damaged, foreign or oversized file is a
one-line :class:`~gridstudy.errors.UserError`, never a traceback, and never costs a recorded run.
Tune's records are read back only for the study's own run ids (:func:`read_tune_records`), so
studies that share a storage folder cannot mix.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import tokenize
import zipfile
import zlib
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.schema import CURVE_COLUMNS, STATUSES
from gridstudy.config import FIELDS, config_from_dict
from gridstudy.errors import UserError, one_line

TABLE = "runs.parquet"
CURVES = "curves.parquet"
CURVE_KEY = "curve"  # a row's curve points while the row travels (checkpoints, the table)
SAMPLES = "samples"
STUDY_FILE = "study.json"
REQUIRED_COLUMNS = ("run_id", "model", "status")  # what every reader of a table relies on
SAMPLE_SHAPE = (64, 28, 28)  # the kept samples of one run, uint8
_NULLABLE_INT = ("diverged_step", "n_classes_covered")  # integers that may be missing
_DEFAULTS = {name: f.default for name, f in FIELDS.items() if f.default is not None}
# Types of the table's columns besides the config fields (docs/schema.md): a checkpoint row
# with another type would make the table unwritable. Columns not listed only need to be scalars.
_COLUMN_KINDS: dict[str, type] = {
    **dict.fromkeys(("run_id", "study", "status", "error", "device", "host", "started_at",
                     "torch_version", "ray_version", "gridstudy_version"), str),
    **dict.fromkeys(("i_prime", "inception_score", "class_kl_uniform", "frechet_distance",
                     "precision", "recall", "prob_eps", "loss_d", "loss_g", "train_seconds",
                     "score_seconds", *_NULLABLE_INT), float),
}
# What parsing a damaged file can raise: json, numpy, zipfile and zlib each have their own
# (numpy parses an .npy header with tokenize and ast, which raise TokenError and SyntaxError).
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, RecursionError,
                zipfile.BadZipFile, zlib.error, tokenize.TokenError, SyntaxError,
                NotImplementedError)  # zipfile: an unsupported zip version or compression


def load_results(path: str | Path) -> pd.DataFrame:
    """Load a study's results table as a DataFrame, one row per run.

    ``path`` is the study folder (``results/<study>``) or its ``runs.parquet``. Columns are the
    run config's fields plus the scores and the run's status (docs/schema.md). A missing or
    corrupt table is a one-line :class:`~gridstudy.errors.UserError` that says how to rebuild it.
    """
    path = Path(path)
    table = path / TABLE if path.is_dir() or not path.suffix else path
    if not table.exists():
        raise UserError(f"{table}: no results table; run `gridstudy sweep` for this study first")
    rebuild = f"rebuild it with `gridstudy results rebuild {table.parent}`"
    try:
        frame = pd.read_parquet(table)
    except Exception as exc:  # pyarrow raises several types for truncated or garbled files
        raise UserError(f"{table}: corrupt results table ({type(exc).__name__}); {rebuild}"
                        ) from None
    problem = _table_problem(frame)
    if problem:
        raise UserError(f"{table}: not a gridstudy results table ({problem}); {rebuild}")
    return frame


def load_curves(path: str | Path, *, configs: bool = False) -> pd.DataFrame:
    """Load a study's training curves as a DataFrame, one row per (run_id, step).

    ``path`` is the study folder, a ``gridstudy trial`` folder, or the ``curves.parquet`` file.
    Columns: docs/schema.md ("curves.parquet"). With ``configs``, each point also carries its
    run's study, model, status and config fields (from ``runs.parquet`` beside it), so curves
    can be filtered and grouped like runs. A missing or corrupt file is a one-line UserError.
    """
    path = Path(path)
    table = path / CURVES if path.is_dir() or not path.suffix else path
    if not table.exists():
        raise UserError(f"{table}: no training curves; runs record them when eval_every > 0 "
                        "(studies made before curves existed have none)")
    rebuild = f"rebuild it with `gridstudy results rebuild {table.parent}`"
    try:
        curves = pd.read_parquet(table)
    except Exception as exc:
        raise UserError(f"{table}: corrupt curves table ({type(exc).__name__}); {rebuild}"
                        ) from None
    problem = _curves_problem(curves)
    if problem is None:
        try:
            curves = _typed_curves(curves[list(CURVE_COLUMNS)])
        except (TypeError, ValueError, OverflowError) as exc:
            problem = f"a column has values of the wrong type ({type(exc).__name__})"
    if problem is not None:
        raise UserError(f"{table}: not a gridstudy curves table ({problem}); {rebuild}")
    if not configs:
        return curves
    runs = load_results(table.parent)
    keep = [c for c in dict.fromkeys(("run_id", "study", "model", "status", *FIELDS))
            if c in runs.columns]
    return curves.merge(runs[[c for c in keep if c not in curves.columns or c == "run_id"]],
                        on="run_id", how="left")


def curves_to_frame(points: list[dict[str, Any]]) -> pd.DataFrame:
    """Curve points (dicts) to a typed DataFrame, ordered by run and step."""
    return _typed_curves(pd.DataFrame.from_records(points, columns=list(CURVE_COLUMNS)))


def _typed_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns of a curves table with their types, ordered by run and step."""
    frame = frame.astype({"step": "int64", "n_samples": "int64", "final": "bool"})
    floats = [c for c in CURVE_COLUMNS if c not in ("run_id", "step", "final", "n_samples")]
    frame[floats] = frame[floats].astype("float64")
    return frame.sort_values(["run_id", "step"], kind="stable", ignore_index=True)


def _curves_problem(frame: pd.DataFrame) -> str | None:
    """What makes ``frame`` unusable as a curves table (before its columns are typed), or None."""
    missing = [c for c in CURVE_COLUMNS if c not in frame.columns]
    if missing:
        return f"no {missing[0]} column"
    if not all(isinstance(v, str) and v for v in frame["run_id"]):
        return "a run_id is missing or not text"
    steps = frame["step"]
    if not pd.api.types.is_integer_dtype(steps) or (steps < 0).any():
        return "a step is missing, negative or not a whole number"
    twice = frame.duplicated(["run_id", "step"])
    if twice.any():
        return f"run {frame.loc[twice, 'run_id'].iloc[0]} has step {steps[twice].iloc[0]} twice"
    return None


def _table_problem(frame: pd.DataFrame) -> str | None:
    """What makes ``frame`` unusable as a results table, or None."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        return f"no {missing[0]} column"
    ids = frame["run_id"]
    if not all(isinstance(v, str) and v for v in ids):
        return "a run_id is missing or not text"
    if not ids.is_unique:
        return f"run {ids[ids.duplicated()].iloc[0]} appears twice"
    unknown = frame.loc[~frame["status"].isin(STATUSES), "status"]
    if len(unknown):
        return f"unknown status {one_line(repr(unknown.iloc[0]), 40)}"
    return None


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (dicts) to a typed DataFrame: config fields keep their types, NaN stays NaN.

    A row without a config field (one written before the field existed) gets its default.
    """
    if not rows:  # still a table: its readers need the columns (a study flushed before any run)
        return pd.DataFrame({c: pd.Series(dtype=object)
                             for c in dict.fromkeys(("study", *REQUIRED_COLUMNS, *FIELDS))})
    rows = [{**_DEFAULTS, **row} if set(_DEFAULTS) - row.keys() else row for row in rows]
    frame = pd.DataFrame.from_records(rows)
    for name in _NULLABLE_INT:
        if name in frame:
            frame[name] = pd.array(
                [None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                 for v in frame[name]], dtype="Int64")
    for name, f in FIELDS.items():
        if name in frame and str(f.type) == "int":
            frame[name] = frame[name].astype("int64")
    if "error" in frame:
        frame["error"] = frame["error"].fillna("").astype(str)
    return frame


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask). ``tempfile.mkstemp`` gives
    0o600, which would hide a study's tables from the colleagues who share its folder."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_table(frame: pd.DataFrame, study_dir: Path, name: str = TABLE) -> Path:
    """Write ``runs.parquet`` (or ``name``) atomically: a reader sees the old table or the new,
    never half."""
    study_dir.mkdir(parents=True, exist_ok=True)
    target = study_dir / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=study_dir)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def write_samples(samples: dict[str, np.ndarray], study_dir: Path, name: str) -> Path:
    """Write one bundle's samples (run_id -> uint8 (64, 28, 28)) as compressed .npz, atomically."""
    folder = study_dir / SAMPLES
    folder.mkdir(parents=True, exist_ok=True)
    return _write_npz(samples, folder / f"{name}.npz")


def _write_npz(arrays: dict[str, np.ndarray], target: Path) -> Path:
    """Write ``arrays`` as a compressed .npz at ``target``, atomically (temporary file, replace)."""
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, target)
    return target


def load_samples(study_dir: str | Path, run_ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """The kept samples of a study's runs (all, or those in ``run_ids``), keyed by run_id."""
    study_dir = Path(study_dir)
    wanted = set(run_ids) if run_ids is not None else None
    found: dict[str, np.ndarray] = {}
    files = sorted((study_dir / SAMPLES).glob("*.npz"))
    if (study_dir / "samples.npz").exists():
        files.append(study_dir / "samples.npz")
    for file in files:
        try:
            with np.load(file, allow_pickle=False) as archive:
                for key in archive.files:
                    if wanted is None or key in wanted:
                        found[key] = archive[key]
        except _READ_ERRORS:
            continue  # a torn sample file loses pictures, never rows
    return found


def sample_run_ids(study_dir: str | Path) -> set[str]:
    """The run ids whose samples a study kept, read from the archives' indexes (no pixels)."""
    study_dir = Path(study_dir)
    files = sorted((study_dir / SAMPLES).glob("*.npz"))
    if (study_dir / "samples.npz").exists():
        files.append(study_dir / "samples.npz")
    found: set[str] = set()
    for file in files:
        try:
            with np.load(file, allow_pickle=False) as archive:
                found.update(archive.files)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            continue  # load_samples skips a torn file too
    return found


def write_study_info(study_dir: Path, info: dict[str, Any]) -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    tmp = study_dir / f".{STUDY_FILE}.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
    os.replace(tmp, study_dir / STUDY_FILE)


_INFO_TYPES = {"study": str, "study_uid": str, "tune_experiment": str, "run_ids": list}


def read_study_info(study_dir: Path) -> dict[str, Any]:
    """``study.json`` of a study folder ({} when there is none), checked for the keys gridstudy
    reads back: a damaged file is a one-line error, and nothing is rewritten."""
    path = study_dir / STUDY_FILE
    if not path.exists():
        return {}
    fix = ("restore it, or delete it and rerun the sweep with --resume (the search space gives "
           "the runs)")
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except _READ_ERRORS as exc:
        raise UserError(f"{path}: corrupt study file ({type(exc).__name__}); {fix}") from None
    if not isinstance(info, dict):
        raise UserError(f"{path}: corrupt study file (not a JSON object); {fix}")
    for key, kind in _INFO_TYPES.items():
        if key in info and not isinstance(info[key], kind):
            raise UserError(f"{path}: corrupt study file ({key} is not a {kind.__name__}); {fix}")
    if not all(isinstance(r, str) for r in info.get("run_ids", [])):
        raise UserError(f"{path}: corrupt study file (run_ids holds a non-text id); {fix}")
    return info


class ResultsTable:
    """The in-memory table of a running study, written to disk as rows arrive.

    Rows are upserted by run_id, so a run reported twice (a retried bundle) is one row. With
    ``run_ids``, the table holds those runs only: a row of any other run (another study's) is
    left out, on load and on :meth:`add`, and counted in ``foreign``. The Parquet file is
    rewritten at most every ``flush_seconds`` and at :meth:`flush`.
    """

    def __init__(self, study_dir: Path, study: str, flush_seconds: float = 5.0,
                 load_existing: bool = True, run_ids: Collection[str] | None = None) -> None:
        self.study_dir = study_dir
        self.study = study
        self.flush_seconds = flush_seconds
        self.run_ids = frozenset(run_ids) if run_ids is not None else None
        self.rows: dict[str, dict[str, Any]] = {}
        self.curves: dict[str, list[dict[str, Any]]] = {}  # run_id -> its points
        self.foreign = 0
        self._dirty = False
        self._last_flush = 0.0
        if load_existing and (study_dir / TABLE).exists():
            for row in self._own(load_results(study_dir).to_dict("records")):
                self.rows[row["run_id"]] = row
            if (study_dir / CURVES).exists():
                for run_id, points in load_curves(study_dir).groupby("run_id", sort=False):
                    if str(run_id) in self.rows:
                        self.curves[str(run_id)] = points.to_dict("records")
            self._dirty = self.foreign > 0  # the next flush writes the table without them

    def _own(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.run_ids is None:
            return rows
        own = [row for row in rows if row["run_id"] in self.run_ids]
        self.foreign += len(rows) - len(own)
        return own

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Upsert this study's ``rows`` by run_id; a row's ``curve`` replaces that run's curve."""
        rows = self._own(rows)  # none, e.g., in a snapshot before a bundle's first run ends
        for row in rows:
            row = {k: v for k, v in row.items() if k != "study"}
            curve = row.pop(CURVE_KEY, None)
            self.rows[row["run_id"]] = {"study": self.study, **row}
            if curve is not None:
                self.curves[row["run_id"]] = curve
        self._dirty = self._dirty or bool(rows)
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        write_table(rows_to_frame(list(self.rows.values())), self.study_dir)
        points = [p for run_id in self.rows for p in self.curves.get(run_id, [])]
        if points or (self.study_dir / CURVES).exists():
            write_table(curves_to_frame(points), self.study_dir, CURVES)
        self._dirty = False
        self._last_flush = time.monotonic()

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(Counter(row.get("status", "failed") for row in self.rows.values()))
        return counts


def query_results(frame: pd.DataFrame, expression: str | None = None, *,
                  columns: list[str] | None = None, sort: str | None = None, desc: bool = False,
                  top: int | None = None, group_by: list[str] | None = None,
                  agg: list[str] | None = None) -> pd.DataFrame:
    """Filter, aggregate, sort and cut a results table (what ``gridstudy query`` prints).

    ``expression`` is a ``DataFrame.query`` expression, e.g. ``"model == 'gan' and lr < 1e-3"``.
    It is evaluated by pandas and can run code: treat it as trusted input, like a script.
    With ``group_by``, ``columns`` (default ``i_prime``) are aggregated with ``agg``
    (default ``median,count``) per group.
    """
    known = set(frame.columns)
    for name in [*(columns or []), *(group_by or []), *([sort] if sort else [])]:
        if name not in known and not (group_by and name == sort):
            raise UserError(f"unknown column {name!r}; columns: {', '.join(frame.columns)}")
    if expression:
        try:
            frame = frame.query(expression)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"bad query expression {expression!r}: {first}") from None
    if group_by:
        values = columns or ["i_prime"]
        try:
            frame = frame.groupby(group_by, dropna=False)[values].agg(agg or ["median", "count"])
        except (AttributeError, TypeError, ValueError) as exc:
            raise UserError(f"--agg {','.join(agg or [])}: {exc}") from None
        frame.columns = [f"{c}_{a}" for c, a in frame.columns]
        frame = frame.reset_index()
    elif columns:
        frame = frame[columns]
    if sort:
        if sort not in frame.columns:
            raise UserError(f"--sort {sort}: not a column of the result; "
                            f"columns: {', '.join(map(str, frame.columns))}")
        frame = frame.sort_values(sort, ascending=not desc, na_position="last")
    if top is not None:
        frame = frame.head(top)
    return frame


def write_bundle_records(folder: Path, rows: list[dict[str, Any]],
                         samples: dict[str, np.ndarray]) -> None:
    """A bundle's rows (JSON) and samples (npz) as a trial checkpoints them for Ray Tune."""
    (folder / "rows.json").write_text(json.dumps(rows, default=_json_default))
    np.savez_compressed(folder / "samples.npz", **samples)


def read_bundle_records(folder: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The rows and samples of a bundle checkpoint written by :func:`write_bundle_records`.

    Both files are checked before anything is used: each row must be a run of a valid config
    with a known status, each sample array uint8 of :data:`SAMPLE_SHAPE` (its header is read
    before its data, so a forged size allocates nothing). A damaged checkpoint is a UserError.
    """
    path = folder / "rows.json"
    try:
        rows = json.loads(path.read_bytes().decode("utf-8"))
    except _READ_ERRORS as exc:
        raise UserError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    problem = _rows_problem(rows)
    if problem:
        raise UserError(f"{path}: damaged checkpoint ({problem})")
    return rows, _read_samples(folder / "samples.npz")


def _rows_problem(rows: Any) -> str | None:
    if not isinstance(rows, list):
        return "not a list of rows"
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("run_id"), str):
            return "a row without a run_id"
        problem = _row_problem(row)
        if problem:
            return f"run {one_line(row['run_id'], 40)} {problem}"
    return None


def _row_problem(row: dict[str, Any]) -> str | None:
    """What keeps ``row`` out of a table (one whose values Parquet could not store), or None."""
    if row.get("status") not in STATUSES:
        return "has no known status"
    curve = row.get(CURVE_KEY, [])
    if not isinstance(curve, list) or not all(
            isinstance(p, dict) and p.get("run_id") == row["run_id"]
            and all(isinstance(v, (str, int, float, bool, type(None))) for v in p.values())
            for p in curve):
        return "has a malformed curve"
    for key, value in row.items():
        if key == CURVE_KEY:
            continue
        if not isinstance(value, (str, int, float, bool, type(None))):
            return f"has a nested value in {one_line(str(key), 40)}"
        kind = _COLUMN_KINDS.get(key)
        if kind is str and not isinstance(value, (str, type(None))):
            return f"has a non-text {key}"
        if kind is float and not _is_number(value, integer=key in _NULLABLE_INT):
            return f"has a non-numeric {key}"
    try:
        config = config_from_dict({k: row[k] for k in FIELDS if k in row}, "row")
    except (UserError, TypeError, ValueError, OverflowError):
        return "has an invalid config"
    if any(abs(v) >= 2 ** 63 for v in config.to_dict().values() if isinstance(v, int)):
        return "has an integer too large for the table"
    return None


def _is_number(value: Any, integer: bool) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if integer:  # stored as nullable Int64: NaN means missing, anything else a whole number
        return isinstance(value, int) and abs(value) < 2 ** 63 or math.isnan(value) or (
            math.isfinite(value) and value.is_integer() and abs(value) < 2 ** 63)
    return True


def _read_samples(path: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.removesuffix(".npy"): _read_sample_array(archive, name)
                    for name in archive.namelist()}
    except UserError:
        raise
    except _READ_ERRORS as exc:
        raise UserError(f"{path}: unreadable samples ({type(exc).__name__})") from None


def _read_sample_array(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(name) as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        if shape != SAMPLE_SHAPE or dtype != np.uint8 or fortran:
            raise UserError(f"{archive.filename}: samples {one_line(name, 40)} are "
                            f"{dtype} {shape}, not uint8 {SAMPLE_SHAPE}")
    with archive.open(name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def read_tune_records(experiment: Path, run_ids: Collection[str] | None = None,
                      unreadable: list[Path] | None = None,
                      ) -> Iterator[tuple[str, list[dict[str, Any]], dict[str, np.ndarray]]]:
    """(trial folder name, rows, samples) of each trial in a local Tune experiment folder.

    A trial's checkpoints are cumulative, so its newest readable one holds every run it finished;
    a damaged one is skipped (and listed in ``unreadable``) for the one before it. With
    ``run_ids``, only those runs' rows and samples are returned: the one place where a study's
    records are told apart from anything else in the folder.
    """
    wanted = frozenset(run_ids) if run_ids is not None else None
    for trial_dir in _trial_dirs(experiment):
        try:
            checkpoints = sorted(trial_dir.glob("checkpoint_*"), key=lambda p: p.name)
        except OSError:  # an unreadable folder holds no records we can use
            continue
        for checkpoint in reversed(checkpoints):
            try:
                rows, samples = read_bundle_records(checkpoint)
            except UserError:
                if unreadable is not None:
                    unreadable.append(checkpoint)
                continue
            if wanted is not None:
                rows = [row for row in rows if row["run_id"] in wanted]
                samples = {k: v for k, v in samples.items() if k in wanted}
            yield trial_dir.name, rows, samples
            break


def _trial_dirs(experiment: Path) -> list[Path]:
    try:
        return sorted(p for p in experiment.iterdir() if p.is_dir())
    except OSError as exc:
        raise UserError(f"{experiment}: cannot read Ray Tune's records "
                        f"({exc.strerror or type(exc).__name__})") from None


def recover_unrecorded(table: ResultsTable, experiment: Path) -> int:
    """Add to ``table`` the runs Tune's checkpoints hold but the table lacks; return how many.

    The table is written every few seconds, so a driver killed outright (SIGKILL, a lost machine)
    can leave the last runs of trials Tune already counts as finished only in their checkpoints;
    ``Tuner.restore`` does not re-run finished trials, so a resumed sweep picks them up here.
    Only the table's own runs (``table.run_ids``) are read.
    """
    if not experiment.is_dir():
        return 0
    found = 0
    for trial, rows, samples in read_tune_records(experiment, table.run_ids):
        new = [row for row in rows if row["run_id"] not in table.rows]
        if not new:
            continue
        ids = {row["run_id"] for row in new}
        kept = {k: v for k, v in samples.items() if k in ids}
        if kept:
            write_samples(kept, table.study_dir, f"{trial}-recovered")
        table.add(new)
        found += len(new)
    return found


def rebuild_results(study_dir: Path) -> ResultsTable:
    """Rebuild ``runs.parquet`` and the samples from the per-trial checkpoints Tune kept.

    Reads the local experiment folder (``results/<study>/tune``, or the one ``study.json``
    names), only for the study's own run ids. A readable table keeps its rows (Tune's records
    update them); a damaged one is kept beside the new one as ``runs.parquet.damaged``.
    """
    study_dir = study_dir.resolve()
    info = read_study_info(study_dir)
    recorded = info.get("tune_experiment", "")
    experiment = study_dir / "tune" if not recorded or "://" in recorded else Path(recorded)
    if not experiment.is_dir():
        copy = f"; copy {recorded} to {study_dir / 'tune'}" if "://" in recorded else ""
        raise UserError(f"{experiment}: no Ray Tune records to rebuild from{copy}")
    run_ids = info.get("run_ids")  # None only for a study.json written before they were kept
    table = _table_to_rebuild(study_dir, info.get("study") or study_dir.name)
    unreadable: list[Path] = []
    found = 0
    for trial, rows, samples in read_tune_records(experiment, run_ids, unreadable):
        if samples:
            write_samples(samples, study_dir, trial)
        table.add(rows)
        found += len(rows)
    if unreadable:
        print(f"{len(unreadable)} damaged checkpoints skipped, e.g. {unreadable[0]}",
              file=sys.stderr)
    if not found:
        raise UserError(f"{experiment}: no finished runs of this study in Ray Tune's records")
    table.flush()
    missing = [r for r in run_ids or [] if r not in table.rows]
    if missing:
        print(f"{len(missing)} of {len(run_ids)} runs have no record yet; "
              "`gridstudy sweep ... --resume` finishes them", file=sys.stderr)
    return table


def _table_to_rebuild(study_dir: Path, study: str) -> ResultsTable:
    """The study's table with every readable row (each was recorded for this study, whatever
    study.json says now), or empty with a damaged file moved aside."""
    try:
        return ResultsTable(study_dir, study)
    except UserError:
        damaged = study_dir / f"{TABLE}.damaged"
        os.replace(study_dir / TABLE, damaged)
        print(f"kept the damaged table as {damaged}", file=sys.stderr)
        return ResultsTable(study_dir, study, load_existing=False)


def export_study(source: str | Path, dest: str | Path, *, best: int = 8,
                 score: str = "i_prime") -> dict[str, int]:
    """Copy a study into a small, shareable folder: the whole table, only the best runs' samples.

    ``dest`` gets ``runs.parquet`` (every row), ``curves.parquet`` (every curve, when the study
    has them), ``study.json`` and one ``samples.npz`` holding
    the samples of the ``best`` highest-scoring runs of each model by ``score`` (runs without a
    score are skipped). Tune's records are left behind, so ``dest`` can be queried, plotted and
    reported on, not resumed. ``source`` is never modified. Returns the counts written.
    """
    source, dest = Path(source), Path(dest)
    if source.resolve() == dest.resolve():
        raise UserError(f"{dest}: export needs a different folder from the study it copies")
    frame = load_results(source)
    if score not in frame.columns:
        raise UserError(f"--score {score}: not a column of {source / TABLE}")
    if best < 0:
        raise UserError(f"--best {best}: expected a count of runs, 0 or more")
    scored = frame[frame[score].notna()]
    top = scored.sort_values(score, ascending=False).groupby("model", sort=True).head(best)
    samples = load_samples(source, list(top["run_id"]))
    dest.mkdir(parents=True, exist_ok=True)
    write_table(frame, dest)
    info = read_study_info(source)
    if info:
        info.pop("tune_experiment", None)  # the copy has no Tune records to resume from
        write_study_info(dest, info)
    _write_npz(samples, dest / "samples.npz")
    curves = 0
    if (source / CURVES).exists():
        points = load_curves(source)
        write_table(points, dest, CURVES)
        curves = int(points["run_id"].nunique())
    return {"runs": len(frame), "samples": len(samples), "curves": curves}
