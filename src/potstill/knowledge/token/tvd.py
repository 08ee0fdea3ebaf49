"""Total variation distance per token.

Used as a distillation objective by Wen, Li, Du & Mou, "f-Divergence Minimization for
Sequence-Level Knowledge Distillation", ACL 2023, arXiv:2307.15190, and as a baseline by DistiLLM
(Ko et al., ICML 2024, arXiv:2402.03898):

    D(p_t, p_s) = TVD(p_t, p_s) = 0.5 * sum_v |p_t(v) - p_s(v)|        (in [0, 1])

with p = softmax(z / T) per token, L = T^2 * mean over counted tokens of D (common.py), the T^2
kept for a temperature that means the same in every token loss. Symmetric and bounded: a token
the teacher rules out costs at most its probability, never log(0).
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES
from potstill.knowledge.token.common import TokenLoss


@LOSSES.register("tvd")
class TotalVariation(TokenLoss):
    """Total variation distance 0.5 * sum |p_teacher - p_student| per token, mean over counted tokens."""

    name = "tvd"

    def divergence(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        return 0.5 * (teacher_log_probs.exp() - student_log_probs.exp()).abs().sum(dim=-1)
