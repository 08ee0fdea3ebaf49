"""Instance relationship graph (IRG): instance features, their relations, and how the relations
change from layer to layer.

Liu, Cao, Li, Yuan, Hu, Li & Duan, "Knowledge Distillation via Instance Relationship Graph",
CVPR 2019 (no arXiv version; official Caffe code github.com/yufanLIU/IRG). A batch's graph at a
layer has the instances' features as vertices and, as edges, the matrix A (B, B) of squared
Euclidean distances between them, divided by its largest entry. With layer pairs l = 1..L:
    L_vertex    = MSE(z_S, z_T)                                    (the logits: the last layer's vertices)
    L_edge      = mean_l  MSE(A_S^l, A_T^l)
    L_transform = mean_l  MSE(A_S^{l+1} - A_S^l, A_T^{l+1} - A_T^l)   (consecutive pairs; 0 with one pair)
    L_IRG = vertex_weight * L_vertex + edge_weight * L_edge + transform_weight * L_transform
Max-normalised squared distances, the means and the weights 0.1 / 5 / 5 follow the IRG loss of
Knowledge-Distillation-Zoo (AberHu), written after the authors' code; the paper's own lambdas
could not be confirmed from the sources reachable here. Deviation: the paper's transformation term
is the vertex transformation (each instance's distance between its features at two layers), which
needs both layers of one model reshaped to a common shape; here the change of the edge matrices
between consecutive pairs (the graph's transformation) is matched instead, which works for any
pair of layers and any student/teacher dimensions (feature maps are flattened; no adapters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, check_non_negative
from potstill.knowledge.relation.rkd import gram, squared_distances


def edge_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, B) squared Euclidean distances between instances, divided by the largest."""
    distances = squared_distances(gram(features))  # (B, B), 0 on the diagonal
    return distances / distances.max().clamp_min(1e-12)


@LOSSES.register("irg")
class IRG(DistillationLoss):
    """Match instance relationship graphs (logits, distance matrices, their change across layers) (Liu et al. CVPR 2019)."""

    kind = "relation"
    single_process = "it compares distances between the batch's samples"
    pairing = "stages"
    modality = "image"  # compares feature maps or conv stages; transformers have their own losses (knowledge/transformer)
    default_weight = 1.0

    def __init__(self, vertex_weight: float = 0.1, edge_weight: float = 5.0, transform_weight: float = 5.0) -> None:
        super().__init__()
        check_non_negative("irg", vertex_weight=vertex_weight, edge_weight=edge_weight, transform_weight=transform_weight)
        self.vertex_weight = float(vertex_weight)
        self.edge_weight = float(edge_weight)
        self.transform_weight = float(transform_weight)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        vertex = F.mse_loss(student["logits"], teacher["logits"])
        edges_s = [edge_matrix(s) for s in student["features"]]  # L x (B, B)
        edges_t = [edge_matrix(t) for t in teacher["features"]]
        edge = sum(F.mse_loss(a_s, a_t) for a_s, a_t in zip(edges_s, edges_t)) / len(edges_s)
        changes = [
            F.mse_loss(edges_s[i + 1] - edges_s[i], edges_t[i + 1] - edges_t[i]) for i in range(len(edges_s) - 1)
        ]
        transform = sum(changes) / len(changes) if changes else vertex.new_zeros(())
        return self.vertex_weight * vertex + self.edge_weight * edge + self.transform_weight * transform

    def extra_repr(self) -> str:
        return f"vertex_weight={self.vertex_weight}, edge_weight={self.edge_weight}, transform_weight={self.transform_weight}"
