"""What the file readers share: finding files, class labels -> indices, splits that name their file."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from potstill.data.arrays import ArrayData
from potstill.errors import PotstillError

INSTALL_FILES = "pip install 'potstill[files]'"


def optional_import(module: str, package: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise PotstillError(f"{purpose} needs {package}, which is not installed: {INSTALL_FILES}") from error


def locate(root: str | None, name: str, key: str) -> Path:
    """`name` under the folder `root` (or as given when absolute or root is None); must be a file."""
    path = Path(name).expanduser()
    if root is not None and not path.is_absolute():
        path = Path(root).expanduser() / path
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise PotstillError(f"{key}: {path} {what}; give the path of the file (relative to data.root when set)")
    return path


def check_names(classes: object) -> list[str] | None:
    """`classes` as a list of unique names, or None when not given."""
    if classes is None:
        return None
    if not isinstance(classes, (list, tuple)) or not all(
        isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes
    ):
        raise PotstillError(f"data.args.classes must be a list of class names, got {classes!r}")
    names = [str(c) for c in classes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated or len(names) < 2:
        raise PotstillError(
            f"data.args.classes needs at least 2 distinct names; repeated: {', '.join(repeated) or '-'}"
        )
    return names


def class_order(names: list[str], shown: int = 30) -> str:
    """'0=cat, 1=dog, ...' (the first `shown`)."""
    text = ", ".join(f"{index}={name}" for index, name in enumerate(names[:shown]))
    return text + (f", ... ({len(names)} classes)" if len(names) > shown else "")


def index_summary(present: np.ndarray) -> str:
    """'0..9' for a run of indices, else the indices themselves (the first 12)."""
    if len(present) and present[-1] - present[0] + 1 == len(present):
        return f"{present[0]}..{present[-1]}"
    return ", ".join(str(i) for i in present[:12]) + (", ..." if len(present) > 12 else "")


@dataclass
class Labels:
    """Class indices (int64), one array per split, and what was done to get them."""

    parts: list[np.ndarray]
    num_classes: int
    notes: list[str] = field(default_factory=list)


Position = Callable[[int], str]  # sample index -> where it is in its file ("index 3", "line 5")


def at_index(index: int) -> str:
    return f"index {index}"


def encode_labels(parts: list[tuple], classes: object = None, num_classes: object = None) -> Labels:
    """Integer labels checked (whole, >= 0, no skipped class unless num_classes is given); text labels
    mapped to indices in sorted order, or in the order of `classes`. `parts`: (source, labels) or
    (source, labels, position) per split, position naming a sample in messages."""
    names = check_names(classes)
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2
    ):
        raise PotstillError(f"data.args.num_classes must be an integer >= 2, got {num_classes!r}")
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise PotstillError(
            f"data.args.classes names {len(names)} classes but num_classes is {num_classes}; make them agree"
        )
    notes: list[str] = []
    cleaned = []
    for source, labels, *position in parts:
        where = position[0] if position else at_index
        cleaned.append((source, label_values(source, labels, notes, where), where))
    kinds = {values.dtype.kind == "U" for _, values, _ in cleaned}
    if len(kinds) > 1:
        raise PotstillError(
            f"labels in {' and '.join(s for s, _, _ in cleaned)} mix text and numbers; use one kind in every split"
        )
    if kinds == {True}:
        return text_labels(cleaned, names, num_classes, notes)
    return integer_labels(cleaned, names, num_classes, notes)


def label_values(source: str, labels: np.ndarray, notes: list[str], where: Position = at_index) -> np.ndarray:
    """One split's labels as int64 (numbers) or str (text); refuses what is not a class label."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
        notes.append(f"labels in {source} of shape (N, 1) read as (N,)")
    if labels.ndim != 1:
        raise PotstillError(
            f"{source}: labels have shape {labels.shape}, but potstill needs one class index per sample, shape (N,) "
            "(one-hot or per-class scores? save labels.argmax(axis=1))"
        )
    kind = labels.dtype.kind
    if kind in "iu":
        if labels.size and int(labels.max()) > 2**62:
            raise PotstillError(f"{source}: label {int(labels.max())} is not a class index (0..K-1)")
        return labels.astype(np.int64)
    if kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.floor(labels))
        if bad.any():
            first = int(np.argmax(bad))
            raise PotstillError(
                f"{source}: label {labels[first].item()} at {where(first)} is not a whole number; potstill needs "
                "integer class "
                "indices 0..K-1 and does not round labels (one-hot or soft labels? save labels.argmax(axis=1))"
            )
        notes.append(f"labels in {source} are {labels.dtype} whole numbers: read as integer class indices")
        return labels.astype(np.int64)
    if kind in "US" or (kind == "O" and all(isinstance(v, str) for v in labels)):
        text = labels.astype(str)
        if (text == "").any():
            raise PotstillError(
                f"{source}: label at {where(int(np.argmax(text == '')))} is empty; every sample needs a class"
            )
        return text
    raise PotstillError(
        f"{source}: labels are {labels.dtype}; potstill needs integer class indices 0..K-1 or class names"
    )


