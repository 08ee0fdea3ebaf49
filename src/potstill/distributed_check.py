"""What a torchrun launch can run, checked before the process group starts or a file is written.

Every rank runs these checks on the same command, recipe and data, so every rank refuses alike,
with the same one line, which rank 0 alone prints (cli/main.py). What runs distributed and what
does not is said where it lives: a scheme's or a loss's `single_process` reason (empty: it can).
"""

from __future__ import annotations

from potstill.data import DataSplits
from potstill.errors import PotstillError
from potstill.knowledge.wiring import build_terms
from potstill.recipe import Recipe
from potstill.schemes import SCHEMES

COMMANDS = ("train", "distill")  # the commands that train through the loop, and so can share it


def check_command(command: str, seeds: list[int] | None, world: int) -> None:
    """Only train and distill of one run go under torchrun."""
    if world < 2:
        return
    if command not in COMMANDS:
        raise PotstillError(f"potstill {command} runs in one process; start it without torchrun (torchrun runs "
                            "potstill train and potstill distill)")
    if seeds:
        raise PotstillError("--seeds under torchrun: start one torchrun launch per seed instead, e.g. "
                            f"--set seed={seeds[0]} --run-dir RUN/seed{seeds[0]}")


def check_recipe(recipe: Recipe, command: str, world: int) -> None:
    """The batch splits evenly, and the engine, scheme and losses can run with parts of batches."""
    if world < 2:
        return
    batch = recipe.data.batch_size
    if batch % world:
        raise PotstillError(
            f"data.batch_size {batch} does not split among {world} processes (each takes an equal part of every "
            f"batch); set data.batch_size to a multiple of {world}, e.g. {multiple_above(batch, world)}"
        )
    if recipe.engine.compile:
        raise PotstillError("engine.compile cannot run distributed yet (untested with DistributedDataParallel); set "
                            "engine.compile: false, or run it in one process")
    if command != "distill":
        return
    scheme = recipe.scheme.name
    reason = SCHEMES.get(scheme).single_process
    if reason:
        raise PotstillError(f"scheme {scheme} cannot run distributed yet ({reason}); run it in one process")
    for term in build_terms(recipe.distill, recipe.train.epochs):
        reason = type(term.loss).single_process
        if reason:
            raise PotstillError(f"loss '{term.name}' cannot run distributed yet ({reason}, and each process holds only "
                                "its part of the batch); run it in one process, or use a loss that compares samples one by one")


def check_data(splits: DataSplits, batch: int, world: int) -> None:
    """Classification data whose last batch still gives every process a sample."""
    if world < 2:
        return
    if splits.task != "classification":
        raise PotstillError(
            f"{splits.task.replace('_', ' ')} data ({splits.name}) cannot run distributed yet (its losses average "
            "over tokens, which the processes' parts of a batch hold unequally); run it in one process"
        )
    count = len(splits.train.targets)
    rest = count % batch
    if 0 < rest < world:
        raise PotstillError(
            f"the last batch of the {count} training samples holds {rest}, fewer than the {world} processes, so one "
            f"would get none; set data.batch_size to {fitting_batch(count, batch, world)} (a multiple of {world} that "
            "leaves every process a sample)"
        )


def multiple_above(batch: int, world: int) -> int:
    return (batch // world + 1) * world


def fitting_batch(count: int, batch: int, world: int) -> int:
    """The multiple of `world` nearest above `batch` whose last batch is empty or has >= `world` samples."""
    size = multiple_above(batch, world)
    while 0 < count % size < world and size < count:
        size += world
    return size
