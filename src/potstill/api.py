"""The Python API: any `nn.Module` as teacher or student, tensors, numpy arrays or ArrayData as data.

    result = potstill.distill(teacher, student, (x_train, y_train), (x_test, y_test),
                              loss="kd", temperature=4.0, alpha=0.5, beta=0.5, epochs=20)
    result.student            # the distilled student (nn.Module)
    result.baseline           # the same student trained alone, same budget and seed
    result.summary            # what summary.json holds: accuracies, agreement, ECE, size, latency

Arguments are checked here, before any training, and every mistake is one PotstillError that
names the problem and the fix: models that are not modules or that share parameters, empty or
mis-shaped data, NaN/inf in the images, labels that are not class indices, a model that cannot
take the data or does not return (B, K) logits.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from rich.console import Console
from torch import nn

from potstill.api_recipe import preprocessing_settings, recipe_from_settings
from potstill.data import ArrayData, make_splits
from potstill.data.arrays import as_tensor, to_unit_float
from potstill.data.registry import RawData
from potstill.data.lm import LMData
from potstill.data.tokens import TokenData
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.task import Supervised
from potstill.errors import PotstillError
from potstill.pipeline import Runner
from potstill.preprocess import Preprocessing, attach, attached, detach
from potstill.recipe import Recipe
from potstill.report import render_table
from potstill.startup import resolve_preprocessing
from potstill.workbench import Workbench, dry_run, resolve_device

Data = Union[ArrayData, tuple[torch.Tensor, torch.Tensor], tuple[np.ndarray, np.ndarray], TokenData, dict]
TEXT_KEYS = ("input_ids", "attention_mask", "labels")  # text from Python as a dict of arrays


@dataclass
class DistillResult:
    """What distill() returns. `run_dir` is the run folder with checkpoints and logs, or None when
    distill() was called without run_dir (it then ran in a temporary folder, deleted on return)."""

    student: nn.Module
    baseline: nn.Module | None
    teacher: nn.Module | None
    summary: dict[str, Any]
    run_dir: Path | None

    def table(self, width: int = 100) -> str:
        """The comparison table as text, as `potstill distill` prints it."""
        return summary_text(self.summary, width)

    def __repr__(self) -> str:  # what a notebook or the REPL shows for `result`
        return self.table()


def summary_text(summary: dict[str, Any], width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    render_table(summary, console)
    return console.file.getvalue()


def interactive() -> bool:
    """True in a terminal or a notebook: progress is shown there unless quiet=True."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


@dataclass
class Given:
    """One split as the caller gave it: images as the models see them (N, C, H, W), labels, and
    the shape the caller passed (to name it in errors)."""

    role: str  # "train_data" or "test_data"
    images: torch.Tensor
    labels: torch.Tensor
    given_shape: tuple[int, ...]
    data: ArrayData | None  # the caller's ArrayData, used as is

    @property
    def flat(self) -> bool:
        return len(self.given_shape) == 2

    def describe(self) -> str:
        """'train_data samples of shape (64,) (given as (N, 64), passed to models as (N, 1, 1, 64))'."""
        sample = tuple(self.given_shape[1:])
        if not self.flat:
            return f"{self.role} samples of shape {sample}"
        return (f"{self.role} samples of shape {sample} (given as (N, {sample[0]}), passed to models as "
                f"(N, 1, 1, {sample[0]}))")

    def as_array_data(self, num_classes: int) -> ArrayData:
        if self.data is not None:
            return self.data
        return ArrayData(self.images, self.labels, num_classes, split=self.role)


def given(data: Data, role: str) -> Given:
    """Read one split: an ArrayData, or a pair (images, labels) of tensors or numpy arrays.

    numpy arrays are wrapped with torch.from_numpy (no copy) and nothing the caller passed is ever
    modified. Flat features (N, D) are shown to models as (N, 1, 1, D) (a view); if a model cannot
    take that, the error says so and suggests a reshape.
    """
    if isinstance(data, ArrayData):
        images, labels, shape = data.inputs, data.targets, tuple(data.inputs.shape)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = as_tensor(data[0], f"the {role} images"), as_tensor(data[1], f"the {role} labels")
        shape = tuple(images.shape)
        if images.ndim == 2:  # flat features (N, D) -> (N, 1, 1, D)
            images = images[:, None, None, :]
        elif images.ndim != 4:
            one_channel = ": for one channel pass x.unsqueeze(1)" if images.ndim == 3 else ""
            raise PotstillError(
                f"the {role} images have shape {shape}; potstill needs (N, C, H, W) or flat (N, D){one_channel}"
            )
    else:
        raise PotstillError(
            f"{role} must be a potstill.ArrayData or a pair (images, labels) of tensors or numpy arrays, "
            f"got {type(data).__name__}"
        )
    if len(images) == 0:
        raise PotstillError(
            f"{role} holds no samples (images of shape {shape}); pass at least one sample: "
            + ("potstill trains on it" if role == "train_data" else "potstill measures every model on it")
        )
    return Given(role, images, labels, shape, data if isinstance(data, ArrayData) else None)


