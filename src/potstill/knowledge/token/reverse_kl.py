"""Reverse KL per token: the student puts its mass where the teacher is confident.

Gu, Dong, Wei & Huang, "MiniLLM: Knowledge Distillation of Large Language Models", ICLR 2024,
arXiv:2306.08543. MiniLLM minimises the sequence-level reverse KL with policy gradients; this is
its per-token form (the teacher and student distributions at each position of given tokens), as
in DistiLLM's and GKD's baselines and TRL's `beta = 1`:

    D(p_t, p_s) = KL(p_s || p_t) = sum_v p_s(v) (log p_s(v) - log p_t(v))

with p = softmax(z / T) per token, L = T^2 * mean over counted tokens of D (common.py).
"Mode-seeking": a small student need not cover the teacher's low-probability tokens.
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES
from potstill.knowledge.token.common import TokenLoss, kl


@LOSSES.register("reverse_kl")
class ReverseKL(TokenLoss):
    """Reverse KL(p_student || p_teacher) per token, mean over counted tokens (MiniLLM, Gu et al. 2024)."""

    name = "reverse_kl"

    def divergence(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        return kl(student_log_probs, teacher_log_probs)
