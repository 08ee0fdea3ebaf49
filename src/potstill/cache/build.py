"""Building a cache: run the frozen teacher once over every (sample, view) and write shards.

A build is resumable: each shard is written atomically and marked finished by its record, so a
killed build keeps every finished shard and the next `potstill cache build` computes only the
rest (and any shard whose files no longer match their checksums). With `workers` > 1, forked
processes build disjoint shards in parallel, one CPU thread each.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from potstill.cache import codec
from potstill.cache.fingerprint import FORMAT, differences
from potstill.cache.store import (
    MANIFEST,
    PLAN,
    VIEWS,
    clear,
    file_entry,
    finished_shard,
    foreign_files,
    plan_id,
    read_array,
    read_json,
    shard_count,
    shard_files,
    shard_json,
    shard_problems,
    shard_range,
    write_array,
    write_shard,
)
from potstill.data import ArrayData, Augment
from potstill.data.views import view_bank
from potstill.engine.checkpoint import atomic_write, guarded
from potstill.engine.lock import FolderLock
from potstill.errors import PotstillError
from potstill.model_io import call_model
from potstill.taps import Taps

NUMPY_NAMES = {torch.float16: "float16", torch.float32: "float32", torch.uint8: "uint8", torch.int16: "int16", torch.int32: "int32"}


@dataclass
class CacheJob:
    """Everything a build needs; `fingerprint` says what the outputs depend on."""

    folder: Path
    teacher: nn.Module
    taps: list[str]
    data: ArrayData  # the training split, uint8 or float images (the teacher applies its own preprocessing)
    augment: Augment
    views: int
    view_seed: int
    top_k: int | None
    dtype: torch.dtype
    shard_size: int
    workers: int
    batch_size: int  # the training batch size: per image, large CPU batches run slower (cache misses)
    device: torch.device
    fingerprint: dict[str, Any]

    @functools.cached_property
    def teacher_taps(self) -> Taps:
        return Taps(self.teacher, self.taps, "teacher")  # names checked and modules resolved once per build

    def worker_count(self, shards: int) -> int:
        # forked processes cannot use a CUDA context made before the fork; a GPU build runs in-process
        return 1 if self.device.type == "cuda" else max(1, min(self.workers, shards))


ShardCallback = Callable[[int], None]  # called with each finished shard's number


def build(job: CacheJob, rebuild: bool = False, progress: Callable[[str], None] | None = None,
          on_shard: ShardCallback | None = None) -> dict[str, Any]:
    """Build (or finish, or repair) the cache in `job.folder`; return its manifest. The folder is
    locked while it is written: a second build of the same folder is refused, not interleaved."""
    layout = probe_layout(job)
    guarded(lambda: job.folder.mkdir(parents=True, exist_ok=True), job.folder)
    refuse_strangers(job.folder)  # before the lock file: a folder that is not a cache is never written
    with FolderLock(job.folder, "teacher cache"):
        return build_locked(job, layout, rebuild, progress, on_shard)


def build_locked(job: CacheJob, layout: dict[str, Any], rebuild: bool, progress: Callable[[str], None] | None,
                 on_shard: ShardCallback | None) -> dict[str, Any]:
    folder = job.folder
    prepare_folder(job, layout, rebuild)
    plan = {"format": FORMAT, "fingerprint": job.fingerprint, "layout": layout}
    plan_key = plan_id(plan)
    guarded(lambda: atomic_write(folder / PLAN, json.dumps(plan, indent=1)), folder / PLAN)
    bank = ensure_view_bank(job, progress)
    todo = [shard for shard in range(shard_count(layout)) if finished_shard(folder, shard, plan_key) is None]
    for shard in todo:  # finished once, damaged or foreign since: say so before rebuilding it
        record = read_json(shard_json(folder, shard))
        if record is not None and progress:
            progress(f"cache: {'; '.join(shard_problems(folder, record, plan_key))}; rebuilding shard {shard}")
    current = read_json(folder / MANIFEST)
    if not todo and current is not None and up_to_date(current, plan, folder, layout):
        return current  # up to date: keep the original build statistics
    start = time.perf_counter()
    if todo:
        if progress:
            progress(f"cache: building {len(todo)} of {shard_count(layout)} shards "
                     f"({sum(shard_range(layout, s)[1] - shard_range(layout, s)[0] for s in todo) * job.views} teacher passes) in {folder}")
        run_shards(job, layout, bank, todo, plan_key, on_shard)
    manifest = assemble(job, plan, seconds=time.perf_counter() - start, built=todo)
    guarded(lambda: atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1)), folder / MANIFEST)
    return manifest


def up_to_date(manifest: dict[str, Any], plan: dict[str, Any], folder: Path, layout: dict[str, Any]) -> bool:
    """The manifest is this plan's and lists exactly the shard records now on disk (and the bank)."""
    if not all(manifest.get(key) == value for key, value in plan.items()):
        return False
    records = [read_json(shard_json(folder, shard)) for shard in range(shard_count(layout))]
    return manifest.get("shards") == records and manifest.get("view_bank") == file_entry(folder / VIEWS)


