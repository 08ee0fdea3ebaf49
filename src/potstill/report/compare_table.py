"""The tables of `potstill compare`: every (run, model) with its measures, then the recipe settings
that differ between the runs (compare.py builds both from the folders).

As in table.py no number or setting is ever cut short: each table is printed in the first layout
that fits the console (for the settings a column per run, else a column per key), otherwise as a
few plain lines per run or per setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from potstill.config.describe import yaml_words
from potstill.report.table import WIDE
from potstill.report.table import _fmt as number_text

Cell = Callable[[dict[str, Any]], str]


def print_comparison(result: dict[str, Any], console: Console) -> None:
    """The models table and its legend (with each multi-seed run's verdict), then the settings that differ."""
    print_fitting(console, [models_table(result)], model_lines(result))
    for line in legend_lines(result):
        console.print(line, highlight=False, markup=False)
    differences = result["differences"]
    if not differences:
        if len(result["runs"]) > 1:
            console.print("settings: the runs' recipes are the same (name, output_dir and seed left out)",
                          highlight=False, markup=False)
        return
    labels = [run["label"] for run in result["runs"] if any(run["label"] in values for values in differences.values())]
    console.print()
    by_key = len(labels) <= len(differences)  # a column per run while there are no more runs than keys
    layouts = [settings_table(differences, labels, by_key), settings_table(differences, labels, not by_key)]
    print_fitting(console, layouts, setting_lines(differences, labels))
    if any(label not in values for values in differences.values() for label in labels):
        console.print("-: not in that run's recipe.yaml (a key of another potstill version, or of another kind of run)",
                      highlight=False, markup=False)


def print_fitting(console: Console, tables: list[Table], lines: list[str]) -> None:
    """The first of the candidate tables that is no wider than the console, otherwise the plain lines."""
    unlimited = console.options.update_width(WIDE)
    for table in tables:
        if console.measure(table, options=unlimited).maximum <= console.width:
            console.print(table)
            return
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def measure(key: str, scale: float = 1.0, digits: int = 2, sign: str = "") -> Cell:
    """A cell of `key`: its mean, and '± std' for a run over several seeds; '-' when absent."""
    def cell(row: dict[str, Any]) -> str:
        mean, std = row.get(key), row.get(f"{key}_std")
        if mean is None:
            return "-"
        text = f"{scale * mean:{sign}.{digits}f}"
        return text if std is None else f"{text} ± {scale * std:.{digits}f}"
    return cell


def number(key: str, kind: str) -> Cell:
    return lambda row: number_text(row.get(key), kind)


# (row field, header, cell): language models lead with perplexity; the exported files' numbers last
CANDIDATES: list[tuple[str, str, Cell]] = [
    ("test_ppl", "ppl", measure("test_ppl")),
    ("test_acc", "top-1 %", measure("test_acc", 100)),
    ("ppl_change_pct", "ppl change %", measure("ppl_change_pct", sign="+")),
    ("gain_points", "gain pts", measure("gain_points", sign="+")),
    ("ece", "ECE", measure("ece", digits=4)),
    ("params", "params", lambda row: number_text(None if row.get("params") is None else round(row["params"]), "int")),
    ("latency_batch1_ms", "ms b=1", number("latency_batch1_ms", "ms")),
    ("onnx_latency_b1_ms", "onnx ms b=1", number("onnx_latency_b1_ms", "ms")),
    ("int8_test_acc", "int8 top-1 %", measure("int8_test_acc", 100)),
    ("int8_latency_b1_ms", "int8 ms b=1", number("int8_latency_b1_ms", "ms")),
]


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, Cell]]:
    """The measure columns some row has."""
    return [(header, cell) for key, header, cell in CANDIDATES if any(row.get(key) is not None for row in rows)]


def run_rows(result: dict[str, Any]) -> list[tuple[dict[str, Any], str, str, list[dict[str, Any]]]]:
    """(run, its label with * for a sweep's choice, its seeds, its model rows) in order."""
    return [(run, run["label"] + (" *" if run["best"] else ""), " ".join(map(str, run["seeds"])),
             [row for row in result["rows"] if row["run"] == run["label"]]) for run in result["runs"]]


