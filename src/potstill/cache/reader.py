"""Reading a finished cache: check it, then hand out the teacher's outputs for (sample, view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from potstill.cache import codec
from potstill.cache.fingerprint import differences
from potstill.cache.store import (
    MANIFEST,
    DamagedCache,
    load_array,
    problem,
    read_json,
    shard_count,
    shard_range,
    to_torch,
)
from potstill.errors import PotstillError

MEMORY_LIMIT = 2 << 30  # load: auto keeps caches up to 2 GiB on the device


def rebuild_hint(folder: Path) -> str:
    return f"rebuild it with `potstill cache build RECIPE --rebuild` (or point distill.cache.path away from {folder})"


def read_manifest(folder: Path) -> dict[str, Any]:
    manifest = read_json(folder / MANIFEST)
    if manifest is None:
        raise PotstillError(f"{folder} holds no finished teacher cache (no readable {MANIFEST}); build it with `potstill cache build RECIPE`")
    return manifest


def check_cache(folder: Path, manifest: dict[str, Any], current: dict[str, Any] | None, verify: bool = True) -> None:
    """The fingerprint matches (when given), the manifest's shards tile the samples, and (when
    `verify`) every file is intact; or one error naming what is wrong."""
    check_fingerprint(folder, manifest, current)
    check_layout(folder, manifest)
    if not verify:
        return
    entries = [manifest["view_bank"]] + [entry for shard in manifest["shards"] for entry in shard["files"].values()]
    raise_damaged(folder, [text for text in (problem(folder, entry) for entry in entries) if text])


def check_fingerprint(folder: Path, manifest: dict[str, Any], current: dict[str, Any] | None) -> None:
    if current is None:
        return
    changed = differences(manifest.get("fingerprint", {}), current)
    if changed:
        raise PotstillError(f"teacher cache {folder} was built from something else: {'; '.join(changed)}; {rebuild_hint(folder)}")


def check_layout(folder: Path, manifest: dict[str, Any]) -> None:
    """Shard i of the manifest covers samples [i * shard_size, ...) and lists one file per field."""
    try:
        layout, shards = manifest["layout"], manifest["shards"]
        fields = set(layout["fields"])
        expected = [shard_range(layout, number) for number in range(shard_count(layout))]
        found = [(shard["start"], shard["end"]) for shard in shards]
        consistent = found == expected and all(set(shard["files"]) == fields for shard in shards) and "view_bank" in manifest
    except (KeyError, TypeError, ZeroDivisionError):
        consistent = False
    if not consistent:
        raise PotstillError(f"teacher cache {folder}: manifest.json does not describe a complete cache; {rebuild_hint(folder)}")


def raise_damaged(folder: Path, damaged: list[str]) -> None:
    if damaged:
        raise PotstillError(
            f"teacher cache {folder} is damaged: {'; '.join(damaged[:3])}{' ...' if len(damaged) > 3 else ''}; "
            "run `potstill cache build RECIPE` to rebuild the damaged shards (intact ones are kept)"
        )


class TeacherCache:
    """The teacher's logits (and tapped features) for every (sample, view), on `device`.

    `load` = memory: every field is one tensor on the device (a batch is an index); mmap: fields
    stay in memory-mapped shards and a batch reads just its rows (for caches larger than memory).
    Only files the manifest lists are read, and with `verify` (the default) each one's bytes must
    match the SHA-256 the manifest records for it, so a shard copied in from elsewhere or damaged
    since the build is never used. `fingerprint`: what the caller's teacher, data and views give;
    a cache built from anything else is refused.
    """

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu", load: str = "auto",
                 fingerprint: dict[str, Any] | None = None, verify: bool = True) -> None:
        self.folder = Path(folder)
        self.device = torch.device(device)
        self.manifest = read_manifest(self.folder)
        check_cache(self.folder, self.manifest, fingerprint, verify=False)  # files are verified as they are read
        layout = self.manifest["layout"]
        self.num_classes, self.shard_size = layout["num_classes"], layout["shard_size"]
        self.fields = list(layout["fields"])
        self.mmap = load == "mmap" or (load == "auto" and self.manifest["bytes"]["total"] > MEMORY_LIMIT)
        views, shards = self.read_files(layout, verify)
        self.views = torch.from_numpy(views).to(self.device)
        if self.mmap:
            self.arrays = dict(zip(self.fields, shards))
        else:
            self.tensors = {name: to_torch(np.concatenate(parts), self.device) for name, parts in zip(self.fields, shards)}

    def read_files(self, layout: dict[str, Any], verify: bool) -> tuple[np.ndarray, list[list[np.ndarray]]]:
        """The view bank and every field's shards, each checked against its record and its shape."""
        damaged: list[str] = []

        def read(entry: dict[str, Any], mmap: bool, shape: tuple[int, ...], dtype: str) -> np.ndarray | None:
            try:
                array = load_array(self.folder, entry, mmap, verify)
            except DamagedCache as error:
                damaged.append(str(error))
                return None
            if array.shape != shape or array.dtype != np.dtype(dtype):
                damaged.append(f"{entry['name']} holds {array.dtype} {array.shape}, expected {dtype} {shape}")
            return array

        views_count, fields = layout["views"], layout["fields"]
        views = read(self.manifest["view_bank"], False, (layout["num_samples"], views_count, 3), "uint8")
        shards = [
            [read(shard["files"][name], self.mmap, (shard["end"] - shard["start"], views_count, *fields[name]["shape"]),
                  fields[name]["dtype"]) for shard in self.manifest["shards"]]
            for name in self.fields
        ]
        raise_damaged(self.folder, damaged)
        return views, shards

    @property
    def tap_names(self) -> list[str]:
        return [name.removeprefix("tap:") for name in self.fields if name.startswith("tap:")]

    def outputs(self, index: torch.Tensor, view: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, K) float32 and {tap: (B, ...) float32} for samples `index` seen in views `view`."""
        fields = self.gather(index, view)
        logits = codec.decode({k: v for k, v in fields.items() if not k.startswith("tap:")}, self.num_classes)
        features = {name.removeprefix("tap:"): value.float() for name, value in fields.items() if name.startswith("tap:")}
        if "log_probs" in fields:  # a language model's top k: token losses compare k tokens + the tail (knowledge/token)
            features[codec.TOP_K] = (fields["log_probs"].float(), fields["indices"].long())
        return logits, features

    def gather(self, index: torch.Tensor, view: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.mmap:
            index, view = index.to(self.device), view.to(self.device)
            return {name: tensor[index, view] for name, tensor in self.tensors.items()}
        rows, views = index.cpu().numpy(), view.cpu().numpy()
        shard, row = np.divmod(rows, self.shard_size)
        gathered = {}
        for name, parts in self.arrays.items():
            out = np.empty((len(rows), *parts[0].shape[2:]), dtype=parts[0].dtype)
            for number in np.unique(shard):
                chosen = shard == number
                out[chosen] = parts[number][row[chosen], views[chosen]]
            gathered[name] = to_torch(out, self.device)
        return gathered

    def describe(self) -> dict[str, Any]:
        manifest = self.manifest
        return {"path": str(self.folder), "samples": manifest["layout"]["num_samples"], "views": manifest["layout"]["views"],
                "fields": self.fields, "bytes": manifest["bytes"], "build": manifest.get("build", {}),
                "load": "mmap" if self.mmap else "memory"}
