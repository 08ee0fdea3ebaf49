"""What a folder that potstill wrote holds: one run, one run per seed, or a sweep or search.

    read_folder("runs/demo")        -> RunFolder    recipe.yaml (+ summary.json once finished)
    read_folder("runs/demo_seeds")  -> SeedsFolder  seed<N>/ run folders (+ seeds.json once all finished)
    read_folder("runs/demo_sweep")  -> SweepFolder  sweep.json or search.json + trials/<trial>/

A folder is recognised by the files in it, never by its name. `potstill compare` reads folders
this way, and so can any command that reports on finished work; a folder holding none of these is
refused with one line that names it and says what a run folder holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from potstill.config import load_yaml_file
from potstill.errors import PotstillError

KINDS_TEXT = ("a run folder holds recipe.yaml and, once finished, summary.json (potstill train/distill --run-dir); "
              "a seeds folder seed<N>/ and seeds.json (distill --seeds); a sweep folder sweep.json (potstill sweep); "
              "a search folder search.json (potstill search)")
SEED_FOLDER = re.compile(r"^seed(\d+)$")


@dataclass
class RunFolder:
    """One run: its recipe as saved (a plain mapping) and summary.json (None while unfinished)."""

    path: Path
    recipe: dict[str, Any]
    summary: dict[str, Any] | None


@dataclass
class SeedsFolder:
    """`distill --seeds`: a run folder per seed (by seed), and seeds.json once every seed finished."""

    path: Path
    runs: dict[int, RunFolder]
    aggregate: dict[str, Any] | None


Finished = RunFolder | SeedsFolder  # what a trial or a reference run is


@dataclass
class Trial:
    """One trial of a sweep or search as its record lists it; `folder` is read for complete trials only."""

    number: int
    values: dict[str, Any]
    outcome: str
    record: dict[str, Any]  # the trial's entry in sweep.json / search.json
    folder: Finished | None


@dataclass
class SweepFolder:
    """`potstill sweep` or `potstill search` (kind): its record, every trial, the chosen trial's
    number, and the sweep's reference run (the recipe as written; sweeps only, when it made one)."""

    path: Path
    kind: str
    record: dict[str, Any]
    trials: list[Trial]
    best: int | None
    reference: Finished | None


def read_folder(path: str | Path) -> RunFolder | SeedsFolder | SweepFolder:
    """The folder's contents by kind; PotstillError for a path that is no such folder."""
    path = Path(path)
    if not path.exists():
        raise PotstillError(f"{path} does not exist; give a folder potstill wrote: {KINDS_TEXT}")
    if not path.is_dir():
        raise PotstillError(f"{path} is a file, not a run folder; {KINDS_TEXT}")
    if (path / "sweep.json").is_file():
        return read_sweep(path, "sweep")
    if (path / "search.json").is_file():
        return read_sweep(path, "search")
    if (path / "seeds.json").is_file() or (not (path / "recipe.yaml").exists() and seed_folders(path)):
        return read_seeds(path)
    if (path / "recipe.yaml").is_file() or (path / "summary.json").is_file():
        return read_run(path)
    raise PotstillError(f"{path} is not a run folder: it holds no recipe.yaml, summary.json, seeds.json, sweep.json or "
                        f"search.json; {KINDS_TEXT}{inner_runs_hint(path)}")


def inner_runs_hint(path: Path) -> str:
    """For a folder of run folders: '; its subfolders a, b, ... are: give those'."""
    marks = ("recipe.yaml", "seeds.json", "sweep.json", "search.json")
    inner = sorted(entry.name for entry in path.iterdir() if entry.is_dir() and any((entry / m).is_file() for m in marks))
    if not inner:
        return ""
    shown = ", ".join(inner[:3]) + (f" and {len(inner) - 3} more" if len(inner) > 3 else "")
    return f"; its subfolders {shown} are: give those"


