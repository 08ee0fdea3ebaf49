"""Boundary-supporting samples: adversarial samples near the teacher's decision boundary, added to
the student's training (Heo, Lee, Yun & Choi, "Knowledge Distillation with Adversarial Samples
Supporting Decision Boundary", AAAI 2019, arXiv:1805.05532; the paper's official code,
github.com/bhheo/BSS_distillation, fixes the details below).

Each step, on top of the recipe's terms (CE + kd, ...):
  1. base samples: those the teacher classifies correctly; above `samples` of them, the ones where
     teacher and student disagree most, score = sum_{k != y} (p_t,k - p_s,k)^2;
  2. a target class e per base sample, drawn among the teacher's non-top classes with probability
     proportional to the teacher's softmax (torch's global RNG, so a resumed run draws the same);
  3. the attack on the frozen teacher f (logits), base class b = its top class, run `iterations`
     times while b stays on top (a sample stops moving once it has crossed):
        x <- clip( x + eta * (f_b(x) - f_e(x) + epsilon) * g / ||g||_2 ),   g = grad_x (f_e - f_b)(x)
     clipped to the batch's value range. Gradients are taken w.r.t. x only: the teacher's parameters
     have requires_grad False and never change. With ||g|| > 1 / eta this step crosses the boundary
     at once and the sample stops beyond it; `squared_norm: true` divides by ||g||^2 instead, a
     Newton step that closes the gap by the factor 1 - eta per step;
  4. the BSS term on the crafted samples x~, mean over them, at temperature T:
        L_BSS = KL( softmax(f(x~)/T) || softmax(s(x~)/T) )          (the paper's soft cross-entropy, no T^2)
     weighted beta(t) = weight * max(0, 1 - t / (until * epochs)): 2 -> 0 at 75% of training.
The paper also decays its clean KD weight 4 -> 1 over training: the recipe's kd term with
`schedule: {decay: linear, final_factor: 0.25}` (recipes/digits/bss.yaml). A teacher-output cache
cannot hold outputs on samples crafted during training, so this scheme runs the teacher live.
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from potstill.data.loader import Batch
from potstill.data.registry import dataset_task
from potstill.engine.task import StepResult
from potstill.errors import PotstillError
from potstill.knowledge.wiring import check_explicit_pairs
from potstill.model_io import call_model
from potstill.schemes.base import SCHEMES
from potstill.schemes.offline import Offline, OfflineDistillation, frozen_forward, named

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


def base_samples(teacher_logits: torch.Tensor, student_logits: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the samples to attack: the teacher's correct ones, at most `count`, those where
    teacher and student disagree most on the non-label classes first. Logits (B, K), labels (B,)."""
    correct = (teacher_logits.argmax(dim=1) == labels).nonzero().squeeze(1)
    if len(correct) <= count:
        return correct
    difference = (teacher_logits[correct].softmax(dim=1) - student_logits[correct].softmax(dim=1)) ** 2  # (N, K)
    score = difference.sum(dim=1) - difference.gather(1, labels[correct, None]).squeeze(1)
    return correct[torch.argsort(score, descending=True, stable=True)[:count]]


def target_classes(teacher_logits: torch.Tensor) -> torch.Tensor:
    """One class per row (B,), drawn among the non-top classes in proportion to the teacher's softmax."""
    scores, classes = teacher_logits.softmax(dim=1).sort(dim=1, descending=True)
    scores, classes = scores[:, 1:], classes[:, 1:]  # (B, K-1): every class but the top one
    draw = scores.sum(dim=1, keepdim=True) * torch.rand(len(scores), 1, device=scores.device)
    pick = (scores.cumsum(dim=1) < draw).sum(dim=1).clamp(max=scores.shape[1] - 1)
    return classes.gather(1, pick[:, None]).squeeze(1)


def boundary_attack(teacher: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, iterations: int,
                    step_size: float, epsilon: float, low: float, high: float, squared_norm: bool = False) -> torch.Tensor:
    """Move `inputs` (N, ...) toward the teacher's boundary between its top class and `targets` (N,).
    `squared_norm`: divide the step by ||g||^2 (a Newton step: the gap shrinks by the factor 1 - eta
    whatever the gradient's size) instead of ||g|| (the official code's)."""
    moving, base = inputs.detach().clone(), None
    with torch.enable_grad():
        for _ in range(iterations):
            moving.requires_grad_(True)
            logits = call_model(teacher, {"input": moving})  # (N, K)
            if base is None:
                base = logits.argmax(dim=1).detach()
            base_score, target_score = logits.gather(1, base[:, None]), logits.gather(1, targets[:, None])  # (N, 1)
            (gradient,) = torch.autograd.grad((target_score - base_score).sum(), moving)
            still = (logits.argmax(dim=1) == base).to(inputs.dtype)  # samples that have not crossed yet
            if not still.any():
                break
            gap = (base_score - target_score).detach().squeeze(1)
            norm = gradient.flatten(1).norm(dim=1).clamp_min(1e-12)
            norm = norm**2 if squared_norm else norm
            scale = (step_size * still * (gap + epsilon) / norm).view(-1, *[1] * (inputs.ndim - 1))
            moving = (moving.detach() + scale * gradient).clamp(low, high)
    return moving.detach()


