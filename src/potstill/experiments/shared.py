"""What the trials of a search or a sweep share: one teacher (trained once when the recipe gives no
checkpoint) and one teacher-output cache, so trials differ only in what is varied and a trial costs
about what training the student alone costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from potstill import config
from potstill.engine.checkpoint import atomic_write
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.workbench import Workbench

TEACHER_RUN = "teacher_run"


def shared_base(base: dict[str, Any], folder: Path, bench: Workbench, reporter: Reporter, what: str) -> dict[str, Any]:
    """A copy of the recipe `base` (a plain dict) whose teacher is a checkpoint (trained once in
    folder/TEACHER_RUN if the recipe trains it) and whose cache lives in folder/teacher_cache unless
    the recipe names one. `what`: "search" or "sweep", for messages."""
    base = json.loads(json.dumps(base))
    cache = base["distill"]["cache"]
    cache["path"] = cache["path"] or str(folder / "teacher_cache")
    data = base["data"]
    if cache["enabled"] == "auto" and (data.get("hflip") or data.get("crop_padding")):
        reporter.message(f"{what}: data augmentation with distill.cache.enabled auto: the teacher runs in every trial; "
                         "set distill.cache.enabled: true (with views > 1) to cache augmented views once")
    if base["teacher"] is not None and base["teacher"]["checkpoint"] is None:
        base["teacher"]["checkpoint"] = str(teacher_once(folder, base, bench, reporter, what))
    return base


def teacher_once(folder: Path, base: dict[str, Any], bench: Workbench, reporter: Reporter, what: str) -> Path:
    """The recipe's teacher, trained once in folder/TEACHER_RUN (continued if a killed search or
    sweep left it half done); the run folder, which teacher.checkpoint accepts."""
    run = RunDir(folder / TEACHER_RUN)
    if (run.path / "summary.json").is_file():
        return run.path
    resume = (run.path / "recipe.yaml").is_file()
    recipe = config.validate(base, Recipe, source=f"the {what} recipe")
    run.create(resume=resume)
    try:
        if not resume:
            atomic_write(run.path / "recipe.yaml", config.dump_yaml(config.to_dict(recipe)))
        reporter.message(f"{what}: training the teacher once in {run.path}")
        Runner(recipe, run, reporter, resume=resume, bench=bench).run_train()
    finally:
        run.close()
    return run.path
