"""Checkpoints as safetensors files, written atomically, loaded without unpickling anything.

A training checkpoint is ONE file holding the trained modules' weights, the optimizer's tensors
and the RNG state as tensors, plus a JSON header (epoch, optimizer hyperparameters, scheduler
state). One file means one atomic rename: a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from potstill.errors import PotstillError

FORMAT_VERSION = "1"


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; follow the umask like open() does
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_folder(folder: Path, write: Callable[[Path], None], marker: str) -> None:
    """Fill a temporary sibling folder with `write(staging)`, then rename it to `folder`: a half-written
    folder is never read. When another process finished the same folder first (its `marker` file is
    there), theirs is kept: it was made from the same inputs."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name[:16]}-", dir=folder.parent))
    try:
        write(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / marker).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> None:
    """Save tensors + a JSON-serialisable header (stored in the safetensors metadata)."""
    # safetensors refuses shared storage (tied weights) and non-contiguous views: copy each tensor.
    plain = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in tensors.items()}
    metadata = {"potstill": json.dumps(header), "format_version": FORMAT_VERSION}
    atomic_write(path, safetensors_bytes(plain, metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file written by `save_tensors` (or any safetensors file: empty header)."""
    path = Path(path)
    if not path.is_file():
        raise PotstillError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise PotstillError(f"{path} is not a readable safetensors file ({error}); it is damaged or of another format") from error
    try:
        header = json.loads(metadata.get("potstill", "{}"))
    except json.JSONDecodeError as error:
        raise PotstillError(f"{path} has a damaged header: {error}") from error
    return tensors, header


def tensor_names(path: Path) -> set[str]:
    """The tensor names a safetensors file holds, read from its header (no tensor is loaded)."""
    try:
        with safe_open(str(path), framework="pt") as reader:
            return set(reader.keys())
    except (SafetensorError, OSError, ValueError) as error:
        raise PotstillError(f"{path} is not a readable safetensors file ({error}); it is damaged or of another format") from error


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    """load_state_dict with a readable error listing missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs model)", wrong)):
            if items:
                shown = ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")
                parts.append(f"{label}: {shown}")
        raise PotstillError(
            f"{source} does not match the {what} architecture ({'; '.join(parts)}); "
            f"set the {what}'s model and args to the ones the checkpoint was trained with"
        )
    module.load_state_dict(state)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = value
    for param_id, entries in header["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": header["param_groups"]}


def save_training_state(
    path: Path,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    header: dict[str, Any],
    rng: dict[str, torch.Tensor] | None = None,
) -> None:
    """Everything needed to continue training exactly where it stopped. `rng`: the RNG states to
    keep (under torchrun every rank's, engine/distributed.py); None: this process's."""
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    optimizer_tensors, optimizer_header = _flatten_optimizer(optimizer)
    tensors.update(optimizer_tensors)
    if rng is not None:
        tensors.update(rng)
    else:
        tensors["rng.cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
    full_header = {**header, "optimizer": optimizer_header, "scheduler": scheduler.state_dict()}
    save_tensors(path, tensors, full_header)


def load_training_state(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                        rank: int = 0) -> dict[str, Any]:
    """Restore what save_training_state kept; `rank`: whose RNG state to take (a torchrun rank's
    own when the checkpoint holds it, else rank 0's)."""
    tensors, header = load_tensors(path)
    if "optimizer" not in header or "scheduler" not in header:
        raise PotstillError(f"{path} is not a potstill training checkpoint; start a new run instead of resuming")
    split = _split_by_prefix(tensors)
    load_into(module, split.get("model", {}), str(path), "run")
    optimizer_tensors = {f"optimizer.{k}": v for k, v in split.get("optimizer", {}).items()}
    optimizer.load_state_dict(_unflatten_optimizer(optimizer_tensors, header["optimizer"]))
    scheduler.load_state_dict(header["scheduler"])
    torch.set_rng_state(tensors.get(f"rng.cpu.rank{rank}", tensors["rng.cpu"]))
    cuda = tensors.get(f"rng.cuda.rank{rank}", tensors.get("rng.cuda"))
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)
    return header


def _split_by_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        prefix, rest = name.split(".", 1)
        groups.setdefault(prefix, {})[rest] = value
    return groups


def guarded(action: Callable[[], Any], path: Path) -> Any:
    """Run a file-writing action, turning OS errors into one readable user error."""
    try:
        return action()
    except PermissionError as error:
        raise PotstillError(f"cannot write {path}: permission denied; choose a writable --run-dir") from error
    except OSError as error:
        raise PotstillError(f"cannot write {path}: {error.strerror or error}") from error
