"""Be Your Own Teacher: a network teaches its own shallower sections (Zhang, Song, Gao, Chen, Bao &
Ma, "Be Your Own Teacher: Improve the Performance of Convolutional Neural Networks via Self
Distillation", ICCV 2019, arXiv 1905.08094).

The student is cut into sections at the `exits` (module names); after each a head (a bottleneck
that maps the section's features to the deepest feature's shape, then a classifier) predicts the
classes. With q_i the head's logits, F_i its bottleneck features and C the deepest section:

    L = CE(q_C, y) + sum_i [ alpha * CE(q_i, y) + sum_terms w * term(q_i, stopgrad(q_C))
                             + hint_weight * ||F_i - stopgrad(F_C)||^2 ]

(the paper's (1 - alpha) CE + alpha KL at T = 3 + lambda L2 hint is alpha: 0.7, kd weight 0.3,
temperature 3, hint_weight 0.03; its L2 is a mean over elements here). The heads are removable:
model.safetensors is the plain student, heads.safetensors the heads; the report gives every exit's
accuracy and CPU latency, the network run only up to that exit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.metrics import count_parameters
from potstill.engine.task import StepResult, Task, WeightedTerm, hard_label_loss
from potstill.errors import PotstillError
from potstill.model_io import WHOLE_BATCH, attach_io, call_model
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.offline import named
from potstill.taps import Taps, check_tap_names, dry_run, stage_taps

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


class ExitHead(nn.Module):
    """Bottleneck to the deepest feature's shape, then a classifier: (features, logits)."""

    def __init__(self, shape: tuple[int, ...], deepest: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(deepest) == 3 and len(shape) == 3:  # maps -> maps: 1x1 conv, then pool to the deepest size
            self.bottleneck = nn.Sequential(
                nn.Conv2d(shape[0], deepest[0], kernel_size=1, bias=False), nn.BatchNorm2d(deepest[0]), nn.ReLU(),
                nn.AdaptiveAvgPool2d(deepest[1:]),
            )
            self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(deepest[0], num_classes))
        elif len(deepest) == 1:  # maps or vectors -> vectors
            pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if len(shape) == 3 else []
            self.bottleneck = nn.Sequential(*pool, nn.Linear(shape[0], deepest[0]), nn.BatchNorm1d(deepest[0]), nn.ReLU())
            self.classifier = nn.Linear(deepest[0], num_classes)
        else:
            raise PotstillError(
                f"scheme 'byot': an exit gives vectors {shape} but the deepest feature is a map {deepest}; "
                "pick exits with feature maps, or a flat deepest layer (scheme.args.deepest)"
            )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bottleneck = self.bottleneck(features)  # the deepest feature's shape, (B, C_deep, H, W) or (B, D)
        return bottleneck, self.classifier(bottleneck)  # (B, K)


class _Exited(Exception):
    """Raised by a hook to stop the trunk at an exit."""


class EarlyExit(nn.Module):
    """The trunk run only up to `exit`, then that exit's head: what an early-exit deployment runs."""

    def __init__(self, trunk: nn.Module, head: ExitHead, exit: str) -> None:
        super().__init__()
        self.trunk, self.head, self.exit = trunk, head, exit
        attach_io(self, WHOLE_BATCH)  # the trunk is called with its own convention

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        captured = {}

        def stop(_module, _inputs, output):
            captured["features"] = output
            raise _Exited

        handle = self.trunk.get_submodule(self.exit).register_forward_hook(stop)
        try:
            call_model(self.trunk, batch)
        except _Exited:
            pass
        finally:
            handle.remove()
        return self.head(captured["features"])[1]

    def used_parameters(self, sample: dict[str, torch.Tensor]) -> int:
        """Parameters of the trunk modules that run before the exit, plus the head's."""
        ran: dict[int, nn.Module] = {}

        def record(module: nn.Module, _inputs) -> None:  # a pre-hook's return value would replace the input
            ran[id(module)] = module

        handles = [module.register_forward_pre_hook(record) for module in self.trunk.modules()]
        was_training = self.training
        try:
            with torch.no_grad():
                call_model(self.eval(), sample)
        finally:
            self.train(was_training)
            for handle in handles:
                handle.remove()
        own = sum(p.numel() for module in ran.values() for p in module.parameters(recurse=False))
        return own + count_parameters(self.head)