def models_table(result: dict[str, Any]) -> Table:
    """One line per (run, model); the run's label and seeds on its first line, a gap between runs."""
    shown = columns(result["rows"])
    table = Table(title="models on the test split (last epoch)", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in ("run", "seeds", "model"):
        table.add_column(header, no_wrap=True)
    for header, _ in shown:
        table.add_column(header, justify="right", no_wrap=True)
    for _, label, seeds, rows in run_rows(result):
        if not rows:
            table.add_row(escape(label), seeds, "unfinished: no results yet", *("" for _ in shown), end_section=True)
        for index, row in enumerate(rows):
            first = index == 0
            table.add_row(escape(label) if first else "", seeds if first else "", escape(str(row["title"])),
                          *(cell(row) for _, cell in shown), end_section=index == len(rows) - 1)
    return table


def model_lines(result: dict[str, Any]) -> list[str]:
    """The narrowest layout of the models table: a line per run, then a line per model (absent measures left out)."""
    shown = columns(result["rows"])
    lines = ["models on the test split (last epoch)"]
    for _, label, seeds, rows in run_rows(result):
        lines.append(f"{label} (seeds {seeds or '-'}):" + ("" if rows else " unfinished, no results yet"))
        for row in rows:
            cells = [(header, cell(row)) for header, cell in shown]
            lines.append(f"  {row['title']}: " + ", ".join(f"{header} {text}" for header, text in cells if text != "-"))
    return lines


def legend_lines(result: dict[str, Any]) -> list[str]:
    """What the columns mean, the mark of a sweep's choice, and each multi-seed run's verdict."""
    parts = []
    if any(len(run["seeds"]) > 1 for run in result["runs"]):
        parts.append("several seeds: mean ± sample std")
    if any(row.get("gain_points") is not None or row.get("ppl_change_pct") is not None for row in result["rows"]):
        parts.append("gain: the final model minus the student alone of the same seed (top-1 points; perplexity change "
                     "% for language models)")
    parts.append("ms b=1: median CPU milliseconds of a forward pass at batch 1")
    lines = ["; ".join(parts)]
    if any(run["best"] for run in result["runs"]):
        lines.append("*: the trial its sweep or search chose (on the validation split)")
    lines += [f"{run['label']}: {run['gain']['verdict']}" for run in result["runs"] if "gain" in run]
    return lines


def settings_table(differences: dict[str, dict[str, Any]], labels: list[str], by_key: bool) -> Table:
    """The differing recipe keys: a row per key and a column per run (`by_key`), or a row per run
    and a column per key; '-' where a run's recipe lacks the key."""
    table = Table(title="settings that differ", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    names, headers = (list(differences), labels) if by_key else (labels, list(differences))
    table.add_column("setting" if by_key else "run", no_wrap=True)
    for header in headers:
        table.add_column(escape(header), no_wrap=True)
    for name in names:
        cells = [value_text(differences[name], header) if by_key else value_text(differences[header], name)
                 for header in headers]
        table.add_row(escape(name), *(escape(cell) for cell in cells))
    return table


def setting_lines(differences: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    """The narrowest layout of the settings: a line per key, then a line per value with the runs that have it."""
    lines = ["settings that differ"]
    for key, values in differences.items():
        lines.append(f"{key}:")
        runs_by_value: dict[str, list[str]] = {}
        for label in labels:
            runs_by_value.setdefault(value_text(values, label), []).append(label)
        width = max(len(value) for value in runs_by_value)
        lines += [f"  {value:<{width}}  {', '.join(runs)}" for value, runs in runs_by_value.items()]
    return lines


def value_text(values: dict[str, Any], label: str) -> str:
    """A recipe value as YAML reads it (text unquoted); '-' where the run's recipe lacks the key."""
    if label not in values:
        return "-"
    value = values[label]
    return value if isinstance(value, str) else yaml_words(value)
