"""Tests of the numbers behind the figures (analysis.figures, analysis.figures_extra), and one
end-to-end render of every figure from a synthetic table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import canvas, figures, figures_extra
from analysis.table import depth_panels, optim_panels, top_configurations
from tests.synthetic import make_curves, make_results, make_samples


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return make_results(600, seed=0)


def test_histogram_bins_are_shared_across_models_and_panels(runs):
    info = figures.figure2_info(runs, bins=10)
    finite = runs["i_prime"].dropna()
    assert info.edges[0] == finite.min() and info.edges[-1] == finite.max()
    for _, bars in info.bars.groupby(["panel", "model"]):
        np.testing.assert_array_equal(bars["left"], info.edges[:-1])


def test_histogram_counts_and_percentages(runs):
    info = figures.figure2_info(runs)
    totals = info.bars.groupby(["panel", "model"], sort=False)[["count", "percent"]].sum()
    counts = info.counts.set_index(["panel", "model"])
    np.testing.assert_array_equal(totals["count"], counts.loc[totals.index, "n_scored"])
    np.testing.assert_allclose(totals["percent"], 100.0)
    np.testing.assert_array_equal(counts["n_scored"] + counts["n_not_scored"], counts["n_runs"])
    all_runs = counts.xs("all runs")
    assert all_runs["n_runs"].sum() == len(runs)
    assert all_runs["n_not_scored"].sum() == runs["i_prime"].isna().sum()
    scored_div = (runs["status"] == "diverged") & runs["i_prime"].notna()
    assert all_runs["n_diverged_scored"].sum() == scored_div.sum()


def test_depth_panels_filter_both_nets():
    df = pd.DataFrame({"n_layers_g": [2, 3, 4, 5, 3], "n_layers_d": [2, 4, 3, 2, 3]})
    masks = [mask.tolist() for _, mask in depth_panels(df)]
    assert masks == [[True] * 5, [True, True, True, False, True],
                     [True, False, False, False, True]]


def test_optim_panels_cover_the_paper_grid(runs):
    panels = optim_panels(runs)
    assert len(panels) == 12
    assert panels[0][0] == "optimD=adam, optimG=adam, lr=0.01"
    total = sum(mask for _, mask in panels)
    assert (total == 1).all()  # every run in exactly one panel


def test_figure3_shows_gan_with_ebgan_reference_only(runs):
    info = figures.figure3_info(runs)
    assert set(info.bars["model"]) == {"gan", "ebgan"}
    assert info.counts["panel"].nunique() == 12


def test_best_runs_lower_is_better(runs):
    best = figures.best_runs(runs, "frechet_distance").set_index("model")
    for model, row in best.iterrows():
        assert row["frechet_distance"] == runs.loc[runs["model"] == model,
                                                   "frechet_distance"].min()
    top = top_configurations(runs, "i_prime", k=5)
    assert top.groupby("model").size().max() == 5


def test_sample_mosaic_places_images_row_major():
    images = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2)
    mosaic = figures.sample_mosaic(images, ncols=2)
    assert mosaic.shape == (4, 4)
    np.testing.assert_array_equal(mosaic[:2, 2:], images[1])
    np.testing.assert_array_equal(mosaic[2:, 2:], 0)


def test_axis_medians_only_axes_that_vary_within_a_model(runs):
    info = figures_extra.axis_medians(runs)
    gan_axes = set(info.loc[info["model"] == "gan", "axis"])
    assert "margin" not in gan_axes and "lr" in gan_axes
    assert "margin" in set(info.loc[info["model"] == "ebgan", "axis"])


def test_ecdf_ends_at_one(runs):
    info = figures_extra.ecdf_info(runs)
    assert (info.groupby("model")["fraction"].max() == 1.0).all()


def test_plot_study_writes_every_figure(runs, tmp_path):
    best = figures.best_runs(runs)
    samples = make_samples(list(best["run_id"][:2]))  # the third model has none: a note panel
    paths = figures.plot_study(runs, tmp_path, study="synthetic", samples=samples,
                               curves=make_curves(runs))
    stems = {p.stem for p in paths}
    assert stems == set(canvas.FIGURE_STEMS.values())
    for path in paths:
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if path.suffix == ".png" else head.startswith(b"%PDF")



def test_lower_is_better_score_labels_its_direction(runs):
    info = figures.figure2_info(runs, "frechet_distance")
    fig = figures.plot_histograms(info, "frechet_distance", "FD")
    assert fig.axes[0].get_xlabel().endswith("(lower is better)")
    assert "not scored" in fig.axes[0].get_legend().get_texts()[0].get_text()
