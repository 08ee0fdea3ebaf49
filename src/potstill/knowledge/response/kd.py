"""Soft-target knowledge distillation.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 deep learning
workshop, arXiv:1503.02531.

    L_KD = T^2 * KL( softmax(z_t / T) || softmax(z_s / T) )        (averaged over the batch)

The T^2 factor keeps the gradient magnitude of the soft term independent of T (the gradient of
the KL part alone scales as 1/T^2). The recipe adds the hard-label term:
    L = alpha * CE(z_s, y) + beta * L_KD
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(p_teacher || p_student) at temperature T, mean over the batch. Logits: (B, K)."""
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


@LOSSES.register("kd")
class KD(DistillationLoss):
    """Soft targets at temperature T, KL scaled by T^2 (Hinton et al. 2015, arXiv:1503.02531)."""

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise PotstillError(f"kd temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return soft_target_kl(student["logits"], teacher["logits"], self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
