"""The ``gridstudy`` command line: parses arguments and calls one library function per command.

Errors a user can cause (bad keys or values, missing files, malformed search spaces) print one
line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gridstudy.errors import UserError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="mnist5k (default, bundled, offline), mnist or fashion-mnist")
    p.add_argument("--data-dir", default=None,
                   help="folder with the standard IDX files (default: $GRIDSTUDY_DATA_DIR)")


def _add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="set a run config field, e.g. --set lr=0.0001 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridstudy",
        description="Hyperparameter grid-search stability studies of GANs and EBGANs "
                    "(EBGAN, ICLR 2017, Section 4.1).",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"gridstudy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gridstudy: interrupted", file=sys.stderr)
        return 130


def _cmd_trial(args: argparse.Namespace) -> int:
    from gridstudy.config import config_from_dict, parse_assignment
    from gridstudy.session import run_trial

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
    from gridstudy.session import evaluate_classifier, prepare_classifier

    dataset = args.dataset or "mnist5k"
    if args.action == "train":
        classifier = prepare_classifier(dataset, args.data_dir, verbose=True)
        print(f"classifier for {dataset}: test accuracy {classifier.test_accuracy:.4f}")
        return 0
    print(json.dumps(evaluate_classifier(dataset, args.data_dir), indent=2))
    return 0


COMMANDS = {"trial": _cmd_trial, "classifier": _cmd_classifier}


if __name__ == "__main__":
    sys.exit(main())
