"""Skew reverse KL per token: reverse KL to a mixture that keeps a share of the student.

Ko, Kim, Chen & Yun, "DistiLLM: Towards Streamlined Distillation for Large Language Models",
ICML 2024, arXiv:2402.03898, Sec. 3.1, with p = p_t the teacher and q = p_s the student:

    SRKL^(a)(p, q) = KL(q || (1 - a) p + a q)
                   = sum_v p_s(v) (log p_s(v) - log((1 - a) p_t(v) + a p_s(v)))

skew = a = 0 is reverse KL (`reverse_kl`), skew = 1 is 0. Default a = 0.1, the paper's setting
and the default of the official code (jongwooko/distillm, distillm/losses.py, skewed_reverse_kl,
which computes this same KL). Mixing in the student keeps the gradient bounded where the teacher
gives a token almost no probability. The argument is `skew`, not the paper's alpha, so it is not
mistaken for the recipe's hard-label alpha. With p = softmax(z / T) per token,
L = T^2 * mean over counted tokens of SRKL (common.py).
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES
from potstill.knowledge.token.common import TokenLoss, check_fraction, kl, log_mixture


@LOSSES.register("skew_reverse_kl")
class SkewReverseKL(TokenLoss):
    """Skew reverse KL(p_s || (1 - a) p_t + a p_s) per token, a = skew (DistiLLM, Ko et al. 2024)."""

    name = "skew_reverse_kl"

    def __init__(self, skew: float = 0.1, temperature: float = 1.0) -> None:
        super().__init__(temperature)
        check_fraction(self.name, skew=skew)
        self.skew = float(skew)

    def divergence(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        log_mixture_probs = log_mixture(student_log_probs, teacher_log_probs, self.skew)  # a p_s + (1 - a) p_t
        return kl(student_log_probs, log_mixture_probs)

    def extra_repr(self) -> str:
        return f"skew={self.skew}, temperature={self.temperature}"
