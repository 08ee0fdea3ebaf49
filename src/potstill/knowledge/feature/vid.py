"""VID: variational information distillation.

Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information Distillation for Knowledge Transfer",
CVPR 2019, arXiv:1904.05835. VID maximises a variational lower bound on the mutual information
between teacher and student features with a Gaussian q(t | s) = N(mu(s), sigma^2), per channel c:
    sigma_c^2 = softplus(alpha_c) + eps,
    L = mean over elements of 1/2 ( log sigma_c^2 + (t - mu(s))^2 / sigma_c^2 )
(the negative log-likelihood up to a constant), summed over layer pairs. As in the authors' and
RepDistiller's code, mu is three bias-free 1x1 convolutions with ReLU between them, hidden width =
the teacher's channels, and alpha starts where sigma^2 = init_variance = 5.0, eps = 1e-5; the
default weight 1 is RepDistiller's. A different H x W is pooled down to the smaller map (no
parameters) BEFORE the regressor, as in that code. Vectors (B, D) work too: then mu is three
linear layers, and a student map paired with a teacher vector is global-average-pooled first.
With distill.adapters false, mu is the identity where the channel counts agree (only sigma is
learned) and a channel mismatch is an error.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.adapters import match_spatial
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_positive


def regressor(student: int, teacher: int, maps: bool) -> nn.Sequential:
    """mu(s): student -> hidden (= teacher) -> hidden -> teacher channels, ReLU between."""
    def layer(n_in: int, n_out: int) -> nn.Module:
        return nn.Conv2d(n_in, n_out, kernel_size=1, bias=False) if maps else nn.Linear(n_in, n_out, bias=False)

    return nn.Sequential(layer(student, teacher), nn.ReLU(), layer(teacher, teacher), nn.ReLU(), layer(teacher, teacher))


@LOSSES.register("vid")
class VID(DistillationLoss):
    """Maximise a Gaussian lower bound on teacher-student mutual information (Ahn et al. CVPR 2019)."""

    kind = "feature"
    pairing = "stages"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 1.0

    def __init__(self, init_variance: float = 5.0, eps: float = 1e-5) -> None:
        super().__init__()
        check_positive("vid", init_variance=init_variance, eps=eps)
        if not init_variance > eps:
            raise PotstillError(f"loss 'vid' needs init_variance > eps, got init_variance={init_variance}, eps={eps}")
        self.init_variance, self.eps = float(init_variance), float(eps)

    def setup(self, probe: Probe) -> None:
        self.regressors, self.log_scales = nn.ModuleList(), nn.ParameterList()
        start = math.log(math.expm1(self.init_variance - self.eps))  # softplus(start) + eps = init_variance
        for index, (s, t) in enumerate(zip(probe.student, probe.teacher)):
            if s.ndim not in (2, 4) or t.ndim not in (2, 4) or (s.ndim == 2 and t.ndim == 4):
                raise PotstillError(
                    f"loss 'vid' compares feature maps (B, C, H, W) or vectors (B, D), and a student vector cannot "
                    f"predict a teacher map; got {probe.label(index)}"
                )
            if not probe.adapters and s.shape[1] != t.shape[1]:
                raise PotstillError(
                    f"loss 'vid' cannot compare {probe.label(index)} without its regressor, and distill.adapters is false; "
                    "set distill.adapters: true or pair layers with equal channel counts"
                )
            maps = t.ndim == 4
            mean = regressor(s.shape[1], t.shape[1], maps) if probe.adapters else nn.Identity()
            if s.ndim == 4 and not maps:
                mean = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), mean)
            self.regressors.append(mean)
            self.log_scales.append(nn.Parameter(torch.full((t.shape[1],), start)))

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for mean, log_scale, s, t in zip(self.regressors, self.log_scales, student["features"], teacher["features"]):
            if s.ndim == 4 and t.ndim == 4:
                s, t = match_spatial(s, t)  # pool the larger map first
            variance = F.softplus(log_scale) + self.eps  # (C,)
            variance = variance.view(1, -1, *([1] * (t.ndim - 2)))  # (1, C, 1, 1) or (1, C)
            total = total + (0.5 * (variance.log() + (t - mean(s)).pow(2) / variance)).mean()
        return total
