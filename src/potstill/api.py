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
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from potstill.api_data import Data, checked_workbench
from potstill.api_recipe import preprocessing_settings, recipe_from_settings
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.task import Supervised
from potstill.errors import PotstillError
from potstill.model_io import field_of
from potstill.pipeline import Runner
from potstill.preprocess import Preprocessing, attach, attached, detach
from potstill.report import render_table
from potstill.startup import resolve_preprocessing


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
              resolve_preprocessing(preprocess[role], bench, role, field_of(model)) for role, model in models}
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
