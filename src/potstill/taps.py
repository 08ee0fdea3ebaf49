"""Taps: capture intermediate outputs of any nn.Module by module name, with forward hooks.

    taps = Taps(model, ["layer2", "fc:input"], role="student")   # names checked up front
    with taps.capture() as features:
        logits = model(images)
    features["layer2"]        # (B, C, H, W), the output of model.layer2
    features["fc:input"]      # (B, D), the input of model.fc (the embedding)

Users never edit their models. A name is a key of `model.named_modules()`; the suffix `:input`
taps what goes into that module instead of what comes out, and `:N` (a number) element N of a
module that returns a tuple (a BERT self-attention module returns its attention probabilities
as element 1). Hooks exist only inside `capture()`, so a copied or exported model carries none.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.model_io import as_batch, call_model

INPUT_SUFFIX = ":input"


def split_tap(name: str) -> tuple[str, bool]:
    """'fc:input' -> ('fc', True); 'layer2' -> ('layer2', False); 'attn:1' -> ('attn', False)."""
    if name.endswith(INPUT_SUFFIX):
        return name[: -len(INPUT_SUFFIX)], True
    return output_element(name)[0], False


def output_element(name: str) -> tuple[str, int | None]:
    """'attention.self:1' -> ('attention.self', 1); other names -> (name, None)."""
    module, _, element = name.rpartition(":")
    return (module, int(element)) if module and element.isdigit() else (name, None)


def check_tap_names(model: nn.Module, names: list[str], role: str) -> None:
    """Raise one PotstillError naming every tap that is not a module of `model`."""
    modules = [name for name, _ in model.named_modules() if name]
    problems = []
    for tap in names:
        module, _ = split_tap(tap)
        if module not in modules:
            close = _near(module, modules)
            hint = f"nearest: {', '.join(close)}" if close else f"modules: {', '.join(modules[:12])}"
            problems.append(f"'{tap}' ({hint})")
    if problems:
        raise PotstillError(
            f"{role} has no module named {'; '.join(problems)}; `potstill list taps MODEL` prints every tappable name"
        )


def _near(word: str, modules: list[str]) -> list[str]:
    """Up to three module names close to `word`, closest first."""
    return difflib.get_close_matches(word, modules, n=3, cutoff=0.5)


def _element(value: object, index: int) -> torch.Tensor | None:
    if isinstance(value, (tuple, list)) and index < len(value) and isinstance(value[index], torch.Tensor):
        return value[index]
    return None


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


class Taps:
    """Named forward hooks on one model; `capture()` yields the dict they fill on each forward."""

    def __init__(self, model: nn.Module, names: list[str], role: str) -> None:
        check_tap_names(model, names, role)
        self.model, self.names, self.role = model, list(dict.fromkeys(names)), role
        modules = dict(model.named_modules())
        # (module, tap name, wants input) resolved once: capture() runs on every training step
        self.targets = [(modules[split_tap(tap)[0]], tap, split_tap(tap)[1]) for tap in self.names]
        self.elements = {tap: output_element(tap)[1] for tap in self.names if not split_tap(tap)[1]}

    @contextmanager
    def capture(self) -> Iterator[dict[str, torch.Tensor]]:
        features: dict[str, torch.Tensor] = {}
        handles = [_hook(module, tap, wants_input, features, self.elements.get(tap)) for module, tap, wants_input in self.targets]
        try:
            yield features
        finally:
            for handle in handles:
                handle.remove()
        self.check_fired(features)

    def check_fired(self, features: dict[str, torch.Tensor]) -> None:
        missing = [tap for tap in self.names if tap not in features]
        empty = [tap for tap in missing if self.elements.get(tap) is not None]
        if empty:
            raise PotstillError(
                f"{self.role} tap {', '.join(repr(m) for m in empty)} found no tensor at that output element: the module "
                "returned None there (a transformers attention module returns attention maps only with eager attention; "
                "potstill switches transformers models to it when a loss taps attention) or a shorter tuple"
            )
        if missing:
            raise PotstillError(
                f"{self.role} tap {', '.join(repr(m) for m in missing)} never ran in the forward pass (the module exists "
                "but forward() does not call it, or it returns no tensor); tap a module that forward() uses"
            )


def _hook(module: nn.Module, tap: str, wants_input: bool, store: dict[str, torch.Tensor], element: int | None = None):
    if wants_input:
        def pre_hook(_module, inputs):
            tensor = _first_tensor(inputs)
            if tensor is not None:
                store[tap] = tensor

        return module.register_forward_pre_hook(pre_hook)

    def hook(_module, _inputs, output):
        tensor = _element(output, element) if element is not None else _first_tensor(output)
        if tensor is not None:
            store[tap] = tensor

    return module.register_forward_hook(hook)


# ---- dry runs: what a model exposes, and which layers pair by depth ----------------------------


@dataclass
class TapInfo:
    name: str
    shape: tuple[int, ...]  # output shape for one dry-run batch
    depth: int  # nesting level: 1 = a direct child of the model
    order: int  # position in execution order


def dry_run(model: nn.Module, sample: torch.Tensor | dict[str, torch.Tensor]) -> tuple[list[TapInfo], torch.Tensor]:
    """Every named module that ran, in the order it was entered (a parent before its children),
    with its output shape, from one forward pass in eval mode (no BatchNorm statistics change,
    no gradients); also returns the logits."""
    entered: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def pre_hook(_module, _inputs, name=name):
            if name not in entered:
                entered.append(name)

        def hook(_module, _inputs, output, name=name):
            tensor = _first_tensor(output)
            if tensor is not None and name not in shapes:
                shapes[name] = tuple(tensor.shape)

        handles += [module.register_forward_pre_hook(pre_hook), module.register_forward_hook(hook)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = call_model(model, as_batch(sample))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    names = [name for name in entered if name in shapes]
    infos = [TapInfo(name, shapes[name], name.count(".") + 1, order) for order, name in enumerate(names)]
    return infos, logits


def embedding_tap(model: nn.Module, infos: list[TapInfo]) -> str:
    """The input of the last Linear that produces the logits: the penultimate embedding."""
    modules = dict(model.named_modules())
    for info in reversed(infos):
        if isinstance(modules[info.name], nn.Linear):
            return info.name + INPUT_SUFFIX
    raise PotstillError(
        f"cannot find the embedding of {type(model).__name__}: no nn.Linear produces its logits; "
        "pair layers explicitly (distill.pairs: [{student: ..., teacher: ...}])"
    )


def stage_taps(model: nn.Module, infos: list[TapInfo]) -> list[str]:
    """Stage ends: among the model's direct children that have parameters, the last one at each
    spatial resolution (conv nets); for a net without feature maps, its hidden blocks (the
    classifier excluded)."""
    modules = dict(model.named_modules())
    # parameter-free children (pooling, dropout, activations) end no stage
    children = [i for i in infos if i.depth == 1 and any(True for _ in modules[i.name].parameters())]
    maps = [i for i in children if len(i.shape) == 4]
    if maps:
        ends = [i for k, i in enumerate(maps) if k + 1 == len(maps) or maps[k + 1].shape[2:] != i.shape[2:]]
        return [i.name for i in ends]
    return [i.name for i in children[:-1] if len(i.shape) == 2]


def pair_by_depth(student: list[str], teacher: list[str]) -> list[tuple[str, str]]:
    """Pair k = min(len) layers at the same relative depth; the deepest layers always pair."""
    count = min(len(student), len(teacher))
    if count == 0:
        return []
    pick = lambda names, i: names[-(-(i * len(names)) // count) - 1]
    return [(pick(student, i), pick(teacher, i)) for i in range(1, count + 1)]
