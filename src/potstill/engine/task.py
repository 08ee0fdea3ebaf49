"""A Task is what the training loop optimises: a module holding every trained parameter, and a
function from a batch to named, already-weighted loss terms. Schemes are Tasks; the loop never
branches on a method's name, it sums the terms."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from potstill.data.loader import Batch
from potstill.model_io import call_model
from potstill.cache.codec import TOP_K
from potstill.positions import IGNORE_INDEX
from potstill.schedules import WeightSchedule


@dataclass
class StepResult:
    terms: dict[str, torch.Tensor]  # weighted loss terms; the loop minimises their sum
    logits: torch.Tensor | None  # (B, K) the trained model's logits, for training accuracy (None: no classifier trains)
    weights: dict[str, float]  # the weight each term had at this step (after its schedule)
    scored: dict[str, torch.Tensor] | None = None  # the batch `logits` belong to, when the step replaced the loader's


class Task:
    """Base class. `module` holds every parameter that trains and is checkpointed. The loop sets
    `clock` (a Stopwatch) each epoch; a task times sections of its step with `timed(name)`."""

    module: nn.Module
    clock = None
    compiled: dict[int, Callable] | None = None

    def timed(self, name: str) -> contextlib.AbstractContextManager:
        return self.clock.section(name) if self.clock is not None else contextlib.nullcontext()

    def models_to_compile(self) -> list[nn.Module]:
        return [self.model]

    def compile(self) -> None:
        """torch.compile every model this task runs. The compiled callables live here, beside the
        modules: the modules, their state_dict names and their copies stay plain."""
        self.compiled = {id(model): torch.compile(model) for model in self.models_to_compile()}

    def run(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The model's logits on `batch` (potstill.model_io), through its compiled form when the task was compiled."""
        return call_model(model, batch, (self.compiled or {}).get(id(model)))

    @property
    def model(self) -> nn.Module:
        """The model whose accuracy is reported and which is exported at the end."""
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimizer group. A scheme that trains several models gives each
        its own group: its own optimizer state, and its own gradient clipping."""
        return {"all": [parameter for parameter in self.module.parameters() if parameter.requires_grad]}

    def reported_models(self) -> dict[str, nn.Module]:
        """Other models this stage trains (peers, early exits): evaluated after every epoch."""
        return {}

    def exports(self) -> dict[str, nn.Module]:
        """Modules saved beside model.safetensors at the end, as <name>.safetensors."""
        return self.reported_models()

    def step(self, batch: Batch, progress: float) -> StepResult:
        raise NotImplementedError


def hard_label_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy against the dataset labels (the alpha term), mean over the counted positions:
    (B, K) logits against (B,) classes, or (B, L, V) next-token logits against (B, L) next tokens
    with IGNORE_INDEX where nothing counts (potstill.positions)."""
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX,
                           label_smoothing=label_smoothing)


class Supervised(Task):
    """Plain training on hard labels: teacher pre-training, the baseline student, refinement."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0, weight: float = 1.0) -> None:
        self.module = model
        self.label_smoothing = label_smoothing
        self.weight = weight

    @property
    def model(self) -> nn.Module:
        return self.module

    def step(self, batch: Batch, progress: float) -> StepResult:
        logits = self.run(self.module, batch)
        ce = hard_label_loss(logits, batch["target"], self.label_smoothing)
        return StepResult({"ce": self.weight * ce}, logits, {"ce": self.weight})


@dataclass
class WeightedTerm:
    """A loss module with its weight and schedule, as the recipe sets them, and the tapped
    layers it compares (filled in by `knowledge.wiring.connect_terms`)."""

    name: str
    loss: nn.Module
    weight: float
    schedule: WeightSchedule
    pairs: object = "auto"  # the recipe's pairs: a pairing name or a list of PairSpec
    stages: tuple[str, ...] = ("main",)
    layer_map: str | list[int] = "uniform"  # transformer losses: which teacher layer each student layer learns from
    student_taps: list[str] = field(default_factory=list)
    teacher_taps: list[str] = field(default_factory=list)

    def weight_at(self, progress: float) -> float:
        return self.weight * self.schedule.factor(progress)

    def view(self, logits: torch.Tensor, features: dict[str, torch.Tensor], role: str) -> dict:
        """What the loss sees of one model: its logits and its tapped features, pair-ordered."""
        taps = self.student_taps if role == "student" else self.teacher_taps
        view = {"logits": logits, "features": [features[name] for name in taps]}
        if TOP_K in features:  # a top-k cache's sparse teacher (potstill.cache.codec)
            view["top_k"] = features[TOP_K]
        return view

    def on_logits(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The unweighted loss between two models' logits alone (peers, exits, snapshots)."""
        return self.loss(self.view(student_logits, {}, "student"), self.view(teacher_logits, {}, "teacher"), batch)
