"""The studies kept in git (results/reference-cpu/, results/scale-cpu/) are whole, current and
small."""

from pathlib import Path

import pytest

from analysis.schema import STATUSES
from gridstudy.results import load_curves, load_results, load_samples, read_study_info
from gridstudy.spaces import load_space

ROOT = Path(__file__).resolve().parent.parent
# kept study -> its search space, the figures its README section shows, and the slices whose
# Figure 4 it draws (the README's PAPER and MATCHED for the reference study; "" is every run)
PAPER = "seed == 0 and margin == 10 and margin_schedule == 'constant'"
MATCHED = ("optim_d == 'adam' and optim_g == 'adam' and lr == 0.001 and margin == 10 and "
           "margin_schedule == 'constant'")
KEPT = {
    "reference-cpu": ("reference_cpu.yaml", ("fig2_histograms.png", "fig3_optim_lr.png",
                                             "trajectories.png", "best_vs_final.png"),
                      ("", PAPER, MATCHED)),
    "scale-cpu": ("scale_cpu.yaml", ("fig2_histograms.png", "scale.png", "trajectories.png"),
                  ("",)),
}
studies = pytest.mark.parametrize("name", sorted(KEPT))


@studies
def test_it_holds_one_row_per_run_of_its_search_space(name: str):
    study = ROOT / "results" / name
    frame = load_results(study)
    expected = {c.run_id() for c in load_space([ROOT / "search_spaces" / KEPT[name][0]]).runs}
    assert frame["run_id"].is_unique
    assert set(frame["run_id"]) == expected
    assert set(frame["status"]) <= set(STATUSES)
    assert set(read_study_info(study)["run_ids"]) == expected


@studies
def test_it_keeps_the_best_runs_samples_and_its_figures(name: str):
    study = ROOT / "results" / name
    frame = load_results(study)
    samples = load_samples(study)
    for where in KEPT[name][2]:  # Figure 4 of each slice shows its best run of each model
        rows = frame.query(where) if where else frame
        best = rows.sort_values("i_prime", ascending=False).groupby("model").head(1)
        assert set(best["run_id"]) <= set(samples), where
    assert all(a.shape == (64, 28, 28) for a in samples.values())
    for figure in KEPT[name][1]:
        assert (study / "figures" / figure).exists(), figure
    assert (study / "report.md").exists()


@studies
def test_it_has_a_curve_for_every_run_and_one_scorer(name: str):
    study = ROOT / "results" / name
    frame = load_results(study)
    curves = load_curves(study)
    assert set(curves["run_id"]) == set(frame["run_id"])
    assert curves.groupby("run_id")["step"].max().eq(frame.set_index("run_id")["steps"]).all()
    assert frame["scorer"].nunique() == 1


@studies
def test_it_stays_small_enough_for_git(name: str):
    size = sum(p.stat().st_size for p in (ROOT / "results" / name).rglob("*") if p.is_file())
    assert size < 8_000_000
