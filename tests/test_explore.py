"""gridstudy explore: the page's numbers (pandas asserts), the command, and the page in Chromium.

The browser tests open a page written from a synthetic study and check it against pandas: no
console error, no network request, run counts after a filter change, a run's samples, pixels.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.explore import (
    CURVE_POINTS,
    ExploreInfo,
    embed_samples,
    explore_info,
    filter_specs,
    level_codes,
    sample_order,
    thin_curves,
)
from analysis.explore_page import page_data, render_page, write_explorer
from analysis.figures import shared_edges
from analysis.schema import CURVE_COLUMNS
from gridstudy.cli import main
from gridstudy.results import write_samples, write_table
from tests import browser
from tests.synthetic import make_curves, make_results, make_samples


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return make_results(300, n_seeds=15, seed=1)  # 15 seeds: seed gets a range filter


@pytest.fixture(scope="module")
def info(runs: pd.DataFrame) -> ExploreInfo:
    return explore_info(runs, study="t", curves=make_curves(runs))


def test_filters_are_model_varying_axes_and_seed(runs):
    specs = {s.column: s for s in filter_specs(runs)}
    assert list(specs)[0] == "model" and list(specs)[-1] == "seed"
    assert specs["model"].levels == ["gan", "ebgan", "ebgan_pt"]
    assert specs["lr"].kind == "levels" and specs["lr"].levels == [0.0001, 0.001, 0.01]
    assert specs["dropout_d"].levels == [False, True]
    assert specs["seed"].kind == "range" and (specs["seed"].low, specs["seed"].high) == (0, 14)
    assert "z_dim" not in specs and "study" not in specs  # constant columns get no control


def test_a_missing_value_is_a_level_of_its_own():
    values = pd.Series([1.0, np.nan, 2.0, 1.0])
    frame = pd.DataFrame({"model": ["gan"] * 4, "margin": values, "run_id": list("abcd")})
    spec = next(s for s in filter_specs(frame) if s.column == "margin")
    assert spec.levels == [1.0, 2.0, None]
    assert level_codes(values, spec.levels).tolist() == [0, 2, 1, 0]


def test_info_uses_the_shared_bins_and_the_reports_statistics(runs, info):
    assert info.scores[0] == "i_prime" and info.score == "i_prime"
    np.testing.assert_array_equal(info.edges["frechet_distance"],
                                  shared_edges(runs["frechet_distance"].to_numpy(float), 25))
    pd.testing.assert_frame_equal(info.headline.comparison, stats.headline_table(runs))
    pd.testing.assert_frame_equal(info.headline.success, stats.success_rates(runs, "i_prime"))
    assert info.parallel[0] == "model" and "model" not in info.axes and "seed" not in info.axes
    assert len(info.runs) == len(runs)  # failed and diverged runs stay on the page


def test_samples_best_first_per_model_until_the_budget(runs):
    order = sample_order(runs, "i_prime", higher=True)
    firsts = runs.set_index("run_id").loc[order[:3], "model"]
    assert sorted(firsts) == ["ebgan", "ebgan_pt", "gan"]  # each model's best run comes first
    for _, group in runs.groupby("model"):
        assert group.loc[group["i_prime"].idxmax(), "run_id"] in order[:3]
    scored = runs.set_index("run_id")["i_prime"].loc[order].notna().to_numpy()
    assert scored[:scored.sum()].all()  # unscored runs come last
    kept = set(order[1::2])  # samples of every second run were kept
    grids = make_samples(sorted(kept))

    def load(ids: list[str]) -> dict[str, np.ndarray]:
        return {i: grids[i] for i in ids}

    every = embed_samples(order, kept, load, budget=10**9).images
    assert list(every) == order[1::2]
    got = embed_samples(order, kept, load, budget=sum(len(every[r]) for r in order[1:10:2]))
    assert list(got.images) == order[1:10:2] and got.kept == kept
    assert all(uri.startswith("data:image/png;base64,") for uri in got.images.values())


def test_curves_are_thinned_keeping_first_and_last_step(runs):
    curves = make_curves(runs, points=101)
    assert set(curves.columns) == set(CURVE_COLUMNS)
    thin = thin_curves(curves, runs["run_id"].iloc[:5])
    assert set(thin["run_id"]) == set(runs["run_id"].iloc[:5])
    for rid, group in thin.groupby("run_id"):
        steps = curves.loc[curves["run_id"] == rid, "step"]
        assert len(group) <= CURVE_POINTS and group["step"].is_monotonic_increasing
        assert group["step"].iloc[0] == steps.min() and group["step"].iloc[-1] == steps.max()
    few = make_curves(runs, points=13)
    assert len(thin_curves(few, runs["run_id"])) == len(few)  # nothing to thin


def test_page_data_round_trips_the_runs(runs, info):
    data = json.loads(json.dumps(page_data(info), allow_nan=False))
    columns = data["runs"]
    assert len(columns["run_id"]) == len(runs)
    lr = next(f for f in data["filters"] if f["column"] == "lr")
    assert [float(lr["levels"][c]) for c in columns["lr"]] == runs["lr"].tolist()
    assert sum(v is None for v in columns["i_prime"]) == runs["i_prime"].isna().sum()
    offsets = data["curves"]["offsets"]
    assert offsets[0] == 0 and offsets[-1] == len(data["curves"]["step"]) == len(info.curves)


def test_page_is_one_file_with_every_script_inline(info):
    text = render_page(info)
    assert "<script src" not in text and "<link" not in text and "@import" not in text
    assert text.count("<script") == 4  # Bokeh, the data, the plots' JSON, the page's script


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple:
    """A synthetic study folder: runs, the samples of 60 runs, training curves, its page."""
    folder = tmp_path_factory.mktemp("study")
    df = make_results(600, n_seeds=15, seed=2)
    write_table(df, folder)
    write_samples(make_samples(list(df["run_id"].iloc[::10])), folder, "bundle")
    make_curves(df).to_parquet(folder / "curves.parquet", index=False)
    return folder, df, write_explorer(folder)


def test_command_writes_the_page_and_prints_its_path(study, tmp_path, capsys):
    folder, _, _ = study
    out = tmp_path / "sub" / "page.html"
    assert main(["explore", str(folder), "--out", str(out), "--where", "seed < 3"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.stat().st_size > 1_000_000 and "seed &lt; 3" in out.read_text()


@pytest.mark.parametrize("argv, message", [
    (["explore", "{tmp}/none"], "no such study folder"),
    (["explore", "{tmp}/corrupt"], "corrupt results table"),
    (["explore", "{study}", "--out", "{tmp}/file/page.html"], "not writable"),
    (["explore", "{study}", "--score", "loss_d"], "--score loss_d: not a score"),
    (["explore", "{study}", "--where", "seed > 99"], "selects none"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, message, study, tmp_path, capsys):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "runs.parquet").write_bytes(b"not parquet")
    (tmp_path / "file").write_text("a file, not a folder")
    argv = [a.format(tmp=tmp_path, study=study[0]) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ---- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    if browser.chromium_path() is None:
        pytest.skip(f"no chromium to test the page in; {browser.INSTALL_HINT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chrome = browser.launch(playwright)
        yield chrome
        chrome.close()


@pytest.fixture
def page(chromium, study):
    page, log = browser.open_page(chromium, study[2].resolve().as_uri())
    yield page, log
    page.close()


def _shown_counts(page) -> dict[str, tuple[int, int]]:
    spans = page.query_selector_all("#gs-counts .gs-count")
    return {s.get_attribute("data-model"): (int(s.get_attribute("data-runs")),
                                            int(s.get_attribute("data-not-scored")))
            for s in spans}


def _pandas_counts(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    return {m: (len(g), int(g["i_prime"].isna().sum())) for m, g in df.groupby("model")}


@pytest.mark.slow
def test_page_loads_offline_without_console_errors(page, study):
    page, log = page
    assert log["requests"] == []
    assert log["errors"] == [] and [m for m in log["console"] if m[0] == "error"] == []
    assert _shown_counts(page) == _pandas_counts(study[1])


@pytest.mark.slow
def test_unticking_a_level_shows_the_pandas_count(page, study):
    page, _ = page
    df = study[1]
    page.check("input[data-column='lr'][data-level='0.001']")  # already ticked: no change
    page.uncheck("input[data-column='lr'][data-level='0.001']")
    kept = df[df["lr"] != 0.001]
    assert _shown_counts(page) == _pandas_counts(kept)
    assert page.get_attribute("#gs-total", "data-runs") == str(len(kept))
    page.fill("input[data-column='seed'][data-bound='high']", "4")
    page.dispatch_event("input[data-column='seed'][data-bound='high']", "change")
    assert _shown_counts(page) == _pandas_counts(kept[kept["seed"] <= 4])


@pytest.mark.slow
def test_selecting_a_run_shows_its_samples_and_curve(page, study):
    page, _ = page
    folder, df, _ = study
    with_samples = df["run_id"].iloc[::10]
    row = next(r for r in page.query_selector_all("#gs-table tbody tr")
               if r.query_selector("td").inner_text() in set(with_samples))
    run_id = row.query_selector("td").inner_text()
    row.click()
    assert run_id in page.inner_text("#gs-run")
    src = page.get_attribute("#gs-sample-img", "src")
    assert src.startswith("data:image/png;base64,")
    page.wait_for_function("document.getElementById('gs-curve-note').textContent"
                           ".includes('13 recorded steps')")
    without = next(r for r in page.query_selector_all("#gs-table tbody tr")
                   if r.query_selector("td").inner_text() not in set(with_samples))
    without.click()
    assert page.query_selector("#gs-sample-img") is None
    assert "No samples kept" in page.inner_text("#gs-samples")


@pytest.mark.slow
def test_screenshot_is_not_blank(page):
    from PIL import Image

    page, _ = page
    image = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
    assert image.shape[:2] == (1000, 1400)
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 200
    r, g, b = (image[..., k].astype(int) for k in range(3))
    reddish = ((r - g > 50) & (r - b > 50)).sum()  # GAN's bars (red), not just the frame
    assert reddish > 2000
