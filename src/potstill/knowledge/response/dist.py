"""DIST: distillation by correlation of predictions, between and within classes.

Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022,
arXiv:2205.10536. With Y = softmax(Z / tau) for student (S) and teacher (T), shapes (B, K):
    L_inter = 1 - mean_i  pearson(Y_S[i, :], Y_T[i, :])     (each sample's class ranking)
    L_intra = 1 - mean_k  pearson(Y_S[:, k], Y_T[:, k])     (each class across the batch)
    L = tau^2 * (inter_weight * L_inter + intra_weight * L_intra)
Matching correlations rather than exact probabilities tolerates the larger gap to a stronger
teacher. Defaults from the paper's ImageNet setting: beta = gamma = 1, tau = 1.
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_non_negative, check_positive


def row_pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of a with the same row of b: (N, M), (N, M) -> (N,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@LOSSES.register("dist")
class DIST(DistillationLoss):
    """Inter- and intra-class Pearson correlation of softened predictions (Huang et al. NeurIPS 2022)."""

    single_process = "its intra-class term correlates each class's predictions across the batch"

    def __init__(self, temperature: float = 1.0, inter_weight: float = 1.0, intra_weight: float = 1.0) -> None:
        super().__init__()
        check_positive("dist", temperature=temperature)
        check_non_negative("dist", inter_weight=inter_weight, intra_weight=intra_weight)
        self.temperature = float(temperature)
        self.inter_weight = float(inter_weight)  # the paper's beta
        self.intra_weight = float(intra_weight)  # the paper's gamma

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        y_student = (student["logits"] / self.temperature).softmax(dim=1)  # (B, K)
        y_teacher = (teacher["logits"] / self.temperature).softmax(dim=1)
        inter = 1 - row_pearson(y_student, y_teacher).mean()
        intra = 1 - row_pearson(y_student.t(), y_teacher.t()).mean()
        return self.temperature**2 * (self.inter_weight * inter + self.intra_weight * intra)
