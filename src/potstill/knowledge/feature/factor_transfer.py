"""Factor Transfer: a paraphraser compresses the teacher's features into factors the student imitates.

Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer",
NeurIPS 2018, arXiv:1802.04977. A paraphraser P (conv encoder to k * C_t channels, transposed-conv
decoder back) is first trained alone to reconstruct the teacher's last feature map x,
    L_rec = || x - P(x) ||^2                           (mean squared error, as in RepDistiller),
then frozen; a translator (conv encoder of the student's map to the same factor size) trains with
the student on
    L_FT = || F_T / ||F_T||_2 - F_S / ||F_S||_2 ||_1     (factors flattened per sample).
The L1 distance is averaged over elements, as F.l1_loss in the authors' code
(Jangho-Kim/Factor-Transfer-pytorch), whose beta = 500 is the default weight (RepDistiller's 200
goes with a different, channel-pooled factor). Paraphrase rate k = 0.5; both modules are 3x3 convs
with LeakyReLU(0.1), without BatchNorm, as in the authors' code. Deviations: the authors trained
the paraphraser with an L1 reconstruction for about 5 epochs; we use the paper's L2 and
RepDistiller's 30 epochs (`paraphraser_epochs`). The translator's factor is resized to the
teacher's H x W when the maps differ.

Stages: the paraphraser is trainable (requires_grad) from `setup` until `finish_preparation`, so
the preparation stage's optimizer takes it; afterwards it is frozen and kept in eval mode. If
forward runs before the paraphraser is frozen (paraphraser_epochs = 0, or a caller that skips the
preparation stage), the paraphraser trains online: the loss adds its reconstruction error and the
teacher factor is detached in the FT term.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.adapters import resize_map
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_positive


def conv_stack(channels: list[int], transposed: bool = False) -> nn.Sequential:
    """3x3 (transposed) convolutions, each followed by LeakyReLU(0.1); spatial size kept."""
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    layers = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [conv(c_in, c_out, kernel_size=3, padding=1), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


def unit_factor(factor: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*H*W) with unit L2 norm per sample."""
    return F.normalize(factor.flatten(1), dim=1)


@LOSSES.register("ft")
class FactorTransfer(DistillationLoss):
    """Factor Transfer: the student's translated factor imitates a pre-trained paraphraser's teacher factor (Kim et al. NeurIPS 2018)."""

    kind = "feature"
    pairing = "last_stage"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 500.0

    def __init__(self, rate: float = 0.5, paraphraser_epochs: int = 30) -> None:
        super().__init__()
        check_positive("ft", rate=rate)
        if not isinstance(paraphraser_epochs, int) or paraphraser_epochs < 0:
            raise PotstillError(f"loss 'ft' needs paraphraser_epochs to be an integer >= 0, got {paraphraser_epochs!r}")
        self.rate = float(rate)
        self.prepare_epochs = paraphraser_epochs
        self.frozen = False

    def setup(self, probe: Probe) -> None:
        self.encoders, self.decoders, self.translators = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for index in range(len(probe.student)):
            probe.require_maps(index)
            c_s, c_t = probe.student[index].shape[1], probe.teacher[index].shape[1]
            c_f = max(1, round(self.rate * c_t))  # factor channels
            self.encoders.append(conv_stack([c_t, c_t, c_f, c_f]))
            self.decoders.append(conv_stack([c_f, c_f, c_t, c_t], transposed=True))
            self.translators.append(conv_stack([c_s, c_s, c_f, c_f]))

    def paraphraser_parameters(self):
        return [*self.encoders.parameters(), *self.decoders.parameters()]

    def reconstruction(self, teacher_features: list[torch.Tensor]) -> torch.Tensor:
        pairs = zip(self.encoders, self.decoders, teacher_features)
        return sum(F.mse_loss(decoder(encoder(t)), t) for encoder, decoder, t in pairs)  # t: (B, C_t, H, W)

    def preparation_loss(self, teacher: Outputs) -> torch.Tensor:
        return self.reconstruction(teacher["features"])

    def finish_preparation(self) -> None:
        self.frozen = True
        for parameter in self.paraphraser_parameters():
            parameter.requires_grad_(False)
        self.encoders.eval()
        self.decoders.eval()

    def train(self, mode: bool = True) -> FactorTransfer:
        super().train(mode)
        if self.frozen and hasattr(self, "encoders"):  # a frozen paraphraser never changes
            self.encoders.eval()
            self.decoders.eval()
        return self

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = self.reconstruction(teacher["features"]) if not self.frozen else 0.0
        for encoder, translator, s, t in zip(self.encoders, self.translators, student["features"], teacher["features"]):
            with torch.no_grad():
                factor_t = encoder(t)  # (B, C_f, H_t, W_t)
            factor_s = resize_map(translator(s), tuple(factor_t.shape[2:]))  # (B, C_f, H_t, W_t)
            total = total + F.l1_loss(unit_factor(factor_s), unit_factor(factor_t))
        return total

    def extra_repr(self) -> str:
        return f"rate={self.rate}, paraphraser_epochs={self.prepare_epochs}, frozen={self.frozen}"
