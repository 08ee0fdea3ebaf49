"""TinyBERT attention-based distillation: each mapped student layer's attention maps regress its
teacher layer's, head by head.

Jiao, Yin, Shang, Jiang, Chen, Li, Wang & Liu, "TinyBERT: Distilling BERT for Natural Language
Understanding", Findings of EMNLP 2020, arXiv:1909.10351, Sec. 3.1 (attention-based distillation),
summed over the layer map n = g(m):
    L_attn = sum_m 1/h sum_{i=1..h} MSE(A_S,i^m, A_T,i^g(m))
with A_i the (L, L) attention matrix of head i. Only entries whose query row and key column are
both real tokens count: each MSE is the mean over those entries (and the batch), then the mean over
heads. The paper fits the attention matrix before its softmax, and the released code compares
those pre-softmax scores (masked entries set to 0); here we use the attention probabilities the
model returns (softmax over keys), the tensor a transformer exposes. Student and teacher need the
same number of heads; the widths may differ (the maps are L x L).
"""

from __future__ import annotations

import torch

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe
from potstill.knowledge.transformer.sequences import ATTENTION, check_sequences, rows_mse, token_mask


def check_heads(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Attention maps (B, H, L, L) of the same tokens and the same number of heads."""
    check_sequences(loss, student, teacher, ATTENTION)
    if student.shape[1] != teacher.shape[1]:
        raise PotstillError(
            f"loss '{loss}' compares attention head by head, but the student has {student.shape[1]} heads and the "
            f"teacher {teacher.shape[1]}; give the student the teacher's head count (its head size may differ), "
            "or distil hidden states instead (tinybert_hidden)"
        )


@LOSSES.register("tinybert_attention")
class TinyBERTAttention(DistillationLoss):
    """Sum over mapped layers of the per-head MSE between attention maps, real tokens only (Jiao et al. 2020)."""

    kind = "feature"
    single_process = "it averages over the batch's tokens, which the processes' parts hold unequally"
    pairing = "attentions"
    modality = "text"

    def setup(self, probe: Probe) -> None:
        for s, t in zip(probe.student, probe.teacher):
            check_heads(probe.loss, s, t)

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for attention_student, attention_teacher in zip(student["features"], teacher["features"]):  # (B, H, L, L)
            check_heads("tinybert_attention", attention_student, attention_teacher)
            mask = token_mask("tinybert_attention", batch, attention_student)  # (B, L)
            pairs = mask[:, :, None] & mask[:, None, :]  # (B, L, L): real query and real key
            # (H, N): each head's real entries; the mean over H * N is 1/h sum_i MSE_i
            entries_student = attention_student.transpose(0, 1)[:, pairs]
            total = total + rows_mse(entries_student, attention_teacher.transpose(0, 1)[:, pairs])
        return total
