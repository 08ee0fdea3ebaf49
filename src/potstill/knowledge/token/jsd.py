"""Generalized Jensen-Shannon divergence per token, GKD's interpolation between forward and reverse KL.

Agarwal, Vieillard, Zhou, Stanczyk, Ramos, Geist & Bachem, "On-Policy Distillation of Language
Models: Learning from Self-Generated Mistakes" (GKD), ICLR 2024, arXiv:2306.13649, Eq. (1), with
P = p_t the teacher and Q = p_s the student (beta weights the TEACHER, in the mixture and in front
of the teacher's KL):

    m(beta) = beta * p_t + (1 - beta) * p_s
    D(p_t, p_s) = beta * KL(p_t || m) + (1 - beta) * KL(p_s || m)          for 0 < beta < 1

beta = 0.5 is the symmetric Jensen-Shannon divergence (at most log 2). Taken literally, Eq. (1) is
0 at both ends (m becomes p_s, or p_t); the paper reads the ends as limits of direction:
D / beta -> KL(p_t || p_s) as beta -> 0 and D / (1 - beta) -> KL(p_s || p_t) as beta -> 1. Like
TRL's GKDTrainer.generalized_jsd_loss (since huggingface/trl#3043, which fixed a mixture that
weighted the student by beta, and kept the ends as special cases) we define the ends as those KLs:

    beta = 0:  D = KL(p_t || p_s)   forward KL (= `forward_kl`)
    beta = 1:  D = KL(p_s || p_t)   reverse KL (= `reverse_kl`)

so a recipe ported from TRL means the same. Note the jump this leaves: near an end the value
shrinks like beta (or 1 - beta) times that KL, so beta = 0.01 pulls about 1/100 as hard as
beta = 0. With p = softmax(z / T) per token, L = T^2 * mean over counted tokens of D (common.py).
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES
from potstill.knowledge.token.common import TokenLoss, check_fraction, kl, log_mixture


def generalized_jsd(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor, beta: float) -> torch.Tensor:
    """(N, V) log-probabilities -> (N,) generalized JSD, with the two KL ends at beta = 0 and 1."""
    if beta == 0:
        return kl(teacher_log_probs, student_log_probs)
    if beta == 1:
        return kl(student_log_probs, teacher_log_probs)
    log_m = log_mixture(teacher_log_probs, student_log_probs, beta)  # log(beta p_t + (1 - beta) p_s)
    return beta * kl(teacher_log_probs, log_m) + (1 - beta) * kl(student_log_probs, log_m)


@LOSSES.register("jsd")
class GeneralizedJSD(TokenLoss):
    """Generalized JSD(beta) per token, beta 0 = forward KL, 1 = reverse KL (GKD, Agarwal et al. 2024)."""

    name = "jsd"

    def __init__(self, beta: float = 0.5, temperature: float = 1.0) -> None:
        super().__init__(temperature)
        check_fraction(self.name, beta=beta)
        self.beta = float(beta)

    def divergence(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        return generalized_jsd(teacher_log_probs, student_log_probs, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, temperature={self.temperature}"
