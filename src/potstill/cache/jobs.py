"""A cache job from a recipe: where the cache lives, what it holds, and its fingerprint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from potstill.cache.build import CacheJob
from potstill.cache.fingerprint import fingerprint
from potstill.data import Augment
from potstill.model_io import field_of
from potstill.preprocess import preprocessing_of
from potstill.recipe import CacheSpec, ModelSpec, Recipe
from potstill.workbench import Workbench

DTYPES = {"float16": torch.float16, "float32": torch.float32}


def cache_folder(spec: CacheSpec, run_path: Path) -> Path:
    return Path(spec.path) if spec.path else run_path / "teacher_cache"


def make_job(recipe: Recipe, bench: Workbench, teacher: nn.Module, taps: list[str], folder: Path,
             architecture: ModelSpec | None = None) -> CacheJob:
    """`architecture`: the teacher's model spec when it is not the recipe's teacher (an assistant,
    an earlier generation)."""
    spec, data = recipe.distill.cache, recipe.data
    augment = Augment(hflip=data.hflip, crop_padding=data.crop_padding)
    model = architecture or (recipe.teacher.model if recipe.teacher is not None else None)
    architecture = {"name": model.name, "args": model.args} if model else {"name": type(teacher).__name__, "args": {}}
    train = bench.splits.train
    views = {"count": spec.views, "seed": spec.view_seed, "hflip": data.hflip, "crop_padding": data.crop_padding}
    outputs = {"top_k": spec.top_k, "dtype": spec.dtype, "taps": list(taps)}
    stamp = fingerprint(
        teacher={"architecture": architecture, "preprocessing": preprocessing_of(teacher).header()} | reads(teacher),
        teacher_state=teacher.state_dict(), data={"dataset": bench.splits.name} | tokenizer_of(train),
        inputs=train.content(), targets=train.targets, views=views, outputs=outputs,
    )
    return CacheJob(
        folder=folder, teacher=teacher, taps=list(taps), data=train,
        augment=augment, views=spec.views, view_seed=spec.view_seed, top_k=spec.top_k, dtype=DTYPES[spec.dtype],
        shard_size=spec.shard_size, workers=spec.workers, batch_size=data.batch_size, device=bench.device,
        fingerprint=stamp,
    )


def reads(teacher: nn.Module) -> dict[str, str]:
    """A teacher that reads another field than `input` (cross-modal) names it: its outputs depend on it."""
    field = field_of(teacher)
    return {"input": field} if field != "input" else {}


def tokenizer_of(data) -> dict[str, str]:
    """Text data names the tokenizer its ids come from (a cache made with another is refused by name)."""
    fingerprint = getattr(data, "tokenizer", "")
    return {"tokenizer": fingerprint} if fingerprint else {}
