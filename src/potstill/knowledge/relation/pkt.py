"""Probabilistic knowledge transfer (PKT): match the conditional probability of each sample's
neighbours in embedding space.

Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer",
ECCV 2018, arXiv:1803.10837. With x_i the L2-normalised embeddings of one model and the cosine
kernel K(a, b) = (cos(a, b) + 1) / 2, each row is normalised to a conditional distribution
    p_{j|i} = K(x_i, x_j) / sum_k K(x_i, x_k)      (student: p, teacher: q)
    L_PKT = KL(q || p) = sum_{i,j} q_{j|i} log( (q_{j|i} + eps) / (p_{j|i} + eps) ),   eps = 1e-7
Here the sum is averaged over the B^2 entries, as in the authors' code (also used by RepDistiller),
whose weight 30000 is the default; multiply by B^2 for the paper's plain sum. Each sample's
kernel with itself is kept in its row, as in that code. Student and teacher may differ in
dimension (the kernel is within each model); feature maps are flattened.
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_positive


def conditional_probabilities(features: torch.Tensor, eps: float) -> torch.Tensor:
    """(B, ...) -> (B, B): row i is p_{.|i} under the cosine kernel (cos + 1) / 2."""
    flat = features.flatten(1)  # (B, D)
    flat = flat / (flat.norm(dim=1, keepdim=True) + eps)
    kernel = (flat @ flat.t() + 1) / 2  # (B, B), in [0, 1]
    return kernel / kernel.sum(dim=1, keepdim=True)


@LOSSES.register("pkt")
class PKT(DistillationLoss):
    """KL between teacher and student cosine-kernel neighbour distributions (Passalis & Tefas ECCV 2018)."""

    kind = "relation"
    single_process = "it compares probabilities over pairs of the batch's samples"
    pairing = "embedding"
    default_weight = 30000.0

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        check_positive("pkt", eps=eps)
        self.eps = float(eps)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for s, t in zip(student["features"], teacher["features"]):
            p, q = conditional_probabilities(s, self.eps), conditional_probabilities(t, self.eps)  # (B, B)
            total = total + (q * torch.log((q + self.eps) / (p + self.eps))).mean()
        return total

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
