"""Initialise a student from its teacher's weights: layer selection and weight selection.

    from potstill.models.init_from import init_from_teacher
    for line in init_from_teacher(student, teacher, layers=[0, 2, 4]):
        print(line)

Both methods work on parameter and buffer names, so any pair of models whose names line up is
supported: potstill's mlp/cnn/resnet builders, Hugging Face BERT-family encoders, a stack of blocks.

**Layer selection** (Sanh et al., "DistilBERT, a distilled version of BERT", NeurIPS 2019 EMC2
workshop, arXiv:1910.01108, section 3: "taking one layer out of two"). A block container (an
nn.ModuleList / nn.Sequential of blocks of one class, children named 0, 1, ...; `bert.encoder.layer`
in BERT, `layer1`/`layer2`/`layer3` in potstill's resnet) holds N blocks in the teacher and M <= N in
the student; student block i copies teacher block `layers[i]`. The default spreads the M picks
evenly over the N teacher blocks with the same rule as the element selection below, which is
DistilBERT's every other layer when N = 2M ([0, 2, 4] for 6 -> 3). Everything outside the
container (embeddings, pooler, classifier) is copied by name.

**Weight selection** (Xu et al., "Initializing Models with Larger Ones", ICLR 2024,
arXiv:2311.18823, section 3, "element selection"). A narrower student takes a subset of each
teacher tensor's elements, selected in every dimension. We use the paper's default, *uniform*
selection: from a teacher size T keep S evenly spaced indices, `arange(S) * (T // S)` when S divides
T, else `round(linspace(0, T - 1, S))`, as the authors' released weight_selection.py does (it has T
for T - 1, which can run past the end). The paper's comparison of element-selection schemes finds uniform, consecutive (first-S) and random selection
about equally good *as long as the choice is consistent* across layers, and inconsistent random
selection clearly worse: one hidden unit must keep its index in every tensor that reads or writes
the residual stream. A rule that depends only on (T, S) is consistent by construction. We prefer
uniform to first-S because it keeps the grouped structure: 12 heads of 32 dims -> 12 heads of 16
takes dims 0, 2, ..., 30 of every head, where first-S would keep 6 whole heads and split the student's
heads across them. Positions are the exception: integer buffers (position_ids) and the rows of a
tensor named *position* (a shorter position-embedding table) keep their first S entries.

Limits: a Linear that reads a flattened conv map (the cnn's fc1) selects evenly over the flattened
features, not channel by channel, so it does not line up with the conv channels kept before it.
"""

from __future__ import annotations

from functools import cache
from itertools import pairwise

import torch
from torch import nn

from potstill.errors import PotstillError, did_you_mean

METHODS = ("copy", "select")
SHOWN = 5  # offending tensors listed in an error


def init_from_teacher(
    student: nn.Module,
    teacher: nn.Module,
    layers: list[int] | None = None,
    method: str = "select",
    container: str | None = None,
) -> list[str]:
    """Copy (method "copy") or select (method "select") the teacher's weights into the student, in
    place; student block i takes teacher block layers[i] of the block container (found
    automatically, or named by `container`, e.g. "bert.encoder.layer"; several separated by commas).
    Returns lines describing what was done. The teacher is never modified; on any error, neither is
    the student."""
    if method not in METHODS:
        raise PotstillError(
            f"init method '{method}' is unknown{did_you_mean(str(method), METHODS)}; use one of {', '.join(METHODS)}"
        )
    if layers is not None and (
        not isinstance(layers, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)
    ):
        raise PotstillError(f"layers must be a list of teacher block numbers, got {layers!r}; e.g. layers: [0, 2, 4]")
    prefixes, teacher_depth, student_depth = _find_containers(student, teacher, container, layers)
    layers = _check_layers(layers, teacher_depth, student_depth, prefixes)
    student_tensors, teacher_tensors = _tensors(student), _tensors(teacher)

    plan, problems = [], []  # plan: (name, student tensor, teacher tensor); problems: message lines
    for name, target in student_tensors.items():
        source_name = _teacher_name(name, prefixes, layers)
        source = teacher_tensors.get(source_name)
        problem = _misfit(name, target, source_name, source, method)
        problems += [problem] if problem else []
        plan += [] if problem else [(name, target, source)]
    if problems:
        raise PotstillError(_problem_message(problems, method, len(student_tensors)))

    copied, selected, size_pairs = 0, 0, set()
    with torch.no_grad():
        for name, target, source in plan:
            if target.shape == source.shape:
                target.copy_(source)
                copied += 1
                continue
            size_pairs.update((t, s) for t, s in zip(source.shape, target.shape) if t != s)
            first = (0,) if "position" in name else ()  # a shorter position table keeps positions 0..S-1
            target.copy_(select_elements(source, tuple(target.shape), first=first))
            selected += 1

    lines = []
    if prefixes:
        lines.append(f"block container {_where(prefixes)}: teacher {teacher_depth} blocks, student {student_depth}")
        lines += [f"student block {i} <- teacher block {j}" for i, j in enumerate(layers)]
    pairs = ", ".join(f"{t} -> {s}" for t, s in sorted(size_pairs, reverse=True))
    lines.append(f"{copied} tensors copied, {selected} selected" + (f" ({pairs})" if pairs else ""))
    return lines


