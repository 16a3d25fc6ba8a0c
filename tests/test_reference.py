"""The reference study kept in git (results/reference-cpu/) is whole, current and small."""

from pathlib import Path

from analysis.schema import STATUSES
from gridstudy.results import load_results, load_samples, read_study_info
from gridstudy.spaces import load_space

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "results" / "reference-cpu"
SPACE = ROOT / "search_spaces" / "reference_cpu.yaml"


def test_it_holds_one_row_per_run_of_its_search_space():
    frame = load_results(STUDY)
    expected = {c.run_id() for c in load_space([SPACE]).runs}
    assert frame["run_id"].is_unique
    assert set(frame["run_id"]) == expected
    assert set(frame["status"]) <= set(STATUSES)
    assert set(read_study_info(STUDY)["run_ids"]) == expected


def test_it_keeps_the_best_runs_samples_and_its_figures():
    frame = load_results(STUDY)
    best = frame.sort_values("i_prime", ascending=False).groupby("model").head(1)
    samples = load_samples(STUDY)
    assert set(best["run_id"]) <= set(samples)
    assert all(a.shape == (64, 28, 28) for a in samples.values())
    for name in ("figures/fig2_histograms.png", "figures/fig3_optim_lr.png", "report.md"):
        assert (STUDY / name).exists(), name


def test_it_stays_small_enough_for_git():
    size = sum(p.stat().st_size for p in STUDY.rglob("*") if p.is_file())
    assert size < 8_000_000
