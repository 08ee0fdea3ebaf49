"""DFAD: an adversarial generator makes the images on which student and teacher disagree most
(Fang, Song, Zhang, Wang & Song, "Data-Free Adversarial Distillation", arXiv 1912.11006; the
zero-shot knowledge transfer of Micaelli & Storkey, NeurIPS 2019, arXiv 1905.09768).

A min-max game over the discrepancy D between the two models' outputs on generated images x = G(z):

    student:    min_S  D(S(x), T(x))         (x detached)
    generator:  max_G  D(S(x), T(x))         (through the student with its parameters detached)

D is the recipe's logit terms: DFAD's mean absolute error of logits is `distill.loss: logit_l1`,
Micaelli & Storkey's KL is `kd` at temperature 1. Both sides update on the same batch in one
backward (the papers alternate: DFAD 5 student steps per generator step, ZSKT 10; the attention
term of ZSKT is not used). Paper defaults (DFAD, MNIST): latent dimension 256, 50 iterations per
epoch, Adam lr 1e-3 for the generator and SGD lr 0.1 for the student; here the generator shares
the student's optimizer settings and is `width` 64 wide (DFAD: 128).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call

from potstill.data.loader import Batch
from potstill.engine.task import StepResult, WeightedTerm
from potstill.errors import PotstillError
from potstill.model_io import call_model
from potstill.schemes.base import SCHEMES
from potstill.schemes.data_free import DataFree, DataFreeTask

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


def through_detached(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The model's logits on `batch` with its parameters detached: gradients reach the inputs, never
    the model, and its BatchNorm statistics are updated in copies (the real pass updates them once)."""
    state = {name: value.detach() for name, value in model.named_parameters()}
    state |= {name: value.clone() for name, value in model.named_buffers()}
    return call_model(model, batch, lambda *inputs: functional_call(model, state, inputs))


class AdversarialGeneration(DataFreeTask):
    def __init__(self, student: nn.Module, teacher: nn.Module, terms: list[WeightedTerm], batch_size: int,
                 generator: nn.Module, adversarial: float) -> None:
        super().__init__(student, teacher, terms, batch_size, generator)
        self.adversarial = adversarial

    def step(self, batch: Batch, progress: float) -> StepResult:
        images = self.generator(self.generator.noise(self.batch_size, self.device))  # (B, C, H, W)
        teacher_logits = self.teacher_logits(images)  # grad reaches the generator through the frozen teacher
        student, weights, logits, scored = self.student_terms(images, teacher_logits, progress)
        fooled = through_detached(self.model, {"input": images})
        discrepancy = sum(weights[term.name] * term.on_logits(fooled, teacher_logits, scored) for term in self.terms)
        weights["generator_discrepancy"] = -self.adversarial
        return StepResult(student | {"generator_discrepancy": -self.adversarial * discrepancy}, logits, weights, scored)


@SCHEMES.register("dfad")
class DFAD(DataFree):
    """Data-free: a generator maximises the student-teacher discrepancy the student minimises (Fang et al. 2019)."""

    def __init__(self, latent_dim: int = 256, width: int = 64, steps_per_epoch: int = 50, adversarial: float = 1.0) -> None:
        """latent_dim, width: the generator's noise size and first feature-map channels; steps_per_epoch:
        synthetic batches per epoch (data.batch_size images each); adversarial: weight of the generator's
        objective (the discrepancy, negated)."""
        if min(latent_dim, width, steps_per_epoch) < 1:
            raise PotstillError("scheme.args: latent_dim, width and steps_per_epoch must be >= 1")
        if adversarial <= 0:
            raise PotstillError(f"scheme.args.adversarial: the generator needs a positive weight, got {adversarial}")
        self.latent_dim, self.width, self.steps_per_epoch, self.adversarial = latent_dim, width, steps_per_epoch, adversarial

    def make_task(self, student, teacher, terms, runner: Workshop) -> AdversarialGeneration:
        return AdversarialGeneration(student, teacher, terms, runner.recipe.data.batch_size,
                                     self.generator(runner, self.latent_dim, self.width), self.adversarial)
