"""Decoupled knowledge distillation.

Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022, arXiv:2203.08679.

Classical KD splits into a target-class and a non-target-class part,
    KD = TCKD + (1 - p_t^T) * NCKD,
and DKD weights the two freely instead of coupling NCKD to the teacher's confidence:
    DKD = alpha * T^2 * KL(b^T || b^S) + beta * T^2 * KL(p_hat^T || p_hat^S)
where b = [p_target, 1 - p_target] is the binary target/non-target split of softmax(z / T) and
p_hat is softmax(z / T) over the non-target classes only. Paper defaults (CIFAR-100): alpha = 1,
beta = 8, T = 4; its linear warm-up of the loss over 20 epochs is `distill.schedule.warmup_epochs`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_non_negative, check_positive


def target_binary_log_probs(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """log [p_target, 1 - p_target] of softmax(logits / T), (B, 2), computed stably in log space."""
    log_probs = F.log_softmax(logits / temperature, dim=1)  # (B, K)
    log_target = log_probs.gather(1, target[:, None])  # (B, 1)
    others = log_probs.scatter(1, target[:, None], float("-inf"))
    log_rest = torch.logsumexp(others, dim=1, keepdim=True)  # (B, 1)
    return torch.cat([log_target, log_rest], dim=1)


def non_target_log_probs(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax over the non-target classes (target entry -inf), (B, K)."""
    masked = (logits / temperature).scatter(1, target[:, None], float("-inf"))
    return F.log_softmax(masked, dim=1)


def kl_from_log_probs(student_log: torch.Tensor, teacher_log: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) summed over classes, mean over the batch; -inf entries contribute 0."""
    teacher_probs = teacher_log.exp()
    terms = teacher_probs * (teacher_log - student_log)
    return torch.where(teacher_probs > 0, terms, torch.zeros_like(terms)).sum(dim=1).mean()


@LOSSES.register("dkd")
class DKD(DistillationLoss):
    """Decoupled KD: target-class and non-target-class KL weighted separately (Zhao et al. CVPR 2022)."""

    def __init__(self, temperature: float = 4.0, target_weight: float = 1.0, non_target_weight: float = 8.0) -> None:
        super().__init__()
        check_positive("dkd", temperature=temperature)
        check_non_negative("dkd", target_weight=target_weight, non_target_weight=non_target_weight)
        self.temperature = float(temperature)
        self.target_weight = float(target_weight)  # the paper's alpha
        self.non_target_weight = float(non_target_weight)  # the paper's beta

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        target, temperature = batch["target"], self.temperature
        tckd = kl_from_log_probs(
            target_binary_log_probs(student["logits"], target, temperature),
            target_binary_log_probs(teacher["logits"], target, temperature),
        )
        nckd = kl_from_log_probs(
            non_target_log_probs(student["logits"], target, temperature),
            non_target_log_probs(teacher["logits"], target, temperature),
        )
        return temperature**2 * (self.target_weight * tckd + self.non_target_weight * nckd)
