"""summary.json rows and the comparison table: teacher, baseline student, distilled student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich import box
from rich.console import Console
from rich.table import Table
from torch import nn

from potstill.engine.metrics import (
    accuracy,
    agreement,
    count_parameters,
    cpu_latency_ms,
    expected_calibration_error,
    predict,
)
from potstill.recipe import ReportSpec
from potstill.workbench import Workbench

ROLE_TITLES = {
    "teacher": "teacher",
    "baseline": "student alone",
    "student": "distilled",
    "refine": "distilled+refined",
}


def model_row(
    role: str,
    model: nn.Module,
    bench: Workbench,
    report: ReportSpec,
    teacher_logits: torch.Tensor | None,
    weights_file: Path | None,
    train_time_s: float | None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Measure one model on the test split; also return its test logits (N, K)."""
    logits, targets = predict(model, bench.eval_loader("test"))
    row = {
        "role": role,
        "title": ROLE_TITLES.get(role, role),
        "model": type(model).__name__,
        "test_acc": accuracy(logits, targets),
        "teacher_agreement": agreement(logits, teacher_logits) if teacher_logits is not None else None,
        "ece": expected_calibration_error(logits, targets, report.ece_bins),
        "params": count_parameters(model),
        "size_bytes": weights_file.stat().st_size if weights_file is not None and weights_file.is_file() else None,
        "latency_ms": cpu_latency_ms(model, bench.splits.input_shape, report.latency_batch_size, report.latency_repeats),
        "latency_batch_size": report.latency_batch_size,
        "train_time_s": train_time_s,
    }
    return row, logits


def summarize(rows: list[dict[str, Any]], data: dict[str, Any], final: str = "student") -> dict[str, Any]:
    """`final`: the role of the scheme's end product (refined, when a refine row exists)."""
    by_role = {row["role"]: row for row in rows}
    summary: dict[str, Any] = {
        "accuracy_note": "top-1 on the test split after the last epoch (no checkpoint selection)",
        "data": data,
        "models": rows,
    }
    final = by_role.get("refine") or by_role.get(final)
    if final is not None and "baseline" in by_role:
        summary["distillation_gain_points"] = round(100 * (final["test_acc"] - by_role["baseline"]["test_acc"]), 3)
    if final is not None and "teacher" in by_role:
        summary["compression"] = round(by_role["teacher"]["params"] / max(final["params"], 1), 2)
    return summary


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{value:,}"
    if kind == "kb":
        return f"{value / 1024:,.0f}K"
    if kind == "ms":
        return f"{value:.2f}"
    if kind == "s":
        return f"{value:.1f}"
    return f"{value:.4f}"


def render_table(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="did distillation pay off? (test split, last epoch)", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = [
        ("model", "title", None), ("top-1", "test_acc", "pct"), ("agree", "teacher_agreement", "pct"),
        ("ECE", "ece", "f"), ("params", "params", "int"), ("size", "size_bytes", "kb"),
        ("CPU ms", "latency_ms", "ms"), ("train s", "train_time_s", "s"),
    ]
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header == "model" else "right", no_wrap=True)
    for row in summary["models"]:
        table.add_row(*(row[key] if kind is None else _fmt(row[key], kind) for _, key, kind in columns))
    console.print(table)
    batch = summary["models"][0]["latency_batch_size"]
    console.print(
        f"agree: same top-1 class as the teacher; ECE: expected calibration error; CPU ms: one forward pass of {batch} images",
        highlight=False,
    )
    if "distillation_gain_points" in summary:
        gain = summary["distillation_gain_points"]
        verdict = "helped" if gain > 0 else "did not help"
        console.print(f"distillation {verdict}: {gain:+.2f} points of top-1 over the student trained alone", highlight=False)
