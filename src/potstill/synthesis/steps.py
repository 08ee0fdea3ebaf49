"""A loader of synthetic steps: the batches of a data-free stage, which reads no data.

The training loop asks a loader for `len()`, `batches(epoch)`, `device` and `share(step)`; a
data-free task makes its own images inside each step (from a generator or by input
optimisation), so each batch only says which step it is. The training split, the view replay of
a teacher cache and the cache itself are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from potstill.errors import PotstillError


class SyntheticSteps:
    """`steps` batches per epoch, each {"step": (1,) step index within the epoch}."""

    def __init__(self, steps: int, device: torch.device) -> None:
        if steps < 1:
            raise PotstillError(f"a data-free stage needs at least one step per epoch, got {steps}")
        self.steps = steps
        self.device = device

    def __len__(self) -> int:
        return self.steps

    def batches(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        for step in range(self.steps):
            yield {"step": torch.tensor([step])}

    def share(self, step: int) -> float:
        return 1.0  # every process synthesises a whole batch of its own
