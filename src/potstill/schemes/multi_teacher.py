"""Multi-teacher distillation: several frozen teachers, possibly of different architectures, whose
soft targets are combined into one (You, Xu, Xu & Tao, "Learning from Multiple Teacher Networks",
KDD 2017, averages the teachers' softened outputs; that average is the baseline of the literature).

For a term with temperature T (1 for a loss without one) the teachers' distributions are mixed and
turned back into logits that give exactly that mixture at T:

    p_T(x) = sum_i w_i(x) softmax(z_i(x) / T)        teacher logits = T * log p_T(x)

    mean:        w_i = 1 / M
    weights:     w_i = the recipe's fixed weights, normalised to sum to 1
    confidence:  w_i(x) = softmax_i(-H_i(x)),  H_i = entropy of softmax(z_i(x)): per sample, a surer
                 teacher counts more (CA-MKD, Zhang, Chen & Wang, ICASSP 2022, weights teachers by
                 their cross-entropy to the label; entropy needs no label, so it also works for
                 the ensemble's own test-time predictions)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import WeightedTerm
from potstill.errors import PotstillError
from potstill.model_io import WHOLE_BATCH, attach_io, call_model
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.offline import OfflineDistillation, freeze, frozen_forward, named

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop

Rule = Literal["mean", "weights", "confidence"]


def teacher_weights(logits: torch.Tensor, rule: Rule, fixed: list[float] | None = None) -> torch.Tensor:
    """Each teacher's weight for each sample, (M, B), summing to 1 over teachers. logits: (M, B, K)."""
    count, batch = logits.shape[:2]
    if rule == "mean":
        return logits.new_full((count, batch), 1.0 / count)
    if rule == "weights":
        weights = torch.tensor(fixed, dtype=logits.dtype, device=logits.device)
        return (weights / weights.sum())[:, None].expand(count, batch)
    probabilities = logits.float().softmax(dim=-1)
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(dim=-1)  # (M, B)
    return (-entropy).softmax(dim=0).to(logits.dtype)


def combine(logits: torch.Tensor, temperature: float, rule: Rule, fixed: list[float] | None = None) -> torch.Tensor:
    """Logits (B, K) whose softmax at `temperature` is the weighted mixture of the teachers' (M, B, K)."""
    weights = teacher_weights(logits, rule, fixed)  # (M, B), from the plain (T = 1) predictions
    mixture = (weights[..., None] * F.softmax(logits / temperature, dim=-1)).sum(dim=0)  # (B, K)
    return temperature * mixture.clamp_min(1e-12).log()


class TeacherEnsemble(nn.Module):
    """The teachers as one model: forward gives the combined logits at T = 1 (reported, evaluated)."""

    def __init__(self, teachers: list[nn.Module], rule: Rule = "mean", fixed: list[float] | None = None) -> None:
        super().__init__()
        self.teachers = nn.ModuleList(teachers)
        self.rule, self.fixed = rule, fixed
        attach_io(self, WHOLE_BATCH)  # each teacher is called with its own convention

    def every_teacher(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([call_model(teacher, batch) for teacher in self.teachers])  # (M, B, K)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return combine(self.every_teacher(batch), 1.0, self.rule, self.fixed)


class MultiTeacherDistillation(OfflineDistillation):
    """Offline distillation whose teacher side is the ensemble, combined at each term's temperature."""

    def __init__(self, student: nn.Module, ensemble: TeacherEnsemble, terms: list[WeightedTerm], alpha: float = 0.5,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(student, ensemble, terms, alpha, label_smoothing)
        self.ensemble = ensemble

    def models_to_compile(self) -> list[nn.Module]:
        return [self.model]

    def teacher_outputs(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self.timed("teacher"):  # (M, B, K): every teacher's logits
            return frozen_forward(self.ensemble, None, batch, self.ensemble.every_teacher)

    def teacher_view(self, term: WeightedTerm, logits: torch.Tensor, features: dict[str, torch.Tensor]) -> dict:
        temperature = float(getattr(term.loss, "temperature", 1.0))
        return term.view(combine(logits, temperature, self.ensemble.rule, self.ensemble.fixed), {}, "teacher")


@SCHEMES.register("multi_teacher")
class MultiTeacher(Scheme):
    """Several teachers (scheme.teachers) teach one student through their combined soft targets."""

    teacher = "none"
    model_lists = ("teachers",)
    cache = False
    logits_only = True

    def __init__(self, combine: Rule = "mean", weights: list[float] | None = None) -> None:
        """combine: mean, weights (fixed, from `weights`) or confidence (per-sample, by entropy)."""
        self.rule, self.weights = combine, weights

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        if recipe.teacher is not None or given_teacher:
            raise PotstillError("scheme 'multi_teacher' reads its teachers from scheme.teachers; move the teacher section into that list")
        super().check(recipe, terms, given_teacher)
        count = len(recipe.scheme.teachers)
        if count < 2:
            raise PotstillError(
                f"scheme 'multi_teacher' needs at least two teachers in scheme.teachers, got {count}; with one teacher use scheme: offline"
            )
        if self.rule == "weights" and (self.weights is None or len(self.weights) != count):
            raise PotstillError(f"scheme.args.weights: combine: weights needs one weight per teacher ({count} numbers), got {self.weights}")
        if self.rule == "weights" and (min(self.weights) < 0 or sum(self.weights) <= 0):
            raise PotstillError(f"scheme.args.weights: weights must be non-negative with a positive sum, got {self.weights}")
        if self.rule != "weights" and self.weights is not None:
            raise PotstillError(f"scheme.args.weights is used only with combine: weights (combine is {self.rule}); remove it")

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        teachers = []
        for index, spec in enumerate(recipe.scheme.teachers, start=1):
            teachers.append(runner.teacher(spec, f"teacher{index}", seed=recipe.seed + index))
            runner.describe_role(f"teacher{index}", f"teacher {index}", spec.model, runner.teacher_file(spec, f"teacher{index}"))
        ensemble = freeze(TeacherEnsemble(teachers, self.rule, self.weights))
        runner.describe_role("teacher", f"teachers combined ({self.rule})", None)
        student_init = student if student is not None else runner.student()
        models = [("teacher", ensemble)] + [(f"teacher{i}", t) for i, t in enumerate(teachers, start=1)]
        models += named("baseline", runner.baseline(student_init))
        task = MultiTeacherDistillation(student_init, ensemble, runner.terms(), recipe.distill.alpha, recipe.train.label_smoothing)
        models.append(("student", runner.stage("student", task, recipe.train)))
        return models

