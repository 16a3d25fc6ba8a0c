"""One run on this machine, outside Ray: load data and classifier, train, write the run's files.

``DIR/config.json`` (the resolved config) is written before training starts, so a crashed run
still says what it was; ``DIR/result.json``, ``DIR/samples.png`` and, when the run evaluated
itself during training, its curve ``DIR/curves.parquet`` (``gridstudy.load_curves(DIR)``) and
its plot ``DIR/curve.png`` when it ends.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from gridstudy.classifier import Scorer, prepare_classifier
from gridstudy.config import RunConfig
from gridstudy.data import load_dataset
from gridstudy.errors import UserError
from gridstudy.images import save_grid
from gridstudy.results import CURVES, curves_to_frame, write_table
from gridstudy.study import training_digits
from gridstudy.train import train_run


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count once per process (default: leave torch's choice)."""
    if threads is not None and threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def pick_device(device: str | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine; use cpu")
    return device


def run_trial(config: RunConfig, out: Path, *, data_dir: str | None = None,
              device: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train, sample and score ``config``; write its files to ``out``; return its row."""
    set_threads(threads)
    device = pick_device(device)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"{out}: cannot write the run's files ({exc.strerror})") from None
    data = load_dataset(config.dataset, data_dir)
    scored_on = data if config.scored_on == config.dataset else load_dataset(config.scored_on,
                                                                             data_dir)
    classifier = prepare_classifier(config.scored_on, data_dir, data=scored_on)
    result = train_run(config, training_digits(data.train_x, config),
                       Scorer(classifier, scored_on.test_x), device=device)
    row = {**result.row, "classifier_accuracy": classifier.test_accuracy}
    (out / "result.json").write_text(json.dumps(_jsonable(row), indent=2) + "\n")
    save_grid(result.samples, out / "samples.png")
    if result.curve:
        from analysis.trajectories import plot_run_curve  # noqa: PLC0415 (matplotlib: lazily)

        curve = curves_to_frame(result.curve)
        write_table(curve, out, CURVES)
        plot_run_curve(curve, f"{config.model} {row['run_id']}: training curve").savefig(
            out / "curve.png", dpi=110)
    return row


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinity as null: result.json stays strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()}
