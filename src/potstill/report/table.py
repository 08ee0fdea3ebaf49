"""The comparison table and the result lines, readable in any terminal and in logs.

No number is ever cut short: the table is printed in the widest layout that fits the console
(one line per model; the latency spread on a second line; an accuracy table above a cost table)
and otherwise as a few lines per model. When the output is not a terminal the width is COLUMNS,
or PLAIN_WIDTH, never the width of whatever terminal happens to be attached to another stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

PLAIN_WIDTH = 120  # piped output without COLUMNS: wide enough for the one-line-per-model table


def result_console(stderr: bool = False) -> Console:
    """A console for results: the terminal's width on a terminal; piped, COLUMNS or PLAIN_WIDTH."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        console.width = int(columns) if columns.isdigit() and int(columns) > 0 else PLAIN_WIDTH
    return console


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{value:,}"
    if kind == "kb":
        return f"{value / 1024:,.0f}K"
    if kind == "ms":  # three significant digits, never in exponent form
        return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"
    if kind == "s":
        return f"{value:.1f}"
    if kind == "ppl":
        return f"{value:.2f}"
    return f"{value:.4f}"


def latency_text(row: dict[str, Any], prefix: str, separator: str = " ") -> str:
    """'median (p10-p90)' of one batch size; just the median for rows without a spread."""
    median = row.get(f"{prefix}_ms")
    p10, p90 = row.get(f"{prefix}_p10_ms"), row.get(f"{prefix}_p90_ms")
    if median is None or p10 is None or p90 is None:
        return _fmt(median, "ms")
    return f"{_fmt(median, 'ms')}{separator}({_fmt(p10, 'ms')}-{_fmt(p90, 'ms')})"


# (header, row -> cell) of the accuracy columns; the cost columns depend on the latency batch size
QUALITY: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("top-1", lambda row: _fmt(row.get("test_acc"), "pct")),
    ("agree", lambda row: _fmt(row.get("teacher_agreement"), "pct")),
    ("ECE", lambda row: _fmt(row.get("ece"), "f")),
]
# a language model's summary leads with perplexity and bits per byte (lower is better)
PERPLEXITY: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("ppl", lambda row: _fmt(row.get("test_ppl"), "ppl")),
    ("bpb", lambda row: _fmt(row.get("test_bpb"), "f")),
]


def quality(summary: dict[str, Any]) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    """The quality columns: perplexity first for language models, then top-1, agreement, ECE."""
    if any(row.get("test_ppl") is not None for row in summary["models"]):
        return PERPLEXITY + QUALITY
    return QUALITY


SIZE: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("params", lambda row: _fmt(row.get("params"), "int")),
    ("size", lambda row: _fmt(row.get("size_bytes"), "kb")),
]
WIDE = 10_000  # measure tables without a width limit


def _cost(summary: dict[str, Any], separator: str) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    """params, size, latency (median and spread, at batch 1 and the larger batch) and training time."""
    batch1 = [("ms b=1", lambda row: latency_text(row, "latency_batch1", separator))]
    if not any("latency_batch1_ms" in row for row in summary["models"]):  # a summary from before batch 1 was timed
        batch1 = []
    return [*SIZE, *batch1, (f"ms b={_batch_size(summary)}", lambda row: latency_text(row, "latency", separator)),
            ("train s", lambda row: _fmt(row.get("train_time_s"), "s")), *_deployed(summary)]


def _deployed(summary: dict[str, Any]) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    """After `potstill export`: ONNX Runtime batch-1 latency, and the int8 file's top-1 and latency."""
    def field(runtime: str, key: str, kind: str) -> Callable[[dict[str, Any]], str]:
        return lambda row: _fmt((row.get(runtime) or {}).get(key), kind)

    columns = []
    if any("onnx" in row for row in summary["models"]):
        columns.append(("onnx ms b=1", field("onnx", "latency_b1_p50_ms", "ms")))
    if any("int8" in row for row in summary["models"]):
        columns += [("int8 top-1", field("int8", "test_acc", "pct")), ("int8 ms b=1", field("int8", "latency_b1_p50_ms", "ms"))]
    return columns


def _batch_size(summary: dict[str, Any]) -> Any:
    return summary["models"][0].get("latency_batch_size", "?") if summary["models"] else "?"


def table_title(summary: dict[str, Any]) -> str:
    roles = {row.get("role") for row in summary["models"]}
    if "distillation_gain_points" in summary or "baseline" in roles:
        return "did distillation pay off? (test split, last epoch)"
    if roles == {"teacher"}:
        return "the trained teacher (test split, last epoch)"
    return "models on the test split (last epoch)"


def _table(summary: dict[str, Any], columns: list, title: str | None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True)
    for header, _ in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for row in summary["models"]:
        table.add_row(escape(str(row.get("title", row.get("role", "?")))), *(cell(row) for _, cell in columns))
    return table


def _layouts(summary: dict[str, Any]) -> Iterator[tuple[str | None, list[Table]]]:
    """Candidate layouts, widest first: one table with one line per model, the same with each
    latency spread on a second line, then an accuracy table above a cost table."""
    title = table_title(summary)
    for separator in (" ", "\n"):
        yield None, [_table(summary, quality(summary) + _cost(summary, separator), title)]
    for separator in (" ", "\n"):
        yield title, [_table(summary, quality(summary), None), _table(summary, _cost(summary, separator), None)]


