"""`potstill search RECIPE`: student architecture search with distillation as the objective."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.markup import escape
from rich.table import Table

from potstill.compress.search_space import words
from potstill.engine.progress import Reporter
from potstill.report import result_console


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "search student architectures with distillation as the training objective (Optuna, multi-objective)"
    sub = commands.add_parser(
        "search", parents=[common], help=text,
        description=text + "; writes search.json, pareto.svg, best.yaml and trials/trial_<n>/ into the search folder. "
        "Run the same command again (or --resume FOLDER) to continue a killed search: finished trials are kept.",
    )
    sub.add_argument("recipe", nargs="?", help="YAML recipe with a search section (optional with --resume)")
    sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe key, e.g. --set search.trials=6 (repeatable)")
    sub.add_argument("--run-dir", help="search folder (default: output_dir/name from the recipe)")
    sub.add_argument("--resume", metavar="FOLDER", help="continue the search in FOLDER (its saved recipe; --set search.trials=N may raise the count)")
    sub.add_argument("--json", action="store_true", help="print search.json to stdout, and nothing else there")
    sub.set_defaults(handler=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from potstill.compress.search_folder import resolve
    from potstill.compress.student_search import search

    _, folder = resolve(args.recipe, args.overrides, args.run_dir, args.resume)
    args.run_path = folder  # for the message if the search is interrupted
    result = search(args.recipe, args.overrides, run_dir=folder, resume=args.resume, reporter=Reporter(quiet=args.quiet))
    console = result_console(stderr=args.json)
    if result.front:
        console.print(front_table(result.front, result.best))
    lines = [f"search: {len(result.trials)} trial(s) in {result.folder}: search.json, pareto.svg"]
    if result.best is not None:
        lines.append(f"best: trial {result.best['number']} -> {result.best_recipe}; train it with: potstill distill {result.best_recipe}")
    else:
        lines.append("best: none (no trial finished)")
    for line in lines:
        console.print(line, highlight=False, markup=False)
    if args.json:
        sys.stdout.write((result.folder / "search.json").read_text())
        sys.stdout.flush()
    return 0


def front_table(front: list[dict[str, Any]], best: dict[str, Any] | None) -> Table:
    """The Pareto front, most accurate first; the chosen trial marked."""
    table = Table(title="Pareto front: validation top-1 up, latency and parameters down (test top-1 reported, not used)")
    for column in ("trial", "keys", "val top-1", "test top-1", "latency ms (batch 1)", "params"):
        table.add_column(column, justify="left" if column in ("trial", "keys") else "right")
    for trial in front:
        mark = " *" if best is not None and trial["number"] == best["number"] else ""
        keys = words(trial["values"])
        table.add_row(f"{trial['number']}{mark}", escape(keys), f"{100 * trial['val_acc']:.2f}%", f"{100 * trial['test_acc']:.2f}%",
                      f"{trial['latency_ms']:.3g}", f"{trial['params']:,}")
    return table
