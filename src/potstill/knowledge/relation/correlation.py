"""Correlation congruence (CC): match the correlation between instances of a batch.

Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang, "Correlation Congruence for Knowledge Distillation",
ICCV 2019, arXiv:1904.01802. With f_i the L2-normalised embeddings of one model, the correlation
matrix uses the Gaussian RBF kernel exp(-gamma ||f_i - f_j||^2) = exp(-2 gamma) exp(2 gamma f_i.f_j),
approximated by its P-th order Taylor series in f_i . f_j:
    C_ij = sum_{p=0}^{P} exp(-2 gamma) (2 gamma)^p / p!  (f_i . f_j)^p
    L_CC = 1/b^2 || C_S - C_T ||_F^2
gamma 0.4 and P 2 are the paper's choices. The kernel is within each model, so student and
teacher embeddings may differ in dimension. This is the paper's CC term alone (its instance term is
ordinary KD: add a `kd` term). RepDistiller's `Correlation` class is a different, simplified
formula (products of neighbouring samples' feature differences, weight 0.02) and is not used; its
weight does not carry over. The paper's own weight beta could not be confirmed from the sources
available here, so the default weight is 1: tune it (the loss is small, entries of C lie in (0, 1)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_positive


def correlation_matrix(features: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """(B, ...) -> (B, B): Taylor-approximated Gaussian RBF kernel between normalised embeddings."""
    flat = F.normalize(features.flatten(1), dim=1)  # (B, D)
    cosine = flat @ flat.t()  # (B, B)
    return sum(
        math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * cosine.pow(p) for p in range(order + 1)
    )


@LOSSES.register("cc")
class CorrelationCongruence(DistillationLoss):
    """Match Taylor-approximated RBF correlation matrices of the batch's embeddings (Peng et al. ICCV 2019)."""

    kind = "relation"
    single_process = "it correlates the batch's samples with each other"
    pairing = "embedding"
    default_weight = 1.0

    def __init__(self, gamma: float = 0.4, order: int = 2) -> None:
        super().__init__()
        check_positive("cc", gamma=gamma)
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise PotstillError(f"loss 'cc' needs order (the Taylor order P) to be an integer >= 1, got {order!r}")
        self.gamma = float(gamma)
        self.order = order

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for s, t in zip(student["features"], teacher["features"]):
            c_s = correlation_matrix(s, self.gamma, self.order)
            c_t = correlation_matrix(t, self.gamma, self.order)
            total = total + (c_s - c_t).pow(2).mean()  # 1/b^2 ||C_S - C_T||_F^2
        return total

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, order={self.order}"
