"""summary.json rows: teacher, baseline student, distilled student (the table is in table.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from potstill.engine.guard import term_names
from potstill.engine.metrics import count_parameters
from potstill.recipe import ReportSpec
from potstill.report.latency import latency_warning, measure_latency
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
    teacher_logits: dict[str, torch.Tensor] | None,  # the teacher row's prediction
    weights_file: Path | None,
    train_time_s: float | None,
    latency: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Measure one model on the test split; also return its test predictions (the task's: logits
    (N, K) of a classifier, per-token summaries of a language model), which the teacher's row
    passes on as `teacher_logits`. `latency`: its fields from `measure_latency` over all the
    run's models (timed together, interleaved); without it the model is timed alone."""
    prediction = bench.measures.predict(model, bench.eval_loader("test"))
    row = {
        "role": role,
        "title": ROLE_TITLES.get(role, role),
        "model": type(model).__name__,
        **bench.measures.report(prediction, teacher_logits, report.ece_bins),
        "params": count_parameters(model),
        "size_bytes": weights_file.stat().st_size if weights_file is not None and weights_file.is_file() else None,
        **(latency or measure_latency([(role, model)], bench.splits.example_batch, report)[role]),
        "train_time_s": train_time_s,
    }
    return row, prediction


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
        if final.get("test_ppl") is not None:  # a language model: perplexity decides, lower is better
            summary["accuracy_note"] = ("perplexity and next-token top-1 on the test split after the last epoch "
                                        "(no checkpoint selection)")
            change = 100 * (final["test_ppl"] / by_role["baseline"]["test_ppl"] - 1)
            summary["perplexity_change_pct"] = round(change, 3)
    if final is not None and "teacher" in by_role:
        summary["compression"] = round(by_role["teacher"]["params"] / max(final["params"], 1), 2)
    summary["latency_warning"] = latency_warning(rows)  # None: the timings were steady
    return summary


def training_notes(records: list[dict[str, Any]]) -> dict[str, Any]:
    """From the run's epoch records (metrics.jsonl): `terms`, each multi-term stage's loss terms at
    its last epoch (mean weighted values), and `warnings`, those the stages logged (engine/guard.py)."""
    last: dict[str, dict[str, Any]] = {}
    for record in records:
        if "terms" in record:
            last[record["stage"]] = record  # records are in order: the last one of a stage wins
    terms = {stage: record["terms"] for stage, record in last.items() if len(term_names(record)) > 1}
    warnings = [warning for record in records for warning in record.get("warnings", [])]
    return {"terms": terms, "warnings": warnings}
