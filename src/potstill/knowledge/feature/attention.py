"""Attention transfer (AT), activation-based spatial attention maps.

Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer", ICLR 2017, arXiv:1612.03928.
For a feature map A (C, H, W) the attention map is Q = vec( sum_c |A_c|^p ), p = 2, and
    L_AT = sum_j  mean over batch and positions of ( Q_S^j / ||Q_S^j||_2 - Q_T^j / ||Q_T^j||_2 )^2
for layer pairs j. The paper writes beta/2 * sum_j || . ||_p with beta = 1000 spread over the
attention-map size and batch; the mean here is that normalisation and 1000 is the default weight
(as in the authors' and RepDistiller's code). Channel counts may differ; a different H x W is
pooled down to the smaller map (no parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.adapters import match_spatial
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_positive


def attention_map(features: torch.Tensor, p: float) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W): sum over channels of |A_c|^p."""
    return features.abs().pow(p).sum(dim=1, keepdim=True)


@LOSSES.register("at")
class AttentionTransfer(DistillationLoss):
    """Match L2-normalised spatial attention maps sum_c |A_c|^p (Zagoruyko & Komodakis ICLR 2017)."""

    kind = "feature"
    pairing = "stages"
    default_weight = 1000.0

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        check_positive("at", p=p)
        self.p = float(p)

    def setup(self, probe: Probe) -> None:
        for index in range(len(probe.student)):
            probe.require_maps(index)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for s, t in zip(student["features"], teacher["features"]):
            q_s, q_t = match_spatial(attention_map(s, self.p), attention_map(t, self.p))
            q_s, q_t = F.normalize(q_s.flatten(1), dim=1), F.normalize(q_t.flatten(1), dim=1)  # (B, H*W)
            total = total + (q_s - q_t).pow(2).mean()
        return total
