"""`potstill sweep RECIPE --param KEY=VALUES ...`: one run per setting (grid or Optuna), chosen on
the validation split; a trials table, sweep.json and best.yaml."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.markup import escape
from rich.table import Table

from potstill.engine.progress import Reporter
from potstill.experiments.sweep_params import shown
from potstill.report import result_console


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    text = "run a recipe over several values of its keys (grid, or Optuna TPE with pruning) and pick the best on validation"
    sub = commands.add_parser(
        "sweep", parents=[common], help=text,
        description=text + ". Each trial is a normal run folder in FOLDER/trials/; run the same command again to continue a "
        "killed sweep (finished trials are kept, the interrupted one continues from its checkpoint).",
    )
    sub.add_argument("recipe", help="YAML recipe")
    sub.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=VALUES", required=True,
                     help="a recipe key and its values: 1,2,4 (choices), 0.1:0.9 (range), 1e-4:1e-2:log, 2:10:2 (step) "
                     "(repeatable)")
    sub.add_argument("--trials", type=int, help="runs to make (default: every combination of an enumerable space)")
    sub.add_argument("--sampler", choices=["auto", "grid", "tpe", "random"], default="auto",
                     help="auto: grid when every combination fits in --trials, else Optuna TPE")
    sub.add_argument("--seeds", type=int, nargs="+", metavar="N", help="run every trial once per seed (mean ± std, "
                     "the objective is the mean)")
    sub.add_argument("--published", metavar="FILE", help="YAML of published top-1 %% ({recipe name: {name: number}}) "
                     "printed beside the trials of named choices (--param KEY=@FILE) and the reference run")
    sub.add_argument("--no-prune", dest="prune", action="store_false", help="never stop a hopeless trial early")
    sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe key for every trial (repeatable)")
    sub.add_argument("--run-dir", help="sweep folder (default: output_dir/<name>_sweep)")
    sub.add_argument("--json", action="store_true", help="print sweep.json to stdout, and nothing else there")
    sub.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from potstill.experiments.sweep import sweep

    result = sweep(args.recipe, args.params, args.overrides, run_dir=args.run_dir, trials=args.trials, sampler=args.sampler,
                   seeds=args.seeds, prune=args.prune, published=args.published, reporter=Reporter(quiet=args.quiet))
    console = result_console(stderr=args.json)
    console.print(trials_table(result.payload))
    for line in result_lines(result):
        console.print(line, highlight=False, markup=False)
    if args.json:
        sys.stdout.write(json.dumps(result.payload, indent=2) + "\n")
        sys.stdout.flush()
    return 0


def result_lines(result) -> list[str]:
    payload = result.payload
    lines = [f"chosen on {payload['objective']['split']}"]
    reference = payload.get("reference")
    if reference and "baseline_ppl" in reference:
        lines.append(f"reference (the recipe as written): test perplexity teacher {pm(reference.get('teacher_ppl'))}, distilled "
                     f"{pm(reference.get('student_ppl'))}, student alone {pm(reference['baseline_ppl'])}")
    elif reference and "baseline" in reference:
        lines.append(f"reference (the recipe as written): teacher {pm(reference.get('teacher'), 100)}%, distilled "
                     f"{pm(reference.get('student'), 100)}%, student alone {pm(reference['baseline'], 100)}% (test top-1)")
    published = payload.get("published")
    if published:
        known = ", ".join(f"{name} {value:.2f}%" for name, value in published.items() if name in ("teacher", "student alone"))
        lines.append(f"published: {known or 'no teacher or student-alone numbers'} (the papers' setting and teachers, "
                     "not this run's)")
    if payload.get("selection"):
        lines.append(f"choice: {payload['selection']['verdict']}")
    lines.append(f"sweep: {len(result.trials)} trial(s) in {result.folder}: sweep.json")
    if result.best is not None:
        lines.append(f"best: trial {result.best['number']} ({shown(result.best['values'], result.best.get('names'))}) -> "
                     f"{result.best_recipe}; "
                     f"train it with: potstill distill {result.best_recipe}")
    else:
        lines.append("best: none (no trial finished)")
    return lines


def pm(measure: dict[str, Any] | None, scale: float = 1.0, digits: int = 2) -> str:
    """mean ± std (std left out for one value)."""
    if not measure:
        return "-"
    text = f"{scale * measure['mean']:.{digits}f}"
    return text + (f" ± {scale * measure['std']:.{digits}f}" if measure.get("std") is not None else "")


def trials_table(payload: dict[str, Any]) -> Table:
    """Every trial, best objective first; the chosen one marked."""
    objective = payload["objective"]
    accuracy = objective["measure"] == "val_acc"
    seeds = payload["settings"]["seeds"]
    table = Table(title=f"sweep {payload['recipe']}: {payload['settings']['sampler']}, "
                        f"{'seeds ' + ' '.join(map(str, seeds)) if seeds else 'one seed'}; chosen on validation, "
                        "test reported (last epoch)")
    published = payload.get("published")
    columns = ["trial", "values", "outcome", "val top-1 %" if accuracy else "val ppl", "test top-1 %" if accuracy else "test ppl",
               *(["published %"] if published else []), "gain" if accuracy else "ppl change %", "seconds"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("trial", "values", "outcome") else "right")
    sign = -1 if objective["direction"] == "maximize" else 1
    ordered = sorted(payload["trials"], key=lambda r: (0, sign * r["val"]["mean"]) if "val" in r else (1, r["number"]))
    for record in ordered:
        mark = " *" if record["number"] == payload["best"] else ""
        scale = 100 if accuracy else 1
        cells = [f"{record['number']}{mark}", escape(shown(record["values"] or {}, record.get("names"))), record["outcome"],
                 pm(record.get("val"), scale), pm(record.get("test"), 100) if accuracy else pm(record.get("test_ppl"))]
        if published:
            cells.append(published_cell(record, published))
        cells += [pm(record.get("gain"), 1, 2), f"{record['seconds']:.0f}" if "seconds" in record else "-"]
        table.add_row(*cells)
    return table


def published_cell(record: dict[str, Any], published: dict[str, float]) -> str:
    """The published number of the trial's named choice (one named key), or '-'."""
    names = [value for value in (record.get("names") or {}).values() if isinstance(value, str)]
    found = [published[name] for name in names if name in published]
    return f"{found[0]:.2f}" if len(found) == 1 else "-"
