"""Scores along the ladders of scale (analysis/scale.py), on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import scale


def table() -> pd.DataFrame:
    """GAN runs: at width 50/16 none of 4 succeed; at 400/128, 3 of 4. Two longer runs at
    50/16 belong to the steps ladder and must not enter the width ladder."""
    rows = []
    for (size_g, size_d), scores in (((50, 16), [0.1, 0.2, 0.3, 0.4]),
                                     ((400, 128), [6.0, 7.0, 5.5, 1.0])):
        rows += [{"size_g": size_g, "size_d": size_d, "steps": 3000, "i_prime": s} for s in scores]
    rows += [{"size_g": 50, "size_d": 16, "steps": 12000, "i_prime": 9.0}] * 2
    df = pd.DataFrame(rows)
    df["model"], df["status"], df["train_size"], df["dataset"] = "gan", "ok", 0, "mnist5k"
    return df


def test_each_ladder_is_read_on_its_own_slice():
    df = table()
    assert scale.varying_ladders(df) == ["width", "steps"]
    width = scale.ladder_info(df, "width", threshold=5.0).set_index("level")
    assert list(width.index) == ["50/16", "400/128"]
    assert width.loc["50/16", ["n", "n_success"]].tolist() == [4, 0]  # not the 12,000-step runs
    assert width.loc["400/128", ["n", "n_success"]].tolist() == [4, 3]
    assert width.loc["50/16", "ci_high"] == pytest.approx(1 - 0.025 ** 0.25)  # 0 of 4 exactly
    assert width.loc["400/128", "median"] == pytest.approx(5.75)
    steps = scale.ladder_info(df, "steps", threshold=5.0).set_index("level")
    assert steps.loc["12000", ["n", "n_success"]].tolist() == [2, 2]
    assert steps.loc["3000", "n"] == 4  # 50/16, the only width run at both lengths
    lo, hi = steps.loc["3000", ["median_low", "median_high"]]
    assert lo <= 0.25 <= hi


def test_levels_are_labelled_and_drawn():
    assert scale.level_label(("mnist5k", 0), ("dataset", "train_size")) == "mnist5k/all"
    assert scale.level_label(("mnist", 4000), ("dataset", "train_size")) == "mnist/4000"
    df = table()
    infos = {name: scale.ladder_info(df, name) for name in scale.varying_ladders(df)}
    fig = scale.plot_ladders(infos, "i_prime", "t")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert np.isfinite(infos["width"]["median"]).all()


def test_a_ladder_compares_only_configurations_run_at_every_level():
    """The steps ladder of scale_cpu.yaml: 3,000 steps at three depths (the width ladder), the
    longer runs at depth 3 only, with eval_every following steps. Depths 2 and 4 must not enter
    the 3,000-step level; eval_every must not split the configurations."""
    rows = []
    for depth, score in ((2, 0.1), (3, 6.0), (4, 0.2)):
        rows += [{"n_layers_d": depth, "steps": 3000, "eval_every": 300, "i_prime": score}] * 3
    rows += [{"n_layers_d": 3, "steps": 12000, "eval_every": 1200, "i_prime": 7.0}] * 3
    df = pd.DataFrame(rows)
    df["model"], df["status"], df["size_g"], df["size_d"] = "gan", "ok", 200, 64
    df["seed"] = list(range(3)) * 4
    assert scale.varying_ladders(df) == ["steps"]
    steps = scale.ladder_info(df, "steps", threshold=5.0).set_index("level")
    assert steps.loc["3000", ["n", "n_success"]].tolist() == [3, 3]  # depth 3 only
    assert steps.loc["12000", ["n", "n_success"]].tolist() == [3, 3]
    assert set(scale.ladder_slice(df, "steps")["n_layers_d"]) == {3}
    assert len(scale.ladder_slice(df.drop(columns="eval_every"), "steps")) == 6


def test_data_sizes_run_from_small_to_large_whatever_the_data_sets_names():
    rows = [{"dataset": d, "train_size": n, "i_prime": 1.0}
            for d, n in (("mnist", 12484), ("mnist5k", 4000), ("mnist", 4000))]
    df = pd.DataFrame(rows)
    df["model"], df["status"], df["size_g"], df["size_d"], df["steps"] = "gan", "ok", 50, 16, 3000
    info = scale.ladder_info(df, "data size", threshold=5.0)
    assert list(info["level"]) == ["mnist/4000", "mnist5k/4000", "mnist/12484"]
