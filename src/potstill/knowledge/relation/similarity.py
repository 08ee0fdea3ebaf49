"""Similarity-preserving knowledge distillation (SP).

Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019, arXiv:1907.09682.
With Q the (B, -1) flattened activations of a layer, G = Q Q^T (B, B), each row of G divided by its
L2 norm, and for the layer pairs (l, l'):
    L_SP = sum over pairs  1/b^2 || G_S^l - G_T^l' ||_F^2
Student and teacher may differ in channels and size: only the B x B matrices are compared, so no
adapter is needed. Defaults as in the RepDistiller benchmark code: the last feature map of each
model (`last_stage`) and weight 3000 (the paper uses gamma = 3000 on CIFAR-10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, B): the Gram matrix of the flattened activations, rows L2-normalised."""
    flat = features.flatten(1)  # (B, D)
    return F.normalize(flat @ flat.t(), dim=1)


@LOSSES.register("sp")
class SimilarityPreserving(DistillationLoss):
    """Match the batch's row-normalised activation similarity matrices (Tung & Mori ICCV 2019)."""

    kind = "relation"
    single_process = "it compares similarities between the batch's samples"
    pairing = "last_stage"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 3000.0

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for s, t in zip(student["features"], teacher["features"]):
            total = total + (similarity_matrix(s) - similarity_matrix(t)).pow(2).mean()  # 1/b^2 ||.||_F^2
        return total
