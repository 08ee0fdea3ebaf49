"""The report's HTML tables: a run's models, its key recipe settings, a seeds folder's aggregate,
and the settings that differ between runs. Every value from a file is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from potstill.report.compare import flatten, recipe_differences
from potstill.report.report_inputs import ReportedRun, ReportedSeeds

DASH = "–"
MAX_DIFFERENCES = 30  # rows of the settings that differ; `potstill compare` lists every one
# the recipe keys a reader of a report wants first (dotted); each run lists those its recipe has
KEY_SETTINGS = (
    "data.name", "teacher.model.name", "teacher.model.args", "teacher.checkpoint", "student.name", "student.args",
    "scheme.name", "distill.loss", "distill.temperature", "distill.alpha", "distill.beta", "distill.terms",
    "teacher.train.epochs", "train.epochs", "train.optimizer", "train.lr", "train.scheduler", "data.batch_size",
    "refine.epochs", "seed",
)
UNUSED_WHEN_EMPTY = ("teacher.checkpoint", "distill.terms", "refine.epochs")  # 0, null or []: the feature is off


def cell(value: Any) -> str:
    return DASH if value is None else escape(str(value))


def percent(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}"


def decimal(value: float | None, digits: int = 3) -> str:
    """`digits` decimals below 1000, whole numbers with thousands separators from there."""
    if value is None:
        return DASH
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def count(value: float | None) -> str:
    return DASH if value is None else f"{int(value):,}"


def file_size(size: int | None) -> str:
    if size is None:
        return DASH
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def table(headers: list[str], rows: list[list[str]], numeric_from: int = 1, caption: str | None = None) -> str:
    """An HTML table of already-escaped cells; columns from `numeric_from` on are right-aligned."""
    head = "".join(f'<th{" class=num" if index >= numeric_from else ""}>{escape(text)}</th>' for index, text in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if index >= numeric_from else ""}>{text}</td>'
                                    for index, text in enumerate(row)) + "</tr>" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def models_table(run: ReportedRun) -> str:
    """summary.json's model rows: quality, calibration, agreement and cost of each model."""
    language_model = run.language_model
    batches = {row.get("latency_batch_size") for row in run.rows if row.get("latency_ms") is not None}
    batch = batches.pop() if len(batches) == 1 else None  # one batch size: said once, in the header
    headers = ["model", "role", *(["test ppl", "next-token top-1 %"] if language_model else ["test top-1 %", "macro F1 %"]),
               "ECE %", "agrees with teacher %", "params", "weights", "ms b=1", f"ms b={batch or 'N'}", "train s"]
    rows = []
    for row in run.rows:
        quality = ([decimal(row.get("test_ppl")), percent(row.get("test_acc"))] if language_model
                   else [percent(row.get("test_acc")), percent(row.get("macro_f1"))])
        latency = decimal(row.get("latency_ms"))
        if batch is None and row.get("latency_ms") is not None:
            latency += f" (N={row.get('latency_batch_size')})"
        rows.append([cell(row.get("title", row["role"])), cell(row["role"]), *quality, percent(row.get("ece")),
                     percent(row.get("teacher_agreement")), count(row.get("params")), file_size(row.get("size_bytes")),
                     decimal(row.get("latency_batch1_ms")), latency, decimal(row.get("train_time_s"), 1)])
    return table(headers, rows, numeric_from=2)


def summary_notes(summary: dict[str, Any]) -> list[str]:
    """The summary's verdict lines: gain, compression, the accuracy note, timing and training warnings."""
    notes = []
    if summary.get("perplexity_change_pct") is not None:
        notes.append(f"perplexity change of the final model against the student alone: "
                     f"<b>{summary['perplexity_change_pct']:+.2f}%</b> (negative is better)")
    elif summary.get("distillation_gain_points") is not None:
        notes.append(f"distillation gain (final model minus student alone, test top-1): "
                     f"<b>{summary['distillation_gain_points']:+.2f} points</b>")
    if summary.get("compression") is not None:
        notes.append(f"compression: the teacher has {summary['compression']:g}x the final model's parameters")
    if summary.get("accuracy_note"):
        notes.append(escape(summary["accuracy_note"]))
    for warning in [summary.get("latency_warning"), *(summary.get("warnings") or [])]:
        if warning:
            notes.append(f'<span class="warn">{escape(str(warning))}</span>')
    return notes


