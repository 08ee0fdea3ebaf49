"""What the token-level losses share: the counted positions, temperature, log-space arithmetic.

Logits are (..., V): (B, K) for a classifier, (B, L, V) for a causal language model. The batch's
"target" has the logits' shape without V and holds IGNORE_INDEX (-100) where a position does not
count (padding, a prompt, a row's last position; see potstill.positions); a batch without a
"target" counts every position. With p_t = softmax(z_t / T) and p_s = softmax(z_s / T) per token,
every token loss is

    L = T^2 * (1 / N) * sum over the N counted tokens of D(p_t, p_s)        (0 when N = 0)

The T^2 factor is Hinton et al.'s (as in potstill's `kd`): the gradient of D alone shrinks as
1 / T^2, so the factor keeps the loss's pull comparable across temperatures. The mean over tokens,
not over sequences, is what TRL and DistillKit call "batchmean". Arithmetic is float32 or wider
(bf16 and fp16 logits are upcast) and in log space: a mixture's log is a logsumexp of logs, never
the log of a probability that may have underflowed to 0.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from potstill.cache.codec import TAIL_FLOOR  # the least tail mass a bucket keeps
from potstill.errors import PotstillError
from potstill.knowledge.base import DistillationLoss, Outputs, check_positive
from potstill.positions import select_counted


def check_fraction(loss: str, **values: float) -> None:
    """Hyperparameters that must be numbers in [0, 1]; a string, a bool or NaN is a mistake."""
    bad = [f"{name}={value!r}" for name, value in values.items() if not _in_unit_interval(value)]
    if bad:
        raise PotstillError(f"loss '{loss}' needs {', '.join(values)} in [0, 1], got {', '.join(bad)}")


def _in_unit_interval(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def counted_logits(loss: str, student: Outputs, teacher: Outputs,
                   batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Both models' logits at the counted positions as (N, V) rows, in float32 or wider. The
    teacher's are detached, so no gradient reaches a teacher through a token loss."""
    student_logits, teacher_logits = student["logits"], teacher["logits"].detach()  # (..., V)
    if student_logits.shape != teacher_logits.shape:
        raise PotstillError(
            f"loss '{loss}' compares the two models token by token, but the student's logits are "
            f"{tuple(student_logits.shape)} and the teacher's {tuple(teacher_logits.shape)}; "
            "give both models the same tokens and the same vocabulary (one tokenizer)"
        )
    target = batch.get("target")
    if target is None:
        vocabulary = student_logits.shape[-1]
        rows = [student_logits.reshape(-1, vocabulary), teacher_logits.reshape(-1, vocabulary)]
    elif target.shape != student_logits.shape[:-1]:
        raise PotstillError(
            f"loss '{loss}': batch['target'] has shape {tuple(target.shape)} but the logits are "
            f"{tuple(student_logits.shape)}; targets need the logits' shape without the last axis"
        )
    else:
        rows = select_counted(target.to(student_logits.device), student_logits, teacher_logits)  # (N, V) each
    dtype = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
    return rows[0].to(dtype), rows[1].to(dtype)


def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p(v) (log p(v) - log q(v)) per row: (N, V) log-probabilities -> (N,).
    Terms with p(v) = 0 are 0 (0 log 0 = 0), with no NaN in the value or the gradient even where
    a logit is -inf (a masked vocabulary entry)."""
    p = log_p.exp()
    present = p > 0
    # outside `present` both logs are replaced by 0, so 0 * (-inf) never appears, not even in backward
    difference = torch.where(present, log_p, 0.0) - torch.where(present, log_q, 0.0)
    return (p * difference).sum(dim=-1)


def log_mixture(log_p: torch.Tensor, log_q: torch.Tensor, weight: float) -> torch.Tensor:
    """log(weight * p + (1 - weight) * q) from log p and log q, for weight in [0, 1]:
    logsumexp(log(weight) + log p, log(1 - weight) + log q). At weight 0 or 1 it is log q or
    log p exactly, so log(0) = -inf never enters the arithmetic; a word both models rule out
    (-inf in both) stays -inf without the NaN gradient logsumexp gives when all its inputs are -inf."""
    if weight == 0:
        return log_q
    if weight == 1:
        return log_p
    ruled_out = torch.isneginf(log_p) & torch.isneginf(log_q)  # (N, V)
    both = torch.stack([log_p.masked_fill(ruled_out, 0.0) + math.log(weight),
                        log_q.masked_fill(ruled_out, 0.0) + math.log1p(-weight)])  # (2, N, V)
    return torch.logsumexp(both, dim=0).masked_fill(ruled_out, -math.inf)


class TokenLoss(DistillationLoss):
    """Base class of the token losses: a per-token divergence D(p_t, p_s) at temperature T,
    averaged over the counted tokens and multiplied by T^2. Subclasses set `name` and write
    `divergence`."""

    kind = "response"
    pairing = "none"
    modality = "any"
    tasks = ("classification", "causal_lm")  # a distribution per sample or per token alike
    name: ClassVar[str]  # the registered name, for messages

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        check_positive(self.name, temperature=temperature)
        self.temperature = float(temperature)

    def divergence(self, teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
        """(N, V) log-probabilities of both models -> (N,) divergences, one per token."""
        raise NotImplementedError

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        student_rows, teacher_rows = counted_logits(self.name, student, teacher, batch)  # (N, V)
        student_log_probs = F.log_softmax(student_rows / self.temperature, dim=-1)
        if teacher.get("top_k") is not None:  # from a top-k cache: compare k tokens + one tail bucket
            teacher_log_probs, student_log_probs = bucketed(teacher["top_k"], student_log_probs, batch, self.temperature)
        else:
            teacher_log_probs = F.log_softmax(teacher_rows / self.temperature, dim=-1)
        per_token = self.divergence(teacher_log_probs, student_log_probs)  # (N,)
        # with no counted token the sum is a 0 still connected to the student's logits: backward works
        return self.temperature**2 * per_token.sum() / max(per_token.numel(), 1)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"




def bucketed(top_k: tuple[torch.Tensor, torch.Tensor], student_log_probs: torch.Tensor, batch: dict[str, torch.Tensor],
             temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Both distributions over k + 1 outcomes: the teacher's k cached tokens and "any other token".

    The cache holds the teacher's top-k log-probabilities at T = 1 and their ids, (..., k) each; the
    tail's mass is 1 - sum p_i. The student's k probabilities are read at the same ids and its tail
    is the rest of its mass, so nothing about the split inside the tail is assumed (a flattened
    tail would teach the student that every left-out token is equally likely). At T != 1 the
    teacher's tail is tempered as one outcome: an approximation (exact at T = 1)."""
    log_probs, indices = top_k
    target = batch.get("target")
    if target is not None:
        log_probs, indices = select_counted(target.to(log_probs.device), log_probs, indices)  # (N, k)
    log_probs, indices = log_probs.reshape(-1, log_probs.shape[-1]).float(), indices.reshape(-1, indices.shape[-1]).long()
    tail = (1 - log_probs.exp().sum(dim=-1)).clamp(min=TAIL_FLOOR).log()
    teacher = F.log_softmax(torch.cat([log_probs, tail[:, None]], dim=-1) / temperature, dim=-1)  # (N, k + 1)
    kept = student_log_probs.gather(1, indices)  # (N, k)
    rest = student_log_probs.scatter(1, indices, -math.inf).logsumexp(dim=-1)  # (N,) log of the student's tail
    return teacher, torch.cat([kept, rest[:, None]], dim=-1)