def check_module(model: Any, role: str, optional: bool = False) -> None:
    if isinstance(model, nn.Module) or (optional and model is None):
        return
    hint = ""
    if isinstance(model, str):
        hint = f"; to build one by name use potstill.create_model({model!r}, input_shape=..., num_classes=...)"
    none = " (or None for schemes without one)" if optional else ""
    raise PotstillError(f"the {role} must be a torch.nn.Module{none}, got {type(model).__name__}{hint}")


def check_separate(teacher: nn.Module, student: nn.Module) -> None:
    """The student trains and the teacher must not: refuse models that share any parameter."""
    fix = "give the student its own parameters, e.g. copy.deepcopy(model) or a new potstill.create_model(...)"
    if teacher is student:
        raise PotstillError(
            f"the teacher and the student are the same module; training the student would change the teacher: {fix}"
        )
    for outer, inner, outer_role, inner_role in ((teacher, student, "teacher", "student"),
                                                 (student, teacher, "student", "teacher")):
        for name, module in outer.named_modules():
            if module is inner:
                raise PotstillError(
                    f"the {inner_role} is the {outer_role}'s submodule '{name}'; training the student would change "
                    f"the teacher: {fix}"
                )
    teacher_names = {id(parameter): name for name, parameter in teacher.named_parameters()}
    shared = [(name, teacher_names[id(p)]) for name, p in student.named_parameters() if id(p) in teacher_names]
    if shared:
        pairs = ", ".join(f"student '{s}' is teacher '{t}'" for s, t in shared[:3])
        more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
        raise PotstillError(
            f"the student shares {len(shared)} parameter tensor(s) with the teacher ({pairs}{more}); "
            f"training the student would change the teacher: {fix}"
        )


def reshape_hint(features: int) -> str:
    """'x.reshape(-1, 1, 8, 8)' for 64 features: the square image shapes a flat vector could be."""
    hints = []
    for channels in (1, 3):
        side = math.isqrt(features // channels)
        if features % channels == 0 and side * side * channels == features:
            hints.append(f"x.reshape(-1, {channels}, {side}, {side})")
    return " or ".join(hints) or "x.reshape(-1, C, H, W)"


def probe(model: nn.Module, role: str, data: Given, device: torch.device) -> torch.Tensor:
    """One forward pass on two samples: the model must take the data and return (B, K) logits."""
    sample = to_unit_float(data.images[:2]).to(device)  # (B, C, H, W)
    if data.flat:
        fix = f"give the data the (N, C, H, W) shape the {role} was built for, e.g. {reshape_hint(data.given_shape[1])}"
    else:
        fix = (f"give the data the shape the {role} was built for, "
               f"or build the {role} for input_shape={tuple(sample.shape[1:])}")
    return dry_run(model, role, sample, data.describe(), fix)


def token_inputs(data: Any, role: str) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, labels) of text given from Python: a TokenData, or a dict of
    input_ids and attention_mask (N, L) and labels (N,), arrays or tensors."""
    if isinstance(data, TokenData):
        return data.input_ids, data.attention_mask, data.targets
    missing = [key for key in TEXT_KEYS if not isinstance(data, dict) or key not in data]
    if missing:
        raise PotstillError(f"{role} as a dict needs {', '.join(TEXT_KEYS)}; it has no {', '.join(missing)}")
    return tuple(as_tensor(data[key], f"{role} {key}") for key in TEXT_KEYS)


def token_data(data: Any, role: str, num_classes: int) -> TokenData:
    """A TokenData as is; a dict as a TokenData of `num_classes` classes, checked like a dataset's."""
    return data if isinstance(data, TokenData) else TokenData(*token_inputs(data, role), num_classes, split=role)


