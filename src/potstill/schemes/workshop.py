"""What a scheme may ask of the run that hosts it: the building blocks, as a Protocol.

Schemes sit below the pipeline: they never import it. `potstill.pipeline.Runner` implements this
interface (a test checks every method is there), and each scheme's `run(runner, ...)` receives it.
Reading this file tells a scheme's author everything a scheme can do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from potstill.engine.run import RunDir
    from potstill.engine.task import Task, WeightedTerm
    from potstill.recipe import ModelSpec, Recipe, TeacherSpec, TrainSpec
    from potstill.workbench import Workbench


class Workshop(Protocol):
    recipe: Recipe
    run: RunDir
    bench: Workbench

    def stage(self, name: str, task: Task, spec: TrainSpec, evaluate=None, views: torch.Tensor | None = None,
              loader=None) -> nn.Module:
        """Train one stage (a Task, in the one training loop), or load it when a resumed run finished it.
        `evaluate`: the held-out measure of the task's model (default: top-1 on the data's splits);
        `loader`: the stage's own batches (len(), batches(epoch), device, share(step)) in place of the
        training split's."""

    def teacher(self, spec: TeacherSpec | None = None, stage: str = "teacher", seed: int | None = None) -> nn.Module:
        """The recipe's teacher (or `spec`), loaded from its checkpoint or trained in stage `stage`."""

    def teacher_skeleton(self) -> nn.Module:
        """The teacher architecture with fresh weights: to check names before anything trains."""

    def teacher_file(self, spec: TeacherSpec, stage: str) -> Path:
        """Where a teacher's weights are."""

    def student(self) -> nn.Module:
        """A fresh student of the recipe."""

    def initialise(self, student: nn.Module, teacher: nn.Module, quiet: bool = False) -> None:
        """student.init: start the student from the teacher's weights."""

    def build(self, spec: ModelSpec, role: str, seed: int | None = None) -> nn.Module:
        """A fresh model of any spec (peers, assistants)."""

    def load_weights(self, model: nn.Module, path: Path, what: str, explicit: bool = False) -> nn.Module:
        """Weights and their recorded preprocessing from a safetensors file."""

    def terms(self) -> list[WeightedTerm]:
        """Fresh loss terms of the recipe."""

    def baseline(self, student_init: nn.Module, role: str = "baseline") -> nn.Module | None:
        """The student trained alone with the same budget and initial weights."""

    def transfer(self, name: str, student: nn.Module, teacher: nn.Module | None, teacher_role: str | None = None,
                 architecture: ModelSpec | None = None, make_task=None) -> nn.Module:
        """Offline distillation of `student` from a frozen `teacher` in stage `name`; `make_task`: the
        main stage's Task class in place of OfflineDistillation (same arguments)."""

    def check_teacher(self, teacher: nn.Module) -> None:
        """distill.teacher_check: refuse (or warn about) a teacher near chance on the test split or
        clearly below the student alone (when that has trained)."""

    def refine(self, distilled: nn.Module) -> nn.Module | None:
        """Phase 3: fine-tune a copy of the distilled student on hard labels."""

    def sample_inputs(self) -> dict[str, torch.Tensor]:
        """One training batch's model inputs, for dry runs."""

    def describe_role(self, role: str, title: str | None = None, spec: ModelSpec | None = None,
                      weights: Path | None = None) -> None:
        """What the report says about a model the scheme adds."""


def missing_methods(runner_class: type) -> list[str]:
    """Methods of Workshop that `runner_class` lacks (the pipeline's test asserts none)."""
    wanted = [name for name, value in vars(Workshop).items() if callable(value) and not name.startswith("_")]
    return [name for name in wanted if not callable(getattr(runner_class, name, None))]


__all__ = ["Workshop", "missing_methods"]