def read_run(path: Path) -> RunFolder:
    recipe_file, summary_file = path / "recipe.yaml", path / "summary.json"
    if not recipe_file.is_file():
        raise PotstillError(f"run folder {path} has no recipe.yaml (the recipe the run was made with, written when it "
                            "starts); give the folder of a potstill train/distill run")
    summary = read_json(summary_file) if summary_file.is_file() else None
    if summary is not None and not isinstance(summary.get("models"), list):
        raise PotstillError(f"{summary_file} has no list of models; it is not a summary potstill wrote")
    return RunFolder(path, load_yaml_file(recipe_file), summary)


def seed_folders(path: Path) -> dict[int, Path]:
    """The seed<N> subfolders of `path`, by seed, in seed order."""
    found = {}
    for entry in path.iterdir():
        match = SEED_FOLDER.match(entry.name)
        if match and entry.is_dir():
            found[int(match.group(1))] = entry
    return dict(sorted(found.items()))


def read_seeds(path: Path) -> SeedsFolder:
    """With seeds.json: the seeds it names, every one finished; without: the seeds started so far."""
    aggregate = read_json(path / "seeds.json") if (path / "seeds.json").is_file() else None
    if aggregate is None:
        started = {seed: folder for seed, folder in seed_folders(path).items() if (folder / "recipe.yaml").is_file()}
        return SeedsFolder(path, {seed: read_run(folder) for seed, folder in started.items()}, None)
    runs = {}
    for seed, name in (aggregate.get("runs") or {str(seed): f"seed{seed}" for seed in aggregate.get("seeds", [])}).items():
        run = read_run(path / name) if (path / name).is_dir() else None
        if run is None or run.summary is None:
            raise PotstillError(f"{path}/seeds.json names seed {seed}, but {path / name} holds no finished run; run the "
                                "same potstill distill --seeds command again to finish it")
        runs[int(seed)] = run
    if not runs:
        raise PotstillError(f"{path}/seeds.json names no seeds; run potstill distill --seeds again to rewrite it")
    return SeedsFolder(path, runs, aggregate)


def read_sweep(path: Path, kind: str) -> SweepFolder:
    """A sweep's or search's record and its trials; the folders of complete trials are read."""
    record = read_json(path / f"{kind}.json")
    trials = []
    for entry in record.get("trials") or []:
        outcome = entry.get("outcome") or entry.get("state") or "unknown"
        folder = trial_folder(path, entry) if outcome == "complete" else None
        trials.append(Trial(int(entry["number"]), entry.get("values") or {}, outcome, entry, folder))
    best = record.get("best")
    if isinstance(best, dict):  # a record that keeps the whole best trial, not just its number
        best = best.get("number")
    reference = None
    if isinstance(record.get("reference"), dict) and (path / record["reference"].get("folder", "reference")).is_dir():
        reference = finished_folder(path / record["reference"].get("folder", "reference"), path)
    return SweepFolder(path, kind, record, trials, best, reference)


def trial_folder(path: Path, entry: dict[str, Any]) -> Finished:
    folder = path / entry.get("folder", f"trials/trial_{entry['number']}")
    if not folder.is_dir():
        raise PotstillError(f"{path}: trial {entry['number']} is complete but its folder {folder} is missing; "
                            "compare a whole sweep or search folder, as potstill wrote it")
    return finished_folder(folder, path)


def finished_folder(folder: Path, parent: Path) -> Finished:
    """A trial or reference folder: a run or seeds folder, nothing else."""
    found = read_folder(folder)
    if isinstance(found, SweepFolder):
        raise PotstillError(f"{folder} in {parent} holds a sweep or search, not a run; compare it on its own")
    return found


def read_json(file: Path) -> dict[str, Any]:
    """A JSON object from a file potstill wrote; one line naming the file when it is damaged."""
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise PotstillError(f"cannot read {file}: {getattr(error, 'strerror', None) or error}") from None
    except json.JSONDecodeError as error:
        raise PotstillError(f"{file} is not valid JSON ({error.msg} at line {error.lineno}); it was cut short or edited: "
                            "run the command that wrote it again") from None
    if not isinstance(data, dict):
        raise PotstillError(f"{file} does not hold a JSON object; it is not a file potstill wrote")
    return data
