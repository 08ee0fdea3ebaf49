"""Contrastive Representation Distillation.

Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020, arXiv:1910.10699.
Linear heads map both embeddings to unit vectors s, t (feature_dim = 128). Memory banks hold one
slowly updated vector per training sample for each model. For an anchor, the positive is the other
model's memory row of the same sample and K negatives are rows of other samples; with
P(j) = exp(m_j . anchor / T) / Z, the NCE objective (the paper's Eq. 18, official code) is
    L = -1/B sum_i [ log P_pos / (P_pos + K/N) + sum_neg log (K/N) / (P_neg + K/N) ]
summed over the student-anchor (teacher memory) and teacher-anchor (student memory) directions.
Defaults from the paper and RepDistiller: K = 16384, T = 0.07, momentum 0.5, weight beta = 0.8.
Z = mean(exp(scores / T)) * N is estimated once, on the first batch, and kept as a buffer.
After each training step the memories move: m_i <- normalise(momentum * m_i + (1 - momentum) * v_i).
Deviations: negatives are drawn uniformly from all other samples (the official data loader draws
them from other classes, which needs every label up front); K is clamped to N - 1 on small
training sets. In eval mode the memories stay fixed and negatives come from a generator seeded by
the batch's indices, so the value is reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe, check_positive

EPS = 1e-7  # as in the official code


def nce_loss(probs: torch.Tensor, num_samples: int) -> torch.Tensor:
    """(B, 1 + K) normalised scores, positive first -> the NCE loss, mean over the batch."""
    noise = (probs.shape[1] - 1) / num_samples  # K * P_noise, P_noise = 1 / N
    log_positive = torch.log(probs[:, 0] / (probs[:, 0] + noise + EPS))  # (B,)
    log_negatives = torch.log(noise / (probs[:, 1:] + noise + EPS))  # (B, K)
    return -(log_positive.sum() + log_negatives.sum()) / probs.shape[0]


@LOSSES.register("crd")
class CRD(DistillationLoss):
    """Contrastive representation distillation with memory banks and NCE (Tian et al. ICLR 2020)."""

    kind = "relation"
    single_process = "its memory bank of negatives changes with every step's samples"
    pairing = "embedding"
    default_weight = 0.8

    def __init__(
        self, feature_dim: int = 128, negatives: int = 16384, temperature: float = 0.07, momentum: float = 0.5
    ) -> None:
        super().__init__()
        check_positive("crd", feature_dim=feature_dim, negatives=negatives, temperature=temperature)
        if not 0 <= momentum < 1:
            raise PotstillError(f"loss 'crd' needs 0 <= momentum < 1, got momentum={momentum}")
        self.feature_dim, self.negatives = int(feature_dim), int(negatives)
        self.temperature, self.momentum = float(temperature), float(momentum)

    def setup(self, probe: Probe) -> None:
        if probe.num_samples < 2:
            raise PotstillError(f"loss 'crd' needs a training set of at least 2 samples, got {probe.num_samples}")
        self.num_samples = probe.num_samples
        self.k = min(self.negatives, probe.num_samples - 1)  # at most N - 1 other samples
        self.embed_student = nn.Linear(probe.student[0][0].numel(), self.feature_dim)
        self.embed_teacher = nn.Linear(probe.teacher[0][0].numel(), self.feature_dim)
        bound = 1 / math.sqrt(self.feature_dim / 3)  # uniform init of the official code
        shape = (probe.num_samples, self.feature_dim)
        self.register_buffer("memory_student", torch.rand(shape) * 2 * bound - bound)
        self.register_buffer("memory_teacher", torch.rand(shape) * 2 * bound - bound)
        self.register_buffer("normalizers", torch.full((2,), -1.0))  # Z (student anchor, teacher anchor); < 0: unset

    def candidates(self, index: torch.Tensor) -> torch.Tensor:
        """(B,) sample indices -> (B, 1 + K): the sample itself, then K uniform draws of other samples."""
        generator = None  # training: the global RNG, which the run seeds and checkpoints
        if not self.training:
            generator = torch.Generator(device=index.device).manual_seed(hash(tuple(index.tolist())) % 2**62)
        draws = torch.randint(0, self.num_samples - 1, (len(index), self.k), device=index.device, generator=generator)
        negatives = draws + (draws >= index[:, None]).long()  # skip the positive
        return torch.cat([index[:, None], negatives], dim=1)

    def scores(self, memory: torch.Tensor, anchor: torch.Tensor, rows: torch.Tensor, slot: int) -> torch.Tensor:
        """exp(memory rows . anchor / T) / Z for (B, 1 + K) rows and (B, D) anchors."""
        if self.num_samples <= 4 * rows.shape[1]:
            # K close to N: one (B, D) x (D, N) product reads the memory once instead of copying
            # B * (1 + K) rows of it (about 20x faster on CPU at K = N - 1)
            # (a copy: autograd keeps it for backward while the memory is updated in place)
            dots = (anchor @ memory.clone().t()).gather(1, rows)  # (B, 1 + K)
        else:
            dots = torch.bmm(memory[rows], anchor[:, :, None]).squeeze(2)  # (B, 1 + K, D) x (B, D, 1)
        out = torch.exp(dots / self.temperature)  # (B, 1 + K)
        if self.normalizers[slot] < 0:  # first batch: estimate the partition function once
            self.normalizers[slot] = out.detach().mean() * self.num_samples
        return out / self.normalizers[slot].clone()  # a copy: the buffer may change later in this step

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        index = batch.get("index")
        if index is None:
            raise PotstillError(
                "loss 'crd' needs each batch's sample indices (batch['index']) for its memory banks; "
                "use a dataset whose loader provides them"
            )
        index = index.long()
        if int(index.min()) < 0 or int(index.max()) >= self.num_samples:
            raise PotstillError(
                f"loss 'crd': sample indices must lie in [0, {self.num_samples}), the training-set "
                f"size its memory banks were built for; got {int(index.min())}..{int(index.max())}"
            )
        s = F.normalize(self.embed_student(student["features"][0].flatten(1)), dim=1)  # (B, D)
        t = F.normalize(self.embed_teacher(teacher["features"][0].flatten(1)), dim=1)  # (B, D)
        rows = self.candidates(index)
        loss = nce_loss(self.scores(self.memory_teacher, s, rows, 0), self.num_samples) + nce_loss(
            self.scores(self.memory_student, t, rows, 1), self.num_samples
        )
        if self.training:
            with torch.no_grad():
                for memory, value in ((self.memory_student, s), (self.memory_teacher, t)):
                    mixed = memory[index] * self.momentum + value * (1 - self.momentum)  # (B, D)
                    memory[index] = F.normalize(mixed, dim=1)
        return loss

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, negatives={self.negatives}, temperature={self.temperature}, momentum={self.momentum}"
