"""Adversarial distillation on a tapped layer: a discriminator tells the teacher's features from
the student's, and the student learns to fool it.

The game of `knowledge/response/adversarial.py` (Xu, Hsu & Huang, arXiv:1709.00513; Wang et al.,
KDGAN, NeurIPS 2018) played on intermediate features instead of logits, as adversarial feature
distillation does (e.g. Belagiannis, Farshad & Galasso, "Adversarial Network Compression", ECCV
2018 workshops, arXiv:1803.10750). Per layer pair i, with a_i the student's feature through its
adapter (identity when the shapes already match) and both sides globally average-pooled to (B, C):

    L = sum_i  L_D_i(stopgrad f_t, stopgrad a_i(f_s)) + L_fool_i(a_i(f_s); stopgrad parameters of D_i)

The adapters train with the student; each pair's discriminator trains in the term's own optimizer
group. By default the deepest stage ends are paired (`pairs: auto`); name layers with `pairs`.
"""

from __future__ import annotations

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.adapters import adapters
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe
from potstill.knowledge.response.adversarial import Discriminator, adversarial_game, check_flag, check_hidden, labels_of


def pooled(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) by global average pooling; (B, C) unchanged."""
    return features.mean(dim=(2, 3)) if features.ndim == 4 else features


@LOSSES.register("adversarial_features")
class AdversarialFeatures(DistillationLoss):
    """A discriminator per layer pair tells teacher from student features; the student learns to fool it."""

    kind = "feature"
    pairing = "last_stage"
    modality = "image"
    own_optimizer = True  # the discriminators train in an optimizer group of their own

    def __init__(self, hidden: list[int] = (256, 256), conditional: bool = True) -> None:
        super().__init__()
        self.hidden = check_hidden("adversarial_features", hidden)
        self.conditional = check_flag("adversarial_features", conditional=conditional)

    def setup(self, probe: Probe) -> None:
        for index, (student, teacher) in enumerate(zip(probe.student, probe.teacher)):
            if student.ndim not in (2, 4) or teacher.ndim not in (2, 4):
                raise PotstillError(
                    f"loss '{probe.loss}' needs feature maps (B, C, H, W) or vectors (B, C) from both models, got "
                    f"{probe.label(index)}; pair other layers (`potstill list taps MODEL`)"
                )
        self.adapters = adapters(probe)
        classes = probe.num_classes if self.conditional else 0
        self.discriminators = nn.ModuleList(
            Discriminator(teacher.shape[1], self.hidden, classes) for teacher in probe.teacher
        )

    def own_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminators.parameters())

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = labels_of(batch, self.conditional, "adversarial_features")
        pairs = zip(self.discriminators, self.adapters, student["features"], teacher["features"])
        return sum(adversarial_game(discriminator, pooled(t), pooled(adapter(s)), labels)
                   for discriminator, adapter, s, t in pairs)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, conditional={self.conditional}"
