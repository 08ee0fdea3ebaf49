"""Self-distillation from earlier epochs: the teacher is the student itself, as it was.

    last_epoch: the teacher is the student's weights at the end of the previous epoch, as in
                progressive self-knowledge distillation (PS-KD, Kim, Ji, Yoon & Hwang, ICCV 2021,
                arXiv 2006.12000: the model's own last-epoch predictions become its soft targets)
    ema:        the teacher is an exponential moving average of the student's weights, updated
                every step, theta_t <- d * theta_t + (1 - d) * theta_s (the mean teacher of
                Tarvainen & Valpola, NeurIPS 2017, used as a self-distillation teacher)

The recipe's logit terms compare the student with that teacher from `start_epoch` on (before it,
the teacher is a barely trained network and the terms are off); their weights and schedules
apply as usual, so PS-KD's growing weight is `schedule: {warmup_epochs: E}`. The teacher copy and
the epoch it was taken at live in the stage's module, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import StepResult, Task, WeightedTerm, hard_label_loss
from potstill.errors import PotstillError
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.offline import freeze, frozen_forward, named

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop

Source = Literal["last_epoch", "ema"]


class SnapshotTeacher(nn.Module):
    """A frozen copy of the student and the epoch its weights were taken at (-1: not yet)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.model = freeze(copy.deepcopy(student))
        self.register_buffer("epoch", torch.tensor(-1))
        self.averaged = {name for name, _ in self.model.named_parameters()}

    @torch.no_grad()
    def copy_from(self, student: nn.Module, epoch: int) -> None:
        for target, source in zip(self.model.state_dict().values(), student.state_dict().values()):
            target.copy_(source)
        self.epoch.fill_(epoch)

    @torch.no_grad()
    def average_from(self, student: nn.Module, decay: float) -> None:
        """theta_t <- d theta_t + (1 - d) theta_s for weights; buffers (BatchNorm statistics) copied."""
        for (name, target), source in zip(self.model.state_dict().items(), student.state_dict().values()):
            if name in self.averaged:
                target.mul_(decay).add_(source, alpha=1 - decay)
            else:
                target.copy_(source)


class SnapshotDistillation(Task):
    def __init__(self, student: nn.Module, terms: list[WeightedTerm], source: Source = "last_epoch", ema_decay: float = 0.999,
                 start_epoch: int = 1, alpha: float = 0.5, label_smoothing: float = 0.0) -> None:
        self.terms, self.source, self.ema_decay, self.start_epoch = terms, source, ema_decay, start_epoch
        self.alpha, self.label_smoothing = alpha, label_smoothing
        self.teacher = SnapshotTeacher(student)
        self.module = nn.ModuleDict({"student": student, "teacher": self.teacher, "losses": nn.ModuleDict({t.name: t.loss for t in terms})})

    @property
    def model(self) -> nn.Module:
        return self.module["student"]

    def update_teacher(self, epoch: int) -> None:
        if self.source == "ema":
            self.teacher.average_from(self.model, self.ema_decay)
        elif epoch > int(self.teacher.epoch):  # first step of an epoch: take last epoch's weights
            self.teacher.copy_from(self.model, epoch)

    def step(self, batch: Batch, progress: float) -> StepResult:
        epoch = int(progress)
        self.update_teacher(epoch)
        on = epoch >= self.start_epoch
        weights = {"ce": self.alpha} | {term.name: term.weight_at(progress) if on else 0.0 for term in self.terms}
        logits = self.run(self.model, batch)  # (B, K)
        terms = {"ce": self.alpha * hard_label_loss(logits, batch["target"], self.label_smoothing)}
        active = [term for term in self.terms if weights[term.name] > 0]
        if active:
            teacher_logits, _ = frozen_forward(self.teacher.model, None, batch)
            for term in active:
                terms[term.name] = weights[term.name] * term.on_logits(logits, teacher_logits, batch)
        return StepResult(terms, logits, weights)


@SCHEMES.register("snapshot")
class Snapshot(Scheme):
    """The student's own earlier weights (last epoch, or a moving average) teach it."""

    teacher = "none"
    cache = False
    logits_only = True

    def __init__(self, source: Source = "last_epoch", ema_decay: float = 0.999, start_epoch: int = 1) -> None:
        """source: last_epoch or ema; ema_decay: d of the moving average; start_epoch: first epoch (0-based) with a teacher."""
        if not 0.0 <= ema_decay < 1.0:
            raise PotstillError(f"scheme.args.ema_decay must be in [0, 1), got {ema_decay}; 0.999 is usual")
        if start_epoch < 0 or (source == "last_epoch" and start_epoch < 1):
            raise PotstillError(
                f"scheme.args.start_epoch: the last epoch's weights exist from epoch 1 on, got {start_epoch}; set start_epoch: 1 or more"
            )
        self.source, self.ema_decay, self.start_epoch = source, ema_decay, start_epoch

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if self.start_epoch >= recipe.train.epochs:
            raise PotstillError(
                f"scheme.args.start_epoch is {self.start_epoch} but train.epochs is {recipe.train.epochs}, so no epoch would "
                "distil; lower start_epoch or train longer"
            )

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        student_init = student if student is not None else runner.student()
        models = named("baseline", runner.baseline(student_init))
        task = SnapshotDistillation(student_init, runner.terms(), self.source, self.ema_decay, self.start_epoch,
                                    recipe.distill.alpha, recipe.train.label_smoothing)
        runner.describe_role("student", f"self-distilled ({self.source.replace('_', ' ')})")
        return models + [("student", runner.stage("student", task, recipe.train))]