def integer_labels(cleaned: list[tuple], names: list[str] | None, num_classes: int | None, notes: list[str]) -> Labels:
    for source, values, where in cleaned:
        if values.size and values.min() < 0:
            first = int(np.argmax(values < 0))
            raise PotstillError(
                f"{source}: label {values[first]} at {where(first)} is negative; class indices run 0..K-1"
            )
    present = np.unique(np.concatenate([values for _, values, _ in cleaned]))
    declared = num_classes if num_classes is not None else (len(names) if names else None)
    if declared is not None:
        how = "data.args.num_classes" if num_classes is not None else "data.args.classes"
        for source, values, where in cleaned:
            if values.size and values.max() >= declared:
                first = int(np.argmax(values >= declared))
                raise PotstillError(
                    f"{source}: label {values[first]} at {where(first)} is outside 0..{declared - 1} "
                    f"({declared} classes from {how}); fix the labels or {how}"
                )
        notes.append(f"{declared} classes as given by {how}; classes present in the labels: {index_summary(present)}")
    else:
        declared = int(present[-1]) + 1 if len(present) else 0
        found = set(present.tolist())
        missing = [str(i) for i in range(declared) if i not in found][:5]
        if missing:
            raise PotstillError(
                f"{' and '.join(s for s, _, _ in cleaned)}: the labels hold classes {index_summary(present)}, so class "
                f"{', '.join(missing)}{' ...' if len(missing) == 5 else ''} never appears; if the model has classes "
                "with "
                f"no samples here set data.args.num_classes (e.g. {declared}), otherwise relabel to "
                f"0..{len(present) - 1}"
            )
        if declared < 2:
            raise PotstillError(f"{cleaned[0][0]}: the labels hold one class only; a classifier needs at least 2")
        notes.append(f"{declared} classes (0..{declared - 1}) inferred from the labels")
    if names:
        notes.append(f"class names: {class_order(names)}")
    return Labels([values for _, values, _ in cleaned], declared, notes)


def text_labels(cleaned: list[tuple], names: list[str] | None, num_classes: int | None, notes: list[str]) -> Labels:
    found = sorted(set(np.concatenate([values for _, values, _ in cleaned]).tolist()))
    if names is None:
        names, how = found, "sorted by name"
    else:
        how = "in the order of data.args.classes"
        for source, values, where in cleaned:
            unknown = ~np.isin(values, names)
            if unknown.any():
                first = int(np.argmax(unknown))
                raise PotstillError(
                    f"{source}: label '{values[first]}' at {where(first)} is not in data.args.classes; add it there"
                )
    if num_classes is not None and num_classes != len(names):
        raise PotstillError(
            f"the labels name {len(names)} classes but data.args.num_classes is {num_classes}; "
            "list every class name, in the model's order, in data.args.classes instead"
        )
    if len(names) < 2:
        raise PotstillError(
            f"{cleaned[0][0]}: the labels hold one class only ('{names[0]}'); a classifier needs at least 2"
        )
    lookup = {name: index for index, name in enumerate(names)}
    parts = [np.array([lookup[v] for v in values.tolist()], dtype=np.int64) for _, values, _ in cleaned]
    notes.append(
        f"text labels mapped to class indices {how}: {class_order(names)} (the teacher's class order must match)"
    )
    return Labels(parts, len(names), notes)


def make_split(inputs: np.ndarray, targets: np.ndarray, num_classes: int, split: str, source: str,
               teacher_inputs: np.ndarray | None = None) -> ArrayData:
    """An ArrayData whose errors (NaN/inf images, label range) name the file they come from;
    `teacher_inputs`: a paired second modality (cross-modal distillation)."""
    try:
        return ArrayData(inputs, targets, num_classes, split=split, teacher_inputs=teacher_inputs)
    except PotstillError as error:
        raise type(error)(f"{source}: {error}") from error


def check_same_inputs(train: np.ndarray, test: np.ndarray, train_source: str, test_source: str) -> None:
    """Train and test must have one sample shape and one dtype (uint8 is scaled, floats are not)."""
    if train.shape[1:] != test.shape[1:] or train.dtype != test.dtype:
        raise PotstillError(
            f"train inputs {train_source} are {train.dtype} (N, {', '.join(map(str, train.shape[1:]))}) but test "
            "inputs "
            f"{test_source} are {test.dtype} (N, {', '.join(map(str, test.shape[1:]))}); save both splits with one "
            "sample shape and one dtype (uint8 pixels are scaled from 0..255 to [0, 1], floats are used as they are)"
        )
