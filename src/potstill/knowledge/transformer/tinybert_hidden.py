"""TinyBERT hidden-state distillation: each mapped student layer, through one shared projection,
regresses its teacher layer.

Jiao, Yin, Shang, Jiang, Chen, Li, Wang & Liu, "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv:1909.10351, Sec. 3.1 (hidden-states-based
distillation), summed over the layer map n = g(m) (uniform: g(m) = m * N / M for an N-layer
teacher and an M-layer student; the wiring picks the layers):
    L_hidn = sum_m MSE(H_S^m W_h, H_T^g(m))
with H a layer's output (B, L, D) and W_h a single learnable linear map from the student's width
to the teacher's, shared by all layers (an nn.Linear, built only when the widths differ). Each
MSE is the mean over real tokens (attention_mask 1) and over the feature dimension; the paper
weighs every layer equally (lambda = 1). The released code also runs the embedding output through
this W_h; here the embeddings are `tinybert_embedding`'s, with their own W_e, as in the paper.
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe
from potstill.knowledge.transformer.sequences import HIDDEN, check_sequences, rows_mse, token_mask, width_projection


@LOSSES.register("tinybert_hidden")
class TinyBERTHidden(DistillationLoss):
    """Sum over mapped layers of MSE(H_S W_h, H_T) over real tokens, one shared W_h (Jiao et al. 2020)."""

    kind = "feature"
    single_process = "it averages over the batch's tokens, which the processes' parts hold unequally"
    pairing = "layers"
    modality = "text"
    label = "tinybert_hidden"  # the registered name, for messages (tinybert_embedding is this loss on one pair)

    def setup(self, probe: Probe) -> None:
        for s, t in zip(probe.student, probe.teacher):
            check_sequences(probe.loss, s, t, HIDDEN)
        self.projection = width_projection(probe, range(len(probe.student)))  # W_h, one for all layers

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for hidden_student, hidden_teacher in zip(student["features"], teacher["features"]):  # (B, L, D) each
            check_sequences(self.label, hidden_student, hidden_teacher, HIDDEN)
            mask = token_mask(self.label, batch, hidden_student)  # (B, L)
            total = total + rows_mse(self.projection(hidden_student[mask]), hidden_teacher[mask])
        return total
