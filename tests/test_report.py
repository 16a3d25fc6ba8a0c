"""Tests of analysis.report: the Markdown formatter and the sections of the written report."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from analysis.report import markdown_table, write_report
from analysis.table import score_label
from tests.synthetic import make_results


def test_markdown_table_formats_floats_nan_and_pipes():
    frame = pd.DataFrame({"name": ["a|b", "c"], "x": [1.23456, np.nan], "n": [3, 4]})
    assert markdown_table(frame).splitlines() == [
        "| name | x | n |", "| --- | --- | --- |", "| a\\|b | 1.23 | 3 |", "| c |  | 4 |"]


def test_report_sections_links_and_threshold(tmp_path):
    df = make_results(450, seed=4)
    figs = tmp_path / "figs"
    figs.mkdir()
    for stem in ("fig2_histograms", "ecdf"):
        (figs / f"{stem}.png").write_bytes(b"\x89PNG")
        (figs / f"{stem}.pdf").write_bytes(b"%PDF")
    out = write_report(df, tmp_path / "notes" / "report.md", study="syn", figures_dir=figs,
                       threshold=2.5)
    text = out.read_text()
    for heading in ("# Grid study report: syn", "## Study size", "## GAN vs EBGAN",
                    "## Successful runs", "## Which hyperparameters matter",
                    "## Budget curve and seed spread", "## Best configurations",
                    "## EBGAN margin"):
        assert heading in text
    assert "](../figs/fig2_histograms.png)" in text
    assert "Figure 4 not drawn" in text
    assert "I' >= 2.5 (user threshold)" in text
    assert f"{len(df)} runs" in text
    assert f"| {score_label('i_prime')} (higher better) |" in text
    assert f"| {score_label('frechet_distance')} (lower better) |" in text
    # every table row has as many cells as its header
    for block in re.findall(r"(?:^\|.*\|$\n?)+", text, flags=re.M):
        widths = {line.count(" | ") for line in block.strip().splitlines()}
        assert len(widths) == 1


def test_report_without_margins_or_figures_and_lower_is_better(tmp_path):
    df = make_results(300, seed=5)
    df = df[df["model"] == "gan"].drop(columns=["i_prime"])
    out = write_report(df, tmp_path / "r.md", study="gan-only", score="frechet_distance")
    text = out.read_text()
    assert "## EBGAN margin" not in text and "No figures directory given." in text
    assert f"{score_label('frechet_distance')} <=" in text


def test_axes_varied_together_are_one_row_of_the_importance_table(tmp_path):
    df = make_results(300, seed=6)
    df["size_d"] = df["size_g"] // 4  # as in a zip of (sizeG, sizeD)
    text = write_report(df, tmp_path / "r.md", study="zip").read_text()
    section = text.split("## Which hyperparameters matter")[1].split("\n## ")[0]
    assert "| sizeG / sizeD |" in section
    assert "| sizeG |" not in section and "| sizeD |" not in section


def test_stability_shares_never_print_a_zero_upper_bound():
    from analysis.report import _share_pivot
    from analysis.stability import stability_shares
    table = pd.DataFrame({"run_id": [f"r{i}" for i in range(768)], "model": "gan",
                          "status": "ok", "i_prime": 0.1, "best_i_prime": 0.2,
                          "collapse_count": pd.array([0] * 768, dtype="Int64"),
                          "first_success_step": pd.array([None] * 768, dtype="Int64")})
    cells = _share_pivot(stability_shares(table, threshold=5.0)).set_index("event")["GAN"]
    # exact upper bound of 0 of 768: 1 - 0.025 ** (1 / 768) = 0.0048
    assert cells["success_final"] == "0/768 = 0.00 [0.00, 0.0048]"
