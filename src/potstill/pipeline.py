"""The three phases of a recipe: pre-train the teacher, transfer knowledge, refine the student.

A distil run also trains the same student alone with the same budget and seed (the baseline),
so every run answers "did distillation pay off?". Each phase is a stage folder in the run; a
resumed run skips finished stages and continues the interrupted one from its checkpoint.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from potstill import __version__
from potstill.compress.quantize import prepare_qat
from potstill.compress.prune import example_input, prune_student, pruning_record, sparsity
from potstill.engine import distributed
from potstill.engine.checkpoint import load_into, load_tensors, tensor_names
from potstill.engine.loop import Callback, Stage, fit
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.engine.speed import prepare_model
from potstill.engine.stamp import recipe_stamp
from potstill.engine.task import Supervised, WeightedTerm
from potstill.engine.weights import load_weights, teacher_weights_file
from potstill.errors import PotstillError
from potstill.knowledge.wiring import build_terms, connect_terms
from potstill.model_io import model_inputs
from potstill.models.init_from import init_from_teacher
from potstill.preprocess import Preprocessing, attach, preprocessing_of
from potstill.recipe import ModelSpec, Recipe, TeacherSpec, TrainSpec
from potstill.report import measure_latency, model_row, summarize
from potstill.report.summary import training_notes
from potstill.runner_cache import CacheSteps
from potstill.schedules import WeightSchedule
from potstill.schemes import OfflineDistillation, Preparation, create_scheme
from potstill.startup import build_model, open_workbench
from potstill.teacher_check import check_lm_teacher, check_teacher, unigram_perplexity
from potstill.tracking import tracking
from potstill.workbench import Workbench, check_same_vocabulary


class Runner(CacheSteps):
    """Runs the stages of one recipe inside one run folder (the teacher-output cache steps are in
    runner_cache.py)."""

    def __init__(self, recipe: Recipe, run: RunDir, reporter: Reporter, resume: bool = False,
                 callbacks: list[Callback] | None = None, bench: Workbench | None = None) -> None:
        self.recipe, self.run, self.reporter, self.resume = recipe, run, reporter, resume
        self.callbacks = callbacks or []
        self.bench = bench or open_workbench(recipe)
        self.roles: dict[str, dict[str, Any]] = {}  # report details of models a scheme adds (describe_role)

    def describe(self) -> dict[str, Any]:
        return {
            "potstill": __version__, "torch": torch.__version__, "python": platform.python_version(), "argv": sys.argv,
            "device": str(self.bench.device), "threads": torch.get_num_threads(), "data": self.bench.splits.describe(),
            "processes": distributed.world_size(),  # torchrun's world size; 1 without it
        }

    def stage(self, name: str, task, spec: TrainSpec, evaluate=None, views: torch.Tensor | None = None,
              loader=None) -> nn.Module:
        """Train a stage, or load it if a previous (resumed) run already finished it. `views`: the
        view bank of a teacher cache, replayed by the loader. `loader`: the stage's own batches in
        place of the training split's (a subset of classes, synthetic inputs); anything with
        `len()`, `batches(epoch)`, `device` and `share(step)`."""
        if self.resume and self.load_finished(name, task):
            return task.model
        seed, engine = self.recipe.seed, self.recipe.engine
        if engine.compile and getattr(task, "tapped_layers", []):
            raise PotstillError(
                f"engine.compile: the loss terms hook layers ({', '.join(task.tapped_layers)}) on every step, which "
                "would recompile the model each time; use compile with logit-only losses, or set engine.compile: false"
            )
        models = [task.model, *task.models_to_compile(), getattr(task, "teacher", None)]  # peers too
        for model in {id(model): model for model in models if model is not None}.values():
            prepare_model(model, engine)
        if engine.compile:
            task.compile()
        torch.manual_seed(seed)
        if loader is None:
            loader = self.bench.train_loader(seed, views=views, channels_last=engine.channels_last)
        stage = Stage(name, task, spec, loader, evaluate or self.bench.evaluate, seed, self.callbacks, engine, recipe_stamp(self.recipe),
                      self.bench.measures)
        return fit(stage, self.run, self.reporter, resume=self.resume)

    def load_finished(self, name: str, task) -> bool:
        """Load a stage that a previous run finished; module.safetensors, when present, also holds
        the stage's adapters and loss state."""
        folder = self.run.stage(name)
        if not (folder / "model.safetensors").is_file():
            return False
        whole = folder / "module.safetensors"
        target, path = (task.module, whole) if whole.is_file() else (task.model, folder / "model.safetensors")
        tensors, _ = load_tensors(path)
        load_into(target, tensors, str(path), name)
        self.reporter.message(f"{name}: already finished, loaded {path}")
        return True

    def teacher(self, spec: TeacherSpec | None = None, stage: str = "teacher", seed: int | None = None) -> nn.Module:
        """The recipe's teacher (or `spec`, e.g. one of scheme.teachers), loaded from its checkpoint
        or trained on hard labels in stage `stage`."""
        if spec is None:
            model, spec = self.teacher_skeleton(), self.recipe.teacher
        else:
            model = self.build(spec.model, stage, seed)
        if spec.checkpoint is None:
            return self.stage(stage, Supervised(model, spec.train.label_smoothing), spec.train)
        return self.load_weights(model, teacher_weights_file(spec.checkpoint), stage, explicit=spec.model.preprocess != "auto")

    def load_weights(self, model: nn.Module, path: Path, what: str, explicit: bool = False) -> nn.Module:
        """Weights from `path`; the preprocessing the file records replaces the one attached at
        building, unless the recipe gave one (`explicit`). A file that records none (a model
        trained elsewhere) gets none: its inputs are never changed silently."""
        recorded = load_weights(model, path, what, self.bench.device)
        attached = preprocessing_of(model)
        if explicit:
            if recorded is not None and recorded.header() | {"source": ""} != attached.header() | {"source": ""}:
                self.reporter.message(f"{what}: preprocessing from the recipe, {attached.describe()}, although {path} "
                                      f"records {recorded.describe()}")
        elif recorded is not None:
            attach(model, recorded)
        else:
            attach(model, Preprocessing(source="the file records none"))
            self.reporter.message(f"{what}: {path} records no preprocessing, so the model sees raw inputs; if it expects "
                                  "normalised inputs, set its model.preprocess (dataset, or {mean: [...], std: [...]})")
        self.reporter.message(f"{what}: loaded {path}; preprocessing {preprocessing_of(model).describe()}")
        return model

    def student(self) -> nn.Module:
        if self.recipe.student is None:
            raise PotstillError("the recipe has no student section; add student.name, e.g. student: {name: mlp}")
        student = build_model(self.recipe.student, self.bench, "student", self.recipe.seed)
        prune = self.recipe.student.prune
        if prune is not None and prune.source != "teacher":  # a weights file: pruned now (a teacher source: in initialise)
            path = teacher_weights_file(prune.source, "student.prune.source")
            explicit = self.recipe.student.preprocess != "auto"
            source = self.load_weights(build_model(self.recipe.student, self.bench, "student", self.recipe.seed), path,
                                       "student.prune.source", explicit=explicit)
            line = prune_student(student, source, prune, example_input(self.bench.splits.input_shape, self.bench.device),
                                 str(path), keep_preprocessing=explicit)
            self.reporter.message(f"prune  {line}")
        return student

    def initialise(self, student: nn.Module, teacher: nn.Module, quiet: bool = False) -> None:
        """student.init: the student starts from the teacher's weights (before the baseline copies
        it). `quiet`: a rehearsal on the teacher's architecture, to fail before anything trains."""
        prune = self.recipe.student.prune if self.recipe.student is not None else None
        if prune is not None and prune.source == "teacher":  # student.prune: the teacher's weights, pruned
            line = prune_student(student, teacher, prune, example_input(self.bench.splits.input_shape, self.bench.device),
                                 keep_preprocessing=self.recipe.student.preprocess != "auto")
            if not quiet:
                self.reporter.message(f"prune  {line}")
        spec = self.recipe.student.init if self.recipe.student is not None else None
        lines = [] if spec is None else [f"init   {line}" for line in init_from_teacher(
            student, teacher, layers=spec.layers, method=spec.method, container=spec.container)]
        if self.recipe.student is not None and self.recipe.student.quantize is not None:  # last: it swaps linear layers
            lines.append(prepare_qat(student))
        for line in [] if quiet else lines:
            self.reporter.message(line)

    def write_description(self) -> None:
        """run.json: versions, device, threads and data of the start; a resume adds its own entry."""
        if not distributed.is_main():  # under torchrun rank 0 alone writes
            return
        path = self.run.path / "run.json"
        if self.resume and path.is_file():
            first = json.loads(path.read_text())
            now = self.describe()
            keys = ("potstill", "torch", "argv", "device", "threads", "processes")
            first.setdefault("resumed", []).append({key: now[key] for key in keys})
            self.run.write_json("run.json", first)
        else:
            self.run.write_json("run.json", self.describe())

    def run_train(self) -> dict[str, Any]:
        """Phase 1 only: pre-train the teacher."""
        self.write_description()
        with tracking(self.recipe, self.run, self.reporter, self.callbacks) as tracker:  # TensorBoard, MLflow
            teacher = self.teacher()
            return tracker.finished(self.finish([("teacher", teacher)]))

    def run_distill(self, teacher: nn.Module | None = None, student: nn.Module | None = None) -> dict[str, Any]:
        """Phases 1-3 as the recipe's scheme arranges them; `teacher`/`student` given from Python
        replace the recipe's models."""
        self.write_description()
        scheme = create_scheme(self.recipe.scheme.name, self.recipe.scheme.args)
        scheme.check(self.recipe, self.terms(), given_teacher=teacher is not None)  # fail on a bad loss or combination before any training
        with tracking(self.recipe, self.run, self.reporter, self.callbacks) as tracker:  # TensorBoard, MLflow
            models = scheme.run(self, teacher, student)
            return tracker.finished(self.finish(models, final=scheme.final_role, annotate=scheme.annotate))

    def terms(self) -> list[WeightedTerm]:
        """Fresh loss modules for one transfer: each stage's adapters train and are saved on their own."""
        return build_terms(self.recipe.distill, self.recipe.train.epochs)

    def baseline(self, student_init: nn.Module, role: str = "baseline") -> nn.Module | None:
        """The student trained alone on hard labels, with the budget of distillation + refinement and
        the same initial weights (None when distill.baseline is false)."""
        recipe = self.recipe
        if not recipe.distill.baseline:
            return None
        budget = replace(recipe.train, epochs=recipe.train.epochs + recipe.refine.epochs)
        return self.stage(role, Supervised(copy.deepcopy(student_init), recipe.train.label_smoothing), budget)

    def transfer(self, name: str, student: nn.Module, teacher: nn.Module | None,
                 teacher_role: str | None = None, architecture: ModelSpec | None = None,
                 make_task=OfflineDistillation) -> nn.Module:
        """Offline distillation of `student` from a frozen `teacher` with the recipe's loss terms, in
        stage `name`: pair layers, prepare losses, build or open the teacher cache, the optional
        feature-initialisation stage, then the main stage. `teacher_role` and `architecture`: the
        stage and model spec of a teacher that is not the recipe's (an assistant, a generation).
        `make_task`: the main stage's Task class (OfflineDistillation's arguments), e.g. on-policy GKD."""
        recipe, terms = self.recipe, self.terms()
        prefix = "" if name == "student" else f"{name}_"
        cache = None
        if teacher is not None and teacher_role is None:  # the recipe's (or the caller's) teacher
            self.check_teacher(teacher)
        if teacher is not None:
            check_same_vocabulary(teacher, student)
            self.connect(terms, student, teacher)
            self.prepare(terms, teacher, f"{prefix}prepare")
            # the recipe's teacher keeps distill.cache.path; another teacher gets a cache of its own
            cache = self.teacher_cache(teacher, terms, teacher_role, architecture)
        views = cache.views if cache is not None else None
        if recipe.distill.init_epochs > 0:
            init_terms = [replace(term, schedule=WeightSchedule()) for term in terms if "init" in term.stages]
            init_spec = replace(recipe.train, epochs=recipe.distill.init_epochs)
            init_task = OfflineDistillation(student, teacher, init_terms, alpha=0.0, cache=cache)
            self.stage(f"{prefix}init", init_task, init_spec, views=views)
        main_terms = [term for term in terms if "main" in term.stages]
        task = make_task(student, teacher, main_terms, recipe.distill.alpha, recipe.train.label_smoothing, cache)
        return self.stage(name, task, recipe.train, views=views)

    def check_teacher(self, teacher: nn.Module) -> None:
        """Before it teaches: refuse (or warn) when the teacher scores near chance or clearly below
        the student trained alone (teacher_check.py)."""
        splits, mode = self.bench.splits, self.recipe.distill.teacher_check
        key = "test_ppl" if splits.task == "causal_lm" else "test_acc"  # a language model is judged by perplexity
        baseline = [r[key] for r in self.run.records() if r.get("stage") == "baseline" and key in r]
        baseline = baseline[-1] if baseline else None
        if key == "test_ppl":
            check_lm_teacher(teacher, self.bench.evaluate, unigram_perplexity(splits.train.targets, splits.test.targets,
                             splits.num_classes), baseline, mode, self.reporter.message)
            return
        targets = splits.test.targets
        check_teacher(teacher, "teacher", self.bench.evaluate, targets, splits.num_classes, baseline, mode,
                      self.reporter.message)

    def refine(self, distilled: nn.Module) -> nn.Module | None:
        """Phase 3: fine-tune a copy of the distilled student on hard labels (None when refine.epochs is 0)."""
        recipe = self.recipe
        if recipe.refine.epochs == 0:
            return None
        refine_spec = replace(recipe.train, epochs=recipe.refine.epochs, lr=recipe.refine.lr, scheduler="cosine", milestones=[])
        refined = copy.deepcopy(distilled)  # keep the distilled student's weights for the report
        return self.stage("refine", Supervised(refined, recipe.train.label_smoothing), refine_spec)

    def build(self, spec: ModelSpec, role: str, seed: int | None = None) -> nn.Module:
        """A fresh model of the recipe's data shape; `seed` defaults to the recipe's."""
        return build_model(spec, self.bench, role, self.recipe.seed if seed is None else seed)

    def teacher_skeleton(self) -> nn.Module:
        """The teacher architecture with fresh weights (no training, no checkpoint)."""
        spec = self.recipe.teacher
        if spec is None:
            raise PotstillError("the recipe has no teacher section; add teacher.model (and teacher.checkpoint or teacher.train)")
        return build_model(spec.model, self.bench, "teacher", self.recipe.seed)

    def connect(self, terms: list[WeightedTerm], student: nn.Module, teacher: nn.Module) -> None:
        """Pair layers, build adapters from one dry run, and print what was matched."""
        sample = self.sample_inputs()
        torch.manual_seed(self.recipe.seed)  # adapters start the same in a fresh and a resumed run
        lines = connect_terms(
            terms, student, teacher, sample, num_classes=self.bench.splits.num_classes,
            num_samples=len(self.bench.splits.train.targets), adapters=self.recipe.distill.adapters,
        )
        for line in lines:
            self.reporter.message(f"pairs  {line}")

    def sample_inputs(self) -> dict[str, torch.Tensor]:
        """One training batch's model inputs ({"input": (B, C, H, W)} or token ids and masks), for
        dry runs that see layer shapes."""
        return model_inputs(next(iter(self.bench.train_loader(self.recipe.seed, sharded=False).batches(0))))

    def prepare(self, terms: list[WeightedTerm], teacher: nn.Module, name: str = "prepare") -> None:
        """Losses that pre-train their own modules on the teacher's outputs (FT's paraphraser)."""
        epochs = max((term.loss.prepare_epochs for term in terms), default=0)
        if epochs > 0:
            task = Preparation(teacher, terms)
            self.stage(name, task, replace(self.recipe.train, epochs=epochs), evaluate=lambda model: {})
            for term in task.terms:
                term.loss.finish_preparation()

    def describe_role(self, role: str, title: str | None = None, spec: ModelSpec | None = None,
                      weights: Path | None = None) -> None:
        """What the report says about a model a scheme adds: its title, architecture and weights file."""
        self.roles[role] = {"title": title, "spec": spec, "weights": weights}

    def finish(self, models: list[tuple[str, nn.Module]], final: str = "student", annotate=None) -> dict[str, Any]:
        """Measure every model on the test split; `final`: the row compared with the baseline;
        `annotate`: the scheme's own additions to the summary. Under torchrun rank 0 alone measures
        and writes; the other ranks get {}."""
        self.models = dict(models)
        if not distributed.is_main():
            return {}
        rows, teacher_logits = [], None
        times = self.stage_times()
        latency = measure_latency(models, self.bench.splits.example_batch, self.recipe.report)  # all models interleaved
        for role, model in models:
            weights = self.weights_file(role)
            row, logits = model_row(role, model, self.bench, self.recipe.report, teacher_logits, weights, times.get(role),
                                    latency[role])
            if role == "teacher":
                teacher_logits = logits
            row["title"] = self.roles.get(role, {}).get("title") or row["title"]
            row["architecture"] = self.architecture(role, model) | pruning_record(model)
            if row["architecture"].get("prune", {}).get("method") == "unstructured":
                row["sparsity"] = sparsity(model)  # zero fraction of the pruned layers' weights
            row["weights"] = self.weights_record(weights, model)
            row["preprocessing"] = preprocessing_of(model).header()
            rows.append(row)
        summary = summarize(rows, self.bench.splits.describe(), final)
        summary["scheme"], summary["final_role"] = self.recipe.scheme.name, final
        summary.update(training_notes(self.run.records()))  # terms of each stage at its last epoch, warnings
        if annotate is not None:
            annotate(summary)
        self.run.write_json("summary.json", summary)
        return summary

    def weights_file(self, role: str) -> Path:
        known = self.roles.get(role, {}).get("weights")
        if known is not None:
            return known
        if role == "teacher" and self.recipe.teacher is not None:
            return self.teacher_file(self.recipe.teacher, role)
        return self.run.stage(role) / "model.safetensors"

    def weights_record(self, path: Path, model: nn.Module) -> str | None:
        """The file `potstill eval` rebuilds a row from (relative to the run folder when inside it,
        else absolute: a checkpoint named relative to where the run started is found from anywhere);
        None when the file does not hold exactly this model (combined teachers, exits with their heads)."""
        if not path.is_file():
            return None
        if tensor_names(path) != set(model.state_dict()):
            return None
        return str(path.relative_to(self.run.path)) if path.is_relative_to(self.run.path) else str(path.absolute())

    def teacher_file(self, spec: TeacherSpec, stage: str) -> Path:
        """Where a teacher's weights are: its checkpoint, or the stage that trained it."""
        return teacher_weights_file(spec.checkpoint) if spec.checkpoint else self.run.stage(stage) / "model.safetensors"

    def architecture(self, role: str, model: nn.Module) -> dict[str, Any]:
        teacher = self.recipe.teacher
        spec = self.roles.get(role, {}).get("spec")
        if spec is None:
            spec = (teacher.model if teacher else None) if role == "teacher" else self.recipe.student
        if spec is None:  # a model handed in from Python
            return {"name": type(model).__name__, "args": {}}
        return {"name": spec.name, "args": spec.args} | ({"input": spec.input} if spec.input != "input" else {})

    def stage_times(self) -> dict[str, float]:
        times: dict[str, float] = {}
        for record in self.run.records():
            times[record["stage"]] = times.get(record["stage"], 0.0) + record.get("time_s", 0.0)
        return times
