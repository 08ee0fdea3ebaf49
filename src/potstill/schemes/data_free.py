"""What the data-free schemes (dafl, dfad, deep_inversion) share: the student never sees a
training image. Each step makes a batch of synthetic images (a generator, or inputs optimised
against the teacher), the frozen teacher scores them, and the student learns the teacher's
outputs on them with the recipe's logit terms (`distill.loss`, e.g. kd). The references:
DAFL (Chen et al., ICCV 2019, arXiv 1904.01186), DFAD (Fang et al., arXiv 1912.11006; Micaelli &
Storkey, NeurIPS 2019, arXiv 1905.09768) and DeepInversion (Yin et al., CVPR 2020, arXiv 1912.08795).

Each step is one backward of the summed terms. A generator's terms reach the generator only: the
student sees `images.detach()`, and where the generator's objective runs through the student
(DFAD), it runs through the student's parameters detached (`torch.func.functional_call`). The
generator and the student are two optimizer groups (own state, own clipping) sharing the recipe's
`train` settings. The run folder holds `student/generator.safetensors` and a grid of each
epoch's last synthetic batch, `student/samples/epoch_NNN.png`; the report measures every model on
the real test split.

`data.train_data: none` runs without a training split: a teacher checkpoint is then required,
and nothing that needs training images (the student alone, augmentation, a subset, the cache) may
be asked for; `train_data_problem` is checked before anything is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from potstill.data.loader import Batch
from potstill.engine import distributed
from potstill.engine.task import Task, WeightedTerm
from potstill.errors import PotstillError
from potstill.model_io import call_model
from potstill.preprocess import attach, preprocessing_of
from potstill.schemes.base import SCHEMES, Scheme
from potstill.schemes.offline import freeze, named
from potstill.synthesis import Generator, SyntheticSteps, write_grid

if TYPE_CHECKING:
    from potstill.recipe import Recipe
    from potstill.schemes.workshop import Workshop

SAMPLES_SHOWN = 64  # images in each epoch's grid


def data_free_schemes() -> list[str]:
    return [name for name in SCHEMES.names() if issubclass(SCHEMES.get(name), DataFree)]


def train_data_problem(recipe: Recipe, command: str) -> str | None:
    """Why a recipe with `data.train_data: none` cannot run `command` (None: it can)."""
    if recipe.data.train_data != "none":
        return None
    if command != "distill":
        return (f"data.train_data: none leaves no training images, so `potstill {command}` has nothing to train on; "
                f"use data.train_data: dataset, or distil from a teacher checkpoint with a data-free scheme "
                f"({', '.join(data_free_schemes())})")
    if not issubclass(SCHEMES.get(recipe.scheme.name), DataFree):
        return (f"data.train_data: none: scheme '{recipe.scheme.name}' trains on the training split; use a data-free "
                f"scheme ({', '.join(data_free_schemes())}) or data.train_data: dataset")
    return None


def no_data_problems(recipe: Recipe, given_teacher: bool = False) -> list[str]:
    """What a recipe without training data asks for that needs training data. `given_teacher`: a
    trained teacher was handed in from Python."""
    data, problems = recipe.data, []
    if not given_teacher and (recipe.teacher is None or recipe.teacher.checkpoint is None):
        problems.append("teacher.checkpoint: with data.train_data: none the teacher cannot be trained here; give its "
                        "checkpoint (a .safetensors file or a `potstill train` run folder)")
    if recipe.distill.baseline:
        problems.append("distill.baseline: the student alone would train on the training split, which "
                        "data.train_data: none leaves out; set distill.baseline: false")
    for key, value in (("hflip", data.hflip), ("crop_padding", data.crop_padding), ("train_size", data.train_size)):
        if value:
            problems.append(f"data.{key}: it shapes training images, which data.train_data: none leaves out; remove it")
    return problems


class DataFreeTask(Task):
    """A student learning from a frozen teacher on synthetic batches; each subclass's `step` makes
    the images and adds its own terms. `generator`: trained beside the student, exported."""

    def __init__(self, student: nn.Module, teacher: nn.Module, terms: list[WeightedTerm], batch_size: int,
                 generator: nn.Module | None = None) -> None:
        self.teacher = freeze(teacher)
        self.terms = terms
        self.batch_size = batch_size
        modules = {"student": student, "losses": nn.ModuleDict({t.name: t.loss for t in terms})}
        if generator is not None:
            modules["generator"] = generator
        self.module = nn.ModuleDict(modules)
        self.generator = generator  # also in self.module: trained, checkpointed and exported
        self.samples: torch.Tensor | None = None  # the last synthetic batch, for the epoch's grid
        self.epoch = 0

    @property
    def model(self) -> nn.Module:
        return self.module["student"]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"student": [p for p in self.module["student"].parameters() if p.requires_grad]
                  + [p for p in self.module["losses"].parameters() if p.requires_grad]}
        if self.generator is not None:
            groups["generator"] = list(self.generator.parameters())
        return groups

    def exports(self) -> dict[str, nn.Module]:
        return {"generator": self.generator} if self.generator is not None else {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K) teacher logits, differentiable with respect to `images` (never to the teacher)."""
        self.teacher.eval()  # the loop trains task.module; the teacher is not part of it
        return call_model(self.teacher, {"input": images})

    def student_terms(self, images: torch.Tensor, teacher_logits: torch.Tensor, progress: float
                      ) -> tuple[dict[str, torch.Tensor], dict[str, float], torch.Tensor, Batch]:
        """The recipe's logit terms of the student on detached synthetic images: the student's
        gradient comes from these alone. Returns terms, weights, student logits and the scored batch
        (targets: the teacher's classes, so `train` accuracy is agreement with the teacher). Keeps
        the batch for the epoch's grid of samples."""
        self.samples, self.epoch = images.detach()[:SAMPLES_SHOWN], int(progress)
        teacher_logits = teacher_logits.detach()
        scored = {"input": images.detach(), "target": teacher_logits.argmax(dim=1)}
        logits = self.run(self.model, scored)
        terms, weights = {}, {}
        for term in self.terms:
            weights[term.name] = weight = term.weight_at(progress)
            if weight > 0:
                terms[term.name] = weight * term.on_logits(logits, teacher_logits, scored)
        return terms, weights, logits, scored

    def write_samples(self, folder: Path) -> None:
        if self.samples is not None:
            write_grid(folder / f"epoch_{self.epoch + 1:03d}.png", self.samples)


