"""DeepInversion with Adaptive DeepInversion's competition term: inputs optimised until the
teacher's BatchNorm statistics match and its output is a chosen class, then the student learns the
teacher on them (Yin, Molchanov, Li, Alvarez, Mallya, Hoiem, Jha & Kautz, "Dreaming to Distill:
Data-free Knowledge Transfer via DeepInversion", CVPR 2020, arXiv 1912.08795).

For a batch x with target classes y (balanced, in shuffled order):

    min_x  CE(T(x), y) + a_tv R_TV(x) + a_l2 ||x||_2 + a_f R_feature(x) + a_c R_compete(x)
    R_feature = sum_l ||mu_l(x) - BN_l.running_mean||_2 + ||sigma^2_l(x) - BN_l.running_var||_2
    R_compete = 1 - JS(p_T(x), p_S(x))      (softmax at temperature 3: images the student gets wrong)

mu_l, sigma^2_l: the per-channel mean and (biased) variance of the input of the teacher's BatchNorm
layer l; R_TV: the L2 norms of differences between neighbouring pixels (four directions). Inside each
training step a fresh batch (uniform noise in the [0, 1] pixel space) is optimised with its own
Adam for `iterations` steps and clipped to [0, 1]; the student then takes one step of the recipe's
logit terms (KD) on it. The teacher needs BatchNorm layers: without them R_feature is undefined and
the scheme refuses.

Defaults from the authors' CIFAR-10 code: r_feature 10, TV 2.5e-5, l2 0, Adam lr 0.1 (paper 0.05),
2000 iterations per batch, competition at temperature 3. Scaled here: 100 iterations per batch and
one student step per synthesised batch (the paper synthesises a set first, then distils on it);
`competition` 1.0 (the paper tunes it per run); no random jitter or flips (8x8 and 28x28 images).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from potstill.data.loader import Batch
from potstill.engine.task import StepResult, WeightedTerm
from potstill.errors import PotstillError
from potstill.model_io import call_model
from potstill.schemes.base import SCHEMES
from potstill.schemes.data_free import DataFree, DataFreeTask

if TYPE_CHECKING:
    from potstill.schemes.workshop import Workshop

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def batch_norm_layers(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, BATCH_NORMS) and module.track_running_stats]


def statistics_distance(inputs: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """||mu(x) - running_mean||_2 + ||var(x) - running_var||_2 for the input (B, C, ...) of one BN layer."""
    channels = inputs.transpose(0, 1).flatten(1)  # (C, B * spatial)
    mean, var = channels.mean(dim=1), channels.var(dim=1, unbiased=False)
    return torch.linalg.vector_norm(mean - layer.running_mean) + torch.linalg.vector_norm(var - layer.running_var)


@contextlib.contextmanager
def feature_statistics(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect R_feature's term of every BatchNorm layer during forward passes inside the block."""
    distances: list[torch.Tensor] = []
    handles = [layer.register_forward_pre_hook(lambda module, args: distances.append(statistics_distance(args[0], module)))
               for layer in batch_norm_layers(model)]
    try:
        yield distances
    finally:
        for handle in handles:
            handle.remove()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """R_TV: L2 norms of the differences to the right, below and both diagonal neighbours. (B, C, H, W)."""
    return (torch.linalg.vector_norm(images[..., :, :-1] - images[..., :, 1:])
            + torch.linalg.vector_norm(images[..., :-1, :] - images[..., 1:, :])
            + torch.linalg.vector_norm(images[..., 1:, :-1] - images[..., :-1, 1:])
            + torch.linalg.vector_norm(images[..., :-1, :-1] - images[..., 1:, 1:]))


def competition(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 3.0) -> torch.Tensor:
    """R_compete = 1 - JS(p_T, p_S) at `temperature`, JS in nats clamped to [0, 1], batch mean."""
    p = F.softmax(teacher_logits / temperature, dim=1)
    q = F.softmax(student_logits / temperature, dim=1)
    middle = (0.5 * (p + q)).clamp_min(1e-12).log()
    js = 0.5 * F.kl_div(middle, p, reduction="batchmean") + 0.5 * F.kl_div(middle, q, reduction="batchmean")
    return 1.0 - js.clamp(0.0, 1.0)


