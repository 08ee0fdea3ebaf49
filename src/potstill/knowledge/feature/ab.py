"""AB: knowledge transfer via distillation of activation boundaries.

Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation Boundaries Formed by
Hidden Neurons", AAAI 2019, arXiv:1811.03233. The student, through a connector r = 1x1 conv + BN
to the teacher's channels, learns on which side of zero each teacher neuron is, with margin mu:
    a_i = sum over elements of 1[t > 0] relu(mu - r(s))^2 + 1[t <= 0] relu(mu + r(s))^2
    L = sum_i 2^{-(n-1-i)} a_i / B   over layer pairs i = 0..n-1 (shallow to deep)
mu = 1 (paper). The per-sample sum, the halving weights and the extra factor 3/1000 (the default
weight 3e-3) follow the authors' code (bhheo/AB_distillation) and RepDistiller. The paper uses AB
to initialise the student (train it on AB alone, then with KD): in a recipe that is
    distill: {init_epochs: 30, terms: [{loss: ab, stages: [init]}, {loss: kd, stages: [main]}]}
(RepDistiller: 30 init epochs). The paper compares pre-ReLU responses; stage ends are usually
post-ReLU (then t <= 0 means an inactive neuron), so pair pre-activation layers for its exact setting.
The connector is the library's adapter (resized to the teacher's H x W when the maps differ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.adapters import adapters
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_non_negative


@LOSSES.register("ab")
class ActivationBoundaries(DistillationLoss):
    """Transfer which teacher neurons are active, with a margin hinge on a connector (Heo et al. AAAI 2019)."""

    kind = "feature"
    pairing = "stages"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 3e-3

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        check_non_negative("ab", margin=margin)
        self.margin = float(margin)

    def setup(self, probe: Probe) -> None:
        for index in range(len(probe.student)):
            probe.require_maps(index)
        self.connectors = adapters(probe, always=True)  # the connector is part of the method

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total, count = 0.0, len(self.connectors)
        for index, (connector, s, t) in enumerate(zip(self.connectors, student["features"], teacher["features"])):
            response = connector(s)  # (B, C_t, H_t, W_t)
            active = t > 0
            hinge = torch.where(active, F.relu(self.margin - response), F.relu(self.margin + response))
            weight = 2.0 ** -(count - 1 - index)  # the deepest pair counts most
            total = total + weight * hinge.pow(2).sum() / s.shape[0]
        return total
