"""`potstill compare FOLDER [FOLDER ...]`: runs, seeds folders and sweeps in one table, and the
recipe settings that differ between them (report/compare.py builds it, report/compare_table.py prints it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from potstill.report import result_console


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "compare runs, seeds folders and sweeps side by side: every model's measures and the settings that differ"
    sub = commands.add_parser(
        "compare", parents=[common], help=text,
        description=text + ". A seeds folder is one run (mean ± std over its seeds, paired gain); a sweep or search "
        "folder gives every complete trial (the chosen one marked *) and a sweep's reference run.",
    )
    sub.add_argument("folders", nargs="+", metavar="FOLDER", help="a run, seeds, sweep or search folder (the --run-dir "
                     "of potstill train, distill, sweep or search)")
    sub.add_argument("--json", action="store_true", help="print {runs, rows, differences} as JSON to stdout, and nothing "
                     "else there (the tables go to stderr), for scripts")
    sub.add_argument("--csv", metavar="FILE", help="also write the model rows (one per run and model) as CSV to FILE")
    sub.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from potstill.report.compare import compare, write_csv
    from potstill.report.compare_table import print_comparison

    result = compare(args.folders)
    if args.csv:
        write_csv(result["rows"], Path(args.csv))
    print_comparison(result, result_console(stderr=args.json))
    if args.csv and not args.quiet:
        print(f"rows: {args.csv}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        sys.stdout.flush()
    return 0
