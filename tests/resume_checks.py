"""What "resumed equals uninterrupted" means, checked file by file: exported weights, the stage's
whole module (adapters, loss state, a snapshot teacher), the last training checkpoint (every
optimizer tensor, the scheduler, the RNG state) and the per-epoch log without its timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from potstill.engine.checkpoint import load_tensors


def without_timings(record: dict) -> dict:
    """A metrics.jsonl record without wall-clock fields (time_s, step_ms, teacher_ms, ...)."""
    return {key: value for key, value in record.items() if key != "time_s" and not key.endswith("_ms")}


def logged(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [without_timings(json.loads(line)) for line in lines if line.strip()]


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors differ in dtype, shape or any bit (names in only one file included)."""
    names = sorted(a.keys() | b.keys())
    return [n for n in names if n not in a or n not in b or a[n].dtype != b[n].dtype or not torch.equal(a[n], b[n])]


def assert_same_files(whole: Path, cut: Path, stage: str, files=("model", "module", "checkpoint")) -> None:
    """Each named safetensors file of `stage` holds the same tensors, bit for bit, and the same header."""
    for name in files:
        a, header_a = load_tensors(whole / stage / f"{name}.safetensors")
        b, header_b = load_tensors(cut / stage / f"{name}.safetensors")
        assert a, f"{stage}/{name}.safetensors is empty"
        assert not differing(a, b), f"{stage}/{name}.safetensors differs in {differing(a, b)[:6]}"
        assert header_a == header_b, f"{stage}/{name}.safetensors header differs"


def assert_same_log(whole: Path, cut: Path) -> None:
    """Every stage's per-epoch losses, loss terms, weights, lr and accuracies, each epoch once."""
    a, b = logged(whole), logged(cut)
    assert [(r["stage"], r["epoch"]) for r in a] == [(r["stage"], r["epoch"]) for r in b]
    for first, second in zip(a, b):
        assert first == second, (first, second)


def optimizer_tensors(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_tensors(path)
    return {name: value for name, value in tensors.items() if name.startswith("optimizer.")}


def interrupt_and_resume(cut: Path, recipe: dict, monkeypatch, task_type: type, stage: str, where: str) -> None:
    """Run `recipe` in `cut` with a KeyboardInterrupt in `stage` (`after_epoch_1`: at the end of its
    first epoch, after the checkpoint; `inside_epoch_2`: in the middle of its second epoch, after the
    in-memory state has moved past the checkpoint), then resume it."""
    from tests.engine.test_resume import run_recipe

    callbacks = []
    original = task_type.step
    if where == "after_epoch_1":
        def interrupt(name, epochs_done, record):
            if name == stage and epochs_done == 1:
                raise KeyboardInterrupt
        callbacks.append(interrupt)
    else:
        def step_then_stop(self, batch, progress):
            if progress >= 1.5:
                raise KeyboardInterrupt
            return original(self, batch, progress)
        monkeypatch.setattr(task_type, "step", step_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(cut, recipe, callbacks=callbacks)
    monkeypatch.setattr(task_type, "step", original)
    assert not (cut / stage / "model.safetensors").exists()  # stopped inside the stage
    run_recipe(cut, recipe, resume=True)