def text_workbench(recipe: Recipe, models: list[tuple[str, nn.Module]], train_data: Any, test_data: Any,
                   device: torch.device) -> Workbench:
    """Token ids from Python: the models fix the class count, the data is checked like a dataset's."""
    ids, mask, _ = token_inputs(train_data, "train_data")
    inputs = {"input_ids": ids[:2].long().to(device), "attention_mask": mask[:2].long().to(device)}
    classes = {role: dry_run(model.to(device), role, inputs, "train_data token ids", "pass the token ids its tokenizer makes").shape[1]
               for role, model in models}
    if len(set(classes.values())) > 1:
        raise PotstillError(f"the models predict different numbers of classes ({classes}); give all the same output size")
    num_classes = next(iter(classes.values()))
    raw = RawData(token_data(train_data, "train_data", num_classes), token_data(test_data, "test_data", num_classes))
    return wrap_splits(recipe, raw, models, device)


def wrap_splits(recipe: Recipe, raw: RawData, models: list[tuple[str, nn.Module]], device: torch.device) -> Workbench:
    """The given data as the run's splits: the given test data is the test split, the other data
    options apply; every model is checked against it."""
    spec = recipe.data
    splits = make_splits("python", raw, val_fraction=spec.val_fraction, train_size=spec.train_size, seed=spec.split_seed,
                         test_size=spec.test_size)
    bench = Workbench(splits, spec, device)
    for role, model in models:
        bench.check_model(model, role)
    return bench


def checked_workbench(recipe: Recipe, models: list[tuple[str, nn.Module]], train_data: Data,
                      test_data: Data) -> Workbench:
    """Check the data against itself and the models, then wrap it (nothing is written yet)."""
    device = resolve_device(recipe.device)
    if isinstance(train_data, LMData) or isinstance(test_data, LMData):
        if not (isinstance(train_data, LMData) and isinstance(test_data, LMData)):
            raise PotstillError("language-model data: give both train_data and test_data as potstill.LMData")
        if train_data.num_classes != test_data.num_classes:
            raise PotstillError(f"train_data has a vocabulary of {train_data.num_classes} tokens but test_data "
                                f"{test_data.num_classes}; tokenise both with one tokenizer")
        return wrap_splits(recipe, RawData(train_data, test_data), models, device)
    if isinstance(train_data, (TokenData, dict)):
        return text_workbench(recipe, models, train_data, test_data, device)
    train, test = given(train_data, "train_data"), given(test_data, "test_data")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise PotstillError(
            f"train_data samples have shape {train.given_shape[1:]} but test_data samples {test.given_shape[1:]}; "
            "give both the same per-sample shape"
        )
    classes = {}
    for role, model in models:
        classes[role] = probe(model.to(device), role, train, device).shape[1]
    if len(set(classes.values())) > 1:
        (first, first_count), (second, second_count) = classes.items()
        raise PotstillError(
            f"the {first} predicts {first_count} classes but the {second} {second_count}; "
            "give both the same output size"
        )
    num_classes = next(iter(classes.values()))
    raw = RawData(train.as_array_data(num_classes), test.as_array_data(num_classes))
    if raw.train.num_classes != raw.test.num_classes:
        raise PotstillError(
            f"train_data declares {raw.train.num_classes} classes but test_data {raw.test.num_classes}; "
            "give both ArrayData the same num_classes"
        )
    return wrap_splits(recipe, raw, models, device)


