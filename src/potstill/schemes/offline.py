"""Offline distillation: a frozen, pre-trained teacher in eval mode teaches a student.

    L = alpha * CE(student, labels) + sum_i  w_i(epoch) * L_i(student, teacher, batch)
"""

from __future__ import annotations

import torch
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import StepResult, Task, WeightedTerm, hard_label_loss


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm statistics and dropout fixed) and no gradients."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class OfflineDistillation(Task):
    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        terms: list[WeightedTerm],
        alpha: float = 0.5,
        label_smoothing: float = 0.0,
    ) -> None:
        self.teacher = freeze(teacher)
        self.terms = terms
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        # Loss modules live beside the student so their adapters train and are checkpointed with it.
        self.module = nn.ModuleDict({"student": student, "losses": nn.ModuleDict({t.name: t.loss for t in terms})})

    @property
    def model(self) -> nn.Module:
        return self.module["student"]

    def teacher_outputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.teacher.eval()  # the loop calls module.train(); the teacher is not part of it
        with torch.inference_mode():
            logits = self.teacher(batch["input"])
        # clone() outside inference mode makes a normal tensor that autograd may save for backward
        return {"logits": logits.clone()}

    def step(self, batch: Batch, progress: float) -> StepResult:
        weights = {"ce": self.alpha} | {term.name: term.weight_at(progress) for term in self.terms}
        active = [term for term in self.terms if weights[term.name] > 0]
        # a switched-off term costs nothing: no teacher pass once early-stopped KD has ended
        teacher = self.teacher_outputs(batch) if active else {}
        logits = self.model(batch["input"])
        student = {"logits": logits}
        terms = {"ce": self.alpha * hard_label_loss(logits, batch["target"], self.label_smoothing)}
        for term in active:
            terms[term.name] = weights[term.name] * term.loss(student, teacher, batch)
        return StepResult(terms, logits, weights)
