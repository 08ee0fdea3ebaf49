"""Skew KL per token: forward KL to a mixture that keeps a share of the teacher, so it stays finite.

Ko, Kim, Chen & Yun, "DistiLLM: Towards Streamlined Distillation for Large Language Models",
ICML 2024, arXiv:2402.03898, Sec. 3.1, with p = p_t the teacher and q = p_s the student:

    SKL^(a)(p, q) = KL(p || a p + (1 - a) q)
                  = sum_v p_t(v) (log p_t(v) - log(a p_t(v) + (1 - a) p_s(v)))

skew = a = 0 is forward KL (`forward_kl`), skew = 1 is 0. Default a = 0.1, the paper's setting and
the default of the official code (jongwooko/distillm, distillm/losses.py, skewed_forward_kl). That
code returns the cross-entropy -sum p log(mixture), which differs from SKL by the teacher's
entropy, a constant for the student (same gradients); this loss is the KL itself, so it is 0 when
the student matches. The argument is `skew`, not the paper's alpha, so it is not mistaken for the
recipe's hard-label alpha. With p = softmax(z / T) per token, L = T^2 * mean over counted tokens
of SKL (common.py).
"""

from __future__ import annotations

import torch

from potstill.knowledge.base import LOSSES
from potstill.knowledge.token.common import TokenLoss, check_fraction, kl, log_mixture


@LOSSES.register("skew_kl")
class SkewKL(TokenLoss):
    """Skew KL(p_t || a p_t + (1 - a) p_s) per token, a = skew (DistiLLM, Ko et al. 2024)."""

    name = "skew_kl"

    def __init__(self, skew: float = 0.1, temperature: float = 1.0) -> None:
        super().__init__(temperature)
        check_fraction(self.name, skew=skew)
        self.skew = float(skew)

    def divergence(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        log_mixture_probs = log_mixture(teacher_log_probs, student_log_probs, self.skew)
        return kl(teacher_log_probs, log_mixture_probs)

    def extra_repr(self) -> str:
        return f"skew={self.skew}, temperature={self.temperature}"
