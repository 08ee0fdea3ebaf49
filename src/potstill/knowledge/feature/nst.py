"""Neuron selectivity transfer (NST): match the distributions of neuron activation patterns.

Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer", arXiv:1707.01219,
2017. Each channel's map over the H*W positions is one sample f^k (L2-normalised over positions);
the student's C_S channels and the teacher's C_T channels are compared by squared MMD:
    L_MMD2 = 1/C_T^2 sum_{i,i'} k(f_T^i, f_T^i') + 1/C_S^2 sum_{j,j'} k(f_S^j, f_S^j')
             - 2/(C_T C_S) sum_{i,j} k(f_T^i, f_S^j),        k(x, y) = (x^T y + c)^d
averaged over the batch and summed over layer pairs. The polynomial kernel with d = 2, c = 0 (the
paper's best) is the default. Channel counts may differ; a different H x W is pooled down to the
smaller map (no parameters). The weight 50 is RepDistiller's (the paper writes lambda/2 L_MMD2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.knowledge.adapters import match_spatial
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_non_negative


@LOSSES.register("nst")
class NST(DistillationLoss):
    """Squared MMD between student and teacher channel activation patterns, polynomial kernel (Huang & Wang 2017)."""

    kind = "feature"
    pairing = "stages"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 50.0

    def __init__(self, degree: int = 2, constant: float = 0.0) -> None:
        super().__init__()
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
            raise PotstillError(f"loss 'nst' needs degree (of the polynomial kernel) to be an integer >= 1, got {degree!r}")
        check_non_negative("nst", constant=constant)
        self.degree = degree
        self.constant = float(constant)

    def setup(self, probe: Probe) -> None:
        for index in range(len(probe.student)):
            probe.require_maps(index)

    def kernel_mean(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, Ca, N), (B, Cb, N) -> mean over the batch and all channel pairs of (a_i . b_j + c)^d."""
        return (a @ b.transpose(1, 2) + self.constant).pow(self.degree).mean()

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for s, t in zip(student["features"], teacher["features"]):
            s, t = match_spatial(s, t)  # (B, C_S, H, W), (B, C_T, H, W)
            s, t = F.normalize(s.flatten(2), dim=2), F.normalize(t.flatten(2), dim=2)  # (B, C, H*W)
            total = total + self.kernel_mean(t, t) + self.kernel_mean(s, s) - 2 * self.kernel_mean(s, t)
        return total

    def extra_repr(self) -> str:
        return f"degree={self.degree}, constant={self.constant}"
