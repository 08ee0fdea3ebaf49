"""FSP: the flow of solution procedure between consecutive layers.

Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast Optimization, Network Minimization
and Transfer Learning", CVPR 2017. For two consecutive tapped layers F1 (C1, h, w) and F2 (C2, h, w)
of one model the FSP matrix is the C1 x C2 matrix
    G_ij = sum over positions of F1_i F2_j / (h w),
the larger map pooled to the smaller one's size first (as in RepDistiller), and
    L = mean over consecutive pairs j of mean over batch and entries of (G_S^j - G_T^j)^2
(the paper weights the pairs equally; RepDistiller sums them instead of averaging). The paper uses
FSP to initialise the student before training it on the task: in a recipe that is
`distill: {init_epochs: ..., terms: [{loss: fsp, stages: [init]}, ...]}`, which is also how
RepDistiller uses it (as init only, so it gives no main-stage weight); the default weight here is 1.
Student and teacher channel counts must agree for the matrices to compare; where they do not, a
learned adapter (1x1 conv + BN, the library's) maps the student layer to the teacher's shape.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from potstill.knowledge.adapters import adapter, match_spatial
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe


def flow_matrices(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """FSP matrices (B, C_j, C_j+1) between each pair of consecutive feature maps (B, C, H, W)."""
    matrices = []
    for first, second in pairwise(features):
        first, second = match_spatial(first, second)  # pool the larger map to the smaller size
        positions = first.shape[2] * first.shape[3]
        matrices.append(torch.einsum("bchw,bdhw->bcd", first, second) / positions)  # (B, C1, C2)
    return matrices


@LOSSES.register("fsp")
class FSP(DistillationLoss):
    """Match the Gram matrices between consecutive layers, the flow of solution procedure (Yim et al. CVPR 2017)."""

    kind = "relation"
    pairing = "stages"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 1.0
    min_pairs = 2

    def setup(self, probe: Probe) -> None:
        for index in range(len(probe.student)):
            probe.require_maps(index)
        self.adapters = nn.ModuleList(
            adapter(probe, index) if s.shape[1] != t.shape[1] else nn.Identity()  # only channels must agree
            for index, (s, t) in enumerate(zip(probe.student, probe.teacher))
        )

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        projected = [project(s) for project, s in zip(self.adapters, student["features"])]
        pairs = list(zip(flow_matrices(projected), flow_matrices(list(teacher["features"]))))
        return sum((g_s - g_t).pow(2).mean() for g_s, g_t in pairs) / len(pairs)
