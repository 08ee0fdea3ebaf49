"""Adversarial distillation: a discriminator tells the teacher's logits from the student's, and
the student learns to fool it.

Xu, Hsu & Huang, "Training Shallow and Thin Networks for Acceleration via Knowledge Distillation
with Conditional Adversarial Networks", ICLR 2018 workshop, arXiv:1709.00513 (a discriminator on
logits, conditioned on the label); Wang, Zhang, Sun & Qi, "KDGAN: Knowledge Distillation with
Generative Adversarial Networks", NeurIPS 2018 (the same game with a teacher in it). With D an MLP
on logits z (and the one-hot label y when `conditional`), sigma the logistic function:

    L_D    = -log sigma(D(z_t, y)) - log(1 - sigma(D(z_s, y)))     the discriminator's loss
    L_fool = -log sigma(D(z_s, y))                                  the student's (non-saturating) loss
    L      = L_D(stopgrad z_t, stopgrad z_s)  +  L_fool(z_s; stopgrad parameters of D)

Both halves are in the one returned scalar, so the loop's one backward trains both players: L_D
reaches only the discriminator (its inputs are detached), L_fool only the student (it runs through
a copy of D whose parameters are detached). The discriminator has its own optimizer group
(`own_optimizer`), so its momentum and gradient clipping are its own. The recipe's weight scales
both halves (for the discriminator it acts as a learning-rate factor); add `kd` beside this term
as the papers do. Here the MLP's widths are ours (LeakyReLU 0.2 between linear layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe


class Discriminator(nn.Module):
    """MLP from a (B, D) input (and, conditional, the (B,) labels) to one real/fake logit per sample."""

    def __init__(self, inputs: int, hidden: list[int], classes: int = 0) -> None:
        super().__init__()
        self.classes = classes  # 0: unconditional
        widths, layers = [inputs + classes, *hidden], []
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes:
            x = torch.cat([x, F.one_hot(labels, self.classes).to(x.dtype)], dim=1)  # (B, D + K)
        return self.net(x).squeeze(-1)  # (B,)


def adversarial_game(discriminator: Discriminator, teacher: torch.Tensor, student: torch.Tensor,
                     labels: torch.Tensor | None) -> torch.Tensor:
    """L_D on detached inputs + L_fool through detached parameters; inputs (B, D)."""
    real = discriminator(teacher.detach(), labels)
    fake = discriminator(student.detach(), labels)
    discriminator_loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                          + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    frozen = {name: value.detach() for name, value in discriminator.named_parameters()}
    frozen |= dict(discriminator.named_buffers())
    fooled = functional_call(discriminator, frozen, (student, labels))
    return discriminator_loss + F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))


def check_hidden(loss: str, hidden: list[int]) -> list[int]:
    if not isinstance(hidden, (list, tuple)) or not hidden or not all(
            isinstance(width, int) and not isinstance(width, bool) and width > 0 for width in hidden):
        raise PotstillError(f"loss '{loss}' needs hidden: a list of layer widths >= 1 (e.g. [256, 256]), got {hidden!r}")
    return list(hidden)


def check_flag(loss: str, **flags: object) -> bool:
    (name, value), = flags.items()
    if not isinstance(value, bool):
        raise PotstillError(f"loss '{loss}' needs {name}: true or false, got {value!r}")
    return value


def labels_of(batch: dict[str, torch.Tensor], conditional: bool, loss: str) -> torch.Tensor | None:
    if not conditional:
        return None
    if "target" not in batch:
        raise PotstillError(f"loss '{loss}' with conditional: true needs the batch's labels (target); set conditional: false")
    return batch["target"]


@LOSSES.register("adversarial")
class AdversarialLogits(DistillationLoss):
    """A discriminator tells teacher from student logits; the student learns to fool it (Xu et al. arXiv:1709.00513)."""

    own_optimizer = True  # the discriminator trains in an optimizer group of its own

    def __init__(self, hidden: list[int] = (256, 256), conditional: bool = True) -> None:
        super().__init__()
        self.hidden = check_hidden("adversarial", hidden)
        self.conditional = check_flag("adversarial", conditional=conditional)

    def setup(self, probe: Probe) -> None:
        self.discriminator = Discriminator(probe.num_classes, self.hidden, probe.num_classes if self.conditional else 0)

    def own_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = labels_of(batch, self.conditional, "adversarial")
        return adversarial_game(self.discriminator, teacher["logits"], student["logits"], labels)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, conditional={self.conditional}"
