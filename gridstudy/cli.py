"""The ``gridstudy`` command line: parses arguments and calls one library function per command.

Errors a user can cause (bad keys or values, missing or damaged files, malformed search spaces)
print one line and exit with code 2. Every exit code is in :data:`EXIT_CODES`, which ``--help``
and the README list.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gridstudy.errors import UserError, one_line

EXIT_OK = 0  # done; for a sweep: every run finished ok or diverged
EXIT_BAD_INPUT = 2  # a bad input: one line says which and what to do
EXIT_RUNS_FAILED = 3  # a sweep finished, but some runs failed (the table says why)
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C, or a sweep stopped with runs unfinished)
EXIT_CODES = f"""exit codes:
  {EXIT_OK}    done; for sweep: every run is ok or diverged
  1    an internal error (a bug: please report the traceback)
  {EXIT_BAD_INPUT}    bad input: a bad argument, file or study state, said in one line
  {EXIT_RUNS_FAILED}    sweep: the study finished, but some runs failed (status 'failed')
  {EXIT_INTERRUPTED}  interrupted: Ctrl-C, or a sweep stopped with runs unfinished (add --resume)"""


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="mnist5k (default, bundled, offline), mnist or fashion-mnist")
    p.add_argument("--data-dir", default=None,
                   help="folder with the standard IDX files (default: $GRIDSTUDY_DATA_DIR)")


def _add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="set a run config field, e.g. --set lr=0.0001 (repeatable)")


MAX_RUNS_WITHOUT_YES = 10_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridstudy",
        description="Hyperparameter grid-search stability studies of GANs and EBGANs "
                    "(EBGAN, ICLR 2017, Section 4.1).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    trial = sub.add_parser("trial", help="train, sample and score one run",
                           description="Train one GAN or EBGAN run on this machine, score it, "
                                       "and write DIR/result.json and DIR/samples.png.")
    trial.add_argument("--model", choices=["gan", "ebgan", "ebgan_pt"], default="gan")
    _add_set_arg(trial)
    trial.add_argument("--steps", type=int, default=None, help="training steps (default 3000)")
    _add_data_args(trial)
    trial.add_argument("--out", required=True, type=Path, help="output folder")
    trial.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    trial.add_argument("--threads", type=int, default=None, help="torch CPU threads")

    clf = sub.add_parser("classifier", help="train or evaluate the scoring classifier")
    clf_sub = clf.add_subparsers(dest="action", required=True, metavar="ACTION")
    clf_train = clf_sub.add_parser("train", help="train (or load the cached) classifier and "
                                                 "print its test accuracy")
    _add_data_args(clf_train)
    clf_eval = clf_sub.add_parser(
        "evaluate", help="print, as JSON, the classifier's accuracy and the scores of the real "
                         "test images (t10k) in --data-dir")
    _add_data_args(clf_eval)

    sweep = sub.add_parser(
        "sweep", help="launch (or resume) a study on Ray Tune",
        description="Expand search spaces into runs and train them on a local Ray instance "
                    "(127.0.0.1 only, dashboard off) or a cluster (--address). Results go to "
                    "RESULTS_DIR/STUDY/runs.parquet as runs finish. One driver per study: a "
                    "second one is refused.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("spaces", nargs="+", type=Path, metavar="SPACE.yaml")
    sweep.add_argument("--study", required=True,
                       help="study name: letters, digits, '.', '_', '-' (its folder under "
                            "--results-dir, and under --storage)")
    sweep.add_argument("--results-dir", type=Path, default=Path("results"))
    sweep.add_argument("--address", default=None,
                       help="join a Ray cluster (auto, HOST:PORT or ray://HOST:10001)")
    sweep.add_argument("--storage", default=None,
                       help="a folder every node shares, or an s3:// URI: Tune's records go to "
                            "STORAGE/STUDY (default: RESULTS_DIR/STUDY/tune)")
    sweep.add_argument("--gpus-per-trial", type=float, default=0.0)
    sweep.add_argument("--cpus-per-trial", type=int, default=1)
    sweep.add_argument("--max-concurrent", type=int, default=None)
    sweep.add_argument("--bundle-size", type=int, default=12,
                       help="most runs one trial trains (default 12)")
    sweep.add_argument("--no-fuse", dest="fuse", action="store_false",
                       help="train a bundle's runs one at a time instead of fused")
    sweep.add_argument("--max-failures", type=int, default=2,
                       help="retries of a failed bundle, e.g. on a lost node (default 2)")
    sweep.add_argument("--snapshot-seconds", type=float, default=None,
                       help="wall time between snapshots of a bundle's training in progress, "
                            "which a retried bundle continues from (default 10)")
    sweep.add_argument("--num-cpus", type=int, default=None,
                       help="CPUs of the local Ray instance (default: all)")
    _add_set_arg(sweep)
    _add_data_args(sweep)
    sweep.add_argument("--resume", action="store_true",
                       help="finish an interrupted study: skips finished runs, re-runs errored")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the runs per model and the axes; launch nothing")
    sweep.add_argument("--verbose", action="store_true",
                       help="also show Ray's and Tune's own log lines (off by default)")
    sweep.add_argument("--max-runs", type=int, default=MAX_RUNS_WITHOUT_YES,
                       help="a grid with more runs needs --yes (default %(default)s)")
    sweep.add_argument("--yes", action="store_true", help="launch a grid larger than --max-runs")

    query = sub.add_parser(
        "query", help="print a study's runs, filtered, sorted or aggregated",
        description="Query a results table with a pandas expression (trusted input: pandas "
                    "evaluates it like code). Example: gridstudy query results/smoke "
                    "\"model == 'gan' and lr < 1e-3\" --sort i_prime --desc --top 5")
    query.add_argument("study_dir", type=Path, metavar="results/NAME")
    query.add_argument("expression", nargs="?", default=None, help="pandas query expression")
    query.add_argument("--curves", action="store_true",
                       help="query the training curves (one row per run and evaluated step, "
                            "with each run's config), not the runs")
    query.add_argument("--columns", default=None, help="comma-separated columns to show")
    query.add_argument("--sort", default=None)
    query.add_argument("--desc", action="store_true")
    query.add_argument("--top", type=int, default=None)
    query.add_argument("--group-by", default=None, help="comma-separated columns")
    query.add_argument("--agg", default=None, help="aggregations, e.g. median,count (default)")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")

    plot = sub.add_parser(
        "plot", help="draw the paper's figures (and more) from a results table",
        description="Figures 2-4 of the paper and the extra ones (ECDF, median per level, "
                    "margins), as PNG and PDF, from results/NAME/runs.parquet.")
    plot.add_argument("study_dir", type=Path, metavar="results/NAME")
    plot.add_argument("--out", type=Path, default=None,
                      help="folder (default results/NAME/figures)")
    plot.add_argument("--score", default="i_prime",
                      help="score column to draw (i_prime, inception_score, frechet_distance, ...)")
    plot.add_argument("--where", default=None, metavar="EXPR",
                      help="only the runs matching a pandas query, e.g. \"seed == 0\"")

    report = sub.add_parser("report", help="write a Markdown report of a study",
                            description="Study size and status counts, statistics, figures and "
                                        "best configurations as one Markdown file.")
    report.add_argument("study_dir", type=Path, metavar="results/NAME")
    report.add_argument("--out", type=Path, default=None,
                        help="file (default results/NAME/report.md)")
    report.add_argument("--score", default="i_prime", help="the main score (default i_prime)")
    report.add_argument("--threshold", type=float, default=None,
                        help="score above which a run counts as successful (default: see report)")
    report.add_argument("--figures", type=Path, default=None,
                        help="figures to link (default results/NAME/figures)")
    report.add_argument("--where", default=None, metavar="EXPR",
                        help="only the runs matching a pandas query, e.g. \"seed == 0\"")

    explore = sub.add_parser(
        "explore", help="write one self-contained, interactive HTML page of a study",
        description="Figure 2 with live filters, parallel coordinates, a scatter of two "
                    "scores, a runs table with samples and training curves, and the report's "
                    "headline statistics, in one HTML file that works offline.")
    explore.add_argument("study_dir", type=Path, metavar="results/NAME")
    explore.add_argument("--out", type=Path, default=None,
                         help="file (default results/NAME/explore.html)")
    explore.add_argument("--score", default="i_prime", help="score shown first (default i_prime)")
    explore.add_argument("--where", default=None, metavar="EXPR",
                         help="only the runs matching a pandas query, e.g. \"seed == 0\"")

    results = sub.add_parser("results", help="maintain a results table")
    results_sub = results.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = results_sub.add_parser(
        "rebuild", help="rebuild runs.parquet and the samples from Ray Tune's per-trial records")
    rebuild.add_argument("study_dir", type=Path, metavar="results/NAME")
    export = results_sub.add_parser(
        "export", help="copy a study with only its best runs' samples (small enough to share)")
    export.add_argument("study_dir", type=Path, metavar="results/NAME")
    export.add_argument("dest", type=Path, metavar="DEST")
    export.add_argument("--best", type=int, default=8,
                        help="runs per model whose samples are kept (default 8)")
    export.add_argument("--score", default="i_prime", help="ranks the runs (default i_prime)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if (args.command == "query" and args.expression is None and len(extra) == 1
            and not extra[0].startswith("-")):
        # argparse binds query's optional expression only before the first option, so
        # `query DIR --curves "model == 'gan'"` would leave the expression unrecognised.
        args.expression = extra[0]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"gridstudy: error: {one_line(str(exc), 500)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("gridstudy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _cmd_trial(args: argparse.Namespace) -> int:
    from gridstudy.config import config_from_dict, parse_assignment
    from gridstudy.trial import run_trial

    values: dict = {"model": args.model}
    for text in args.assignments:
        key, value = parse_assignment(text)
        values[key] = value
    if args.steps is not None:
        values["steps"] = args.steps
    if args.dataset is not None:
        values["dataset"] = args.dataset
    config = config_from_dict(values, "--set")
    row = run_trial(config, args.out, data_dir=args.data_dir, device=args.device,
                    threads=args.threads)
    print(f"{row['model']} {row['status']}: I'={row['i_prime']:.3f} IS={row['inception_score']:.3f}"
          f" loss_d={row['loss_d']:.4g} loss_g={row['loss_g']:.4g}"
          f" in {row['train_seconds']:.1f} s -> {args.out}")
    return 0


def _cmd_classifier(args: argparse.Namespace) -> int:
    from gridstudy.classifier import evaluate_classifier, prepare_classifier

    dataset = args.dataset or "mnist5k"
    if args.action == "train":
        classifier = prepare_classifier(dataset, args.data_dir, verbose=True)
        print(f"classifier for {dataset}: test accuracy {classifier.test_accuracy:.4f}")
        return 0
    print(json.dumps(evaluate_classifier(dataset, args.data_dir), indent=2))
    return 0


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from gridstudy.config import parse_assignment
    from gridstudy.spaces import load_space

    overrides = dict(parse_assignment(text) for text in args.assignments)
    if args.dataset:
        overrides["dataset"] = args.dataset
    space = load_space(args.spaces, overrides)
    print(space.summary())
    if args.dry_run:
        return 0
    n_runs = len(space.runs)
    if n_runs > args.max_runs and not args.yes:
        raise UserError(f"{n_runs} runs is more than --max-runs {args.max_runs}; check the grid "
                        "with --dry-run and add --yes to launch it")
    for name, value in (("--cpus-per-trial", args.cpus_per_trial),
                        ("--bundle-size", args.bundle_size)):
        if value < 1:
            raise UserError(f"{name}: must be at least 1, got {value}")
    if args.gpus_per_trial < 0 or args.max_failures < 0:
        raise UserError(f"--gpus-per-trial and --max-failures: must be >= 0, got "
                        f"{args.gpus_per_trial} and {args.max_failures}")
    from gridstudy.tune import SweepOptions, run_sweep

    options = SweepOptions(
        study=args.study, results_dir=args.results_dir, address=args.address,
        storage=args.storage, gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial, max_concurrent=args.max_concurrent,
        bundle_size=args.bundle_size, fuse=args.fuse, max_failures=args.max_failures,
        resume=args.resume, data_dir=args.data_dir, num_cpus=args.num_cpus,
        verbose=args.verbose,
        **({} if args.snapshot_seconds is None else {"snapshot_seconds": args.snapshot_seconds}))
    outcome = run_sweep(space, options)
    counts = outcome.table.status_counts()
    print(f"study {args.study}: {len(outcome.table.rows)} runs ({counts['ok']} ok, "
          f"{counts['diverged']} diverged, {counts['failed']} failed) -> "
          f"{options.study_dir / 'runs.parquet'}")
    if outcome.unfinished:
        print(f"gridstudy: interrupted with {outcome.unfinished} runs unfinished; add --resume "
              "to the same command to finish them", file=sys.stderr)
        return EXIT_INTERRUPTED
    if counts["failed"]:
        print(f"gridstudy: {counts['failed']} runs failed; their errors are in the table's "
              f"error column (gridstudy query {options.study_dir} \"status == 'failed'\" "
              "--columns run_id,error)", file=sys.stderr)
        return EXIT_RUNS_FAILED
    return EXIT_OK


def _cmd_query(args: argparse.Namespace) -> int:
    from gridstudy.results import load_curves, load_results, query_results

    table = (load_curves(args.study_dir, configs=True) if args.curves
             else load_results(args.study_dir))
    frame = query_results(table, args.expression,
                          columns=_split(args.columns), sort=args.sort, desc=args.desc,
                          top=args.top, group_by=_split(args.group_by), agg=_split(args.agg))
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=2))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.max_columns", 30,
                               "display.width", 200):
            print(frame.to_string(index=False) if len(frame) else "(no runs match)")
    return 0


def _load_for_analysis(study_dir: Path, score: str, where: str | None):  # noqa: ANN202
    from gridstudy.results import load_results, query_results

    check_score(score)
    frame = load_results(study_dir)
    if score not in frame.columns:
        raise UserError(f"--score {score}: not a column of {study_dir}/runs.parquet")
    study = _study_name(study_dir, frame)
    if where:
        selected = query_results(frame, where)
        if selected.empty:
            raise UserError(f"--where {where!r} selects none of the {len(frame)} runs")
        frame = selected
    return frame, study


def check_score(name: str) -> None:
    """``--score`` must name an entry of the score registry (analysis.schema.SCORES)."""
    from analysis.schema import SCORE_NAMES

    if name not in SCORE_NAMES:
        raise UserError(f"--score {name}: unknown score; valid scores: {', '.join(SCORE_NAMES)}")


def _study_name(study_dir: Path, frame) -> str:  # noqa: ANN001
    names = frame["study"].dropna().unique() if "study" in frame else []
    return str(names[0]) if len(names) == 1 else study_dir.resolve().name


def _curves_for(study_dir: Path, frame):  # noqa: ANN001, ANN202
    """The study's curves of the runs in ``frame``, or None when it recorded none."""
    from gridstudy.results import CURVES, load_curves

    if not (study_dir / CURVES).exists():
        return None
    curves = load_curves(study_dir)
    return curves[curves["run_id"].isin(frame["run_id"])]


