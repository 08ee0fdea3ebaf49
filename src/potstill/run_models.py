"""A finished run's models rebuilt from its recipe, summary and weights files (`potstill eval`,
`potstill export`)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from potstill.compress.prune import example_input, replay
from potstill.models import MODELS
from potstill.pipeline import Runner
from potstill.recipe import ModelSpec


def finished_model(runner: Runner, role: str) -> nn.Module | None:
    """A stage's trained model rebuilt from the saved recipe and its model.safetensors, if present."""
    recipe, weights = runner.recipe, runner.run.stage(role) / "model.safetensors"
    if not weights.is_file():
        if role == "teacher" and recipe.teacher is not None and recipe.teacher.checkpoint:
            return runner.teacher()  # the run used an external teacher checkpoint
        return None
    spec = recipe.teacher.model if role == "teacher" else recipe.student
    return runner.load_weights(runner.build(spec, role), weights, role)


def saved_models(runner: Runner):
    """(role, title, model or None, weights file) for each row of the run's summary.json, rebuilt
    from its architecture and weights file; a run without a summary: its offline stages."""
    summary_file = runner.run.path / "summary.json"
    rows = json.loads(summary_file.read_text())["models"] if summary_file.is_file() else []
    if not any("weights" in row for row in rows):  # unfinished, or made before rows named their files
        for role in ("teacher", "baseline", "student", "refine"):
            model = finished_model(runner, role)
            if model is not None:
                yield role, None, model, runner.run.stage(role) / "model.safetensors"
        return
    for row in rows:
        weights = row.get("weights")
        architecture = row.get("architecture", {})
        if weights is None or architecture.get("name") not in MODELS:
            yield row["role"], row["title"], None, None
            continue
        path = Path(weights) if Path(weights).is_absolute() else runner.run.path / weights
        spec = ModelSpec(architecture["name"], architecture.get("args", {}), input=architecture.get("input", "input"))
        model = runner.build(spec, row["role"])
        model = replay(model, architecture.get("prune"), example_input(runner.bench.splits.input_shape, runner.bench.device))
        yield row["role"], row["title"], runner.load_weights(model, path, row["role"]), path
