"""Before a run: check every name, argument, model size and teacher file, read the data, and
build models with their input preprocessing attached. Nothing here writes a file, so a mistake
is found before the run folder exists; pipeline.py runs the stages on top of this."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from potstill.compress.prune import check_prune_source
from potstill.data import DATASETS, load_dataset
from potstill.data.registry import dataset_task
from potstill.engine.weights import load_weights, teacher_weights_file
from potstill.errors import PotstillError
from potstill.knowledge.wiring import build_terms
from potstill.knowledge import LOSSES
from potstill.model_io import read_field
from potstill.models import MODELS, check_model_size, create_model, model_modality
from potstill.preprocess import Preprocessing, attach
from potstill.recipe import ModelSpec, Recipe
from potstill.runner_cache import text_layer_cache_error
from potstill.schemes import create_scheme, needs_teacher
from potstill.schemes.data_free import train_data_problem
from potstill.workbench import Workbench, resolve_device


def open_workbench(recipe: Recipe) -> Workbench:
    spec = recipe.data
    splits = load_dataset(
        spec.name, root=spec.root, val_fraction=spec.val_fraction, test_fraction=spec.test_fraction,
        train_size=spec.train_size, seed=spec.split_seed, args=spec.args, test_size=spec.test_size,
    )
    return Workbench(splits, spec, resolve_device(recipe.device))


def check_model_spec(spec: ModelSpec, role: str) -> None:
    MODELS.get(spec.name)  # unknown name -> error with the nearest registered one
    if spec.init is not None and role != "student":
        raise PotstillError(f"{role}.init: only the student can start from the teacher's weights; remove it")
    if spec.prune is not None and role != "student":
        raise PotstillError(f"{role}.prune: only the student can be pruned (the unpruned model teaches it); remove it")
    if spec.quantize is not None and role != "student":
        raise PotstillError(f"{role}.quantize: only the student trains quantization-aware (the fp32 teacher teaches it); "
                            "remove it, and quantize any finished model with potstill export RUN --int8")
    for reserved in ("input_shape", "num_classes"):
        if reserved in spec.args:
            raise PotstillError(f"{role}.args.{reserved} is set from the dataset; remove it from the recipe")
    MODELS.check_kwargs(spec.name, spec.args, where=f"{role}.args", reserved=("input_shape", "num_classes"))


def preflight(recipe: Recipe, command: str) -> None:
    """Check every name and argument the recipe uses before any data is read or model trained."""
    DATASETS.get(recipe.data.name)
    DATASETS.check_kwargs(recipe.data.name, recipe.data.args, where="data.args")
    no_training_data = train_data_problem(recipe, command)  # data.train_data: none
    if no_training_data is not None:
        raise PotstillError(no_training_data)
    if command == "train" and recipe.teacher is None and recipe.scheme.teachers:
        raise PotstillError(
            "the recipe's teachers are in scheme.teachers: `potstill distill RECIPE` trains those without a checkpoint "
            "(stages teacher1, teacher2, ...); `potstill train` trains the single teacher section"
        )
    if command == "train" and recipe.teacher is None:
        raise PotstillError("the recipe has no teacher section; add teacher.model (and teacher.checkpoint or teacher.train)")
    if recipe.teacher is not None:
        check_model_spec(recipe.teacher.model, "teacher")
        if recipe.teacher.checkpoint is not None and command == "distill":
            teacher_weights_file(recipe.teacher.checkpoint)
    modality = dataset_modality(recipe.data.name)
    models = [(recipe.teacher.model, "teacher")] if recipe.teacher is not None else []
    if command != "distill":
        check_modality(models, [], recipe.data.name, modality, dataset_task(recipe.data.name))
        check_declared_fields(models, recipe.data.name)
        return
    terms = build_terms(recipe.distill, recipe.train.epochs)
    models += [(recipe.student, "student")] if recipe.student is not None else []
    models += [(spec.model, f"scheme.teachers[{i}]") for i, spec in enumerate(recipe.scheme.teachers)]
    models += [(spec, f"scheme.{key}[{i}]") for key in ("peers", "assistants") for i, spec in enumerate(getattr(recipe.scheme, key))]
    check_modality(models, terms, recipe.data.name, modality, dataset_task(recipe.data.name))
    check_declared_fields(models, recipe.data.name)
    layer_terms = [term.name for term in terms if type(term.loss).pairing != "none"]
    if modality == "text" and recipe.distill.cache.enabled is True and layer_terms:
        raise text_layer_cache_error(layer_terms)
    if recipe.distill.cache.enabled is True and not needs_teacher(terms):
        raise PotstillError("distill.cache: no loss term of this recipe uses a teacher, so there is nothing to cache; set distill.cache.enabled: false")
    create_scheme(recipe.scheme.name, recipe.scheme.args).check(recipe, terms)
    if recipe.student is None:
        raise PotstillError("the recipe has no student section; add student.name, e.g. student: {name: mlp}")
    check_model_spec(recipe.student, "student")
    if recipe.student.prune is not None and recipe.student.prune.source != "teacher":
        teacher_weights_file(recipe.student.prune.source, "student.prune.source")
    spec = recipe.scheme
    for key, models in (("peers", spec.peers), ("assistants", spec.assistants)):
        for index, model in enumerate(models):
            check_model_spec(model, f"scheme.{key}[{index}]")
    for index, teacher in enumerate(spec.teachers):
        check_model_spec(teacher.model, f"scheme.teachers[{index}]")
        if teacher.checkpoint is not None:
            teacher_weights_file(teacher.checkpoint, f"scheme.teachers[{index}].checkpoint")


def dataset_modality(name: str) -> str:
    return getattr(DATASETS.get(name), "modality", "image")


def check_modality(models: list[tuple[ModelSpec, str]], terms: list, dataset: str, modality: str,
                   task: str = "classification") -> None:
    """Image models and losses on image data, text ones on text data, language models and token
    losses on language-modelling data: one line naming the mismatch."""
    for spec, role in models:
        model_task = getattr(MODELS.get(spec.name), "task", "classification")
        if model_task != task:
            fits = [name for name in MODELS.names() if getattr(MODELS.get(name), "task", "classification") == task]
            raise PotstillError(
                f"{role}: model '{spec.name}' is a {model_task.replace('_', ' ')} model but dataset '{dataset}' asks "
                f"for {task.replace('_', ' ')}; use {' or '.join(fits)}"
            )
    for term in terms:
        if task not in type(term.loss).tasks:
            fits = [name for name in LOSSES.names() if task in LOSSES.get(name).tasks]
            raise PotstillError(
                f"distill: loss '{term.name}' compares one distribution per sample, but dataset '{dataset}' is "
                f"{task.replace('_', ' ')} data (a distribution per token); use one of {', '.join(fits) or 'none yet'}"
            )
    for spec, role in models:
        if model_modality(spec.name) != modality:
            kind = "token sequences" if model_modality(spec.name) == "text" else "images"
            raise PotstillError(
                f"{role}: model '{spec.name}' takes {kind} but dataset '{dataset}' is {modality} data; pick a "
                f"{modality} model (`potstill list models`) or a {model_modality(spec.name)} dataset"
            )
    for term in terms:
        needed = type(term.loss).modality
        if needed not in ("any", modality):
            fits = [name for name in LOSSES.names() if LOSSES.get(name).modality in ("any", modality)]
            raise PotstillError(
                f"distill: loss '{term.name}' compares {needed} features but dataset '{dataset}' is {modality} data; "
                f"use one of {', '.join(fits)}"
            )


def build_model(spec: ModelSpec, bench: Workbench, role: str, seed: int) -> nn.Module:
    """A fresh model with its preprocessing attached: the recipe's, or for `auto` the training
    split's statistics (a model potstill trains; a checkpoint's own record replaces it on loading)."""
    check_model_spec(spec, role)
    torch.manual_seed(seed)  # baseline and distilled student start from the same weights
    model = create_model(spec.name, input_shape=bench.splits.input_shape, num_classes=bench.splits.num_classes, **spec.args)
    check_input_field(spec.input, bench, role)
    model = attach(model.to(bench.device), resolve_preprocessing(spec.preprocess, bench, role, spec.input))
    read_field(model, spec.input)  # the teacher of cross-modal distillation reads teacher_input
    bench.check_model(model, role)
    return model


def check_input_field(field: str, bench: Workbench, role: str) -> None:
    """A model reading another field than `input` needs data that carries it (a paired dataset)."""
    missing_field(field, tuple(getattr(bench.splits.train, "image_fields", ())), f"{bench.splits.name}'s data", role)


def check_declared_fields(models: list[tuple[ModelSpec, str]], dataset: str) -> None:
    """Before the data is read: the fields a registered dataset declares (paired: input, teacher_input)."""
    held = getattr(DATASETS.get(dataset), "fields", ("input",))
    for spec, role in models:
        missing_field(spec.input, held, f"dataset '{dataset}'", role)


def missing_field(field: str, held: tuple[str, ...], where: str, role: str) -> None:
    if field != "input" and field not in held:
        raise PotstillError(
            f"the {role} reads `{field}` but {where} has only {', '.join(held) or 'token ids'}; use a paired dataset "
            "(fashion_mnist_pair, digits_pair) or your own pair (arrays t_train/t_test, or potstill.ArrayData(..., "
            f"teacher_inputs=...)), or let the {role} read `input` (its model's input key)"
        )


def resolve_preprocessing(value: Any, bench: Workbench, role: str, field: str = "input") -> Preprocessing:
    """A recipe's `preprocess` value as numbers: none, dataset (and auto: the statistics of the field
    the model reads), or a given mean/std. Text models take token ids: their preprocessing is the
    tokenizer (data.args.tokenizer)."""
    if bench.splits.modality == "text":
        if value not in ("auto", "none"):
            raise PotstillError(
                f"{role}.preprocess: a text model takes token ids, so there is nothing to normalise (its preprocessing "
                "is its tokenizer, data.args.tokenizer); remove preprocess"
            )
        return Preprocessing(source="tokenizer")
    if value == "none":
        return Preprocessing(source="recipe")
    if value in ("dataset", "auto"):
        mean, std = bench.splits.statistics(field)
        return Preprocessing(tuple(mean), tuple(std), "dataset" if field == "input" else f"dataset {field}")
    given = Preprocessing(tuple(value.mean), tuple(value.std), "given")
    given.check_channels(bench.splits.input_shape[0], role)
    return given


def check_before_writing(recipe: Recipe, bench: Workbench) -> None:
    """What can only be checked with the data's shapes, before the run folder is created (so a
    retry can reuse the folder): every model fits in memory (measured on the meta device), and
    every teacher checkpoint loads into its architecture with finite values."""
    named = [("teacher", recipe.teacher)] + [(f"scheme.teachers[{i}]", spec) for i, spec in enumerate(recipe.scheme.teachers)]
    models = [spec.model for _, spec in named if spec is not None] + [recipe.student] * (recipe.student is not None)
    roles = [key for key, spec in named if spec is not None] + ["student"] * (recipe.student is not None)
    for spec, role in zip(models, roles):  # a field the files turned out not to hold (arrays without t_train)
        check_input_field(spec.input, bench, role)
    for spec in models + list(recipe.scheme.peers) + list(recipe.scheme.assistants):
        check_model_size(spec.name, {"input_shape": bench.splits.input_shape, "num_classes": bench.splits.num_classes,
                                     **spec.args})
    prune = recipe.student.prune if recipe.student is not None else None
    if prune is not None:
        if bench.splits.modality != "image":
            raise PotstillError(f"student.prune: pruning takes image models for now, and {recipe.data.name} is "
                                f"{bench.splits.modality} data; remove student.prune")
        source = None if prune.source == "teacher" else teacher_weights_file(prune.source, "student.prune.source")
        check_prune_source(recipe, source, bench.splits.input_shape, bench.splits.num_classes)
    for key, spec in named:
        if spec is not None and spec.checkpoint is not None:
            model = build_model(spec.model, bench, key, recipe.seed)
            load_weights(model, teacher_weights_file(spec.checkpoint, f"{key}.checkpoint"), key, bench.device)
