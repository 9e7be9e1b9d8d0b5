"""``linkhoi data``: dataset tools. ``linkhoi data check --dataset hico_det --root PATH``."""

from __future__ import annotations

import argparse

from linkhoi.data.check import DATASETS, check_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="find a dataset's files in the documented layout, read them and report problems",
        description="Exit code 0 when everything was found and read, 1 when there are problems.",
    )
    check.add_argument("--dataset", required=True, choices=DATASETS)
    check.add_argument("--root", required=True, help="the dataset folder (see docs/datasets.md)")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        report = check_dataset(args.dataset, args.root)
        print(report.text())
        return 0 if report.ok else 1
    raise ValueError(f"unknown data command {args.data_command!r}")
