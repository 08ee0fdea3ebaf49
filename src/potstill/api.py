"""The Python API: any `nn.Module` as teacher or student, tensors or ArrayData as data.

    result = potstill.distill(teacher, student, (x_train, y_train), (x_test, y_test),
                              loss="kd", temperature=4.0, alpha=0.5, beta=0.5, epochs=20)
    result.student            # the distilled student (nn.Module)
    result.baseline           # the same student trained alone, same budget and seed
    result.summary            # what summary.json holds: accuracies, agreement, ECE, size, latency
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from potstill.config import validate
from potstill.data import ArrayData, make_splits
from potstill.data.registry import RawData
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.task import Supervised
from potstill.errors import PotstillError
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from potstill.workbench import Workbench, resolve_device

Data = Union[ArrayData, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class DistillResult:
    student: nn.Module
    baseline: nn.Module | None
    teacher: nn.Module | None
    summary: dict[str, Any]
    run_dir: Path


def as_array_data(data: Data, num_classes: int, role: str) -> ArrayData:
    if isinstance(data, ArrayData):
        return data
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)):
        raise PotstillError(f"{role} must be an ArrayData or a pair (images, labels) of tensors")
    images, labels = data
    if images.ndim == 2:  # flat features (N, D) -> (N, 1, 1, D)
        images = images[:, None, None, :]
    return ArrayData(images, labels, num_classes)


def _check_same_classes(teacher: nn.Module, student: nn.Module, bench: Workbench) -> None:
    sample = next(bench.eval_loader().batches())["input"][:2]
    was = teacher.training, student.training
    with torch.inference_mode():
        classes = teacher.eval()(sample).shape[-1], student.eval()(sample).shape[-1]
    teacher.train(was[0]), student.train(was[1])
    if classes[0] != classes[1]:
        raise PotstillError(
            f"the teacher predicts {classes[0]} classes but the student {classes[1]}; give both the same output size"
        )


def _recipe(overrides: dict[str, Any]) -> Recipe:
    sections: dict[str, dict[str, Any]] = {"train": {}, "distill": {}, "data": {}, "refine": {}}
    top = {"name": "python", "seed": overrides.pop("seed", 0), "device": overrides.pop("device", "cpu")}
    placement = {
        "epochs": "train", "lr": "train", "optimizer": "train", "weight_decay": "train", "scheduler": "train",
        "label_smoothing": "train", "grad_clip": "train", "loss": "distill", "temperature": "distill",
        "alpha": "distill", "beta": "distill", "loss_args": "distill", "schedule": "distill", "baseline": "distill",
        "batch_size": "data", "hflip": "data", "crop_padding": "data", "refine_epochs": "refine", "refine_lr": "refine",
        "cache": "distill", "engine": "top", "scheme": "top",
    }
    for key, value in overrides.items():
        if placement.get(key) == "top":
            top[key] = value
            continue
        if key not in placement:
            raise PotstillError(f"distill() got an unknown argument '{key}'; accepted: {', '.join(sorted(placement))}")
        sections[placement[key]][key.removeprefix("refine_")] = value
    return validate({**top, **sections}, Recipe, source="distill() arguments")


def _runner(settings: dict[str, Any], classes_of: nn.Module, train_data: Data, test_data: Data,
            run_dir: str | Path | None, quiet: bool) -> Runner:
    """Validate the settings, wrap the data, open a run folder (a temporary one by default)."""
    recipe = _recipe(dict(settings))
    device = resolve_device(recipe.device)
    sample = as_array_data(train_data, 10**9, "train_data").as_float()[:2].to(device)
    was_training = classes_of.training
    with torch.inference_mode():
        num_classes = classes_of.to(device).eval()(sample).shape[-1]
    classes_of.train(was_training)
    raw = RawData(as_array_data(train_data, num_classes, "train_data"), as_array_data(test_data, num_classes, "test_data"))
    bench = Workbench(make_splits("python", raw), recipe.data, device)
    run = RunDir(Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="potstill-")))
    run.create(resume=False)
    return Runner(recipe, run, Reporter(quiet=quiet), bench=bench)


def distill(
    teacher: nn.Module | None,
    student: nn.Module,
    train_data: Data,
    test_data: Data,
    *,
    run_dir: str | Path | None = None,
    quiet: bool = True,
    **settings: Any,
) -> DistillResult:
    """Distil `teacher` into `student`; also train the student alone (baseline=False to skip).
    `teacher` is None for schemes without one (scheme="snapshot", "byot").

    settings: epochs, lr, optimizer, weight_decay, scheduler, label_smoothing, grad_clip, loss,
    temperature, alpha, beta, loss_args, schedule, baseline, batch_size, hflip, crop_padding,
    refine_epochs, refine_lr, seed, device, cache (distill.cache, e.g. {"enabled": False}), engine
    (e.g. {"precision": "bf16"}), scheme ("offline", "assistant", "born_again" or a scheme section:
    schemes that need no teacher model run from the recipe command). They mean what the recipe
    keys of the same names mean.
    """
    runner = _runner(settings, teacher if teacher is not None else student, train_data, test_data, run_dir, quiet)
    device = runner.bench.device
    student = student.to(device)
    if teacher is not None:
        teacher = teacher.to(device)
        _check_same_classes(teacher, student, runner.bench)
        runner.bench.check_model(teacher, "teacher")
    runner.bench.check_model(student, "student")
    summary = runner.run_distill(teacher=teacher, student=student)
    final = runner.models.get("refine", runner.models[summary["final_role"]])
    return DistillResult(final, runner.models.get("baseline"), teacher, summary, runner.run.path)


def train(model: nn.Module, train_data: Data, test_data: Data, *, run_dir: str | Path | None = None,
          quiet: bool = True, **settings: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Train one model on hard labels (phase 1, e.g. a teacher); returns (model, summary)."""
    runner = _runner(settings, model, train_data, test_data, run_dir, quiet)
    trained = runner.stage("teacher", Supervised(model, runner.recipe.train.label_smoothing), runner.recipe.train)
    return trained, runner.finish([("teacher", trained)])
