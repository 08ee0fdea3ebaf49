"""The cache on disk: a folder of NumPy .npy shards, a view bank and a JSON manifest.

    manifest.json          fingerprint, layout, every file's size and SHA-256, build statistics
    plan.json              the same fingerprint and layout, written first (a build in progress)
    views.npy              (N, V, 3) uint8: flip, crop offset y, crop offset x of every view
    shard-00000.json       written last for each shard: its files' sizes and SHA-256 and the id of the
                           plan (fingerprint + layout) it was computed for ("done")
    shard-00000-0.npy ...  one array per field, (n, V, ...) for the shard's n samples

Why .npy shards: a standard format any NumPy reads, loaded with allow_pickle=False (no code runs),
memory-mapped with mmap_mode="r" so a batch reads only its rows without copying the file, and one
file per field per shard of thousands of samples (never one file per sample), written atomically
by independent processes. Every file's SHA-256 is recorded, so truncation or damage is named.

Trust rule: a shard is used only when the manifest that fingerprints *this* teacher, data and
views lists it with its checksum, and the bytes read match that checksum. A shard's own record
names the plan it was computed for, so a shard copied in from another cache is rebuilt, and a
folder with shards but no manifest or plan is refused as foreign.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from potstill.engine.checkpoint import atomic_write
from potstill.errors import PotstillError

MANIFEST, PLAN, VIEWS = "manifest.json", "plan.json", "views.npy"
OWN_FILE = re.compile(r"^(manifest\.json|plan\.json|views\.npy|shard-\d{5}(-\d+\.npy|\.json))$")
SHARD_FILE = re.compile(r"^shard-\d{5}(-\d+\.npy|\.json)$")


def plan_id(plan: dict[str, Any]) -> str:
    """SHA-256 of a plan (format, fingerprint, layout) in canonical JSON: what a shard belongs to."""
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def shard_count(layout: dict[str, Any]) -> int:
    return -(-layout["num_samples"] // layout["shard_size"])


def shard_range(layout: dict[str, Any], shard: int) -> tuple[int, int]:
    start = shard * layout["shard_size"]
    return start, min(start + layout["shard_size"], layout["num_samples"])


def shard_json(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:05d}.json"


def file_entry(path: Path) -> dict[str, Any]:
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_array(path: Path, array: np.ndarray) -> dict[str, Any]:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write(path, buffer.getvalue())
    return file_entry(path)


def write_shard(folder: Path, shard: int, layout: dict[str, Any], arrays: dict[str, np.ndarray], plan: str) -> None:
    """Each field's array, then the shard's record (the record's presence marks it finished);
    `plan`: the plan_id the arrays were computed for."""
    start, end = shard_range(layout, shard)
    files = {name: write_array(folder / f"shard-{shard:05d}-{number}.npy", arrays[name]) for number, name in enumerate(layout["fields"])}
    record = {"shard": shard, "start": start, "end": end, "plan": plan, "files": files}
    atomic_write(shard_json(folder, shard), json.dumps(record))


def problem(folder: Path, entry: dict[str, Any]) -> str | None:
    """Why a recorded file is not intact, or None."""
    path = folder / entry["name"]
    if not path.is_file():
        return f"{entry['name']} is missing"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"{entry['name']} is truncated or altered ({size} bytes, expected {entry['bytes']})"
    if sha256_file(path) != entry["sha256"]:
        return f"{entry['name']} is corrupted (SHA-256 differs from the one recorded when it was written)"
    return None


def finished_shard(folder: Path, shard: int, plan: str) -> dict[str, Any] | None:
    """The shard's record if the shard was finished for this plan and all its files are intact."""
    record = read_json(shard_json(folder, shard))
    if record is None or shard_problems(folder, record, plan):
        return None
    return record


def shard_problems(folder: Path, record: dict[str, Any], plan: str) -> list[str]:
    """Why a shard cannot be used for `plan`: computed for another plan, or a damaged file."""
    if record.get("plan") != plan:
        return [f"shard-{record.get('shard', 0):05d} was computed for another teacher, data or layout"]
    files = record.get("files")
    if not isinstance(files, dict):
        return [f"shard-{record.get('shard', 0):05d}.json is damaged"]
    return [text for text in (problem(folder, entry) for entry in files.values()) if text]


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged record: the shard is rebuilt / the cache reported as damaged
    return value if isinstance(value, dict) else None


def read_array(path: Path) -> np.ndarray | None:
    """A whole .npy file, or None when it is missing or unreadable."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def shard_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if SHARD_FILE.match(p.name))


def foreign_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not OWN_FILE.match(p.name) and not p.name.startswith("."))


def clear(folder: Path) -> None:
    """Remove a cache's own files (never anything else in the folder)."""
    for path in folder.iterdir():
        if OWN_FILE.match(path.name):
            path.unlink()


def load_array(folder: Path, entry: dict[str, Any], mmap: bool, verify: bool = True) -> np.ndarray:
    """A recorded .npy file, checked against its recorded size and SHA-256 when `verify`. In memory
    the bytes are read once, hashed and parsed from that one read; memory-mapped files are hashed
    in blocks first (pages then stay in the OS cache for the map)."""
    path = folder / entry["name"]
    try:
        if mmap:
            damage = problem(folder, entry) if verify else None
            array = None if damage else np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            data = path.read_bytes()
            damage = bytes_problem(entry, data) if verify else None
            array = None if damage else np.load(io.BytesIO(data), allow_pickle=False)
    except FileNotFoundError:
        damage, array = f"{entry['name']} is missing", None
    except (OSError, ValueError) as error:
        damage, array = f"{entry['name']} cannot be read ({error})", None
    if damage:
        raise DamagedCache(damage)
    return array


def bytes_problem(entry: dict[str, Any], data: bytes) -> str | None:
    """Why bytes read from a recorded file are not what was written, or None."""
    if len(data) != entry["bytes"]:
        return f"{entry['name']} is truncated or altered ({len(data)} bytes, expected {entry['bytes']})"
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return f"{entry['name']} is corrupted (SHA-256 differs from the one recorded when it was written)"
    return None


class DamagedCache(PotstillError):
    """A cache file that does not match its record; the reader collects these into one message."""


def to_torch(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