def _cmd_plot(args: argparse.Namespace) -> int:
    from analysis.figures import plot_study
    from gridstudy.results import load_samples

    frame, study = _load_for_analysis(args.study_dir, args.score, args.where)
    out = args.out or args.study_dir / "figures"
    paths = plot_study(frame, out, study=study, samples=load_samples(args.study_dir),
                       score=args.score, curves=_curves_for(args.study_dir, frame))
    histogram = next((p for p in paths if p.name == "fig2_histograms.png"), None)
    print(f"{len(paths)} files -> {out}" + (f"; Figure 2: {histogram}" if histogram else ""))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    frame, study = _load_for_analysis(args.study_dir, args.score, args.where)
    out = args.out or args.study_dir / "report.md"
    figures = args.figures or args.study_dir / "figures"
    selection = f"the {len(frame)} where `{args.where}`" if args.where else None
    path = write_report(frame, out, study=study, figures_dir=figures if figures.exists() else None,
                        threshold=args.threshold, score=args.score, selection=selection,
                        curves=_curves_for(args.study_dir, frame))
    print(f"report -> {path}")
    return 0


def _cmd_explore(args: argparse.Namespace) -> int:
    from analysis.explore_page import write_explorer

    print(write_explorer(args.study_dir, args.out, score=args.score, where=args.where))
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from gridstudy.results import export_study, rebuild_results

    if args.action == "export":
        check_score(args.score)
        counts = export_study(args.study_dir, args.dest, best=args.best, score=args.score)
        print(f"exported {counts['runs']} runs, {counts['curves']} curves and the samples of "
              f"{counts['samples']} -> {args.dest}")
        return 0
    table = rebuild_results(args.study_dir)
    counts = table.status_counts()
    print(f"rebuilt {args.study_dir / 'runs.parquet'}: {len(table.rows)} runs "
          f"({counts['ok']} ok, {counts['diverged']} diverged, {counts['failed']} failed)")
    return 0


COMMANDS = {"trial": _cmd_trial, "classifier": _cmd_classifier, "sweep": _cmd_sweep,
            "query": _cmd_query, "plot": _cmd_plot, "report": _cmd_report,
            "results": _cmd_results, "explore": _cmd_explore}


if __name__ == "__main__":
    sys.exit(main())
