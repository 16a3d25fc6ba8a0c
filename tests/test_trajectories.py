"""Tests of analysis.trajectories: step alignment and the numbers behind the training-dynamics
figures on hand-made curves; the figures and the report section from a synthetic study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import figures, figures_extra, trajectories
from analysis.figures import FIGURE_STEMS, plot_study
from analysis.report import write_report
from analysis.stability import add_stability
from analysis.table import optim_panels
from tests.synthetic import make_curves, make_results


@pytest.fixture()
def hand() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four GAN runs (a, b ok; c diverged at step 250; e failed, no curve) and one EBGAN run."""
    runs = pd.DataFrame({"run_id": list("abcde"), "model": ["gan"] * 3 + ["ebgan", "gan"],
                         "status": ["ok", "ok", "diverged", "ok", "failed"], "steps": 400,
                         "n_layers_g": 3, "n_layers_d": 3,
                         "i_prime": [4.0, 6.0, np.nan, 5.0, np.nan]})
    rows = [("a", 100, 1.0), ("a", 200, 2.0), ("a", 300, 3.0), ("a", 400, 4.0),
            ("b", 100, 3.0), ("b", 200, 7.0), ("b", 300, 5.0), ("b", 400, 6.0),
            ("c", 100, 2.0), ("c", 200, 0.0), ("c", 250, np.nan),
            *[("d", s, 5.0) for s in (100, 200, 300, 400)]]
    curves = pd.DataFrame(rows, columns=["run_id", "step", "i_prime"])
    return runs, curves


def test_median_band_and_counts_at_each_step(hand):
    runs, curves = hand
    info = trajectories.trajectory_info(runs, curves)
    gan = info[(info["panel"] == "all runs") & (info["model"] == "gan")]
    assert gan["step"].tolist() == [100, 200, 300, 400]
    # c's divergence at 250 lands on step 300, where its NaN leaves it unscored
    assert gan["median"].tolist() == [2.0, 2.0, 4.0, 5.0]
    assert gan["q25"].tolist() == [1.5, 1.0, 3.5, 4.5]
    assert gan["q75"].tolist() == [2.5, 4.5, 4.5, 5.5]
    assert gan["n"].tolist() == [3, 3, 2, 2]
    assert gan["n_missing"].tolist() == [1, 1, 2, 2]  # e (failed) everywhere, c after diverging
    ebgan = info[(info["panel"] == "all runs") & (info["model"] == "ebgan")]
    assert ebgan["median"].tolist() == [5.0] * 4 and ebgan["n_missing"].eq(0).all()
    assert set(info["panel"]) == {"all runs", "nLayerG <= 4 and nLayerD <= 4",
                                  "nLayerG <= 3 and nLayerD <= 3"}


def test_runs_of_different_lengths_share_a_grid_of_fractions():
    runs = pd.DataFrame({"run_id": ["x", "y"], "model": "gan", "steps": [400, 800],
                         "n_layers_g": 3, "n_layers_d": 3})
    curves = pd.DataFrame({"run_id": ["x"] * 4 + ["y"] * 8,
                           "step": [100, 200, 300, 400, *range(100, 900, 100)],
                           "i_prime": [1.0, 2.0, 3.0, 4.0, *range(10, 90, 10)]})
    aligned, grid = trajectories.align_curves(runs, curves)
    np.testing.assert_allclose(grid, [0.25, 0.5, 0.75, 1.0])  # the coarser schedule's 4 points
    # y keeps its latest evaluation at or before each grid fraction: steps 200, 400, 600, 800
    y = aligned[aligned["run_id"] == "y"]
    assert y["value"].tolist() == [20.0, 40.0, 60.0, 80.0]
    assert aligned[aligned["run_id"] == "x"]["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
    info = trajectories.trajectory_info(runs, curves)
    assert info["step"].isna().all() and info["fraction"].iloc[-1] == 1.0


def test_best_final_info_medians_and_nan_finals(hand):
    runs, curves = hand
    info = trajectories.best_final_info(add_stability(runs, curves))
    assert set(info.points["run_id"]) == set("abcd")  # e failed
    gan = info.summary.set_index("model").loc["gan"]
    assert (gan["n"], gan["n_final_nan"]) == (2, 1)  # c diverged with a NaN final I'
    assert (gan["median_final"], gan["median_best"], gan["median_drop"]) == (5.0, 5.5, 0.5)
    assert gan["share_best_above_final"] == 0.5  # b peaked at 7, ended at 6


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = make_results(150, seed=3)
    return runs, make_curves(runs, points=7, seed=3)


def test_gan_per_optimizer_setting(study):
    runs, curves = study
    info = trajectories.trajectory_info(runs, curves, panels=optim_panels(runs), models=["gan"])
    assert set(info["model"]) == {"gan"} and info["panel"].nunique() == len(optim_panels(runs))
    per_panel = (info["n"] + info["n_missing"]).groupby(info["panel"]).max()
    for title, mask in optim_panels(runs):
        assert per_panel[title] == ((runs["model"] == "gan") & mask).sum()
    assert info.groupby("panel").size().eq(7).all()


def test_trajectory_figure_renders_one_row_of_panels_per_score(hand, tmp_path):
    runs, curves = hand
    curves = curves.assign(n_classes_covered=2.0)
    info = pd.concat([trajectories.trajectory_info(runs, curves, s)
                      for s in ("i_prime", "n_classes_covered")])
    fig = trajectories.plot_trajectories(info, "t")
    assert isinstance(fig, Figure) and sum(ax.get_visible() for ax in fig.axes) == 6
    fig.savefig(tmp_path / "t.png", dpi=30)  # the legends and bands are laid out without error
    best = trajectories.plot_best_final(trajectories.best_final_info(add_stability(runs, curves)),
                                        "b")
    assert isinstance(best, Figure) and len(best.axes[0].collections) == 2  # GAN and EBGAN


def test_plot_study_and_report_take_curves(study, tmp_path, monkeypatch):
    runs, curves = study
    runs = runs[(runs["optim_d"] == "adam") & (runs["optim_g"] == "adam")]  # 3 Figure 3 panels
    saved: list[str] = []

    def fake_save(fig: Figure, out_dir, stem: str) -> list:
        assert isinstance(fig, Figure)
        saved.append(stem)
        (tmp_path / f"{stem}.png").write_bytes(b"\x89PNG")
        return [tmp_path / f"{stem}.png"]

    for module in (figures, figures_extra, trajectories):  # drawn, not rendered: fast
        monkeypatch.setattr(module, "save_figure", fake_save)
    plot_study(runs, tmp_path, study="s", curves=curves)
    for key in ("traj", "traj_optim", "traj_optim_classes", "best_final"):
        assert FIGURE_STEMS[key] in saved
    with_curves = write_report(runs, tmp_path / "r.md", study="s", figures_dir=tmp_path,
                               curves=curves).read_text()
    assert "## Training dynamics and stability" in with_curves
    assert "](best_vs_final.png)" in with_curves and "| collapsed |" in with_curves
    assert "### Among the runs that learned (best I' >= 1)" in with_curves
    without = write_report(runs, tmp_path / "r0.md", study="s").read_text()
    assert "## Training dynamics" not in without
    gan_only = write_report(runs[runs["model"] == "gan"], tmp_path / "r1.md", study="s",
                            curves=curves.iloc[:0]).read_text()
    assert "No curves for these runs." in gan_only
