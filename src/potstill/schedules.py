"""How a loss weight changes over training: linear warm-up, decay, and early stopping of the
distillation term (Cho & Hariharan, "On the Efficacy of Knowledge Distillation", ICCV 2019,
arXiv:1910.01348: stopping KD part-way and finishing on hard labels helps small students)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from potstill.errors import PotstillError


@dataclass(frozen=True)
class WeightSchedule:
    """Factor in [0, 1] that multiplies a loss weight; `progress` is fractional epochs done.

    warmup_epochs: rise linearly from 0 to 1 over this many epochs (per step, not per epoch).
    decay: after warm-up, "none" keeps 1; "linear"/"cosine" fall to `final_factor` by `end_epoch`.
    stop_epoch: from this epoch on (0-based) the factor is 0: the term is switched off.
    """

    warmup_epochs: float = 0.0
    decay: str = "none"
    final_factor: float = 0.0
    stop_epoch: int | None = None
    end_epoch: float = 1.0  # where decay ends: the stage's total epochs (set by the engine)

    def __post_init__(self) -> None:
        if self.decay not in ("none", "linear", "cosine"):
            raise PotstillError(f"schedule decay must be 'none', 'linear' or 'cosine', got '{self.decay}'")
        if self.warmup_epochs < 0 or not 0 <= self.final_factor <= 1:
            raise PotstillError("schedule warmup_epochs must be >= 0 and final_factor between 0 and 1")
        if self.stop_epoch is not None and self.stop_epoch < 0:
            raise PotstillError(f"schedule stop_epoch must be >= 0, got {self.stop_epoch}")

    def factor(self, progress: float) -> float:
        if self.stop_epoch is not None and progress >= self.stop_epoch:
            return 0.0
        if self.warmup_epochs > 0 and progress < self.warmup_epochs:
            return progress / self.warmup_epochs
        if self.decay == "none":
            return 1.0
        span = max(self.end_epoch - self.warmup_epochs, 1e-12)
        fraction = min(max((progress - self.warmup_epochs) / span, 0.0), 1.0)
        shape = fraction if self.decay == "linear" else (1 - math.cos(math.pi * fraction)) / 2
        return 1.0 - (1.0 - self.final_factor) * shape