class BoundaryDistillation(OfflineDistillation):
    """OfflineDistillation plus the BSS term on samples crafted against the live teacher each step."""

    def __init__(self, *args, sampling: BoundarySupportingSamples, epochs: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.teacher is None or self.cache is not None:
            raise PotstillError("scheme bss crafts samples against a live teacher: give a teacher and no teacher cache")
        self.sampling, self.epochs, self.clean_teacher_logits = sampling, epochs, None

    def teacher_outputs(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, features = super().teacher_outputs(batch)
        self.clean_teacher_logits = logits  # the base samples are picked from it: no second teacher pass
        return logits, features

    def step(self, batch: Batch, progress: float) -> StepResult:
        self.clean_teacher_logits = None
        result = super().step(batch, progress)
        weight = result.weights["bss"] = self.sampling.weight_at(progress, self.epochs)
        if weight <= 0:
            return result
        inputs = batch.get("input")
        if inputs is None or not inputs.is_floating_point():
            raise PotstillError("scheme bss attacks continuous inputs (the batch's `input` images); this data has none")
        teacher_logits = self.clean_teacher_logits
        if teacher_logits is None:  # no term needed the teacher on this step
            teacher_logits = frozen_forward(self.teacher, None, batch)[0]
        sampling = self.sampling
        chosen = base_samples(teacher_logits, result.logits.detach(), batch["target"], sampling.samples)
        if len(chosen) == 0:  # the teacher got every sample wrong: nothing to support
            result.terms["bss"] = result.logits.new_zeros(())
            return result
        with self.timed("attack"):
            targets = target_classes(teacher_logits[chosen])
            crafted = boundary_attack(self.teacher, inputs[chosen], targets, sampling.iterations, sampling.step_size,
                                      sampling.epsilon, float(inputs.min()), float(inputs.max()), sampling.squared_norm)
        crafted_batch = {"input": crafted}
        crafted_teacher, _ = frozen_forward(self.teacher, None, crafted_batch)
        crafted_student = self.run(self.model, crafted_batch)
        temperature = sampling.temperature
        kl = F.kl_div(F.log_softmax(crafted_student / temperature, dim=1), F.log_softmax(crafted_teacher / temperature, dim=1),
                      reduction="batchmean", log_target=True)
        result.terms["bss"] = weight * kl
        return result


@SCHEMES.register("bss")
class BoundarySupportingSamples(Offline):
    """Offline KD plus adversarial samples near the teacher's decision boundary (Heo et al., AAAI 2019)."""

    cache = False  # the crafted samples exist only during training
    single_process = "it picks the batch's most-disagreeing samples, which each process's part of a batch would pick differently"

    def __init__(self, weight: float = 2.0, until: float = 0.75, samples: int = 64, iterations: int = 10,
                 step_size: float = 0.3, epsilon: float = 1e-4, temperature: float = 3.0, squared_norm: bool = False) -> None:
        """weight, until: beta(t) falls linearly from `weight` to 0 at `until` x the epochs; samples: most
        base samples per batch; iterations, step_size (eta), epsilon: the attack; temperature: the BSS term's T;
        squared_norm: divide the attack's step by ||g||^2 (Newton) instead of ||g|| (the official code)."""
        numbers = {"weight": weight, "step_size": step_size, "epsilon": epsilon, "temperature": temperature}
        for name, value in numbers.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or value == float("inf"):
                raise PotstillError(f"scheme bss: {name} must be a finite number >= 0, got {value!r}")
        if not temperature > 0 or not step_size > 0:
            raise PotstillError(f"scheme bss: temperature and step_size must be > 0, got {temperature!r} and {step_size!r}")
        if not isinstance(until, (int, float)) or isinstance(until, bool) or not 0 < until <= 1:
            raise PotstillError(f"scheme bss: until (the fraction of training where the BSS weight reaches 0) must lie in (0, 1], got {until!r}")
        for name, value in (("samples", samples), ("iterations", iterations)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PotstillError(f"scheme bss: {name} must be a whole number >= 1, got {value!r}")
        self.weight, self.until, self.samples, self.iterations = float(weight), float(until), samples, iterations
        if not isinstance(squared_norm, bool):
            raise PotstillError(f"scheme bss: squared_norm must be true or false, got {squared_norm!r}")
        self.step_size, self.epsilon, self.temperature = float(step_size), float(epsilon), float(temperature)
        self.squared_norm = squared_norm

    def weight_at(self, progress: float, epochs: int) -> float:
        """beta(t): `weight` at the start, 0 from `until` x epochs on; progress in fractional epochs."""
        return self.weight * max(0.0, 1.0 - progress / (self.until * epochs))

    def check(self, recipe, terms, given_teacher: bool = False) -> None:
        if recipe.distill.cache.enabled is True:
            raise PotstillError(
                "distill.cache: scheme bss runs the teacher on adversarial samples crafted during training, which no "
                "teacher-output cache can hold; set distill.cache.enabled: auto or false"
            )
        super().check(recipe, terms, given_teacher)
        if recipe.teacher is None and not given_teacher:
            raise PotstillError("scheme bss attacks a teacher; add a teacher section (teacher.model and teacher.checkpoint or teacher.train)")
        if dataset_task(recipe.data.name) != "classification":
            raise PotstillError(f"scheme bss crafts adversarial images for a classifier; dataset '{recipe.data.name}' is not one")

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        student_init = student if student is not None else runner.student()
        skeleton = teacher if teacher is not None else runner.teacher_skeleton()
        check_explicit_pairs(runner.terms(), student_init, skeleton)  # a misspelt layer fails before the teacher trains
        runner.initialise(copy.deepcopy(student_init), skeleton, quiet=True)
        teacher = teacher if teacher is not None else runner.teacher()
        runner.initialise(student_init, teacher)
        models = [("teacher", teacher)] + named("baseline", runner.baseline(student_init))
        make = functools.partial(BoundaryDistillation, sampling=self, epochs=recipe.train.epochs)
        distilled = runner.transfer("student", student_init, teacher, make_task=make)
        models.append(("student", distilled))
        return models + named("refine", runner.refine(distilled))
