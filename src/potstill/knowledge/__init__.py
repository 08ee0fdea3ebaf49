"""Distillation losses, one file each, grouped by the kind of knowledge they transfer:
response/ (logits), feature/ (intermediate layers), relation/ (relations between samples or layers),
plus the layer losses of transformer/ and the token-level divergences of token/ (language models).

Every loss is an `nn.Module` registered in LOSSES; `forward(student, teacher, batch)` returns an
unweighted scalar. Weights and schedules live in the recipe, never in the loss. Every module in
the family folders is imported here, so adding a loss is adding one file.
"""

import importlib
import pkgutil

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe

FAMILIES = ("response", "feature", "relation", "transformer", "token")

for _family in FAMILIES:
    _package = importlib.import_module(f"{__name__}.{_family}")
    for _module in pkgutil.iter_modules(_package.__path__):
        importlib.import_module(f"{_package.__name__}.{_module.name}")  # registers its losses

__all__ = ["LOSSES", "DistillationLoss", "Outputs", "Probe", "create_loss"]


def create_loss(name: str, **kwargs) -> DistillationLoss:
    """Build a registered loss by name; its constructor arguments are its hyperparameters."""
    return LOSSES.create(name, **kwargs)
