"""Offline distillation: a frozen, pre-trained teacher in eval mode teaches a student
(Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 workshop, arXiv 1503.02531).

    L = alpha * CE(student, labels) + sum_i  w_i(epoch) * L_i(student, teacher, batch)

Each term L_i sees the logits and its own tapped layers of both models (`WeightedTerm.view`).
The teacher's side comes from a forward pass, or from a teacher-output cache when one is given:
then each batch carries the sample indices and views whose outputs the cache holds.
"""

from __future__ import annotations

import contextlib
import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from potstill.cache.codec import TOP_K
from potstill.cache.reader import TeacherCache
from potstill.data.loader import Batch
from potstill.engine.task import StepResult, Task, WeightedTerm, hard_label_loss
from potstill.errors import PotstillError
from potstill.model_io import call_model
from potstill.knowledge.wiring import check_explicit_pairs
from potstill.schemes.base import SCHEMES, Scheme, needs_teacher
from potstill.taps import Taps

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm statistics and dropout fixed) and no gradients."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def tapped(terms: list[WeightedTerm], role: str) -> list[str]:
    """Every layer some term taps on one model, each once."""
    names = [name for term in terms for name in (term.student_taps if role == "student" else term.teacher_taps)]
    return list(dict.fromkeys(names))


def frozen_forward(teacher: nn.Module, taps: Taps | None, batch: Batch, forward=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The teacher's logits and tapped features (none without `taps`), never tracked by autograd.
    `forward`: what to call instead of the teacher (its compiled form, every teacher of an ensemble)."""
    teacher.eval()  # the loop calls module.train(); the teacher is not part of it
    capture = taps.capture() if taps is not None else contextlib.nullcontext({})
    with torch.inference_mode(), capture as features:
        logits = call_model(teacher, batch, forward)
    # clone() outside inference mode makes normal tensors that autograd may save for backward
    return logits.clone(), {name: value.clone() for name, value in features.items()}


class OfflineDistillation(Task):
    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        terms: list[WeightedTerm],
        alpha: float = 0.5,
        label_smoothing: float = 0.0,
        cache: TeacherCache | None = None,
    ) -> None:
        # None: every term has a virtual teacher (needs_teacher False), e.g. label smoothing as KD
        self.teacher = freeze(teacher) if teacher is not None else None
        self.terms = terms
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        self.student_taps = Taps(student, tapped(terms, "student"), "student")
        self.teacher_taps = Taps(teacher, tapped(terms, "teacher"), "teacher") if teacher is not None else None
        self.cache = cache
        if cache is not None:
            missing = [name for name in tapped(terms, "teacher") if name not in cache.tap_names]
            if missing:
                raise PotstillError(
                    f"the teacher cache {cache.folder} holds no outputs of teacher layer(s) {', '.join(missing)}; "
                    "build it with distill.cache.features: true for this recipe"
                )
        # Loss modules live beside the student so their adapters train and are checkpointed with it.
        self.module = nn.ModuleDict({"student": student, "losses": nn.ModuleDict({t.name: t.loss for t in terms})})

    @property
    def model(self) -> nn.Module:
        return self.module["student"]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One group "all" (student, adapters), plus a group per term whose loss trains a model of its
        own (`own_optimizer`, e.g. a discriminator), named after the term: its own optimizer state
        and gradient clipping."""
        own = {term.name: [p for p in term.loss.own_parameters() if p.requires_grad]
               for term in self.terms if getattr(term.loss, "own_optimizer", False)}
        taken = {id(parameter) for group in own.values() for parameter in group}
        rest = [p for p in self.module.parameters() if p.requires_grad and id(p) not in taken]
        return {"all": rest, **own}

    def models_to_compile(self) -> list[nn.Module]:
        online_teacher = self.teacher is not None and self.cache is None
        return [self.model, self.teacher] if online_teacher else [self.model]

    @property
    def tapped_layers(self) -> list[str]:
        """Every hooked layer, student's and teacher's (none when the terms use only logits)."""
        teacher = self.teacher_taps.names if self.teacher_taps is not None and self.cache is None else []
        return self.student_taps.names + teacher

    def teacher_outputs(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self.timed("teacher"):
            if self.cache is not None:
                logits, features = self.cache.outputs(batch["index"], batch["view"])
                # a language model's cached rows have the data's full length; the batch may be cut shorter
                cut = tuple(slice(0, size) for size in batch["target"].shape)
                if TOP_K in features:
                    features[TOP_K] = tuple(part[cut] for part in features[TOP_K])
                return logits[cut], features
            forward = (self.compiled or {}).get(id(self.teacher))
            return frozen_forward(self.teacher, self.teacher_taps, batch, forward)

    def teacher_view(self, term: WeightedTerm, logits: torch.Tensor, features: dict[str, torch.Tensor]) -> dict:
        """What term `term` sees of the teacher (a multi-teacher scheme combines several here)."""
        return term.view(logits, features, "teacher")

    def step(self, batch: Batch, progress: float) -> StepResult:
        weights = {"ce": self.alpha} | {term.name: term.weight_at(progress) for term in self.terms}
        active = [term for term in self.terms if weights[term.name] > 0]
        # a switched-off term costs nothing: no teacher pass once early-stopped KD has ended
        needs_teacher = any(type(term.loss).needs_teacher for term in active)
        teacher_logits, teacher_features = self.teacher_outputs(batch) if needs_teacher else (None, {})
        with self.student_taps.capture() as student_features:
            logits = self.run(self.model, batch)
        terms = {}
        if self.alpha > 0 or not active:  # alpha 0 (FitNets' hint stage): no CE, so the classifier gets no gradient
            terms["ce"] = self.alpha * hard_label_loss(logits, batch["target"], self.label_smoothing)
        for term in active:
            student = term.view(logits, student_features, "student")
            teacher = self.teacher_view(term, teacher_logits, teacher_features)
            terms[term.name] = weights[term.name] * term.loss(student, teacher, batch)
        return StepResult(terms, logits, weights)


@SCHEMES.register("offline")
class Offline(Scheme):
    """A frozen, pre-trained teacher teaches the student (the default)."""

    staged = True
    refines = True
    initialises = True

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe, terms = runner.recipe, runner.terms()
        student_init = student if student is not None else runner.student()
        teacher_free = teacher is None and recipe.teacher is None and not needs_teacher(terms)
        if not teacher_free:
            # fail on a misspelt layer before the teacher trains; the skeleton costs one constructor call
            skeleton = teacher if teacher is not None else runner.teacher_skeleton()
            check_explicit_pairs(terms, student_init, skeleton)
            runner.initialise(copy.deepcopy(student_init), skeleton, quiet=True)  # student.init fits, before the teacher trains
            teacher = teacher if teacher is not None else runner.teacher()
            runner.initialise(student_init, teacher)
        models = [] if teacher_free else [("teacher", teacher)]
        models += named("baseline", runner.baseline(student_init))
        distilled = runner.transfer("student", student_init, None if teacher_free else teacher)
        models.append(("student", distilled))
        return models + named("refine", runner.refine(distilled))


def named(role: str, model: nn.Module | None) -> list[tuple[str, nn.Module]]:
    """[(role, model)], or [] for a stage the recipe turned off."""
    return [] if model is None else [(role, model)]
