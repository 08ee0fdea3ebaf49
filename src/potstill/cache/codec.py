"""How teacher logits are stored: in full, or as the top k plus one fill value.

Top-k storage keeps, per (sample, view), the k largest logits (values) and their classes
(indices), and one fill logit c for the K - k classes left out, chosen so the softmax at T = 1
gives the left-out classes exactly their total probability:

    c = log( sum_{j not in top-k} exp(z_j) ) - log(K - k)

Decoding puts c at every left-out class. At T = 1 the top-k probabilities and the tail mass are
then exact (up to storage rounding); only the split of the tail among its classes is flattened.
At other temperatures the tail is an approximation, which the benchmark measures.

Language models (a distribution per token, logits (..., L, V)) store the top k as log-probabilities
(log_softmax) and no fill: the tail's mass is what the k probabilities leave, 1 - sum_i p_i, so
nothing else is needed. At k = 16 with fp16 values and int16 indices that is 64 bytes per token.
The token losses read the k log-probabilities and ids themselves (the reader hands them over under
TOP_K) and compare k tokens plus one tail bucket (knowledge/token/common.bucketed). `decode` gives
other losses a full distribution: the tail's mass (kept exactly, at least TAIL_FLOOR) spread
evenly over the V - k tokens left out.
"""

from __future__ import annotations

import math

import torch

FILL_FLOOR = 30.0  # a vanishing tail is stored as (smallest kept logit - 30), never -inf
TOP_K = "__top_k__"  # the key under which a cache hands token losses the sparse (log_probs, indices) too
TAIL_FLOOR = 1e-6  # the least tail mass a decoded log-probability top-k keeps (fp16 sums can overshoot 1)


def index_dtype(num_classes: int) -> torch.dtype:
    return torch.uint8 if num_classes <= 256 else torch.int16 if num_classes <= 32_768 else torch.int32


def encode(logits: torch.Tensor, top_k: int | None, dtype: torch.dtype, per_token: bool = False) -> dict[str, torch.Tensor]:
    """logits (..., K) float32 -> stored fields; `per_token`: log-probability top-k without a fill."""
    if top_k is None:
        return {"logits": logits.to(dtype)}
    num_classes = logits.shape[-1]
    if per_token:
        log_probs, indices = logits.log_softmax(dim=-1).topk(top_k, dim=-1)
        return {"log_probs": log_probs.to(dtype), "indices": indices.to(index_dtype(num_classes))}
    values, indices = logits.topk(top_k, dim=-1)  # (..., k), largest first
    rest = logits.scatter(-1, indices, float("-inf")).logsumexp(dim=-1)  # (...,)
    fill = rest - math.log(num_classes - top_k)
    fill = torch.minimum(torch.maximum(fill, values[..., -1] - FILL_FLOOR), values[..., -1])
    return {"values": values.to(dtype), "indices": indices.to(index_dtype(num_classes)), "fill": fill.to(dtype)}


def decode(fields: dict[str, torch.Tensor], num_classes: int) -> torch.Tensor:
    """Stored fields (leading dims B) -> logits (B, K) float32."""
    if "logits" in fields:
        return fields["logits"].float()
    if "log_probs" in fields:  # per-token top-k: the tail's mass spread over the tokens left out
        kept = fields["log_probs"].float()
        tail = (1 - kept.exp().sum(dim=-1)).clamp(min=TAIL_FLOOR)
        fill = tail.log() - math.log(num_classes - kept.shape[-1])
        logits = fill.unsqueeze(-1).expand(*fill.shape, num_classes).clone()
        return logits.scatter_(-1, fields["indices"].long(), kept)
    fill = fields["fill"].float()
    logits = fill.unsqueeze(-1).expand(*fill.shape, num_classes).clone()
    return logits.scatter_(-1, fields["indices"].long(), fields["values"].float())