class Inversion(DataFreeTask):
    def __init__(self, student: nn.Module, teacher: nn.Module, terms: list[WeightedTerm], batch_size: int,
                 num_classes: int, shape: tuple[int, ...], weights: dict[str, float], iterations: int, lr: float) -> None:
        super().__init__(student, teacher, terms, batch_size)
        self.num_classes, self.shape, self.weights = num_classes, tuple(shape), weights
        self.iterations, self.lr = iterations, lr

    def objective(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each weighted term of the inversion objective on `images` (B, C, H, W)."""
        with feature_statistics(self.teacher) as distances:
            teacher_logits = call_model(self.teacher, {"input": images})
        terms = {
            "class": F.cross_entropy(teacher_logits, targets),
            "feature": self.weights["feature"] * torch.stack(distances).sum(),
            "tv": self.weights["tv"] * total_variation(images),
            "l2": self.weights["l2"] * torch.linalg.vector_norm(images),
        }
        if self.weights["competition"] > 0:  # the student as it is now, in eval mode: its statistics stay put
            terms["competition"] = self.weights["competition"] * competition(teacher_logits, call_model(self.model, {"input": images}))
        return terms

    def synthesise(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A fresh batch optimised for `iterations` Adam steps; its start and classes come from torch's
        global RNG, so a resumed run repeats them. Gradients go to the images alone (autograd.grad)."""
        targets = torch.randperm(self.batch_size, device=self.device) % self.num_classes  # balanced classes
        images = torch.rand(self.batch_size, *self.shape, device=self.device).requires_grad_(True)
        optimizer = torch.optim.Adam([images], lr=self.lr)
        self.teacher.eval()
        student_was_training = self.model.training
        self.model.eval()
        try:
            for _ in range(self.iterations):
                terms = self.objective(images, targets)
                (images.grad,) = torch.autograd.grad(sum(terms.values()), [images])
                optimizer.step()
                with torch.no_grad():
                    images.clamp_(0.0, 1.0)
        finally:
            self.model.train(student_was_training)
        return images.detach(), {name: value.detach() for name, value in terms.items()}

    def step(self, batch: Batch, progress: float) -> StepResult:
        with self.timed("inversion"):
            images, inversion = self.synthesise()
        with torch.no_grad():
            teacher_logits = self.teacher_logits(images)
        student, weights, logits, scored = self.student_terms(images, teacher_logits, progress)
        # the inversion's last values, for the log only: detached, so they add nothing to the backward
        shown = {f"inversion_{name}": value for name, value in inversion.items()}
        return StepResult(student | shown, logits, weights | {name: 1.0 for name in shown}, scored)


@SCHEMES.register("deep_inversion")
class DeepInversion(DataFree):
    """Data-free: inputs optimised to match the teacher's BatchNorm statistics and a class (Yin et al. CVPR 2020)."""

    def __init__(self, feature: float = 10.0, tv: float = 2.5e-5, l2: float = 0.0, competition: float = 1.0,
                 iterations: int = 100, lr: float = 0.1, steps_per_epoch: int = 10) -> None:
        """feature, tv, l2, competition: weights of R_feature, R_TV, ||x||_2 and 1 - JS(teacher, student)
        (0 = plain DeepInversion); iterations, lr: Adam steps and learning rate optimising each batch;
        steps_per_epoch: synthesised batches per epoch (data.batch_size images each)."""
        for key, value in (("feature", feature), ("tv", tv), ("l2", l2), ("competition", competition), ("lr", lr)):
            if value < 0:
                raise PotstillError(f"scheme.args.{key} must be >= 0, got {value}")
        if min(iterations, steps_per_epoch) < 1:
            raise PotstillError("scheme.args: iterations and steps_per_epoch must be >= 1")
        self.weights = {"feature": feature, "tv": tv, "l2": l2, "competition": competition}
        self.iterations, self.lr, self.steps_per_epoch = iterations, lr, steps_per_epoch

    def check_teacher(self, teacher: nn.Module) -> None:
        if not batch_norm_layers(teacher):
            raise PotstillError(
                "scheme deep_inversion matches the statistics of the teacher's BatchNorm layers, but the teacher has "
                "none; use a teacher with BatchNorm (e.g. cnn, small_cnn, resnet20) or scheme dafl or dfad"
            )

    def make_task(self, student, teacher, terms, runner: Workshop) -> Inversion:
        splits = runner.bench.splits
        return Inversion(student, teacher, terms, runner.recipe.data.batch_size, splits.num_classes, splits.input_shape,
                         self.weights, self.iterations, self.lr)
