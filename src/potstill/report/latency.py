"""CPU latency the report can stand behind.

Every model of a run is timed in the same rounds, one forward pass each, in turn (teacher,
student, baseline, teacher, ...), so a machine that gets busy halfway slows all of them alike
instead of whichever happened to be timed then. Each model is timed at batch 1 and at
`report.latency_batch_size`, after warm-up rounds, and reported as the median with its p10-p90
spread; a wide spread means the timings were disturbed, and the summary says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from potstill.model_io import call_model
from potstill.recipe import ReportSpec

WARMUP_ROUNDS = 3  # untimed rounds first: allocator, caches and lazy initialisation settle
BUSY_SPREAD = 1.5  # p90 / p10 above this for any model: the machine was busy while timing
TIMER_NOISE_MS = 0.05  # a spread narrower than this is scheduler and timer jitter, even if large in ratio


@torch.inference_mode()
def time_models(
    models: Sequence[tuple[str, nn.Module]],
    inputs: Sequence[int] | Callable[[int, torch.Generator], dict[str, torch.Tensor]],
    batch_sizes: Sequence[int],
    repeats: int,
    warmup: int = WARMUP_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[int, list[float]]]:
    """Milliseconds of single forward passes on the CPU: result[role][batch_size] holds `repeats`
    values. Each round runs every model once, in the order given; the first `warmup` rounds are
    not kept. `inputs`: an input shape (C, H, W) for random images, or a function (batch size,
    generator) -> the model inputs of one batch (`DataSplits.example_batch`: real token ids for
    text). Models come back on their device and in their train/eval mode; the global RNG is
    left alone (the inputs come from a private generator)."""
    modes = [(model, _device(model), model.training) for _, model in models]
    try:
        for _, model in models:
            model.eval().to("cpu")
        calls = [(role, lambda batch, model=model: call_model(model, batch)) for role, model in models]
        return time_calls(calls, inputs, batch_sizes, repeats, warmup, clock)
    finally:
        for model, device, training in modes:
            model.to(device).train(training)


def time_calls(
    calls: Sequence[tuple[str, Callable[[dict[str, torch.Tensor]], Any]]],
    inputs: Sequence[int] | Callable[[int, torch.Generator], dict[str, torch.Tensor]],
    batch_sizes: Sequence[int],
    repeats: int,
    warmup: int = WARMUP_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[int, list[float]]]:
    """time_models for any callables on a batch of CPU tensors (PyTorch modules, ONNX Runtime
    sessions): the same interleaved rounds, so every runtime sees the same machine load."""
    roles = [role for role, _ in calls]
    if len(set(roles)) != len(roles):
        raise ValueError(f"time_models: roles must be unique, got {roles}")
    generator = torch.Generator().manual_seed(0)
    samples: dict[str, dict[int, list[float]]] = {role: {size: [] for size in batch_sizes} for role in roles}
    for batch_size in batch_sizes:
        batch = example_batch(inputs, batch_size, generator)
        for round_index in range(warmup + repeats):
            for role, call in calls:
                start = clock()
                call(batch)
                elapsed = clock() - start
                if round_index >= warmup:
                    samples[role][batch_size].append(1000 * elapsed)
    return samples


def example_batch(inputs, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    if callable(inputs):
        return {name: value.cpu() for name, value in inputs(batch_size, generator).items()}
    return {"input": torch.randn(batch_size, *inputs, generator=generator)}  # (B, *input_shape)


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def spread(milliseconds: Sequence[float]) -> tuple[float, float, float]:
    """(p10, median, p90), linearly interpolated; one value gives it three times."""
    p10, median, p90 = np.percentile(np.asarray(milliseconds, dtype=np.float64), [10, 50, 90])
    return round(float(p10), 4), round(float(median), 4), round(float(p90), 4)


def latency_fields(samples: dict[int, list[float]], batch_size: int) -> dict[str, Any]:
    """A summary row's latency fields. `latency_ms` stays the median at `batch_size` (the key
    readers of older summaries know); `latency_batch1_*` are the same at batch 1."""
    p10, median, p90 = spread(samples[batch_size])
    p10_one, median_one, p90_one = spread(samples[1])
    return {
        "latency_ms": median,
        "latency_p10_ms": p10,
        "latency_p90_ms": p90,
        "latency_batch_size": batch_size,
        "latency_batch1_ms": median_one,
        "latency_batch1_p10_ms": p10_one,
        "latency_batch1_p90_ms": p90_one,
        "latency_repeats": len(samples[batch_size]),
    }


def measure_latency(
    models: Sequence[tuple[str, nn.Module]], inputs, report: ReportSpec
) -> dict[str, dict[str, Any]]:
    """Each model's latency fields, all models timed in the same interleaved rounds (`inputs` as in time_models)."""
    batch_sizes = sorted({1, report.latency_batch_size})
    samples = time_models(models, inputs, batch_sizes, report.latency_repeats)
    return {role: latency_fields(samples[role], report.latency_batch_size) for role, _ in models}


def latency_warning(rows: Sequence[dict[str, Any]], limit: float = BUSY_SPREAD) -> str | None:
    """One sentence when any model's p90 is more than `limit` times its p10 (at either batch
    size, and by more than TIMER_NOISE_MS); None when the timings were steady or the rows carry
    no spread (older summaries)."""
    unsteady = []
    for row in rows:
        for prefix, batch_size in (("latency_batch1", 1), ("latency", row.get("latency_batch_size"))):
            p10, p90 = row.get(f"{prefix}_p10_ms"), row.get(f"{prefix}_p90_ms")
            if p10 is not None and p90 is not None and p10 > 0 and p90 / p10 > limit and p90 - p10 > TIMER_NOISE_MS:
                unsteady.append((p90 / p10, f"{row.get('title', row.get('role'))} {p90 / p10:.2f}x at batch {batch_size}"))
    if not unsteady:
        return None
    unsteady.sort(reverse=True)
    shown = "; ".join(text for _, text in unsteady[:3]) + (f"; {len(unsteady) - 3} more" if len(unsteady) > 3 else "")
    return (
        f"CPU timings were unsteady (p90/p10 above {limit}: {shown}): the machine was busy while timing, "
        "so compare latencies with care; re-time on an idle machine with `potstill eval RUN`"
    )
