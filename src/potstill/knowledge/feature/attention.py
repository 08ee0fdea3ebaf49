"""Attention transfer (AT), activation-based spatial attention maps.

Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer", ICLR 2017, arXiv:1612.03928.
For a feature map A (C, H, W) the attention map is Q(A) = vec( sum_c |A_c|^p ), p = 2, and
    L_AT = sum_j  mean over batch and positions of ( Q_S^j / ||Q_S^j||_2 - Q_T^j / ||Q_T^j||_2 )^2
for layer pairs j. The paper writes beta/2 * sum_j || . ||_p with beta = 1000 spread over the
attention-map size and batch; the mean here is that normalisation and 1000 is the default weight
(as in the authors' and RepDistiller's code). Channel counts may differ.

Different H x W: let P be adaptive average pooling of the larger map down to the smaller map's
H x W (no parameters). `resize` says what P is applied to (written for a larger teacher map; a larger
student map is treated the same way):
    resize = "features" (default):  Q_S = Q(A_S),  Q_T = Q( P(A_T) )    pool the features, then take Q
    resize = "attention":           Q_S = Q(A_S),  Q_T = P( Q(A_T) )    take Q, then pool the map
"features" is what RepDistiller's distiller_zoo/AT.py does (the code behind the CIFAR-100 AT numbers
of Tian et al., CRD, ICLR 2020), so recipes reproduce those; the authors' own code only pairs maps
of equal size. (RepDistiller averages A_c^p over channels instead of summing |A_c|^p, the same after
the normalisation for even p, and pools to a square from H alone, the same for square maps.) The two
conventions agree when the sizes match and otherwise differ, since pooling and |.|^p do not commute
(on random maps: a few percent post-ReLU, tens of percent on signed maps).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

from potstill.errors import PotstillError
from potstill.knowledge.adapters import match_spatial
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_positive

Resize = Literal["features", "attention"]


def attention_map(features: torch.Tensor, p: float) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W): sum over channels of |A_c|^p."""
    return features.abs().pow(p).sum(dim=1, keepdim=True)


@LOSSES.register("at")
class AttentionTransfer(DistillationLoss):
    """Match L2-normalised spatial attention maps sum_c |A_c|^p (Zagoruyko & Komodakis ICLR 2017).

    Maps of different H x W are matched by pooling the larger one's features (`resize="features"`,
    RepDistiller's convention) or its attention map (`resize="attention"`)."""

    kind = "feature"
    pairing = "stages"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 1000.0

    def __init__(self, p: float = 2.0, resize: Resize = "features") -> None:
        super().__init__()
        check_positive("at", p=p)
        if resize not in get_args(Resize):
            choices = ", ".join(repr(choice) for choice in get_args(Resize))
            raise PotstillError(f"loss 'at' needs resize to be one of {choices}, got {resize!r}")
        self.p = float(p)
        self.resize = resize

    def setup(self, probe: Probe) -> None:
        for index in range(len(probe.student)):
            probe.require_maps(index)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for s, t in zip(student["features"], teacher["features"]):
            if self.resize == "features":
                s, t = match_spatial(s, t)  # (B, C, h, w) each: the larger map average-pooled
            # with "features" the sizes already match and this is a no-op
            q_s, q_t = match_spatial(attention_map(s, self.p), attention_map(t, self.p))  # (B, 1, h, w)
            q_s, q_t = F.normalize(q_s.flatten(1), dim=1), F.normalize(q_t.flatten(1), dim=1)  # (B, h*w)
            total = total + (q_s - q_t).pow(2).mean()
        return total
