"""One trial of a search: the recipe with the trial's keys set, trained as a distill run in
`trials/trial_<n>/`, watched after every epoch so a hopeless trial stops early."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from potstill import config
from potstill.compress.search_budget import Costs
from potstill.compress.search_space import as_override
from potstill.engine.checkpoint import atomic_write
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.pipeline import Runner
from potstill.recipe import Recipe, SearchPrunerSpec, SearchSpec
from potstill.startup import check_before_writing, preflight
from potstill.workbench import Workbench

WATCHED_STAGE = "student"  # the distillation stage: its validation accuracy decides pruning


class Hopeless(Exception):
    """Raised after an epoch whose validation accuracy is far below the finished trials' median: the trial stops (pruned)."""


def hopeless(curve: list[float], peers: list[list[float]], pruner: SearchPrunerSpec, epochs: int) -> str | None:
    """Why a trial with validation accuracies `curve` (one per epoch so far) should stop, or None.
    `peers`: the curves of finished trials; `epochs`: the trial's epochs (the last one is never cut)."""
    epoch = len(curve)
    if not pruner.enabled or epoch < pruner.warmup_epochs or epoch >= epochs:
        return None
    there = [peer[epoch - 1] for peer in peers if len(peer) >= epoch]
    if len(there) < pruner.min_trials:
        return None
    median = statistics.median(there)
    if curve[-1] >= median - pruner.margin:
        return None
    return (f"validation top-1 {100 * curve[-1]:.2f}% after epoch {epoch} is more than {100 * pruner.margin:g} points below "
            f"the median {100 * median:.2f}% of {len(there)} finished trial(s) there")


class Watch:
    """The epoch callback of a trial's Runner: records the validation curve, stops a hopeless trial."""

    def __init__(self, trial, peers: list[list[float]], pruner: SearchPrunerSpec, epochs: int) -> None:
        self.trial, self.peers, self.pruner, self.epochs = trial, peers, pruner, epochs
        self.curve: list[float] = []

    def __call__(self, stage: str, epochs_done: int, record: dict[str, Any]) -> None:
        if stage != WATCHED_STAGE or "val_acc" not in record:
            return
        self.curve.append(record["val_acc"])
        self.trial.set_user_attr("val_curve", list(self.curve))
        reason = hopeless(self.curve, self.peers, self.pruner, self.epochs)
        if reason is not None:
            raise Hopeless(reason)


class TrialRunner(Runner):
    """A trial's Runner: its summary measures the student alone. The teacher is the same in every
    trial, and measuring it on the test split each time would cost more than a short trial's training."""

    def finish(self, models, final: str = "student", annotate=None) -> dict[str, Any]:
        return super().finish([(role, model) for role, model in models if role != "teacher"], final, annotate)


class TrialRun:
    """Builds and trains the trials of one search from its shared base recipe."""

    def __init__(self, base: dict[str, Any], folder: Path, bench: Workbench, costs: Costs, spec: SearchSpec,
                 reporter: Reporter, teacher_checked: bool) -> None:
        self.base, self.folder, self.bench, self.costs, self.spec, self.reporter = base, folder, bench, costs, spec, reporter
        self.teacher_checked = teacher_checked  # distill.teacher_check runs in the first trial only: one teacher

    def recipe(self, values: dict[str, Any], number: int) -> Recipe:
        data = config.apply_overrides(self.base, [as_override(key, value) for key, value in values.items()])
        data["name"] = f"{data['name']}_trial_{number}"
        if self.teacher_checked:
            data["distill"]["teacher_check"] = "off"
        recipe = config.validate(data, Recipe, source=f"trial {number}")
        preflight(recipe, "distill")
        return recipe

    def folder_of(self, number: int) -> Path:
        return self.folder / "trials" / f"trial_{number}"

    def train(self, trial, recipe: Recipe, folder: Path, peers: list[list[float]]) -> dict[str, float]:
        """A distill run of `recipe` in `folder`; its final model's validation and test top-1."""
        bench = Workbench(self.bench.splits, recipe.data, self.bench.device)  # the same data, this trial's batch size
        check_before_writing(recipe, bench)
        run = RunDir(folder)
        run.create(resume=False)
        try:
            atomic_write(folder / "recipe.yaml", config.dump_yaml(config.to_dict(recipe)))
            epochs = recipe.train.epochs
            watch = Watch(trial, peers, self.spec.pruner, epochs)
            summary = TrialRunner(recipe, run, self.reporter, callbacks=[watch], bench=bench).run_distill()
            self.teacher_checked = True
        finally:
            run.close()
        rows = {row["role"]: row for row in summary["models"]}
        final = rows.get("refine") or rows[summary.get("final_role", "student")]
        held_out = [r["val_acc"] for r in run.records() if "val_acc" in r and r.get("stage") not in ("teacher", "baseline")]
        return {"val_acc": held_out[-1], "test_acc": final["test_acc"]}


def trial_record(trial) -> dict[str, Any]:
    """One trial as search.json lists it."""
    attrs = trial.user_attrs
    state = trial.state.name.lower()
    outcome = attrs.get("outcome") or {"fail": "interrupted", "running": "running"}.get(state, state)
    record = {"number": trial.number, "outcome": outcome, "state": state, "values": attrs.get("values")}
    for key in ("val_acc", "test_acc", "params", "latency_ms", "folder", "seconds", "reason", "repeat_of", "retry_of", "val_curve"):
        if key in attrs:
            record[key] = attrs[key]
    return record
