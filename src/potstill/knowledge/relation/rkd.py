"""Relational knowledge distillation (RKD): distance- and angle-wise relations of a batch.

Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019, arXiv:1904.05068.
With t_i the (flattened) embeddings of one model and Huber loss l_delta (delta = 1, smooth-L1):
    psi_D(t_i, t_j)      = ||t_i - t_j||_2 / mu,   mu = mean over pairs i != j of ||t_i - t_j||_2
    psi_A(t_i, t_j, t_k) = cos of the angle at t_j = < (t_i - t_j)/||.||, (t_k - t_j)/||.|| >
    L = distance_weight * mean l_delta(psi_D^S, psi_D^T) + angle_weight * mean l_delta(psi_A^S, psi_A^T)
means over all B^2 pairs and B^3 triplets (degenerate ones, with a repeated vertex, count as 0, as in
the authors' code). Defaults from the paper: distance_weight 25, angle_weight 50, the penultimate
embedding, overall weight 1. Student and teacher may differ in dimension (relations are B x B and
B x B x B). Both relations come from the B x B Gram matrix of batch-centred features, so memory is
O(B^3), not O(B^2 D), and feature maps can be used (flattened).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_non_negative

EPS = 1e-12


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, B) inner products of the flattened, batch-centred features (distances and
    angles do not change under a shift; centring keeps the Gram arithmetic accurate)."""
    flat = features.flatten(1)  # (B, D)
    flat = flat - flat.mean(dim=0, keepdim=True)
    return flat @ flat.t()


def squared_distances(g: torch.Tensor) -> torch.Tensor:
    """Gram (B, B) -> squared Euclidean distances (B, B), exactly 0 on the diagonal."""
    norms = g.diagonal()
    off_diagonal = 1 - torch.eye(len(g), dtype=g.dtype, device=g.device)
    return (norms[:, None] + norms[None, :] - 2 * g).clamp_min(0) * off_diagonal


def distance_relation(features: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, B) pairwise distances divided by their mean over pairs i != j."""
    distances = squared_distances(gram(features)).clamp_min(EPS).sqrt()  # (B, B)
    distances = distances * (1 - torch.eye(len(distances), dtype=distances.dtype, device=distances.device))
    pairs = max(len(distances) * (len(distances) - 1), 1)
    return distances / (distances.sum() / pairs).clamp_min(EPS)


def angle_relation(features: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, B, B): [j, i, k] = cosine of the angle at t_j between t_i and t_k."""
    g = gram(features)  # (B, B)
    inner = g[None, :, :] - g[:, :, None] - g[:, None, :] + g.diagonal()[:, None, None]  # <t_i - t_j, t_k - t_j>
    lengths = squared_distances(g).clamp_min(EPS).sqrt()  # (B, B): [j, i] = ||t_i - t_j||
    eye = torch.eye(len(g), dtype=g.dtype, device=g.device)
    valid = (1 - eye)[:, :, None] * (1 - eye)[:, None, :]  # i != j and k != j
    scale = torch.where(valid > 0, lengths[:, :, None] * lengths[:, None, :], torch.ones_like(inner))
    return (inner / scale).clamp(-1, 1) * valid  # a cosine; the clamp only bounds rounding error


@LOSSES.register("rkd")
class RKD(DistillationLoss):
    """Match normalised pairwise distances and triplet angles of the batch (Park et al. CVPR 2019)."""

    kind = "relation"
    single_process = "it compares distances and angles between the batch's samples"
    pairing = "embedding"
    default_weight = 1.0

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        check_non_negative("rkd", distance_weight=distance_weight, angle_weight=angle_weight)
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for s, t in zip(student["features"], teacher["features"]):
            distance = F.smooth_l1_loss(distance_relation(s), distance_relation(t))
            angle = F.smooth_l1_loss(angle_relation(s), angle_relation(t))
            total = total + self.distance_weight * distance + self.angle_weight * angle
        return total

    def extra_repr(self) -> str:
        return f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}"
