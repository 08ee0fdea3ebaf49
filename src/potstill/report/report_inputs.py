"""What `potstill report` reads from the folders it is given.

    gather(["runs/demo", "runs/demo_seeds"]) -> [ReportedRun, ReportedSeeds]

A run folder (recipe.yaml, metrics.jsonl, and summary.json once finished) becomes a ReportedRun; a
seeds folder (seed<N>/ run folders, and seeds.json once every seed finished) a ReportedSeeds with
one ReportedRun per seed. Folders are recognised by their files (report/folders.py), as `potstill
compare` recognises them. An unfinished run is reported from its epoch records alone (its models
are measured when it finishes); a run with no epoch records is refused, since it has nothing to plot.

The calibration (reliability) and per-class accuracy of each model are in summary.json rows of runs
made since they were added. For an older run, `potstill eval RUN` measures them into RUN/eval.json
(it leaves summary.json as it was), and they are taken from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from potstill.engine.run import RunDir
from potstill.errors import PotstillError
from potstill.report.compare import final_role, find_row
from potstill.report.folders import RunFolder, SeedsFolder, SweepFolder, read_folder, read_json

MEASURED = ("class_acc", "reliability")  # row fields newer than some runs: taken from eval.json when absent


@dataclass
class ReportedRun:
    """One run: `summary` is None while it is unfinished; `from_eval` lists the roles whose
    calibration and per-class accuracy came from eval.json."""

    label: str
    path: Path
    recipe: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any] | None
    from_eval: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """summary.json's model rows (none while unfinished)."""
        return self.summary["models"] if self.summary is not None else []

    @property
    def language_model(self) -> bool:
        """Perplexity is the run's measure: its rows or its epoch records have test_ppl."""
        return any("test_ppl" in row for row in self.rows) or any("test_ppl" in record for record in self.records)

    def stages(self) -> list[str]:
        """The stages that logged epochs, in the order they first did."""
        return list(dict.fromkeys(record["stage"] for record in self.records if "stage" in record))

    def stage_records(self, stage: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record.get("stage") == stage]

    def final_role(self) -> str | None:
        """The role of the run's end product (refined when refined), None while unfinished."""
        return final_role(self.summary) if self.summary is not None else None

    def row(self, role: str) -> dict[str, Any] | None:
        return find_row(self.summary, role) if self.summary is not None else None


@dataclass
class ReportedSeeds:
    """`distill --seeds`: the aggregate over seeds (seeds.json; None until every seed finished)
    and each seed's run."""

    label: str
    path: Path
    aggregate: dict[str, Any] | None
    seeds: list[int]
    runs: list[ReportedRun]  # one per seed, in the order of `seeds`


Reported = ReportedRun | ReportedSeeds


def gather(folders: list[str | Path]) -> list[Reported]:
    """Every folder read for the report, labelled by its name (by the path as given where two
    folders share a name); PotstillError names a folder that cannot be reported and why."""
    if not folders:
        raise PotstillError("report: give at least one run folder (the --run-dir of potstill train or distill)")
    seen: dict[Path, str] = {}
    for given in map(str, folders):
        resolved = Path(given).resolve()
        if resolved in seen:
            raise PotstillError(f"{given} is given twice (as {seen[resolved]} too); give each folder once")
        seen[resolved] = given
    names = [Path(given).resolve().name for given in seen.values()]
    labels = [given if names.count(name) > 1 else name for given, name in zip(seen.values(), names)]
    return [reported(read_folder(given), label) for given, label in zip(seen.values(), labels)]


def reported(found: RunFolder | SeedsFolder | SweepFolder, label: str) -> Reported:
    if isinstance(found, SweepFolder):
        raise PotstillError(f"{found.path} is a {found.kind} folder; report its runs instead: a trial folder "
                            f"({found.path}/trials/...) or, for a sweep, its reference folder")
    if isinstance(found, RunFolder):
        return reported_run(found, label)
    if not found.runs:
        raise PotstillError(f"seeds folder {found.path} holds no started seed yet (no seed<N>/recipe.yaml); "
                            "run potstill distill --seeds first")
    runs = [reported_run(run, f"{label}/seed{seed}") for seed, run in found.runs.items()]
    return ReportedSeeds(label, found.path, found.aggregate, list(found.runs), runs)


def reported_run(found: RunFolder, label: str) -> ReportedRun:
    records = epoch_records(found.path)
    summary, from_eval = found.summary, []
    if summary is not None:
        summary, from_eval = with_eval_measures(summary, found.path)
    return ReportedRun(label, found.path, found.recipe, records, summary, from_eval)


def epoch_records(path: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records; one line naming the file and the fix when there are none."""
    run = RunDir(path)
    if not run.metrics_path.is_file():
        raise PotstillError(f"run folder {path} has no metrics.jsonl, so it has no epoch records to plot; was it made "
                            "by potstill train/distill? (give the --run-dir of such a run)")
    records = [record for record in run.records() if isinstance(record, dict) and "stage" in record]
    if not records:
        raise PotstillError(f"{run.metrics_path} holds no epoch records: the run stopped before its first epoch "
                            f"ended; continue it with potstill distill --resume {path} (or train --resume), then report it")
    return records


def with_eval_measures(summary: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """summary.json with MEASURED fields its rows lack filled in from eval.json's rows of the same
    role; also the roles so filled."""
    lacking = [row for row in summary["models"] if any(row.get(key) is None for key in MEASURED)]
    if not lacking or not (path / "eval.json").is_file():
        return summary, []
    measured = read_json(path / "eval.json")
    rows, filled = [], []
    for row in summary["models"]:
        other = (find_row(measured, row["role"]) if isinstance(measured.get("models"), list) else None) or {}
        extra = {key: other[key] for key in MEASURED if row.get(key) is None and other.get(key) is not None}
        rows.append(row | extra)
        if extra:
            filled.append(row["role"])
    return summary | {"models": rows}, filled


def every_run(items: list[Reported]) -> list[ReportedRun]:
    """Runs and each seed's run, in order: the points of the charts across runs."""
    return [run for item in items for run in (item.runs if isinstance(item, ReportedSeeds) else [item])]
