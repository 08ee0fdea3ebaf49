"""DAFL: a generator trained against the frozen teacher alone, the student on its images
(Chen, Wang, Xu, Yang, Liu, Shi, Xu, Xu & Tian, "DAFL: Data-Free Learning of Student Networks",
ICCV 2019, arXiv 1904.01186).

The teacher plays a fixed discriminator: the generator G makes images x = G(z) that the teacher
classifies confidently, that excite its features, and whose predicted classes are balanced:

    L_G = L_oh + alpha * L_a + beta * L_ie
    L_oh = (1/n) sum_i CE(y_T^i, t^i),  t^i = argmax y_T^i         one-hot: confident outputs
    L_a  = -(1/n) sum_i ||f_T^i||_1                                 activation of the features before the classifier
    L_ie = -H( (1/n) sum_i softmax(y_T^i) )                         information entropy: balanced classes

and the student learns the teacher on the same (detached) images with the recipe's logit terms (the
paper's KD; `distill: {loss: kd, temperature: 1, alpha: 0}`). Paper defaults (MNIST): alpha 0.1,
beta 5, latent dimension 100, 120 iterations per epoch; the generator and student train at once.
Scaled here: generator width 128 -> `width` (64), and the generator shares the student's optimizer
settings (the paper: Adam, lr 0.2 for the generator, 2e-3 for the student); ||f||_1 is a mean over
features as in the authors' code, and H uses the natural log (their code: log10).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import StepResult, WeightedTerm
from potstill.errors import PotstillError
from potstill.schemes.base import SCHEMES
from potstill.schemes.data_free import DataFree, DataFreeTask
from potstill.taps import Taps

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop


def one_hot_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """L_oh: cross-entropy of the teacher's logits (B, K) against its own top class."""
    return F.cross_entropy(teacher_logits, teacher_logits.argmax(dim=1))


def activation_loss(features: torch.Tensor) -> torch.Tensor:
    """L_a: minus the mean absolute feature value (B, D)."""
    return -features.abs().mean()


def information_entropy_loss(teacher_logits: torch.Tensor) -> torch.Tensor:
    """L_ie = -H(mean_i softmax(y_T^i)): lowest when the batch's predicted classes are balanced."""
    mean = F.softmax(teacher_logits, dim=1).mean(dim=0)  # (K,)
    return (mean * torch.log(mean.clamp_min(1e-12))).sum()


def last_linear_input(model: nn.Module) -> str:
    """The tap of the features the classifier reads: the input of the model's last nn.Linear."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise PotstillError("scheme dafl: the teacher has no nn.Linear classifier whose input could be its features; "
                            "name them with scheme.args.features (a tap, `potstill list taps MODEL`)")
    return f"{names[-1]}:input"


class DAFLTask(DataFreeTask):
    def __init__(self, student: nn.Module, teacher: nn.Module, terms: list[WeightedTerm], batch_size: int,
                 generator: nn.Module, features: str, one_hot: float, activation: float, entropy: float) -> None:
        super().__init__(student, teacher, terms, batch_size, generator)
        self.taps = Taps(teacher, [features], "teacher")
        self.weights = {"one_hot": one_hot, "activation": activation, "entropy": entropy}

    def step(self, batch: Batch, progress: float) -> StepResult:
        images = self.generator(self.generator.noise(self.batch_size, self.device))  # (B, C, H, W)
        with self.taps.capture() as features:
            teacher_logits = self.teacher_logits(images)  # grad reaches the generator through the frozen teacher
        (feature,) = features.values()
        generator = {
            "one_hot": one_hot_loss(teacher_logits),
            "activation": activation_loss(feature.flatten(1)),
            "entropy": information_entropy_loss(teacher_logits),
        }
        terms = {f"generator_{name}": self.weights[name] * value for name, value in generator.items() if self.weights[name] > 0}
        student, weights, logits, scored = self.student_terms(images, teacher_logits, progress)
        weights |= {f"generator_{name}": weight for name, weight in self.weights.items()}
        return StepResult(student | terms, logits, weights, scored)


@SCHEMES.register("dafl")
class DAFL(DataFree):
    """Data-free: a generator trained so the teacher is confident, active and balanced (Chen et al. ICCV 2019)."""

    def __init__(self, one_hot: float = 1.0, activation: float = 0.1, entropy: float = 5.0, latent_dim: int = 100,
                 width: int = 64, steps_per_epoch: int = 120, features: str = "auto") -> None:
        """one_hot, activation, entropy: weights of L_oh, L_a (alpha) and L_ie (beta); latent_dim, width: the
        generator's noise size and first feature-map channels; steps_per_epoch: synthetic batches per epoch
        (data.batch_size images each); features: the teacher tap L_a reads (auto: its last linear layer's input)."""
        for key, value in (("one_hot", one_hot), ("activation", activation), ("entropy", entropy)):
            if value < 0:
                raise PotstillError(f"scheme.args.{key}: a loss weight must be >= 0, got {value}")
        if min(latent_dim, width, steps_per_epoch) < 1:
            raise PotstillError("scheme.args: latent_dim, width and steps_per_epoch must be >= 1")
        self.one_hot, self.activation, self.entropy = one_hot, activation, entropy
        self.latent_dim, self.width, self.steps_per_epoch, self.features = latent_dim, width, steps_per_epoch, features

    def tap(self, teacher: nn.Module) -> str:
        return last_linear_input(teacher) if self.features == "auto" else self.features

    def check_teacher(self, teacher: nn.Module) -> None:
        Taps(teacher, [self.tap(teacher)], "teacher")  # a misspelt scheme.args.features fails before training

    def make_task(self, student, teacher, terms, runner: Workshop) -> DAFLTask:
        return DAFLTask(student, teacher, terms, runner.recipe.data.batch_size, self.generator(runner, self.latent_dim, self.width),
                        self.tap(teacher), self.one_hot, self.activation, self.entropy)
