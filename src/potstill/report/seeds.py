"""`potstill distill RECIPE --seeds 0 1 2`: one run folder per seed and their aggregate.

seeds.json holds, for every model row (teacher, student alone, distilled, ...), each held-out
measure's per-seed values, mean and sample standard deviation, and the paired gain: distilled
minus alone *of the same seed* (top-1 points for classifiers, perplexity change in % for language
models), whose spread is what decides whether distillation paid off beyond seed noise.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

MEASURES = ("test_acc", "test_ppl", "test_bpb", "teacher_agreement", "ece", "val_acc")
# the paired gain of each seed's summary, and which direction is better
# (a language model's summary has both: perplexity decides, as in its summary)
GAINS = {"perplexity_change_pct": ("perplexity change %", -1), "distillation_gain_points": ("top-1 points", 1)}
NOISE_FACTOR = 2.0  # a mean gain beyond 2 standard errors of the paired gains is called more than seed noise


def spread(values: list[float]) -> dict[str, Any]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"values": values, "mean": mean, "std": std}


def aggregate(summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The aggregate of {seed: summary.json} (every seed finished)."""
    seeds = sorted(summaries)
    first = summaries[seeds[0]]
    rows = []
    for row in first["models"]:
        role = row["role"]
        per_seed = [next((r for r in summaries[s]["models"] if r["role"] == role), None) for s in seeds]
        if any(r is None for r in per_seed):
            continue  # a role only some seeds have (it cannot be compared seed by seed)
        measures = {key: spread([float(r[key]) for r in per_seed]) for key in MEASURES
                    if all(r.get(key) is not None for r in per_seed)}
        rows.append({"role": role, "title": row.get("title", role), "params": row.get("params"), **measures})
    result: dict[str, Any] = {"seeds": seeds, "runs": {str(s): f"seed{s}" for s in seeds},
                              "accuracy_note": first.get("accuracy_note"), "models": rows}
    for key, (unit, better) in GAINS.items():
        if all(key in summaries[s] for s in seeds):
            result["gain"] = paired_gain([float(summaries[s][key]) for s in seeds], unit, better)
            break
    return result


def paired_gain(gains: list[float], unit: str, better: int) -> dict[str, Any]:
    """Per-seed gains, their mean and std, and a verdict against seed noise."""
    gain = spread(gains) | {"unit": unit}
    if gain["std"] is None:
        gain["verdict"] = "one seed: no estimate of seed noise; run more seeds (--seeds 0 1 2)"
        return gain
    error = gain["std"] / math.sqrt(len(gains))
    gain["standard_error"] = error
    helped = better * gain["mean"] > 0
    if abs(gain["mean"]) > NOISE_FACTOR * error:
        gain["verdict"] = (f"distillation {'helped' if helped else 'hurt'} beyond seed noise: mean {gain['mean']:+.3f} {unit}, "
                           f"more than {NOISE_FACTOR:g} standard errors ({NOISE_FACTOR * error:.3f}) from zero")
    else:
        gain["verdict"] = (f"within seed noise: mean {gain['mean']:+.3f} {unit} is no more than {NOISE_FACTOR:g} standard errors "
                           f"({NOISE_FACTOR * error:.3f}) from zero; more seeds would tell")
    return gain


def seed_lines(result: dict[str, Any]) -> list[str]:
    """The aggregate as lines for the terminal."""
    lines = [f"over seeds {', '.join(map(str, result['seeds']))} ({result.get('accuracy_note') or 'test split'}):"]
    for row in result["models"]:
        parts = []
        for key, label, scale in (("test_acc", "top-1", 100.0), ("test_ppl", "ppl", 1.0), ("teacher_agreement", "agree", 100.0)):
            if key in row:
                parts.append(f"{label} {text(row[key], scale)}")
        lines.append(f"  {row['title']:<16} " + "  ".join(parts))
    if "gain" in result:
        gain = result["gain"]
        per_seed = ", ".join(f"{value:+.2f}" for value in gain["values"])
        lines.append(f"  paired gain per seed ({gain['unit']}): {per_seed}")
        lines.append(f"  {gain['verdict']}")
    return lines


def text(measure: dict[str, Any], scale: float) -> str:
    if measure["std"] is None:
        return f"{scale * measure['mean']:.2f}"
    return f"{scale * measure['mean']:.2f} ± {scale * measure['std']:.2f}"