def probe_layout(job: CacheJob) -> dict[str, Any]:
    """Field shapes and types from one teacher pass on one image."""
    logits, features = teacher_pass(job, torch.arange(1), torch.zeros(1, 3, dtype=torch.uint8))
    num_classes = logits.shape[-1]  # classes, or a language model's vocabulary (logits (1, L, V))
    if job.top_k is not None and job.top_k >= num_classes:
        raise PotstillError(
            f"distill.cache.top_k: {job.top_k} keeps all {num_classes} classes; set top_k: null to store every logit"
        )
    fields = {name: {"shape": list(value.shape[1:]), "dtype": NUMPY_NAMES[value.dtype]}
              for name, value in codec.encode(logits, job.top_k, job.dtype, per_token(logits)).items()}
    for name, value in features.items():
        fields[f"tap:{name}"] = {"shape": list(value.shape[1:]), "dtype": NUMPY_NAMES[job.dtype]}
    return {"num_samples": len(job.data), "views": job.views, "shard_size": job.shard_size,
            "num_classes": num_classes, "fields": fields}


REBUILD = "rebuild it with `potstill cache build RECIPE --rebuild` or set distill.cache.path to another folder"


def prepare_folder(job: CacheJob, layout: dict[str, Any], rebuild: bool) -> None:
    """Refuse a folder that holds other files, a different cache, or shards that nothing
    fingerprints (unless rebuild, which clears the cache's own files)."""
    folder = job.folder
    refuse_strangers(folder)
    if rebuild:
        clear(folder)
        return
    # a damaged manifest is rewritten from an intact plan, and the reverse; shards that neither names are foreign
    records = [record for record in (read_json(folder / MANIFEST), read_json(folder / PLAN)) if record is not None]
    if not records and shard_files(folder):
        raise PotstillError(
            f"{folder} holds teacher-cache shards but no readable manifest.json or plan.json, so nothing says which "
            f"teacher, data and views they came from; potstill will not use them: {REBUILD}"
        )
    for existing in records:
        changed = plan_changes(existing, job.fingerprint, layout)
        if changed:
            raise PotstillError(f"{folder} holds a teacher cache built from something else: {'; '.join(changed)}; {REBUILD}")


def refuse_strangers(folder: Path) -> None:
    strangers = foreign_files(folder)
    if strangers:
        raise PotstillError(
            f"{folder} is not a teacher cache folder (it holds {', '.join(strangers[:3])}); set distill.cache.path to an empty or new folder"
        )


def plan_changes(existing: dict[str, Any], stamp: dict[str, Any], layout: dict[str, Any]) -> list[str]:
    changed = differences(existing.get("fingerprint", {}), stamp)
    if existing.get("layout") != layout:
        old = existing.get("layout", {})
        if not isinstance(old, dict):
            old = {}
        changed.append("layout: " + ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in layout.items() if old.get(k) != v))
    return changed


def ensure_view_bank(job: CacheJob, progress: Callable[[str], None] | None = None) -> torch.Tensor:
    """The seeded bank of views; a missing or damaged views.npy is named and written anew."""
    path = job.folder / VIEWS
    bank = view_bank(len(job.data), job.views, job.augment.hflip, job.augment.crop_padding, job.view_seed)
    on_disk = read_array(path)
    if on_disk is None or on_disk.shape != bank.shape or not np.array_equal(on_disk, bank.numpy()):
        if progress and path.exists():
            progress(f"cache: {VIEWS} is damaged or holds other views; writing it anew")
        write_array(path, bank.numpy())
    return bank


