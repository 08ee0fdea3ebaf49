"""`potstill export RUN --format onnx [--int8]`: ONNX files checked against PyTorch, timed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.table import Table

from potstill.compress.export_run import export_run
from potstill.engine.progress import Reporter
from potstill.errors import PotstillError
from potstill.report import result_console


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "export a finished run's models to ONNX (optionally int8), check them against PyTorch and time them"
    sub = commands.add_parser("export", parents=[common], help=text, description=text + "; results go to RUN/export/ "
                              "and into summary.json")
    sub.add_argument("run", help="a finished potstill train/distill run folder")
    sub.add_argument("--format", choices=["onnx"], default="onnx", help="file format (onnx: ONNX Runtime on CPU)")
    sub.add_argument("--int8", action="store_true", help="also write an int8 file per model (ONNX Runtime quantization)")
    sub.add_argument("--int8-mode", choices=["auto", "static", "dynamic"], default="auto",
                     help="auto (default): static for models with convolutions, dynamic otherwise; static: activation ranges "
                     "calibrated on training batches (CNNs); dynamic: activation ranges measured per batch (MLPs, transformers)")
    sub.add_argument("--roles", nargs="+", metavar="ROLE", help="only these models (teacher, baseline, student, ...)")
    sub.add_argument("--out", help="output folder (default RUN/export)")
    sub.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], metavar="N", help="timed batch sizes (default 1 32)")
    sub.add_argument("--repeats", type=int, default=50, help="timed rounds per batch size (default 50)")
    sub.add_argument("--json", action="store_true", help="print export.json to stdout, and nothing else there")
    sub.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    if any(size < 1 for size in args.batch_sizes):
        raise PotstillError(f"--batch-sizes {args.batch_sizes}: every batch size must be at least 1")
    record = export_run(args.run, int8=args.int8, mode=args.int8_mode, roles=args.roles, out=args.out,
                        batch_sizes=tuple(args.batch_sizes), repeats=args.repeats, reporter=Reporter(quiet=args.quiet))
    console = result_console(stderr=args.json)
    console.print(export_table(record))
    for line in record["warnings"]:
        console.print(f"warning: {line}", highlight=False, markup=False)
    if args.json:
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
    return 0


def export_table(record: dict[str, Any]) -> Table:
    sizes = record["batch_sizes"]
    table = Table(title=f"{record['runtime']}, {record['threads']} thread(s); latency p50/p95 ms, interleaved")
    for column in ["model", "runtime", "test acc", "agree", "max |diff|", "size"] + [f"batch {size}" for size in sizes]:
        table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
    for role, runtimes in record["models"].items():
        for runtime in ("pytorch", "onnx", "int8"):
            fields = runtimes.get(runtime)
            if fields is None:
                continue
            checked = "test_acc" in fields
            table.add_row(
                role, runtime if runtime != "int8" else f"int8 {fields['mode']}",
                f"{100 * fields['test_acc']:.2f}" if checked else "", f"{100 * fields['agreement']:.2f}" if checked else "",
                f"{fields['max_abs_diff']:.2g}" if checked else "",
                f"{fields['size_bytes'] / 1024:.0f} KiB" if "size_bytes" in fields else "",
                *[f"{fields[f'latency_b{size}_p50_ms']:.3f} / {fields[f'latency_b{size}_p95_ms']:.3f}" for size in sizes],
            )
    return table
