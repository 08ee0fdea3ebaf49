"""What a sweep leaves in its folder: sweep.json (settings, the reference run, every trial; rewritten
after each trial) and best.yaml (the chosen trial's whole recipe for `potstill distill`); and the
check that a folder given again holds the same sweep."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potstill import config
from potstill.compress.search_space import merged_overrides
from potstill.engine.checkpoint import atomic_write, guarded
from potstill.engine.lock import LOCK_NAME
from potstill.engine.stamp import recipe_changes
from potstill.errors import PotstillError
from potstill.recipe import Recipe
from potstill.report.seeds import spread

GAIN_UNITS = {"val_acc": "top-1 points", "val_ppl": "perplexity change %"}


@dataclass
class SweepResult:
    folder: Path
    trials: list[dict[str, Any]]  # as in sweep.json
    best: dict[str, Any] | None
    best_recipe: Path | None
    payload: dict[str, Any]  # sweep.json


def check_folder(folder: Path, recipe: Recipe, settings) -> bool:
    """True when `folder` holds this sweep (to continue), False for a new or empty folder; an error
    for a folder holding something else or a sweep started with another recipe or settings."""
    if folder.exists() and not folder.is_dir():
        raise PotstillError(f"sweep folder {folder} is a file, not a folder; choose another --run-dir")
    saved, record = folder / "recipe.yaml", folder / "sweep.json"
    if saved.is_file() and record.is_file():
        changes = recipe_changes(config.to_dict(config.load(saved, Recipe)), config.to_dict(recipe))
        if changes:
            raise PotstillError(f"sweep folder {folder} was started with another recipe ({', '.join(changes[:5])}); run the "
                                "same command to continue it, or start a new sweep with --run-dir")
        before = json.loads(record.read_text())["settings"]
        now = settings.as_dict()
        differ = [key for key in now if key != "trials" and before.get(key) != now[key]]
        if differ:
            raise PotstillError(f"sweep folder {folder} was started with other {', '.join(differ)} ({before[differ[0]]} "
                                f"then, {now[differ[0]]} now); only --trials may change when a sweep continues; "
                                "start a new sweep with --run-dir")
        return True
    if folder.is_dir() and any(entry.name != LOCK_NAME for entry in folder.iterdir()):
        raise PotstillError(f"folder {folder} already exists and holds no sweep; choose another --run-dir")
    return False


def trial_record(trial) -> dict[str, Any]:
    """One Optuna trial as sweep.json lists it: values, outcome, folder, and per measure the
    per-seed values with mean ± std."""
    attrs = trial.user_attrs
    state = trial.state.name.lower()
    outcome = attrs.get("outcome") or {"fail": "interrupted", "running": "running"}.get(state, state)
    record = {"number": trial.number, "outcome": outcome, "state": state, "values": attrs.get("values")}
    for key in ("folder", "seconds", "reason", "retry_of", "repeat_of"):
        if key in attrs:
            record[key] = attrs[key]
    for name in ("val", "test", "test_ppl", "gain"):
        if f"{name}_values" in attrs:
            record[name] = spread([float(v) for v in attrs[f"{name}_values"]])
    return record


def reference_record(summaries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if summaries is None:
        return None
    record: dict[str, Any] = {"folder": "reference"}
    for role in ("teacher", "baseline", "student"):
        rows = [next((r for r in s["models"] if r["role"] == role), None) for s in summaries]
        if all(row is not None for row in rows):
            record[role] = spread([float(row["test_acc"]) for row in rows])
            if all(row.get("test_ppl") is not None for row in rows):  # a language model: perplexity decides
                record[f"{role}_ppl"] = spread([float(row["test_ppl"]) for row in rows])
    return record


def write_outputs(folder: Path, recipe: Recipe, settings, records: list[dict[str, Any]], base: dict[str, Any] | None,
                  reference: list[dict[str, Any]] | None, measure: str, direction: str, final: bool,
                  published: dict[str, float] | None = None, val_size: int | None = None) -> SweepResult:
    complete = [r for r in records if r["outcome"] == "complete" and "val" in r]
    sign = -1 if direction == "maximize" else 1
    ranked = sorted(complete, key=lambda r: (sign * r["val"]["mean"], r["number"]))
    best = ranked[0] if ranked else None
    best_file = folder / "best.yaml" if best is not None and final else None
    val_fraction = recipe.data.val_fraction
    payload = {
        "kind": "sweep",
        "recipe": recipe.name,
        "settings": settings.as_dict(),
        "objective": {
            "measure": measure, "direction": direction,
            "split": f"validation: {val_fraction:g} of the training data (data.val_fraction), carved out before training; "
                     "the test split is reported, never used to choose",
            "gain": f"distilled minus alone, same seed, in {GAIN_UNITS[measure]}, on the test split",
        },
        "accuracy_note": "last epoch's model (no checkpoint selection); mean ± sample std over seeds",
        "reference": reference_record(reference),
        "published": published,  # top-1 % from the papers, by name (--published), shown beside ours
        "best": best["number"] if best else None,
        "selection": selection(ranked, val_size) if measure == "val_acc" else None,
        "best_recipe": best_file.name if best_file else None,
        "trials": records,
    }
    write(folder / "sweep.json", json.dumps(payload, indent=2) + "\n")
    if best_file is not None:
        write(best_file, best_recipe_text(best, best_file, recipe, base))
    return SweepResult(folder, records, best, best_file, payload)


def selection(ranked: list[dict[str, Any]], val_size: int | None) -> dict[str, Any] | None:
    """Is the best trial's lead over the runner-up larger than the noise of a top-1 measured on
    `val_size` samples? Two binomial standard errors, sqrt(p (1 - p) / n), at the best's accuracy."""
    if len(ranked) < 2 or not val_size:
        return None
    best, second = ranked[0]["val"]["mean"], ranked[1]["val"]["mean"]
    lead = best - second
    error = math.sqrt(max(best * (1 - best), 1 / val_size) / val_size)
    result = {"lead_points": 100 * lead, "standard_error_points": 100 * error, "val_samples": val_size}
    if lead > 2 * error:
        result["verdict"] = (f"clear: the best trial leads the next by {100 * lead:.2f} points, more than 2 standard errors "
                             f"({200 * error:.2f}) of a top-1 on {val_size} validation samples")
    else:
        result["verdict"] = (f"a tie: the best trial leads the next by {100 * lead:.2f} points, within 2 standard errors "
                             f"({200 * error:.2f}) of a top-1 on {val_size} validation samples; a larger data.val_fraction "
                             "or more seeds would tell them apart")
    return result


def best_recipe_text(best: dict[str, Any], path: Path, recipe: Recipe, base: dict[str, Any]) -> str:
    """The chosen trial's whole recipe, with the recipe's own baseline and teacher check."""
    data = config.apply_overrides(base, [text for key, value in best["values"].items() for text in merged_overrides(key, value)])
    data["name"] = f"{recipe.name}_best"
    data["distill"]["baseline"] = recipe.distill.baseline
    data["distill"]["teacher_check"] = recipe.distill.teacher_check
    plain = config.to_dict(config.validate(data, Recipe, source=str(path)))
    plain.pop("search", None)
    mean = best["val"]["mean"]
    shown = best.get("names") or best["values"]
    head = (f"# The best trial of `potstill sweep` in {path.parent} (trial {best['number']}: "
            f"{' '.join(f'{k}={json.dumps(v)}' for k, v in shown.items())};\n"
            f"# validation mean {mean:.4f} over {len(best['val']['values'])} seed(s)). Train it with: potstill distill {path}\n")
    return head + config.dump_yaml(plain)


def write(path: Path, text: str) -> None:
    guarded(lambda: atomic_write(path, text), path)
