"""`potstill compare FOLDER ...`: many runs in one table, and the settings that differ between them.

    compare(["runs/t2", "runs/t4_seeds", "runs/sweep"]) -> {"runs": [...], "rows": [...], "differences": {...}}

Every folder becomes one or more compared runs (folders.py says what each folder holds): a run
folder is one run, a seeds folder one run whose measures are mean ± sample std over its seeds,
a sweep or search one run per complete trial (its best marked) plus a sweep's reference run.
Each run gives one row per model (teacher, student alone, distilled, ...) with the same fields,
so the JSON and the CSV are plain tables. The recipe diff holds only the dotted recipe keys whose
values differ between the runs; name, output_dir and seed are left out (every run has its own),
and each run's seeds are listed with the run instead.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potstill.engine.checkpoint import atomic_write, guarded
from potstill.errors import PotstillError
from potstill.report.folders import Finished, RunFolder, SeedsFolder, SweepFolder, read_folder
from potstill.report.seeds import GAINS, paired_gain

QUALITY = ("test_acc", "test_ppl", "test_bpb", "teacher_agreement", "ece", "macro_f1")  # mean and std over seeds
COST = ("params", "size_bytes", "latency_batch1_ms", "latency_ms", "latency_batch_size", "train_time_s")  # mean only
# (runtime, its field) -> row field: what `potstill export` added to a row
DEPLOYED = {("onnx", "latency_b1_p50_ms"): "onnx_latency_b1_ms", ("int8", "test_acc"): "int8_test_acc",
            ("int8", "latency_b1_p50_ms"): "int8_latency_b1_ms"}
GAIN_FIELDS = {"distillation_gain_points": "gain_points", "perplexity_change_pct": "ppl_change_pct"}
ROW_FIELDS = ["run", "role", "title", "best", "seeds",
              *(name for key in (*QUALITY, *GAIN_FIELDS.values()) for name in (key, f"{key}_std")),
              *COST, *DEPLOYED.values()]
NOT_COMPARED = ("name", "output_dir", "seed")  # every run has its own; seeds are listed with each run


@dataclass
class Compared:
    """One compared run: where it came from, its summaries (one per seed; none while unfinished)."""

    label: str
    given: str  # the folder as the user gave it, to tell apart runs whose folders share a name
    folder: Path
    kind: str  # run, seeds, sweep trial, search trial, sweep reference
    summaries: list[dict[str, Any]]
    seeds: list[int]
    recipe: dict[str, Any] | None
    best: bool = False
    values: dict[str, Any] | None = None
    trial_gain: dict[str, list[float]] | None = None  # {row field: per-seed gains} a sweep measured against its reference
    suffix: str = ""


def compare(folders: list[str | Path]) -> dict[str, Any]:
    """{"runs": one entry per compared run, "rows": one per (run, model), "differences":
    {dotted recipe key: {run label: value}}}, from run, seeds, sweep and search folders."""
    if not folders:
        raise PotstillError("compare: give at least one folder")
    seen: dict[Path, str] = {}
    runs: list[Compared] = []
    for given in map(str, folders):
        resolved = Path(given).resolve()
        if resolved in seen:
            raise PotstillError(f"{given} is given twice (as {seen[resolved]} too); give each folder once")
        seen[resolved] = given
        runs += compared_runs(read_folder(given), given)
    name_runs(runs)
    return {"runs": [run_entry(run) for run in runs],
            "rows": [row for run in runs for row in model_rows(run)],
            "differences": recipe_differences({run.label: run.recipe for run in runs if run.recipe is not None})}


def compared_runs(found: RunFolder | SeedsFolder | SweepFolder, given: str) -> list[Compared]:
    name = Path(given).resolve().name
    if isinstance(found, SweepFolder):
        return sweep_runs(found, given, name)
    return [one_run(found, given, name, "run" if isinstance(found, RunFolder) else "seeds")]


def one_run(found: Finished, given: str, name: str, kind: str, suffix: str = "") -> Compared:
    """A run folder, or a seeds folder as one run over its seeds."""
    if isinstance(found, RunFolder):
        summaries = [found.summary] if found.summary is not None else []
        seed = found.recipe.get("seed")
        return Compared(name + suffix, given, found.path, kind, summaries, [seed] if isinstance(seed, int) else [],
                        found.recipe, suffix=suffix)
    finished = found.aggregate is not None
    summaries = [run.summary for run in found.runs.values()] if finished else []
    recipe = next(iter(found.runs.values())).recipe if found.runs else None
    return Compared(name + suffix, given, found.path, "seeds" if kind == "run" else kind, summaries, list(found.runs),
                    recipe, suffix=suffix)


def sweep_runs(sweep: SweepFolder, given: str, name: str) -> list[Compared]:
    """The reference run (a sweep's, when it made one) and every complete trial, labelled by number."""
    measure = (sweep.record.get("objective") or {}).get("measure")
    gain_field = "ppl_change_pct" if measure == "val_ppl" else "gain_points"
    runs = []
    if sweep.reference is not None:
        runs.append(one_run(sweep.reference, given, name, f"{sweep.kind} reference", " reference"))
    for trial in sweep.trials:
        if trial.folder is None:
            continue  # pruned, failed, interrupted or a repeat: nothing measured on the test split
        run = one_run(trial.folder, given, name, f"{sweep.kind} trial", f" trial {trial.number}")
        run.best, run.values = trial.number == sweep.best, trial.values
        if isinstance(trial.record.get("gain"), dict):
            run.trial_gain = {gain_field: trial.record["gain"].get("values") or []}
        runs.append(run)
    if not runs:  # nothing finished yet: shown as unfinished rather than left out
        runs.append(Compared(name, given, sweep.path, sweep.kind, [], [], None))
    return runs


def name_runs(runs: list[Compared]) -> None:
    """Labels are folder names; runs whose folders share a name are labelled by the folder as given."""
    shared = {run.label for run in runs if sum(other.label == run.label for other in runs) > 1}
    for run in runs:
        if run.label in shared:
            run.label = run.given + run.suffix


def run_entry(run: Compared) -> dict[str, Any]:
    entry = {"label": run.label, "kind": run.kind, "folder": str(run.folder),
             "status": "finished" if run.summaries else "unfinished", "seeds": run.seeds, "best": run.best,
             "values": run.values}
    gain = seed_gain(run)
    if gain is not None:
        entry["gain"] = gain
    return entry


def seed_gain(run: Compared) -> dict[str, Any] | None:
    """Over two or more seeds: the paired gain per seed, its mean ± std and the verdict against seed
    noise; perplexity decides for language models, top-1 points for classifiers."""
    per_seed = gain_values(run)
    for key, name in reversed(GAIN_FIELDS.items()):
        if len(per_seed.get(name, [])) > 1:
            unit, better = GAINS[key]
            return paired_gain([float(value) for value in per_seed[name]], unit, better)
    return None


def model_rows(run: Compared) -> list[dict[str, Any]]:
    """One row per model the run's seeds all have, every field of ROW_FIELDS (None where absent)."""
    if not run.summaries:
        return []
    first = run.summaries[0]
    final = final_role(first)
    rows = []
    for model in first["models"]:
        per_seed = [find_row(summary, model["role"]) for summary in run.summaries]
        if any(row is None for row in per_seed):
            continue  # a model only some seeds have cannot be averaged over seeds
        row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
        row |= {"run": run.label, "role": model["role"], "title": model.get("title", model["role"]), "best": run.best,
                "seeds": len(run.summaries)}
        for key in QUALITY:
            row[key], row[f"{key}_std"] = mean_std([r.get(key) for r in per_seed])
        for key in COST:
            row[key] = mean_std([r.get(key) for r in per_seed])[0]
        for (runtime, key), name in DEPLOYED.items():
            row[name] = mean_std([(r.get(runtime) or {}).get(key) for r in per_seed])[0]
        if model["role"] == final:
            row |= gains(run)
        rows.append(row)
    return rows


def gains(run: Compared) -> dict[str, Any]:
    """The final model's row fields of the gain over the student alone (mean and std over seeds)."""
    per_seed = gain_values(run)
    found = {}
    for name in GAIN_FIELDS.values():
        found[name], found[f"{name}_std"] = mean_std(per_seed.get(name, []))
    return found


def gain_values(run: Compared) -> dict[str, list[float]]:
    """{row field: the gain per seed}, paired (distilled minus alone of the same seed): from the
    summaries, or for a sweep trial that trained no student alone, what the sweep measured against
    its reference run's."""
    found = {}
    for key, name in GAIN_FIELDS.items():
        values = [summary.get(key) for summary in run.summaries]
        if values and mean_std(values)[0] is not None:
            found[name] = values
    for name, values in (run.trial_gain or {}).items():
        found.setdefault(name, values)
    return found


def final_role(summary: dict[str, Any]) -> str:
    roles = {row["role"] for row in summary["models"]}
    return "refine" if "refine" in roles else summary.get("final_role", "student")


def find_row(summary: dict[str, Any], role: str) -> dict[str, Any] | None:
    return next((row for row in summary["models"] if row["role"] == role), None)


def mean_std(values: list[Any]) -> tuple[float | None, float | None]:
    """Mean and sample std of numbers given for every seed (std None for one seed); (None, None)
    when one is missing. Equal values are kept as they are (params stay integers)."""
    if not values or any(not isinstance(value, (int, float)) or isinstance(value, bool) for value in values):
        return None, None
    mean = values[0] if len(set(values)) == 1 else statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested recipe as {dotted key: value}; lists and empty mappings are values, as --set writes them."""
    flat = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, dotted + ".")
        else:
            flat[dotted] = value
    return flat


def recipe_differences(recipes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{dotted key: {label: value}} for the keys whose values differ between the recipes, in recipe
    order; a run whose recipe lacks the key is left out of that key's mapping."""
    flat = {label: flatten(recipe) for label, recipe in recipes.items()}
    keys = list(dict.fromkeys(key for values in flat.values() for key in values))
    differences = {}
    for key in keys:
        if key in NOT_COMPARED:
            continue
        present = {label: values[key] for label, values in flat.items() if key in values}
        shown = list(present.values())
        if len(present) < len(flat) or any(not same(value, shown[0]) for value in shown[1:]):
            differences[key] = present
    return differences


def same(first: Any, second: Any) -> bool:
    """Equal as recipe values: 4 and 4.0 are the same temperature, true and 1 are not the same value."""
    if isinstance(first, bool) or isinstance(second, bool):
        return type(first) is type(second) and first == second
    return first == second


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The rows as CSV (one column per ROW_FIELDS entry; empty where absent), written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    guarded(lambda: atomic_write(path, text.getvalue()), path)
