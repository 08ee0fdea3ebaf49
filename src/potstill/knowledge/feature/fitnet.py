"""FitNets: hints from an intermediate teacher layer.

Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015,
arXiv:1412.6550. The student's guided layer v_g, through a learned regressor r, regresses the
teacher's hint layer u_h:
    L_HT = 1/2 || u_h(x) - r(v_g(x)) ||^2
Here the squared error is averaged over elements (as in the RepDistiller benchmark code, whose
weight 100 is the default) and summed over layer pairs. The regressor is a 1x1 convolution with
BatchNorm, resized to the teacher's H x W (the paper used a convolution whose kernel size makes the
shapes agree). The paper's two-stage training (hints first, then KD on the whole student) is
`distill.init_epochs` with this loss in `stages: [init]`; by default the middle layers are paired.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.adapters import adapters
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe


@LOSSES.register("fitnet")
class FitNet(DistillationLoss):
    """Hints: a learned regressor maps the student's guided layer onto the teacher's hint layer (Romero et al. ICLR 2015)."""

    kind = "feature"
    pairing = "middle_stage"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 100.0

    def setup(self, probe: Probe) -> None:
        self.regressors = adapters(probe, always=True)  # the regressor is part of the method

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pairs = zip(self.regressors, student["features"], teacher["features"])
        return sum(F.mse_loss(regressor(s), t) for regressor, s, t in pairs)