def teacher_pass(job: CacheJob, index: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The teacher's logits and taps for samples `index`, images shown in views `params` (B, 3);
    the teacher's own preprocessing (a forward pre-hook) normalises them, as in training."""
    batch = {name: value.to(job.device) for name, value in job.data.fields(index).items()}
    if job.data.modality == "image":  # the stored view of each image (and of its paired modality)
        for name in getattr(job.data, "image_fields", ("input",)):
            batch[name] = job.augment.apply(batch[name], params.to(job.device))
    job.teacher.eval()
    with torch.inference_mode(), job.teacher_taps.capture() as features:
        logits = call_model(job.teacher, batch).float()
    if per_token(logits) and logits.shape[1] < job.data.input_shape[0]:  # rows cut to the batch's longest: pad back
        logits = torch.nn.functional.pad(logits, (0, 0, 0, job.data.input_shape[0] - logits.shape[1]))
    return logits, {name: features[name].to(job.dtype) for name in job.taps}


def per_token(logits: torch.Tensor) -> bool:
    """A language model's logits (B, L, V): one distribution per position."""
    return logits.ndim == 3


def compute_shard(job: CacheJob, layout: dict[str, Any], bank: torch.Tensor, shard: int) -> dict[str, np.ndarray]:
    start, end = shard_range(layout, shard)
    per_view = []
    for view in range(job.views):
        chunks = []
        for first in range(start, end, job.batch_size):
            last = min(first + job.batch_size, end)
            logits, features = teacher_pass(job, torch.arange(first, last), bank[first:last, view])
            fields = codec.encode(logits, job.top_k, job.dtype, per_token(logits)) | {f"tap:{k}": v for k, v in features.items()}
            chunks.append({name: value.cpu() for name, value in fields.items()})
        per_view.append({name: torch.cat([c[name] for c in chunks]) for name in layout["fields"]})
    return {name: torch.stack([v[name] for v in per_view], dim=1).numpy() for name in layout["fields"]}


def run_shards(job: CacheJob, layout: dict[str, Any], bank: torch.Tensor, todo: list[int], plan: str,
               on_shard: ShardCallback | None) -> None:
    workers = job.worker_count(len(todo))
    if workers == 1:
        for shard in todo:
            write_shard(job.folder, shard, layout, compute_shard(job, layout, bank, shard), plan)
            if on_shard:
                on_shard(shard)
        return
    context = multiprocessing.get_context("fork")  # children share the teacher and data; nothing is serialised
    processes = [context.Process(target=worker, args=(job, layout, bank, todo[number::workers], plan)) for number in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise PotstillError(f"{len(failed)} cache build worker(s) failed (exit codes {failed}); finished shards are kept, run the build again to continue")


def worker(job: CacheJob, layout: dict[str, Any], bank: torch.Tensor, shards: list[int], plan: str) -> None:
    torch.set_num_threads(1)
    for shard in shards:
        write_shard(job.folder, shard, layout, compute_shard(job, layout, bank, shard), plan)


def assemble(job: CacheJob, plan: dict[str, Any], seconds: float, built: list[int]) -> dict[str, Any]:
    layout = plan["layout"]
    records = [read_json(shard_json(job.folder, shard)) for shard in range(shard_count(layout))]
    missing = [shard for shard, record in enumerate(records) if record is None or record.get("plan") != plan_id(plan)]
    if missing:
        raise PotstillError(f"cache shards {missing[:5]} were not written; run the build again to continue")
    payload = {name: int(np.prod(f["shape"], dtype=np.int64)) * np.dtype(f["dtype"]).itemsize for name, f in layout["fields"].items()}
    files = sum(entry["bytes"] for record in records for entry in record["files"].values())
    view_entry = file_entry(job.folder / VIEWS)
    return {
        **plan,
        "view_bank": view_entry,
        "shards": records,
        "bytes": {
            "total": files + view_entry["bytes"],
            "per_sample_view": {
                "logits": sum(size for name, size in payload.items() if not name.startswith("tap:")),
                "features": sum(size for name, size in payload.items() if name.startswith("tap:")),
                "view": 3,
            },
        },
        "build": {"seconds": round(seconds, 3), "shards_built": len(built), "shards_kept": len(records) - len(built),
                  "workers": job.worker_count(len(built)), "device": str(job.device)},
    }
