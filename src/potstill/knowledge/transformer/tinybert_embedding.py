"""TinyBERT embedding-layer distillation: the student's embeddings, projected, regress the teacher's.

Jiao, Yin, Shang, Jiang, Chen, Li, Wang & Liu, "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv:1909.10351, Sec. 3.1 (embedding-layer distillation):
    L_embd = MSE(E_S W_e, E_T)
with E the embedding layer's output (B, L, D) and W_e a learnable linear map from the student's
width to the teacher's (here an nn.Linear, built only when the widths differ). The MSE is the mean
over real tokens (attention_mask 1) and over the feature dimension. The paper weighs every layer's
term equally (lambda = 1).
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe
from potstill.knowledge.transformer.sequences import HIDDEN, check_sequences, rows_mse, token_mask, width_projection


@LOSSES.register("tinybert_embedding")
class TinyBERTEmbedding(DistillationLoss):
    """MSE between projected student embeddings and teacher embeddings over real tokens (Jiao et al. 2020)."""

    kind = "feature"
    pairing = "embeddings"
    modality = "text"

    def setup(self, probe: Probe) -> None:
        check_sequences(probe.loss, probe.student[0], probe.teacher[0], HIDDEN)
        self.projection = width_projection(probe, [0])  # W_e

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded_student, embedded_teacher = student["features"][0], teacher["features"][0]  # (B, L, D)
        check_sequences("tinybert_embedding", embedded_student, embedded_teacher, HIDDEN)
        mask = token_mask("tinybert_embedding", batch, embedded_student)  # (B, L)
        return rows_mse(self.projection(embedded_student[mask]), embedded_teacher[mask])