@contextlib.contextmanager
def run_folder(run_dir: str | Path | None) -> Iterator[Path]:
    """`run_dir`, or a temporary folder deleted when the call ends (returns or raises)."""
    if run_dir is not None:
        yield Path(run_dir)
        return
    folder = Path(tempfile.mkdtemp(prefix="potstill-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def checked_run(settings: dict[str, Any], models: list[tuple[str, nn.Module]], train_data: Data, test_data: Data,
                run_dir: str | Path | None, quiet: bool | None, body: Callable[[Runner], dict[str, Any]],
                caller: str = "distill()") -> tuple[Runner, dict[str, Any]]:
    """Check everything before a folder is made, then run body(runner) in the run folder. Without
    run_dir the folder is temporary, so the summary it returns names no weights files. A teacher
    is given back without the preprocessing attached for the run; a trained model keeps its own."""
    settings = dict(settings)
    preprocess = preprocessing_settings(settings, [role for role, _ in models], caller)
    recipe = recipe_from_settings(settings, caller, settings.pop("recipe", None))
    bench = checked_workbench(recipe, models, train_data, test_data)
    before = {role: attached(model) for role, model in models}
    # auto: what potstill attached before (a model from potstill.train or load_model), else none
    chosen = {role: before[role] or Preprocessing() if preprocess[role] == "auto" else
              resolve_preprocessing(preprocess[role], bench, role) for role, model in models}
    with run_folder(run_dir) as folder:
        run = RunDir(folder)
        run.create(resume=False)
        try:
            for role, model in models:
                attach(model, chosen[role])
            runner = Runner(recipe, run, Reporter(quiet=not interactive() if quiet is None else quiet), bench=bench)
            summary = body(runner)
        finally:
            run.close()  # the folder's lock: another process may --resume or read it now
            for role, model in models:
                if role == "teacher":  # given back as it came
                    attach(model, before[role]) if before[role] is not None else detach(model)
    if run_dir is None:
        for row in summary.get("models", []):
            row["weights"] = None  # the file was in the deleted temporary folder
    return runner, summary


def distill(
    teacher: nn.Module | None,
    student: nn.Module,
    train_data: Data,
    test_data: Data,
    *,
    run_dir: str | Path | None = None,
    quiet: bool | None = None,
    **settings: Any,
) -> DistillResult:
    """Distil `teacher` into `student`; also train the student alone (baseline=False to skip).
    `teacher` is None for schemes without one (scheme="snapshot", "byot").

    Data: potstill.ArrayData, or a pair (images, labels) of tensors or numpy arrays: images
    (N, C, H, W) uint8 in [0, 255] or float in [0, 1], labels (N,) integer class indices. Flat
    features (N, D) are shown to the models as (N, 1, 1, D); nothing you pass is modified.

    teacher_preprocess, student_preprocess: what each model expects on top of those inputs, as the
    recipe key `model.preprocess`: "auto" (the default: what potstill attached to the model before,
    for one from potstill.train or potstill.load_model, else none: the model sees your inputs as
    given), "none", "dataset" (per-channel mean/std of train_data) or {"mean": [...], "std": [...]}.
    The student's is saved with its weights and stays attached to the returned student (so
    result.student(raw_inputs) is right); the teacher is given back as it came.

    run_dir: the run folder for checkpoints, logs and summary.json. Without it the run uses a
    temporary folder that is deleted when the call returns (or raises); result.run_dir is then
    None and the summary names no weights files: pass run_dir to keep checkpoints and logs.

    settings: every key of the recipe sections train, distill and data (but the dataset) by its
    own name: epochs, lr, optimizer, ..., loss, temperature, alpha, beta, loss_args, schedule,
    pairs, terms (each {"loss", "weight", "temperature", "args", "schedule", "pairs", "stages"}),
    adapters, init_epochs, baseline, teacher_check, cache (e.g. {"enabled": True}), batch_size,
    hflip, crop_padding, val_fraction, train_size, ...; refine_epochs, refine_lr; seed, device,
    engine (e.g. {"precision": "bf16"}), report, scheme ("offline", "assistant", "born_again" or a
    scheme section). `recipe=` (a mapping or a YAML file without teacher, student and dataset)
    gives them all at once; arguments override it. They mean what the recipe keys mean
    (docs/recipes.md), and are checked by the same validator (potstill/api_recipe.py).
    """
    check_module(teacher, "teacher", optional=True)
    check_module(student, "student")
    if teacher is not None:
        check_separate(teacher, student)
    models = [("teacher", teacher)] if teacher is not None else []
    models.append(("student", student))
    runner, summary = checked_run(settings, models, train_data, test_data, run_dir, quiet,
                                  lambda runner: runner.run_distill(teacher=teacher, student=student))
    for warning in summary.get("warnings", []):  # a notebook shows these even with quiet=True
        warnings.warn(warning, UserWarning, stacklevel=2)
    final = runner.models.get("refine", runner.models[summary["final_role"]])
    for model in (final, runner.models.get("baseline")):
        if model is not None:
            model.eval()  # given back ready to predict: dropout off, BatchNorm on its running statistics
    return DistillResult(final, runner.models.get("baseline"), teacher, summary,
                         Path(run_dir) if run_dir is not None else None)


def train(model: nn.Module, train_data: Data, test_data: Data, *, run_dir: str | Path | None = None,
          quiet: bool | None = None, **settings: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Train one model on hard labels (phase 1, e.g. a teacher); returns (model, summary).

    Data and run_dir as in distill(): without run_dir the run folder is temporary and deleted on
    return, and the summary names no weights file; pass run_dir to keep checkpoints and logs.
    `preprocess` ("none", "dataset" or {"mean", "std"}) as distill()'s student_preprocess: saved
    with the weights, so a teacher trained here is fed the same way when it teaches.
    """
    check_module(model, "model")

    def body(runner: Runner) -> dict[str, Any]:
        trained = runner.stage("teacher", Supervised(model, runner.recipe.train.label_smoothing), runner.recipe.train)
        return runner.finish([("teacher", trained)])

    runner, summary = checked_run(settings, [("model", model)], train_data, test_data, run_dir, quiet, body, "train()")
    return runner.models["teacher"].eval(), summary  # ready to predict, as distill() gives its students
