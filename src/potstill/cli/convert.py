"""`potstill convert`: a torch.save checkpoint to safetensors, loaded with weights_only=True (no
code from the file ever runs), so that potstill itself never needs to unpickle anything."""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from potstill.engine.checkpoint import guarded, save_tensors
from potstill.errors import PotstillError


def cmd_convert(args: argparse.Namespace) -> int:
    """`convert FILE -o TARGET`: a torch.save checkpoint's state dict as a safetensors file. Read
    with torch.load(weights_only=True), which builds tensors and plain containers only; anything
    else is refused, since potstill never unpickles arbitrary objects."""
    source, target = Path(args.checkpoint), Path(args.output)
    if not source.is_file():
        raise PotstillError(f"convert: {source} not found")
    if target.suffix != ".safetensors":
        raise PotstillError(f"convert: the output must end in .safetensors (teacher.checkpoint reads it by that suffix), got {target}")
    if target.exists() and target.resolve() == source.resolve():
        raise PotstillError(f"convert: {target} is the input itself; write the safetensors file next to it")
    if target.exists() and not args.force:
        raise PotstillError(f"convert: {target} exists; give --force to overwrite it, or choose another -o")
    loaded = read_torch_save(source)
    key, tensors = pick_state_dict(loaded, args.key, source)
    tensors = strip_prefix(tensors, args.strip_prefix, source)
    header = {"converted_from": source.name, "key": key, "stripped_prefix": args.strip_prefix}
    try:
        guarded(lambda: save_tensors(target, tensors, header), target)
    except (TypeError, ValueError, RuntimeError) as error:  # a dtype safetensors cannot hold (quantized, ...)
        raise PotstillError(f"convert: cannot write {target} as safetensors: {error}") from error
    values = sum(tensor.numel() for tensor in tensors.values())
    dtypes = ", ".join(sorted({str(tensor.dtype).removeprefix("torch.") for tensor in tensors.values()}))
    where = f"key '{key}' of {source}" if key is not None else source
    lines = [f"read {where} with weights_only=True"]
    if args.strip_prefix:
        lines.append(f"stripped the prefix '{args.strip_prefix}' from the tensor names")
    elif len(tensors) > 0 and all(name.startswith("module.") for name in tensors):
        lines.append("every tensor name starts with 'module.' (saved from DataParallel): --strip-prefix module. is probably "
                     "wanted, so the names match the model")
    lines.append(f"wrote {target}: {len(tensors)} tensors, {values:,} parameters and buffers ({dtypes}), "
                 f"{target.stat().st_size:,} bytes")
    if not args.quiet:
        print("\n".join(lines))
    return 0


def read_torch_save(source: Path) -> object:
    """torch.load with weights_only=True, its refusals as one line naming the way out."""
    try:
        with warnings.catch_warnings():  # torch's notes on protocol versions would add lines to the one-line error
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types (bad zip, refused global, truncated file)
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+) was not an allowed global", str(error))
        if refused:
            raise PotstillError(
                f"convert: {source} holds a Python object of type {refused.group(1)}, not only tensors, and potstill "
                "never unpickles objects (loading one can run any code), so torch.load(weights_only=True) refused it; "
                "export a state dict from the training code instead: torch.save(model.state_dict(), path), "
                "then convert that file"
            ) from error
        text = re.split(r"Weights\w+ error:", str(error))[-1]  # past torch's advice to load with weights_only=False
        detail = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__).split(". ")[0]
        raise PotstillError(f"convert: {source} is not a readable torch.save file ({detail}); it is damaged or of another format") from error


def pick_state_dict(loaded: object, key: str | None, source: Path) -> tuple[str | None, dict[str, torch.Tensor]]:
    """The one mapping of names to tensors in `loaded`: itself (a plain state dict), the entry
    `key`, or the only such entry of a wrapper such as {"state_dict": ...} or {"model": ...}."""
    if not isinstance(loaded, Mapping):
        raise PotstillError(f"convert: {source} holds a value of type {type(loaded).__name__}, not a state dict (a mapping of names to tensors)")
    if key is not None:
        if key not in loaded:
            raise PotstillError(f"convert: {source} has no key '{key}'; its keys: {', '.join(map(str, loaded))}")
        return key, tensor_mapping(loaded[key], f"{source} key '{key}'")
    if loaded and all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return None, tensor_mapping(loaded, str(source))
    candidates = [name for name, value in loaded.items()
                  if isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values())]
    if len(candidates) == 1:
        return candidates[0], tensor_mapping(loaded[candidates[0]], f"{source} key '{candidates[0]}'")
    if len(candidates) > 1:
        raise PotstillError(f"convert: {source} holds several state dicts ({', '.join(map(str, candidates))}); choose one with --key NAME")
    return None, tensor_mapping(loaded, str(source))  # names what is not a tensor


def tensor_mapping(value: object, where: str) -> dict[str, torch.Tensor]:
    """`value` as {name: tensor}, or an error naming the entries that are not tensors."""
    if not isinstance(value, Mapping):
        raise PotstillError(f"convert: {where} holds a value of type {type(value).__name__}, not a mapping of names to tensors")
    others = [f"{name} ({type(entry).__name__})" for name, entry in value.items()
              if not (isinstance(name, str) and isinstance(entry, torch.Tensor))]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise PotstillError(
            f"convert: {where} holds entries that are not named tensors: {shown}; give --key NAME for the entry that "
            "holds the state dict, or save one from the training code: torch.save(model.state_dict(), path)"
        )
    if not value:
        raise PotstillError(f"convert: {where} holds no tensors")
    return dict(value)


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str | None, source: Path) -> dict[str, torch.Tensor]:
    """Names without `prefix` (DataParallel's "module."); only when asked, never guessed."""
    if not prefix:
        return tensors
    if not any(name.startswith(prefix) for name in tensors):
        raise PotstillError(f"convert: no tensor name in {source} starts with '{prefix}' (e.g. {next(iter(tensors))}); drop --strip-prefix")
    stripped = {name.removeprefix(prefix): tensor for name, tensor in tensors.items()}
    if len(stripped) != len(tensors):
        raise PotstillError(f"convert: stripping '{prefix}' would give two tensors the same name; convert without --strip-prefix")
    return stripped
