"""`potstill report RUN [RUN ...] -o report.html`: one self-contained HTML page with tables and
plots of runs and seeds folders (report/html.py builds it)."""

from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "one self-contained HTML page of runs: tables, learning curves, calibration, per-class and size/latency charts"
    sub = commands.add_parser(
        "report", parents=[common], help=text,
        description=text + ". A seeds folder (distill --seeds) adds its mean ± std over seeds. The page needs no network: "
        "plots are inline SVG. Needs matplotlib (pip install 'potstill[report]').",
    )
    sub.add_argument("folders", nargs="+", metavar="RUN", help="a run folder (the --run-dir of potstill train or distill) "
                     "or a seeds folder (distill --seeds)")
    sub.add_argument("-o", "--output", default="report.html", metavar="FILE",
                     help="the HTML file to write (default: report.html); an existing file is replaced only by a "
                     "complete page")
    sub.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from potstill.report.html import write_report

    path = write_report(args.folders, args.output)
    if not args.quiet:
        print(f"report: {len(args.folders)} folder(s) -> {path} ({path.stat().st_size / 1000:.0f} kB)", file=sys.stderr)
    print(path)
    return 0
