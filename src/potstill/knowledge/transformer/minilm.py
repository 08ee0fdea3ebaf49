"""MiniLM: deep self-attention distillation of the last layer's attention and value relations.

Wang, Wei, Dong, Bao, Yang & Zhou, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
Compression of Pre-Trained Transformers", NeurIPS 2020, arXiv:2002.10957, Sec. 3.1-3.2. For the
last layer's attention distributions A (H heads, one row per query t, softmax over keys) and value
relations VR_a = softmax(V_a V_a^T / sqrt(d_head)), V split into the H heads:
    L_AT = 1 / (H |x|) sum_a sum_t KL(A_T,a,t || A_S,a,t)
    L_VR = 1 / (H |x|) sum_a sum_t KL(VR_T,a,t || VR_S,a,t)
    L = L_AT + L_VR
|x| counts a sequence's real tokens: padded queries are left out, padded keys take no part in the
KL (and are masked out of the value-relation softmax); each sequence is normalised by its own
length as in the equations, then the batch is averaged. Only L x L relations are compared, so
student and teacher may differ in width and head size without a projection, but the head count
must be equal. Logarithms are clamped at the smallest positive float, so zero probabilities give
no NaN.
"""

from __future__ import annotations

import math

import torch

from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, DistillationLoss, Outputs, Probe
from potstill.knowledge.transformer.tinybert_attention import check_heads
from potstill.knowledge.transformer.sequences import token_mask


def check_values(loss: str, attention: torch.Tensor, values: torch.Tensor, role: str) -> None:
    """Values (B, L, H * d_head) of the same tokens as the attention (B, H, L, L), splittable into H heads."""
    heads = attention.shape[1]
    same_tokens = values.ndim == 3 and tuple(values.shape[:2]) == (attention.shape[0], attention.shape[2])
    if not same_tokens or values.shape[-1] % heads:
        raise PotstillError(
            f"loss '{loss}': the {role}'s values {tuple(values.shape)} do not split into the {heads} heads of its "
            f"attention {tuple(attention.shape)}; pair the last layer's attention first, then its value projection"
        )


def value_relation_log(values: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, H * d) values -> (B, H, L, L) log softmax(V_a V_a^T / sqrt(d)) over real keys."""
    size, length, width = values.shape
    values = values.float().masked_fill(~mask[..., None], 0.0)  # padded garbage never reaches a real row
    per_head = values.view(size, length, heads, width // heads).transpose(1, 2)  # (B, H, L, d)
    scores = per_head @ per_head.transpose(-1, -2) / math.sqrt(width // heads)  # (B, H, L, L)
    scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)  # finite: no NaN if all padded
    return scores.log_softmax(dim=-1)


def real_pairs(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B, 1, L, L): True where both the query and the key are real tokens."""
    return (mask[:, :, None] & mask[:, None, :])[:, None]


def probability_log(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log of (B, H, L, L) probabilities, clamped at the smallest positive float (log 0 is no NaN);
    0 where the query or the key is padding, whatever the model left there."""
    return probs.float().masked_fill(~real_pairs(mask), 1.0).clamp_min(torch.finfo(torch.float32).tiny).log()


def relation_kl(teacher_log: torch.Tensor, student_log: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 / (H |x|) sum over heads and real queries of KL(teacher row || student row),
    summed over real keys. Inputs (B, H, L, L) log-probabilities, mask (B, L)."""
    pairs = real_pairs(mask)
    terms = torch.where(pairs, teacher_log.exp() * (teacher_log - student_log), 0.0)
    real = mask.sum(dim=1).clamp_min(1) * teacher_log.shape[1]  # (B,) H * |x|
    return (terms.sum(dim=(1, 2, 3)) / real).mean()


@LOSSES.register("minilm")
class MiniLM(DistillationLoss):
    """KL of the last layer's attention distributions and value relations, per head (Wang et al. NeurIPS 2020)."""

    kind = "relation"
    pairing = "last_attention_value"
    modality = "text"
    min_pairs = 2

    def setup(self, probe: Probe) -> None:
        self.check(probe.loss, probe.student, probe.teacher)

    @staticmethod
    def check(loss: str, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> None:
        if len(student) != 2:
            raise PotstillError(
                f"loss '{loss}' needs two layer pairs from the last layer: attention probabilities, then the value "
                f"projection's output; got {len(student)}"
            )
        check_heads(loss, student[0], teacher[0])
        check_values(loss, student[0], student[1], "student")
        check_values(loss, teacher[0], teacher[1], "teacher")

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check("minilm", student["features"], teacher["features"])
        attention_student, values_student = student["features"]  # (B, H, L, L), (B, L, H * d_head)
        attention_teacher, values_teacher = teacher["features"]
        mask = token_mask("minilm", batch, attention_student)  # (B, L)
        heads = attention_student.shape[1]
        log_attentions = [probability_log(a, mask) for a in (attention_teacher, attention_student)]  # (B, H, L, L)
        log_relations = [value_relation_log(v, heads, mask) for v in (values_teacher, values_student)]
        return relation_kl(*log_attentions, mask) + relation_kl(*log_relations, mask)  # L_AT + L_VR
