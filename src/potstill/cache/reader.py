"""Reading a finished cache: check it, then hand out the teacher's outputs for (sample, view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from potstill.cache import codec
from potstill.cache.fingerprint import differences
from potstill.cache.store import MANIFEST, load_array, problem, read_json, to_torch
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
    """The fingerprint matches (when given) and every file is intact, or one error naming what is wrong."""
    if current is not None:
        changed = differences(manifest.get("fingerprint", {}), current)
        if changed:
            raise PotstillError(f"teacher cache {folder} was built from something else: {'; '.join(changed)}; {rebuild_hint(folder)}")
    if not verify:
        return
    entries = [manifest["view_bank"]] + [entry for shard in manifest["shards"] for entry in shard["files"].values()]
    damaged = [text for text in (problem(folder, entry) for entry in entries) if text]
    if damaged:
        raise PotstillError(
            f"teacher cache {folder} is damaged: {'; '.join(damaged[:3])}{' ...' if len(damaged) > 3 else ''}; "
            "run `potstill cache build RECIPE` to rebuild the damaged shards (intact ones are kept)"
        )


class TeacherCache:
    """The teacher's logits (and tapped features) for every (sample, view), on `device`.

    `load` = memory: every field is one tensor on the device (a batch is an index); mmap: fields
    stay in memory-mapped shards and a batch reads just its rows (for caches larger than memory).
    """

    def __init__(self, folder: str | Path, device: torch.device | str = "cpu", load: str = "auto",
                 fingerprint: dict[str, Any] | None = None, verify: bool = True) -> None:
        self.folder = Path(folder)
        self.device = torch.device(device)
        self.manifest = read_manifest(self.folder)
        check_cache(self.folder, self.manifest, fingerprint, verify)
        layout = self.manifest["layout"]
        self.num_classes, self.shard_size = layout["num_classes"], layout["shard_size"]
        self.fields = list(layout["fields"])
        self.mmap = load == "mmap" or (load == "auto" and self.manifest["bytes"]["total"] > MEMORY_LIMIT)
        self.views = torch.from_numpy(load_array(self.folder, self.manifest["view_bank"], mmap=False)).to(self.device)
        shards = [[load_array(self.folder, shard["files"][name], self.mmap) for shard in self.manifest["shards"]] for name in self.fields]
        if self.mmap:
            self.arrays = dict(zip(self.fields, shards))
        else:
            self.tensors = {name: to_torch(np.concatenate(parts), self.device) for name, parts in zip(self.fields, shards)}

    @property
    def tap_names(self) -> list[str]:
        return [name.removeprefix("tap:") for name in self.fields if name.startswith("tap:")]

    def outputs(self, index: torch.Tensor, view: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (B, K) float32 and {tap: (B, ...) float32} for samples `index` seen in views `view`."""
        fields = self.gather(index, view)
        logits = codec.decode({k: v for k, v in fields.items() if not k.startswith("tap:")}, self.num_classes)
        features = {name.removeprefix("tap:"): value.float() for name, value in fields.items() if name.startswith("tap:")}
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