def select_elements(tensor: torch.Tensor, shape: tuple[int, ...], first: tuple[int, ...] = ()) -> torch.Tensor:
    """A new tensor of `shape` taken from `tensor`: evenly spaced indices in every dimension of a
    floating-point tensor, except the dimensions in `first` and all of an integer tensor's (position
    ids), which keep their first indices."""
    selected = tensor if tuple(tensor.shape) != shape else tensor.clone()  # never the teacher's own tensor
    for dim, size in enumerate(shape):
        if selected.shape[dim] != size:
            spread = tensor.is_floating_point() and dim not in first
            indices = evenly_spaced(selected.shape[dim], size) if spread else range(size)
            selected = selected.index_select(dim, torch.tensor(list(indices), device=tensor.device))
    return selected


@cache
def evenly_spaced(total: int, count: int) -> tuple[int, ...]:
    """`count` of range(total), evenly spaced: a function of (total, count) alone, so the same
    hidden size keeps the same indices in every layer. 384 -> 192 is 0, 2, ..., 382."""
    if total % count == 0:
        return tuple(range(0, total, total // count))
    return tuple(int(value) for value in torch.linspace(0, total - 1, count).round().tolist())


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    # every name (tied weights under each of theirs), and non-persistent buffers such as position_ids
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return tensors


def _misfit(name: str, target: torch.Tensor, source_name: str, source: torch.Tensor | None, method: str) -> str:
    """Why the teacher's tensor cannot initialise the student's, as a line for the error; '' if it can."""
    teacher = "teacher" if source_name == name else f"teacher {source_name}"
    if source is None:
        return f"student {name} {tuple(target.shape)} vs {teacher}: missing"
    if source.dim() != target.dim():
        problem = f"{target.dim()} dimensions vs {source.dim()}"
    elif any(s > t for s, t in zip(target.shape, source.shape)):
        problem = "wider than the teacher"
    elif method == "copy" and source.shape != target.shape:
        problem = "narrower: method 'copy' needs equal shapes"
    else:
        return ""
    return f"student {name} {tuple(target.shape)} vs {teacher} {tuple(source.shape)} ({problem})"


def _problem_message(problems: list[str], method: str, total: int) -> str:
    shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
    missing = sum(problem.endswith(": missing") for problem in problems)
    hint = " (are student and teacher the same model family?)" if missing > total // 2 else ""
    fits = "the same shape" if method == "copy" else "no dimension larger than the teacher's"
    alternative = "; use method 'select' for a narrower student" if method == "copy" else ""
    return (
        f"cannot initialise the student from the teacher: {len(problems)} of {total} student tensors do not fit{hint}: "
        f"{shown}. A student tensor fits when the teacher has one of the same name (block numbers mapped "
        f"by `layers`) and number of dimensions with {fits}{alternative}"
    )


def _teacher_name(name: str, prefixes: list[str], layers: list[int]) -> str:
    """The teacher's name for a student tensor: block i inside a container becomes block layers[i]."""
    for prefix in prefixes:
        head = f"{prefix}." if prefix else ""
        if name.startswith(head):
            index, _, rest = name[len(head) :].partition(".")
            if index.isdigit():
                return f"{head}{layers[int(index)]}.{rest}"
    return name


def _where(prefixes: list[str]) -> str:
    return ", ".join(prefix or "(the model itself)" for prefix in prefixes)


def _blocks(model: nn.Module, name: str) -> list[nn.Module] | None:
    """The children of a ModuleList/Sequential named 0, 1, ...; None for any other module."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    names = [child_name for child_name, _ in module.named_children()]
    if not isinstance(module, (nn.ModuleList, nn.Sequential)) or not names or not all(n.isdigit() for n in names):
        return None
    return list(module.children())


def _find_containers(
    student: nn.Module, teacher: nn.Module, container: str | None, layers: list[int] | None
) -> tuple[list[str], int, int]:
    """The block containers to map, with the teacher's and the student's block counts there."""
    if container is not None:
        prefixes = [part.strip() for part in container.split(",")]
        every = [name for name, _ in student.named_modules() if _blocks(student, name)]
        for prefix in prefixes:
            for model, role in ((student, "student"), (teacher, "teacher")):
                if _blocks(model, prefix) is None:
                    raise PotstillError(
                        f"container '{prefix}' is not a ModuleList/Sequential of numbered blocks in the "
                        f"{role}{did_you_mean(prefix, every)}; name one of: {', '.join(every) or '(none found)'}"
                    )
    else:
        prefixes = []
        for name, _ in student.named_modules():
            if any(outer == "" or name.startswith(f"{outer}.") for outer in prefixes):
                continue  # inside a container already found: its blocks are mapped as a whole
            ours, theirs = _blocks(student, name), _blocks(teacher, name)
            if not ours or not theirs or len({type(block) for block in ours + theirs}) != 1:
                continue
            if len(ours) != len(theirs) or (layers is not None and len(ours) == len(layers)):
                prefixes.append(name)
        differing = [name for name in prefixes if len(_blocks(student, name)) != len(_blocks(teacher, name))]
        prefixes = differing or prefixes  # a container whose depth changes is the one that matters
    depths = {(len(_blocks(teacher, name)), len(_blocks(student, name))) for name in prefixes}
    if len(depths) > 1:
        found = ", ".join(
            f"{name} (teacher {len(_blocks(teacher, name))}, student {len(_blocks(student, name))})"
            for name in prefixes
        )
        raise PotstillError(
            f"cannot tell which module holds the blocks to map: found {found}; name it with "
            f"container='<module name>', e.g. container='{prefixes[0]}'"
        )
    if not prefixes:
        if layers is not None:
            raise PotstillError(
                f"layers {layers} given, but no ModuleList/Sequential of numbered blocks differs in depth "
                f"between teacher and student or has {len(layers)} blocks; name it with container='<module name>' "
                f"(e.g. 'bert.encoder.layer')"
            )
        return [], 0, 0
    teacher_depth, student_depth = depths.pop()
    if teacher_depth < student_depth:
        raise PotstillError(
            f"the teacher has fewer layers than the student: {_where(prefixes)} holds {teacher_depth} "
            f"blocks in the teacher and {student_depth} in the student; use a deeper teacher or a shallower student"
        )
    return prefixes, teacher_depth, student_depth


def _check_layers(layers: list[int] | None, teacher_depth: int, student_depth: int, prefixes: list[str]) -> list[int]:
    if layers is None:
        return list(evenly_spaced(teacher_depth, student_depth)) if prefixes else []
    where = _where(prefixes)
    example = list(evenly_spaced(teacher_depth, student_depth))
    fix = f"give {student_depth} increasing teacher block numbers from 0 to {teacher_depth - 1}, e.g. layers: {example}"
    if len(layers) != student_depth:
        raise PotstillError(
            f"layers {list(layers)} has length {len(layers)} but the student has {student_depth} blocks in {where}; {fix}"
        )
    outside = [i for i in layers if not 0 <= i < teacher_depth]
    if outside:
        raise PotstillError(
            f"layers {list(layers)}: {outside} outside the teacher's {teacher_depth} blocks (0 to {teacher_depth - 1}) in {where}; {fix}"
        )
    if any(a >= b for a, b in pairwise(layers)):
        raise PotstillError(f"layers {list(layers)} must be strictly increasing (block order is kept); {fix}")
    return list(layers)
