"""Size and load time of ``gridstudy explore`` pages in headless Chromium.

Run from the repository root: ``PYTHONPATH=. python benchmarks/explore_speed.py``. Writes the
page of the reference study and of a synthetic 10,000-run study (samples kept for every eighth
run, bundles of 12 as a sweep writes them; 13-point training curves), opens each page
``--repeats`` times in a fresh tab of one headless Chromium, and prints one row per study:
page size, runs whose samples are embedded, seconds to write the page, the median seconds from
navigation start until the page is loaded and drawn (the page's own ``gs-ready`` mark), and the
median CPU seconds of the page's renderer process by then (the load's cost on idle cores; on
this shared 2-core machine the wall time also counts other jobs' turns).
Budgets (issue 18): reference <= 10 MB and 3 s; 10,000 runs <= 25 MB and 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from analysis.explore_page import write_explorer
from gridstudy.results import write_samples, write_table
from tests import browser
from tests.synthetic import make_curves, make_results, make_samples

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference-cpu"
DATA_START = '<script type="application/json" id="gs-data">'
BUDGETS = {"reference-cpu": (10.0, 3.0), "synthetic-10k": (25.0, 10.0)}  # MB, seconds


def synthetic_study(folder: Path, n_runs: int) -> Path:
    """A study folder like a finished sweep's: runs, bundled samples, training curves."""
    df = make_results(n_runs, n_seeds=3, seed=0, study="synthetic-10k")
    write_table(df, folder)
    kept = list(df["run_id"].iloc[::8])
    for start in range(0, len(kept), 12):
        write_samples(make_samples(kept[start:start + 12], seed=start), folder, f"b{start}")
    make_curves(df).to_parquet(folder / "curves.parquet", index=False)
    return folder


def load_seconds(chrome, page_file: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Per fresh tab: seconds from navigation start to the page's gs-ready mark, and the CPU
    seconds its renderer process had used by then (Chrome's ProcessTime: what the load costs
    on idle cores, however busy the machine is)."""
    walls, tasks = [], []
    for _ in range(repeats):
        cdp = {}

        def start_metrics(page, cdp=cdp) -> None:
            cdp["session"] = page.context.new_cdp_session(page)
            cdp["session"].send("Performance.enable")

        page, log = browser.open_page(chrome, page_file.resolve().as_uri(), before=start_metrics)
        if log["errors"] or log["requests"]:
            raise RuntimeError(f"{page_file}: {log['errors'] or log['requests']}")
        walls.append(page.evaluate("performance.getEntriesByName('gs-ready')[0].startTime") / 1e3)
        metrics = cdp["session"].send("Performance.getMetrics")["metrics"]
        tasks.append(next(m["value"] for m in metrics if m["name"] == "ProcessTime"))
        page.close()
    return walls, tasks


def measure(chrome, name: str, study_dir: Path, out: Path, repeats: int) -> dict:
    start = time.perf_counter()
    page_file = write_explorer(study_dir, out)
    write_s = time.perf_counter() - start
    text = page_file.read_text()
    data = text[text.index(DATA_START) + len(DATA_START):]
    samples = json.loads(data[:data.index("</script>")])["samples"]
    walls, tasks = load_seconds(chrome, page_file, repeats)
    return {"study": name, "MB": page_file.stat().st_size / 1e6, "samples": len(samples),
            "write_s": write_s, "load_s": statistics.median(walls), "all_s": walls,
            "cpu_s": statistics.median(tasks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000, help="runs of the synthetic study")
    parser.add_argument("--repeats", type=int, default=3, help="page loads (median printed)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        chrome = browser.launch(playwright)
        rows.append(measure(chrome, "reference-cpu", REFERENCE, Path(tmp) / "ref.html",
                            args.repeats))
        study = synthetic_study(Path(tmp) / "synthetic", args.runs)
        rows.append(measure(chrome, "synthetic-10k", study, Path(tmp) / "syn.html",
                            args.repeats))
        chrome.close()
    print(f"load average (1, 5, 15 min) after the loads: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{'study':<15}{'page MB':>9}{'budget':>8}{'samples':>9}{'write s':>9}"
          f"{'load+draw s':>13}{'budget':>8}{'renderer CPU s':>16}  each load s")
    for r in rows:
        mb, seconds = BUDGETS.get(r["study"], (float("nan"), float("nan")))
        loads = " ".join(f"{t:.2f}" for t in r["all_s"])
        print(f"{r['study']:<15}{r['MB']:>9.2f}{mb:>8.0f}{r['samples']:>9}{r['write_s']:>9.1f}"
              f"{r['load_s']:>13.2f}{seconds:>8.0f}{r['cpu_s']:>16.2f}  {loads}")


if __name__ == "__main__":
    main()
