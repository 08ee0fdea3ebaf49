"""`potstill metrics RUN [--csv FILE]`: a run's per-epoch metrics as one CSV table.

Reads RUN/metrics.jsonl of any run folder: finished, still training, killed, or made by an older
potstill. One row per (stage, epoch) in the order they were logged; one column per field, named as
the TensorBoard and MLflow copies name them (potstill.tracking.records): stage, epoch, loss, ...,
weighted/<term>, weight/<term>, term/<term>. A field a record lacks is an empty cell.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

from potstill.engine.checkpoint import atomic_write, guarded
from potstill.engine.run import RunDir
from potstill.errors import PotstillError
from potstill.tracking.records import KEYS, flat_record


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "a run's per-epoch metrics (metrics.jsonl) as CSV: one row per stage and epoch"
    sub = commands.add_parser("metrics", parents=[common], help=text, description=text + "; to stdout, or to --csv FILE")
    sub.add_argument("run", help="run folder (made by potstill train or distill, finished or not)")
    sub.add_argument("--csv", metavar="FILE", help="write the table to FILE (replaced whole) instead of stdout")
    sub.set_defaults(handler=cmd_metrics)


def cmd_metrics(args: argparse.Namespace) -> int:
    run = RunDir(args.run)
    if not run.metrics_path.is_file():
        raise PotstillError(f"{run.path} holds no metrics.jsonl; give a run folder made by potstill train or distill "
                            "(with --seeds, each seed<N>/ inside it is one)")
    records = run.records()
    text = metrics_csv(records)
    if args.csv is None:
        sys.stdout.write(text)
        return 0
    path = Path(args.csv)
    if path.is_dir():
        raise PotstillError(f"--csv {path} is a folder; give a file name, e.g. --csv {path / 'metrics.csv'}")
    guarded(lambda: atomic_write(path, text), path)
    print(f"metrics: {len(records)} rows of {run.metrics_path} -> {path}", file=sys.stderr)
    return 0


def metrics_csv(records: list[dict[str, Any]]) -> str:
    """The records as CSV text: a header with every column any record has, then one row each."""
    rows = [flat_record(record) for record in records]
    columns = list(KEYS)
    for row in rows:
        columns += [name for name in row if name not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