class DataFree(Scheme):
    """Base of the data-free schemes: checks, the stage without a data loader, the report rows.
    Subclasses build their Task in `make_task` and may refuse a teacher in `check_teacher`."""

    cache = False  # the teacher scores fresh synthetic images every step: nothing to cache
    logits_only = True  # the student learns the teacher's logits on the synthetic images
    single_process = "each process would synthesise and score its own batch; not measured under torchrun yet"
    steps_per_epoch: int

    def check(self, recipe: Recipe, terms: list[WeightedTerm], given_teacher: bool = False) -> None:
        super().check(recipe, terms, given_teacher)
        if recipe.distill.alpha > 0:
            raise PotstillError(
                f"distill.alpha: scheme '{self.name}' trains on synthetic images, which have no labels; set distill.alpha: 0"
            )
        problems = no_data_problems(recipe, given_teacher) if recipe.data.train_data == "none" else []
        if problems:
            raise PotstillError(problems[0])

    def check_teacher(self, teacher: nn.Module) -> None:
        """Refuse a teacher this scheme cannot learn from (before anything trains)."""

    def annotate(self, summary: dict) -> None:
        """The data-free student's real-test accuracy as a fraction of the teacher's and of the
        student trained on the real training images (null without that baseline)."""
        accuracy = {row["role"]: row.get("test_acc") for row in summary["models"]}
        student, teacher, baseline = accuracy.get("student"), accuracy.get("teacher"), accuracy.get("baseline")
        if student is None:
            return
        summary["data_free"] = {
            "scheme": self.name,
            "training_images_seen": 0,
            "student_test_acc": student,
            "fraction_of_teacher": student / teacher if teacher else None,
            "fraction_of_baseline": student / baseline if baseline else None,
        }

    def make_task(self, student: nn.Module, teacher: nn.Module, terms: list[WeightedTerm], runner: Workshop) -> DataFreeTask:
        raise NotImplementedError

    def generator(self, runner: Workshop, latent_dim: int, width: int) -> Generator:
        torch.manual_seed(runner.recipe.seed + 1)  # the same generator in a fresh and a resumed run
        return Generator(runner.bench.splits.input_shape, latent_dim, width).to(runner.bench.device)

    def run(self, runner: Workshop, teacher: nn.Module | None, student: nn.Module | None) -> list[tuple[str, nn.Module]]:
        recipe = runner.recipe
        self.check_teacher(teacher if teacher is not None else runner.teacher_skeleton())
        teacher = teacher if teacher is not None else runner.teacher()
        student_init = student if student is not None else runner.student()
        if student is None and recipe.student.preprocess == "auto":
            # the statistics of training images are data too: the student reads what the teacher reads
            attach(student_init, preprocessing_of(teacher))
        models = [("teacher", teacher)]
        if recipe.data.train_data == "dataset":
            models += named("baseline", runner.baseline(student_init))
        runner.check_teacher(teacher)  # distill.teacher_check, against the student alone when it trained
        task = self.make_task(student_init, teacher, runner.terms(), runner)
        samples = runner.run.stage("student") / "samples"

        def evaluate(model: nn.Module) -> dict[str, float]:
            if distributed.is_main():
                task.write_samples(samples)
            return runner.bench.evaluate(model)

        runner.describe_role("student", f"student ({self.name}, no training images)")
        steps = SyntheticSteps(self.steps_per_epoch, runner.bench.device)
        runner.stage("student", task, recipe.train, evaluate=evaluate, loader=steps)
        return models + [("student", student_init)]
