"""Preparation: losses that pre-train modules of their own on the teacher's outputs before the
student learns (Factor Transfer's paraphraser, an auto-encoder of the teacher's features).

The teacher stays frozen; only the preparing losses' parameters train. The stage's "model" is
those losses, so its checkpoint and model.safetensors hold exactly what was prepared.
"""

from __future__ import annotations

from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import StepResult, Task, WeightedTerm
from potstill.schemes.offline import freeze, frozen_forward, tapped
from potstill.taps import Taps


class Preparation(Task):
    def __init__(self, teacher: nn.Module, terms: list[WeightedTerm]) -> None:
        self.teacher = freeze(teacher)
        self.terms = [term for term in terms if term.loss.prepare_epochs > 0]
        self.teacher_taps = Taps(teacher, tapped(self.terms, "teacher"), "teacher")
        self.module = nn.ModuleDict({term.name: term.loss for term in self.terms})

    @property
    def model(self) -> nn.Module:
        return self.module

    def step(self, batch: Batch, progress: float) -> StepResult:
        logits, features = frozen_forward(self.teacher, self.teacher_taps, batch)
        terms = {
            f"{term.name}_prepare": term.loss.preparation_loss(term.view(logits, features, "teacher"))
            for term in self.terms
        }
        return StepResult(terms, None, {name: 1.0 for name in terms})
