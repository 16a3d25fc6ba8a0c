"""gridstudy: hyperparameter grid-search stability studies of GANs and EBGANs.

The public API is small; everything else is reached through the ``gridstudy`` command line::

    import gridstudy
    runs = gridstudy.load_results("results/reference-cpu")   # one row per run (pandas)
    curves = gridstudy.load_curves("results/reference-cpu")  # one row per (run, step)
    space = gridstudy.load_space(["search_spaces/smoke.yaml"])
    config = gridstudy.RunConfig(model="ebgan", size_g=400, size_d=128)

``train_run`` (one run, no Ray) is imported lazily, so reading results never imports torch.
"""

from __future__ import annotations

from typing import Any

from gridstudy.config import RunConfig
from gridstudy.errors import UserError
from gridstudy.results import load_curves, load_results, load_samples
from gridstudy.spaces import load_space

__all__ = ["RunConfig", "UserError", "load_curves", "load_results", "load_samples", "load_space",
           "train_run"]


def __getattr__(name: str) -> Any:
    if name == "train_run":
        from gridstudy.train import train_run

        return train_run
    raise AttributeError(f"module 'gridstudy' has no attribute {name!r}")
