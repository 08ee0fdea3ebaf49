"""Speed settings of the `engine` recipe section, and a stopwatch that shows where a step's time goes.

None of these settings changes what is computed beyond floating-point rounding: bf16 autocast
runs matrix products and convolutions in bfloat16 (losses and softmax stay float32 under
autocast's rules), channels_last only reorders memory, torch.compile only fuses kernels.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch
from torch import nn

from potstill.recipe import EngineSpec


def autocast(engine: EngineSpec, device: torch.device) -> contextlib.AbstractContextManager:
    if engine.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, engine: EngineSpec) -> nn.Module:
    """channels_last memory format (torch.compile is applied by the Task: `Task.compile`)."""
    if engine.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


class Stopwatch:
    """Adds up the time spent in named sections of training steps. On CUDA it records events and
    reads them once per epoch, so timing adds no synchronisation to the steps."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self.totals: dict[str, float] = {}

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.pending.append((name, start, end))
            return
        began = time.perf_counter()
        yield
        self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - began

    def read(self) -> dict[str, float]:
        """Seconds per section since the last read; resets."""
        if self.pending:
            torch.cuda.synchronize()
            for name, start, end in self.pending:
                self.totals[name] = self.totals.get(name, 0.0) + start.elapsed_time(end) / 1000.0
            self.pending.clear()
        totals, self.totals = self.totals, {}
        return totals