def settings_list(recipe: dict[str, Any]) -> str:
    """The recipe's KEY_SETTINGS it has (empty lists and mappings left out), as `key value` items."""
    flat = flatten(recipe)
    items = []
    for key in KEY_SETTINGS:
        value = recipe_value(recipe, key, flat)
        if value not in (None, [], {}) and (value or key not in UNUSED_WHEN_EMPTY):
            items.append(f"<li><code>{escape(key)}</code> {cell(short(value))}</li>")
    return f'<ul class="settings">{"".join(items)}</ul>'


def recipe_value(recipe: dict[str, Any], key: str, flat: dict[str, Any]) -> Any:
    """A dotted key's value: a leaf from `flat`, or a whole mapping (model args) from the recipe."""
    if key in flat:
        return flat[key]
    node: Any = recipe
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def short(value: Any) -> str:
    """A recipe value in YAML's flow style, e.g. {channels: [64, 128], hidden: 256}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {short(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(short(item) for item in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def seeds_table(seeds: ReportedSeeds) -> str:
    """seeds.json's rows: each measure's mean ± sample std over the seeds."""
    aggregate = seeds.aggregate or {}
    language_model = any("test_ppl" in row for row in aggregate.get("models", []))
    headers = ["model", "role", *(["test ppl"] if language_model else []), "test top-1 %", "ECE %", "teacher agreement %",
               "params"]
    rows = []
    for row in aggregate.get("models", []):
        quality = [spread(row.get("test_ppl"), 1.0)] if language_model else []
        rows.append([cell(row.get("title", row["role"])), cell(row["role"]), *quality, spread(row.get("test_acc"), 100.0),
                     spread(row.get("ece"), 100.0), spread(row.get("teacher_agreement"), 100.0), count(row.get("params"))])
    seeds_text = ", ".join(map(str, aggregate.get("seeds", [])))
    return table(headers, rows, numeric_from=2, caption=f"mean ± sample std over seeds {seeds_text}")


def spread(measure: dict[str, Any] | None, scale: float) -> str:
    if not measure:
        return DASH
    if measure.get("std") is None:
        return f"{scale * measure['mean']:.2f}"
    return f"{scale * measure['mean']:.2f} ± {scale * measure['std']:.2f}"


def gain_note(seeds: ReportedSeeds) -> str | None:
    """The paired gain per seed and the verdict against seed noise, from seeds.json."""
    gain = (seeds.aggregate or {}).get("gain")
    if not gain:
        return None
    per_seed = ", ".join(f"{value:+.2f}" for value in gain["values"])
    return f"paired gain per seed ({escape(gain['unit'])}): {per_seed}. <b>{escape(gain['verdict'])}</b>"


def differences_table(recipes: dict[str, dict[str, Any]]) -> str | None:
    """The recipe keys whose values differ between the labelled recipes (seed and name left out),
    or None. A key that some recipes lack and the others leave null is left out: it only tells
    which potstill version wrote each recipe."""
    differences = {key: values for key, values in recipe_differences(recipes).items()
                   if any(value not in (None, [], {}) for value in values.values())}
    if not differences:
        return None
    shown = list(differences.items())[:MAX_DIFFERENCES]
    headers = ["setting", *recipes]
    rows = [[f"<code>{escape(key)}</code>", *(cell(short(values[label])) if label in values else DASH for label in recipes)]
            for key, values in shown]
    more = len(differences) - len(shown)
    caption = f"the first {len(shown)} of {len(differences)}; potstill compare lists them all" if more else None
    return table(headers, rows, numeric_from=len(headers), caption=caption)
