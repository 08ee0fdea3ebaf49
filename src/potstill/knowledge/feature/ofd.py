"""OFD: a comprehensive overhaul of feature distillation (margin ReLU + partial L2).

Heo, Kim, Yun, Park, Kwak & Choi, "A Comprehensive Overhaul of Feature Distillation", ICCV 2019,
arXiv:1904.01866. Teacher features pass a margin ReLU t' = max(t, m_c), m_c = E[t_c | t_c < 0]
(the expected negative response of channel c), the student through a connector r = 1x1 conv + BN,
and a partial L2 distance skips positions where the student is already below a non-positive target:
    d(s, t') = sum over elements of (r(s) - t')^2 where not (r(s) <= t' and t' <= 0)
    L = sum_i 2^{-(n-1-i)} d_i / B   over layer pairs i = 0..n-1 (shallow to deep)
as in the official code (clovaai/overhaul-distillation), whose further 1/1000 is the default weight
1e-3. Deviations: the paper derives m_c from the teacher's BatchNorm statistics assuming a Gaussian
pre-ReLU response; here `setup` estimates it from the dry run's teacher features, the mean of the
negative values per channel (0 where there are none, e.g. post-ReLU taps), kept as a buffer. The
paper taps pre-ReLU features of both models: pair such layers explicitly for its exact setting
(stage ends are usually post-ReLU, where m = 0). The connector is always learned (as in the paper);
it is the library's adapter (default init, resized to the teacher's H x W when the maps differ).
"""

from __future__ import annotations

import torch

from potstill.knowledge.adapters import adapters
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe


def negative_mean(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (C,): mean of the negative values of each channel, 0 where there are none."""
    values = features.transpose(0, 1).flatten(1)  # (C, B*H*W)
    negative = values.clamp(max=0)
    count = (values < 0).sum(dim=1)  # (C,)
    return negative.sum(dim=1) / count.clamp(min=1)


def partial_l2(student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of (s - t')^2 except where s <= t' <= 0 (the student already inactive enough)."""
    keep = (student > target) | (target > 0)
    return ((student - target).pow(2) * keep).sum()


@LOSSES.register("ofd")
class OFD(DistillationLoss):
    """Partial L2 between a connector of the student and margin-ReLU teacher features (Heo et al. ICCV 2019)."""

    kind = "feature"
    pairing = "stages"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 1e-3

    def setup(self, probe: Probe) -> None:
        for index in range(len(probe.student)):
            probe.require_maps(index)
        self.connectors = adapters(probe, always=True)  # the connector is part of the method
        self.count = len(probe.teacher)
        for index, t in enumerate(probe.teacher):
            self.register_buffer(f"margin_{index}", negative_mean(t.float()).view(1, -1, 1, 1))  # (1, C, 1, 1)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for index, (connector, s, t) in enumerate(zip(self.connectors, student["features"], teacher["features"])):
            target = torch.max(t, getattr(self, f"margin_{index}"))  # margin ReLU, (B, C, H, W)
            weight = 2.0 ** -(self.count - 1 - index)  # the deepest pair counts most
            total = total + weight * partial_l2(connector(s), target) / s.shape[0]
        return total