class SelfDistillation(Task):
    def __init__(self, student: nn.Module, heads: dict[str, ExitHead], exits: list[str], deepest: str,
                 terms: list[WeightedTerm], alpha: float, hint_weight: float, label_smoothing: float = 0.0) -> None:
        self.exits, self.deepest, self.terms = exits, deepest, terms
        self.alpha, self.hint_weight, self.label_smoothing = alpha, hint_weight, label_smoothing
        self.heads = nn.ModuleDict(heads)  # keyed exit1, exit2, ... (module names may hold dots)
        self.taps = Taps(student, list(dict.fromkeys([*exits, deepest])), "student")
        self.module = nn.ModuleDict({"student": student, "heads": self.heads, "losses": nn.ModuleDict({t.name: t.loss for t in terms})})

    @property
    def model(self) -> nn.Module:
        return self.module["student"]

    @property
    def tapped_layers(self) -> list[str]:
        return self.taps.names

    def reported_models(self) -> dict[str, nn.Module]:
        return {key: EarlyExit(self.model, head, exit) for (key, head), exit in zip(self.heads.items(), self.exits)}

    def exports(self) -> dict[str, nn.Module]:
        return {"heads": self.heads}

    def step(self, batch: Batch, progress: float) -> StepResult:
        targets = batch["target"]
        with self.taps.capture() as features:
            logits = self.run(self.model, batch)  # (B, K): the deepest classifier
        deepest_logits, deepest_features = logits.detach(), features[self.deepest].detach()
        terms = {"ce": hard_label_loss(logits, targets, self.label_smoothing)}
        weights = {"ce": 1.0}
        for (key, head), exit in zip(self.heads.items(), self.exits):
            bottleneck, exit_logits = head(features[exit])
            terms[f"{key}_ce"] = self.alpha * hard_label_loss(exit_logits, targets, self.label_smoothing)
            weights[f"{key}_ce"] = self.alpha
            for term in self.terms:
                weight = weights[f"{key}_{term.name}"] = term.weight_at(progress)
                if weight > 0:
                    terms[f"{key}_{term.name}"] = weight * term.on_logits(exit_logits, deepest_logits, batch)
            if self.hint_weight > 0:
                terms[f"{key}_hint"] = self.hint_weight * F.mse_loss(bottleneck, deepest_features)
            weights[f"{key}_hint"] = self.hint_weight
        return StepResult(terms, logits, weights)


@SCHEMES.register("byot")
class BeYourOwnTeacher(Scheme):
    """The student's deepest classifier teaches heads attached to its shallower sections."""

    teacher = "none"
    cache = False
    logits_only = True

    def __init__(self, exits: Literal["auto"] | list[str] = "auto", deepest: str | None = None,
                 hint_weight: float = 0.03) -> None:
        """exits: module names that end the shallow sections (auto: every stage end but the last);
        deepest: the layer whose features the heads' bottlenecks imitate (null: the last stage end);
        hint_weight: weight of the feature hint."""
        if hint_weight < 0:
            raise PotstillError(f"scheme.args.hint_weight must be at least 0, got {hint_weight}")
        self.exits, self.deepest, self.hint_weight = exits, deepest, hint_weight
        self.built: dict[str, EarlyExit] = {}
        self.sample: torch.Tensor | None = None

    def sections(self, runner: Workshop, student: nn.Module) -> tuple[list[str], str, dict[str, tuple[int, ...]]]:
        """The exits, the deepest layer and every layer's output shape (one sample, no batch axis)."""
        self.sample = {name: value[:2] for name, value in runner.sample_inputs().items()}
        infos, _ = dry_run(student, self.sample)
        stages = stage_taps(student, infos)
        exits = stages[:-1] if self.exits == "auto" else list(self.exits)
        deepest = self.deepest or (stages[-1] if stages else None)
        check_tap_names(student, exits + ([deepest] if deepest else []), "scheme 'byot': the student")
        model = runner.recipe.student.name if runner.recipe.student else type(student).__name__
        if not exits or deepest is None:
            found = "scheme.args.exits is empty" if self.exits != "auto" else f"the student ({model}) has fewer than two stages"
            raise PotstillError(
                f"scheme 'byot': {found}, so there is no shallow section to attach a head to; name the exits in "
                f"scheme.args.exits (`potstill list taps {model}` prints the module names)"
            )
        order = [info.name for info in infos]
        if deepest in exits or any(order.index(exit) > order.index(deepest) for exit in exits):
            raise PotstillError(f"scheme 'byot': every exit must come before the deepest layer '{deepest}'; exits: {exits}")
        return exits, deepest, {info.name: info.shape[1:] for info in infos}

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        student_init = student if student is not None else runner.student()
        exits, deepest, shapes = self.sections(runner, student_init)
        models = named("baseline", runner.baseline(student_init))
        torch.manual_seed(recipe.seed)  # the heads start the same in a fresh and a resumed run
        classes = runner.bench.splits.num_classes
        heads = {f"exit{i}": ExitHead(shapes[name], shapes[deepest], classes) for i, name in enumerate(exits, start=1)}
        heads = {key: head.to(runner.bench.device) for key, head in heads.items()}
        task = SelfDistillation(student_init, heads, exits, deepest, runner.terms(), recipe.distill.alpha,
                                self.hint_weight, recipe.train.label_smoothing)
        trunk = runner.stage("student", task, recipe.train)
        runner.describe_role("student", "full depth (byot)")
        self.built = task.reported_models()
        for key, exit in zip(self.built, exits):
            runner.describe_role(key, f"exit {key.removeprefix('exit')} ({exit})", weights=runner.run.stage("student") / "heads.safetensors")
        return models + list(self.built.items()) + [("student", trunk)]

    def annotate(self, summary: dict) -> None:
        """An exit's parameters are the trunk's up to it plus its head, not the whole trunk."""
        for row in summary["models"]:
            if row["role"] in self.built:
                row["params"] = self.built[row["role"]].used_parameters(self.sample)
                row["size_bytes"] = None  # heads.safetensors holds every head
