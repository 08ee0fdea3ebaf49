"""A run folder: the resolved recipe, metrics.jsonl, summary.json, one sub-folder per stage."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from potstill.engine.checkpoint import atomic_write, guarded
from potstill.engine.lock import LOCK_NAME, hold, let_go
from potstill.errors import PotstillError


class RunDir:
    """Paths and append-only logs of one run. One run folder has one writer: `create` locks it
    (engine/lock.py) until `close` or the end of the process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def create(self, resume: bool) -> None:
        """Make and lock the folder; refuse to reuse a non-empty one unless resuming (nothing is
        overwritten) and refuse a folder another process is writing."""
        if self.path.exists() and not self.path.is_dir():
            raise PotstillError(f"run folder {self.path} is a file, not a folder; choose another --run-dir")
        if resume:
            if not (self.path / "recipe.yaml").is_file():
                raise PotstillError(f"cannot resume {self.path}: it holds no recipe.yaml, so it is not a potstill run")
        elif self.holds_files():
            raise PotstillError(
                f"run folder {self.path} already exists and is not empty; continue it with --resume {self.path}, "
                "or pick a new one with --run-dir"
            )
        guarded(lambda: self.path.mkdir(parents=True, exist_ok=True), self.path)
        if not os.access(self.path, os.W_OK):
            raise PotstillError(f"cannot write to run folder {self.path}: permission denied; choose a writable --run-dir")
        hold(self.path, "run folder")
        if not resume and self.holds_files():  # another process got here first
            self.close()
            raise PotstillError(f"run folder {self.path} was just filled by another process; pick a new one with --run-dir")

    def holds_files(self) -> bool:
        """Anything but the lock file (a failed start leaves only that behind)."""
        return self.path.is_dir() and any(entry.name != LOCK_NAME for entry in self.path.iterdir())

    def close(self) -> None:
        """Release the folder's lock (also released when the process ends, however it ends)."""
        let_go(self.path)

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
        records = []
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        for number, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number + 1 < len(lines):  # only the last line can be cut short by a kill mid-write
                    raise PotstillError(f"{self.metrics_path} line {number + 1} is damaged; it is not valid JSON") from None
        return records

    def forget_after(self, stage: str, epochs_done: int) -> None:
        """Drop log lines of `stage` for epochs not covered by its checkpoint (a resumed run redoes them)."""
        kept = [r for r in self.records() if not (r.get("stage") == stage and r.get("epoch", 0) > epochs_done)]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_json(self, name: str, payload: Any) -> None:
        path = self.path / name
        guarded(lambda: atomic_write(path, json.dumps(payload, indent=2) + "\n"), path)
