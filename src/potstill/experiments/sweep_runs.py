"""The runs of a sweep: each trial (and the reference) is an ordinary distill run folder, or a seeds
folder (`seed<N>/` run folders + seeds.json) when the sweep has --seeds. A run a killed sweep left
half done continues from its checkpoint; a finished one is read, never trained again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from potstill import config
from potstill.compress.search_trial import TrialRunner
from potstill.engine.checkpoint import atomic_write
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.stamp import check_resume
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.report.seeds import aggregate
from potstill.startup import check_before_writing
from potstill.workbench import Workbench

HELD_OUT_STAGES_SKIPPED = ("teacher", "baseline")  # the objective is the distilled (or refined) model's


def seed_folders(folder: Path, seeds: list[int] | None) -> list[tuple[int | None, Path]]:
    """(seed, run folder) pairs: the folder itself without --seeds, else folder/seed<N>."""
    if seeds is None:
        return [(None, folder)]
    return [(seed, folder / f"seed{seed}") for seed in seeds]


def run_seeds(recipe: Recipe, folder: Path, seeds: list[int] | None, bench: Workbench, reporter: Reporter,
              first_callbacks: list | None = None, teacher_row: bool = False) -> list[dict[str, Any]]:
    """Every seed's summary (in seed order). `first_callbacks` watch the first seed's epochs (the
    pruner); `teacher_row`: measure the teacher too (the reference run does, trials do not)."""
    summaries = []
    for index, (seed, path) in enumerate(seed_folders(folder, seeds)):
        one = recipe if seed is None else config.validate({**config.to_dict(recipe), "seed": seed}, Recipe, source=str(path))
        callbacks = first_callbacks if index == 0 else None
        summaries.append(run_one(one, path, bench, reporter, callbacks, teacher_row))
    if seeds is not None:
        result = aggregate({seed: summary for seed, summary in zip(seeds, summaries)})
        RunDir(folder).write_json("seeds.json", result)
    return summaries


def run_one(recipe: Recipe, folder: Path, bench: Workbench, reporter: Reporter, callbacks: list | None,
            teacher_row: bool) -> dict[str, Any]:
    """One distill run in `folder`: read when finished, continued when started, else trained."""
    summary_file = folder / "summary.json"
    if summary_file.is_file():
        return json.loads(summary_file.read_text())
    resume = (folder / "recipe.yaml").is_file() and (folder / "run.json").is_file()
    own = Workbench(bench.splits, recipe.data, bench.device)  # the same data, this run's batch size
    if resume:
        check_resume(folder, recipe)
    check_before_writing(recipe, own)
    run = RunDir(folder)
    run.create(resume=resume)
    try:
        if not resume:
            atomic_write(folder / "recipe.yaml", config.dump_yaml(config.to_dict(recipe)))
        runner = Runner if teacher_row else TrialRunner
        return runner(recipe, run, reporter, resume=resume, callbacks=callbacks, bench=own).run_distill()
    finally:
        run.close()


def final_row(summary: dict[str, Any]) -> dict[str, Any]:
    rows = {row["role"]: row for row in summary["models"]}
    return rows.get("refine") or rows[summary.get("final_role", "student")]


def held_out(folder: Path, measure: str) -> float:
    """The last validation value of the distilled (or refined) model in a run folder."""
    values = [r[measure] for r in RunDir(folder).records()
              if measure in r and r.get("stage") not in HELD_OUT_STAGES_SKIPPED]
    return values[-1]


def gain(summary: dict[str, Any], reference: dict[str, Any] | None) -> float | None:
    """Distilled minus alone, same seed: top-1 points, or perplexity change in % for a language
    model; against the run's own baseline row, else the reference run's."""
    rows = {row["role"]: row for row in summary["models"]}
    alone = rows.get("baseline")
    if alone is None and reference is not None:
        alone = next((row for row in reference["models"] if row["role"] == "baseline"), None)
    if alone is None:
        return None
    final = final_row(summary)
    if final.get("test_ppl") is not None:
        return 100 * (final["test_ppl"] / alone["test_ppl"] - 1)
    return 100 * (final["test_acc"] - alone["test_acc"])
