"""metrics.jsonl records and the recipe as flat name -> value maps: what the TensorBoard and MLflow
copies log and what `potstill metrics --csv` writes, so all three name a number alike.

A record's `terms` are the epoch means of the *weighted* terms (they sum to `loss`) and `weights`
are the weights at the epoch's end, so a record flattens to
    weighted/<name>  the term as recorded (weight x loss)
    weight/<name>    its weight at the epoch's end
    term/<name>      the unweighted loss: weighted / weight, left out where the weight is 0; exact
                     when the weight held still all epoch (no warm-up or decay under way)
"""

from __future__ import annotations

import json
import math
from typing import Any

KEYS = ("stage", "epoch")  # where a record belongs; every other field is a measurement


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """stage, epoch, then every other field in the record's order, `terms` and `weights` spread
    into weighted/, weight/ and term/ columns and lists (warnings) joined into one text."""
    flat = {key: record.get(key) for key in KEYS}
    for key, value in record.items():
        if key in KEYS:
            continue
        if key == "terms":
            flat.update(term_values(value or {}, record.get("weights") or {}))
        elif key == "weights":
            flat.update({f"weight/{name}": weight for name, weight in (value or {}).items()})
        elif isinstance(value, list):
            flat[key] = "; ".join(str(item) for item in value)
        else:
            flat[key] = value
    return flat


def term_values(terms: dict[str, float], weights: dict[str, float]) -> dict[str, float]:
    values = {f"weighted/{name}": value for name, value in terms.items()}
    for name, value in terms.items():
        weight = weights.get(name)
        if weight:  # a weight of 0 (or none recorded) leaves the unweighted value unknown
            values[f"term/{name}"] = value / weight
    return values


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers among `values` (no stage, epoch, text, None or booleans), as floats."""
    return {
        name: float(value) for name, value in values.items()
        if name not in KEYS and is_number(value) and math.isfinite(value)
    }


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flat_settings(data: Any, prefix: str = "") -> dict[str, str]:
    """The resolved recipe as {"distill.temperature": "4.0", "distill.terms.0.loss": "fitnet", ...}:
    nested sections and lists spread into dotted keys, every value written as JSON text (a string
    as itself), an empty section or list as {} or []."""
    if isinstance(data, dict) and data:
        items = data.items()
    elif isinstance(data, list) and data:
        items = enumerate(data)
    else:
        return {prefix: data if isinstance(data, str) else json.dumps(data)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flat_settings(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def final_numbers(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's results: final/<role>/<measure> for each model row (test_acc, params,
    latency_ms, ...) and final/<measure> for the run's own (distillation_gain_points, ...)."""
    values = {f"final/{name}": value for name, value in numbers(summary).items()}
    for row in summary.get("models", []):
        values.update({f"final/{row['role']}/{name}": value for name, value in numbers(row).items()})
    return values
