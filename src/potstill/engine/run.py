"""A run folder: the resolved recipe, metrics.jsonl, summary.json, one sub-folder per stage."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from potstill.engine.checkpoint import atomic_write, guarded
from potstill.errors import PotstillError


class RunDir:
    """Paths and append-only logs of one run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def create(self, resume: bool) -> None:
        """Make the folder; refuse to reuse a non-empty one unless resuming (nothing is overwritten)."""
        if resume:
            if not (self.path / "recipe.yaml").is_file():
                raise PotstillError(f"cannot resume {self.path}: it holds no recipe.yaml, so it is not a potstill run")
        elif self.path.exists() and any(self.path.iterdir()):
            raise PotstillError(
                f"run folder {self.path} already exists and is not empty; continue it with --resume {self.path}, "
                "or pick a new one with --run-dir"
            )
        guarded(lambda: self.path.mkdir(parents=True, exist_ok=True), self.path)
        if not os.access(self.path, os.W_OK):
            raise PotstillError(f"cannot write to run folder {self.path}: permission denied; choose a writable --run-dir")

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def stage(self, name: str) -> Path:
        return self.path / name

    def log(self, record: dict[str, Any]) -> None:
        def append() -> None:
            with self.metrics_path.open("a") as stream:
                stream.write(json.dumps(record) + "\n")

        guarded(append, self.metrics_path)

    def records(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def forget_after(self, stage: str, epochs_done: int) -> None:
        """Drop log lines of `stage` for epochs not covered by its checkpoint (a resumed run redoes them)."""
        kept = [r for r in self.records() if not (r.get("stage") == stage and r.get("epoch", 0) > epochs_done)]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_json(self, name: str, payload: Any) -> None:
        path = self.path / name
        guarded(lambda: atomic_write(path, json.dumps(payload, indent=2) + "\n"), path)
