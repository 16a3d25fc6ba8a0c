"""The command line: help, one trial end to end, and bad input as one line with exit code 2."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridstudy.cli import EXIT_CODES, build_parser, main
from gridstudy.results import ResultsTable, write_samples, write_table
from tests.synthetic import make_results

SMOKE = str(Path(__file__).parent.parent / "search_spaces" / "smoke.yaml")


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command():
    text = build_parser().format_help()
    for command in ("trial", "classifier", "sweep", "query", "plot", "report", "results"):
        assert command in text
    done = subprocess.run([sys.executable, "-m", "gridstudy.cli", "sweep", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--address" in done.stdout and "--resume" in done.stdout


def test_sweep_snapshot_interval_defaults_to_the_trainers_and_refuses_nonsense(capsys):
    from gridstudy.snapshot import SNAPSHOT_SECONDS
    from gridstudy.tune import SweepOptions

    sweep_help = subprocess.run([sys.executable, "-m", "gridstudy.cli", "sweep", "--help"],
                                capture_output=True, text=True, check=True).stdout
    assert f"continues from (default {SNAPSHOT_SECONDS:g})" in " ".join(sweep_help.split())
    assert SweepOptions("s").snapshot_seconds == SNAPSHOT_SECONDS
    for bad in ("0", "-1", "nan", "inf"):
        code, _, err = run(["sweep", SMOKE, "--study", "s", "--snapshot-seconds", bad], capsys)
        assert code == 2 and err.startswith("gridstudy: error: --snapshot-seconds"), err


def test_help_and_readme_document_every_exit_code():
    sweep_help = subprocess.run([sys.executable, "-m", "gridstudy.cli", "sweep", "--help"],
                                capture_output=True, text=True, check=True).stdout
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for code in (0, 1, 2, 3, 130):
        assert re.search(rf"^  {code} +\S", EXIT_CODES, re.M)
        assert re.search(rf"^  {code} +\S", sweep_help, re.M)
        assert re.search(rf"^\| `{code}` \|", readme, re.M), f"README lacks exit code {code}"


@pytest.mark.parametrize("statuses, unfinished, code", [
    (["ok", "diverged"], 0, 0), (["ok", "failed", "failed"], 0, 3), (["ok", "failed"], 2, 130)])
def test_sweep_exit_code_says_how_the_study_ended(tmp_path, monkeypatch, capsys, statuses,
                                                  unfinished, code):
    from gridstudy import tune

    def fake_sweep(space, options):
        table = ResultsTable(tmp_path, options.study)
        table.rows = {f"r{i}": {"run_id": f"r{i}", "status": s} for i, s in enumerate(statuses)}
        return tune.SweepOutcome(table, unfinished)

    monkeypatch.setattr(tune, "run_sweep", fake_sweep)
    got, _, err = run(["sweep", SMOKE, "--study", "s", "--results-dir", str(tmp_path)], capsys)
    assert got == code
    assert ("2 runs failed" in err) == (code == 3)


def test_trial_writes_config_result_and_samples(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(["trial", "--model", "ebgan", "--steps", "5", "--set", "size_g=32",
                           "--set", "size_d=16", "--set", "n_eval=100", "--out", str(out)], capsys)
    assert code == 0 and "ebgan ok: I'=" in stdout
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert result["model"] == "ebgan" and result["steps"] == 5 and config["size_g"] == 32
    assert {"i_prime", "inception_score", "status", "loss_d", "loss_g", "train_seconds",
            "device", "torch_version"} <= set(result)
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["fused"] is False and "best_i_prime" in result
    from gridstudy.results import load_curves

    assert list(load_curves(out)["step"]) == [5]  # eval_every 300 > steps: the final point only


def test_trial_writes_its_training_curve_and_its_plot(tmp_path, capsys):
    from gridstudy.results import load_curves

    out = tmp_path / "run"
    code, _, _ = run(["trial", "--model", "ebgan", "--steps", "6", "--set", "size_g=32",
                      "--set", "size_d=16", "--set", "n_eval=100", "--set", "eval_every=2",
                      "--out", str(out)], capsys)
    curve = load_curves(out)
    assert code == 0 and list(curve["step"]) == [2, 4, 6] and list(curve["final"])[-1]
    result = json.loads((out / "result.json").read_text())
    assert result["curve_auc"] == pytest.approx(curve["i_prime"].mean())
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["trial", "--set", "lr=fast", "--out", "x"], "lr: expected a number"),
    (["trial", "--set", "sizeD=3", "--out", "x"], "unknown key 'sizeD'"),
    (["trial", "--set", "size_d=-3", "--out", "x"], "size_d: must be a positive integer"),
    (["trial", "--dataset", "mnist", "--data-dir", "/nonexistent", "--out", "{tmp}/o"],
     "no train-images-idx3-ubyte"),
    (["sweep", "/nonexistent.yaml", "--study", "s"], "search space file not found"),
    (["sweep", SMOKE, "--study", "s", "--max-runs", "10"], "more than --max-runs 10"),
    (["sweep", SMOKE, "--study", "s", "--set", "lr=0.1"], "--set lr"),
    (["sweep", SMOKE, "--study", "s", "--results-dir", "{tmp}/file/sub"], "not writable"),
    (["sweep", SMOKE, "--study", "s", "--resume", "--results-dir", "{tmp}"], "nothing to resume"),
    (["sweep", SMOKE, "--study", "s", "--address", "127.0.0.1:1", "--results-dir", "{tmp}"],
     "unreachable"),
    (["query", "{tmp}", "--columns", "x"], "no results table"),
    (["classifier", "evaluate"], "needs --data-dir"),
    (["sweep", SMOKE, "--study", "../up", "--results-dir", "{tmp}"], "--study '../up': use"),
    (["sweep", SMOKE, "--study", "s", "--max-failures", "-1"], "--max-failures: must be >= 0"),
    (["sweep", SMOKE, "--study", "s", "--results-dir", "{tmp}", "--storage", "{tmp}"],
     "is the results folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("gridstudy: error: ")


def test_dry_run_launches_nothing(tmp_path, capsys):
    code, out, _ = run(["sweep", SMOKE, "--study", "s", "--results-dir", str(tmp_path),
                        "--dry-run"], capsys)
    assert code == 0 and out.startswith("24 runs: ebgan 8, gan 16")
    assert list(tmp_path.iterdir()) == []


def test_query_plot_report_on_a_table(tmp_path, capsys):
    write_table(make_results(60, n_seeds=2), tmp_path)
    code, out, _ = run(["query", str(tmp_path), "model == 'gan'", "--sort", "i_prime", "--desc",
                        "--top", "3", "--columns", "model,i_prime", "--format", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3 and {r["model"] for r in rows} == {"gan"}
    assert rows[0]["i_prime"] >= rows[1]["i_prime"] >= rows[2]["i_prime"]
    # the expression may follow the options (README: `query DIR --curves "EXPR" --group-by`)
    code, out, _ = run(["query", str(tmp_path), "--format", "json", "model == 'gan'",
                        "--columns", "model"], capsys)
    assert code == 0 and {r["model"] for r in json.loads(out)} == {"gan"}
    with pytest.raises(SystemExit) as stray:  # a second expression is still an error
        run(["query", str(tmp_path), "--desc", "model == 'gan'", "seed == 0"], capsys)
    assert stray.value.code == 2
    code, _, err = run(["query", str(tmp_path), "i_prime >"], capsys)
    assert code == 2 and "bad query expression" in err
    assert run(["plot", str(tmp_path)], capsys)[0] == 0
    assert (tmp_path / "figures" / "fig2_histograms.png").exists()
    assert run(["report", str(tmp_path)], capsys)[0] == 0
    assert "figures/fig2_histograms.png" in (tmp_path / "report.md").read_text()
    code, _, err = run(["plot", str(tmp_path), "--score", "nope"], capsys)
    assert code == 2 and "--score nope: unknown score; valid scores: i_prime, " in err
    assert len(err.strip().splitlines()) == 1


def test_export_then_plot_the_copy(tmp_path, capsys):
    frame = make_results(40)
    write_table(frame, tmp_path / "study")
    write_samples({rid: np.zeros((64, 28, 28), np.uint8) for rid in frame["run_id"]},
                  tmp_path / "study", "b1")
    code, out, _ = run(["results", "export", str(tmp_path / "study"), str(tmp_path / "copy"),
                        "--best", "1"], capsys)
    n_models = frame["model"].nunique()
    assert code == 0
    assert f"exported {len(frame)} runs, 0 curves and the samples of {n_models}" in out
    assert run(["plot", str(tmp_path / "copy")], capsys)[0] == 0
    assert (tmp_path / "copy" / "figures" / "fig4_samples.png").exists()


def test_plot_and_report_on_a_selection(tmp_path, capsys):
    write_table(make_results(60, n_seeds=2), tmp_path)
    assert run(["plot", str(tmp_path), "--where", "seed == 0", "--out",
                str(tmp_path / "seed0")], capsys)[0] == 0
    assert (tmp_path / "seed0" / "fig2_histograms.png").exists()
    assert run(["report", str(tmp_path), "--where", "seed == 0", "--figures",
                str(tmp_path / "seed0"), "--out", str(tmp_path / "seed0.md")], capsys)[0] == 0
    text = (tmp_path / "seed0.md").read_text()
    assert "Runs: the 30 where `seed == 0`." in text and "seed0/fig2_histograms.png" in text
    assert "1-1 seeds per configuration" in text
    code, _, err = run(["report", str(tmp_path), "--where", "seed == 7"], capsys)
    assert code == 2 and "selects none of the 60 runs" in err
