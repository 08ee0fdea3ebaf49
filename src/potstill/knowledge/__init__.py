"""Distillation losses, one file each, grouped by the kind of knowledge they transfer.

Every loss is an `nn.Module` registered in LOSSES; `forward(student, teacher, batch)` returns an
unweighted scalar. Weights and schedules live in the recipe, never in the loss.
"""

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs
from potstill.knowledge.response import dist, dkd, kd, logit_standard  # noqa: F401  (registers the losses)

__all__ = ["LOSSES", "DistillationLoss", "Outputs", "create_loss"]


def create_loss(name: str, **kwargs) -> DistillationLoss:
    """Build a registered loss by name; its constructor arguments are its hyperparameters."""
    return LOSSES.create(name, **kwargs)
