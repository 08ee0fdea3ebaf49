"""Teacher-free KD with a manually designed virtual teacher (Tf-KD_reg).

Yuan, Tay, Li, Wang & Feng, "Revisiting Knowledge Distillation via Label Smoothing
Regularization", CVPR 2020, arXiv:1909.11723. The virtual teacher puts probability a on the true
class c and (1 - a) / (K - 1) on every other class; the student matches it softened at T:
    p_d(k) = a if k = c else (1 - a) / (K - 1)
    L_reg  = KL( softmax(p_d / T) || softmax(z_s) )      (mean over batch and classes)
This follows the official code (yuanli2333/Teacher-free-Knowledge-Distillation, my_loss_function.py):
the softmax is taken over the probability vector p_d divided by T, the student's logits are not
divided by T, there is no T^2 factor and the KL is averaged over all B x K entries (nn.KLDivLoss's
'mean'); the paper's written equation softens the student at T too. The recipe adds the hard-label
term: L = (1 - alpha) CE + alpha * multiplier * L_reg. Defaults: the official CIFAR-100 ResNet-18
setting, a = 0.99, T = 20, alpha = 0.1, multiplier = 100, so the default weight is 10 and the
recipe's distill.alpha should be 0.9. No teacher runs (needs_teacher = False).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_positive


def virtual_teacher(target: torch.Tensor, num_classes: int, correct_probability: float) -> torch.Tensor:
    """(B,) labels -> (B, K) distributions: a on the label, (1 - a) / (K - 1) elsewhere."""
    other = (1 - correct_probability) / (num_classes - 1)
    probs = torch.full((len(target), num_classes), other, device=target.device)
    return probs.scatter(1, target[:, None], correct_probability)


@LOSSES.register("lsr")
class LabelSmoothingTeacher(DistillationLoss):
    """Tf-KD_reg: KL to a hand-made virtual teacher, label smoothing as KD (Yuan et al. CVPR 2020)."""

    needs_teacher = False
    default_weight = 10.0  # reg_alpha 0.1 x multiplier 100, official CIFAR-100 ResNet-18 setting

    def __init__(self, correct_probability: float = 0.99, temperature: float = 20.0) -> None:
        super().__init__()
        check_positive("lsr", temperature=temperature)
        if not 0 < correct_probability <= 1:
            raise PotstillError(
                f"loss 'lsr' needs 0 < correct_probability <= 1, got correct_probability={correct_probability}"
            )
        self.correct_probability = float(correct_probability)
        self.temperature = float(temperature)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = student["logits"]  # (B, K)
        if logits.shape[1] < 2:
            raise PotstillError(f"loss 'lsr' needs at least 2 classes, got {logits.shape[1]}")
        probs = virtual_teacher(batch["target"], logits.shape[1], self.correct_probability).to(logits.dtype)
        soft = F.softmax(probs / self.temperature, dim=1)  # (B, K)
        return F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="none").mean()

    def extra_repr(self) -> str:
        return f"correct_probability={self.correct_probability}, temperature={self.temperature}"