def _blocks(summary: dict[str, Any]) -> list[str]:
    """The narrowest layout: a few short lines per model."""
    lines = [table_title(summary)]
    for row in summary["models"]:
        lines.append(f"{row.get('title', row.get('role', '?'))}:")
        lines.append("  " + "  ".join(f"{header} {cell(row)}" for header, cell in quality(summary)))
        lines.append("  " + "  ".join(f"{header} {cell(row)}" for header, cell in SIZE) + f"  train {_fmt(row.get('train_time_s'), 's')} s")
        if "latency_batch1_ms" in row:
            lines.append(f"  CPU ms at batch 1: {latency_text(row, 'latency_batch1')}")
        lines.append(f"  CPU ms at batch {_batch_size(summary)}: {latency_text(row, 'latency')}")
    return lines


def render_table(summary: dict[str, Any], console: Console | None = None) -> None:
    """The comparison table in the widest layout that fits, its legend and the result lines."""
    console = console or result_console()
    unlimited = console.options.update_width(WIDE)
    for title, tables in _layouts(summary):
        if all(console.measure(table, options=unlimited).maximum <= console.width for table in tables):
            if title is not None:
                console.print(title, highlight=False, markup=False)
            for index, table in enumerate(tables):
                if index:
                    console.print()
                console.print(table)
            break
    else:
        for line in _blocks(summary):
            console.print(line, highlight=False, markup=False)
    repeats = summary["models"][0].get("latency_repeats") if summary["models"] else None
    latency = (f"median CPU milliseconds of one forward pass of N samples (p10-p90 over {repeats} interleaved rounds)"
               if repeats else "CPU milliseconds of one forward pass of N samples")  # summaries from before the spread
    legend = "agree: same top-1 class as the teacher; ECE: expected calibration error"
    if quality(summary) is not QUALITY:
        legend = ("ppl: perplexity; bpb: bits per UTF-8 byte; top-1 and agree: next token, per predicted position; "
                  "ECE: expected calibration error over tokens")
    deployed = ("; onnx/int8 ms b=1: median ONNX Runtime milliseconds (potstill export, same threads), int8 top-1 of "
                "the int8 file" if _deployed(summary) else "")
    console.print(f"{legend}; ms b=N: {latency}{deployed}", highlight=False, markup=False)
    if summary.get("terms"):
        console.print(terms_line(summary), highlight=False, markup=False)
    for line in result_lines(summary):
        console.print(line, highlight=False, markup=False)


def terms_line(summary: dict[str, Any]) -> str:
    """Which loss terms each multi-term stage trained with, e.g.
    `terms (last epoch, weighted): student ce 0.21, kd 0.2, fitnet 31.5`."""
    stages = "; ".join(f"{stage} " + ", ".join(f"{name} {value:.3g}" for name, value in terms.items())
                       for stage, terms in summary["terms"].items())
    return f"terms (last epoch, weighted): {stages}"


def result_lines(summary: dict[str, Any]) -> list[str]:
    """The verdict (when a baseline was trained), the training warnings (a term that drowned the
    others) and the latency warning (when timings were unsteady)."""
    lines = []
    if "perplexity_change_pct" in summary:
        change = summary["perplexity_change_pct"]
        verdict = "helped" if change < 0 else "did not help"
        lines.append(f"distillation {verdict}: test perplexity {change:+.2f}% against the student trained alone "
                     f"(next-token top-1 {summary['distillation_gain_points']:+.2f} points)")
    elif "distillation_gain_points" in summary:
        gain = summary["distillation_gain_points"]
        verdict = "helped" if gain > 0 else "did not help"
        lines.append(f"distillation {verdict}: {gain:+.2f} points of top-1 over the student trained alone")
    lines += [f"warning: {warning}" for warning in summary.get("warnings", [])]
    if summary.get("latency_warning"):
        lines.append(f"warning: {summary['latency_warning']}")
    return lines


def headline_lines(summary: dict[str, Any]) -> list[str]:
    """What --quiet still prints: every model's top-1, then the result lines."""
    if any(row.get("test_ppl") is not None for row in summary["models"]):
        values = ", ".join(f"{row.get('title', row.get('role'))} {_fmt(row.get('test_ppl'), 'ppl')}" for row in summary["models"])
        return [f"perplexity on the test split: {values}", *result_lines(summary)]
    accuracies = ", ".join(f"{row.get('title', row.get('role'))} {_fmt(row.get('test_acc'), 'pct')}" for row in summary["models"])
    return [f"top-1 on the test split: {accuracies}", *result_lines(summary)]


def print_result(summary: dict[str, Any], summary_file: Path | None, quiet: bool, console: Console | None = None) -> None:
    """The end of a run: the table (or with `quiet` only the headline lines) and where the summary is."""
    console = console or result_console()
    if quiet:
        for line in headline_lines(summary):
            console.print(line, highlight=False, markup=False)
    else:
        render_table(summary, console)
    if summary_file is not None:
        console.print(f"results: {summary_file}", highlight=False, markup=False, soft_wrap=True)  # a path is never broken
