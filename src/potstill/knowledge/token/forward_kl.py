"""Forward KL per token: the student covers every token the teacher gives probability to.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014 deep learning
workshop, arXiv:1503.02531, applied per token as in word-level KD (Kim & Rush, EMNLP 2016,
arXiv:1606.07947); what TRL and DistillKit call forward KL:

    D(p_t, p_s) = KL(p_t || p_s) = sum_v p_t(v) (log p_t(v) - log p_s(v))

with p = softmax(z / T) per token, L = T^2 * mean over counted tokens of D (common.py). On (B, K)
logits with every sample counted it equals potstill's `kd` at the same T (`kd` defaults to T = 4,
this loss to T = 1). "Mode-covering": the student spreads its mass over all of the teacher's modes.
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES
from potstill.knowledge.token.common import TokenLoss, kl


@LOSSES.register("forward_kl")
class ForwardKL(TokenLoss):
    """Forward KL(p_teacher || p_student) per token, mean over counted tokens (Hinton et al. 2015)."""

    name = "forward_kl"

    def divergence(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        return kl(teacher_log_probs, student_log_probs)
