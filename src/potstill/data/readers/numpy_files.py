"""The `arrays` dataset: a user's NumPy arrays from .npz archives or .npy files, never unpickles.

Inputs (N, C, H, W) are kept; (N, H, W) gains a channel axis, (N, D) features become (N, 1, 1, D),
and channels-last (N, H, W, C) is moved to (N, C, H, W) when the shape says so or `layout` does.
uint8 stays uint8 (the loader scales 0..255 to [0, 1]); floats are used as they are, as float32.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from potstill.data.readers.common import check_same_inputs, encode_labels, locate, make_split
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError

DEFAULT_KEYS = {"x_train": "x_train", "y_train": "y_train", "x_test": "x_test", "y_test": "y_test",
                "t_train": "t_train", "t_test": "t_test"}  # t_*: optional second modality (teacher_input)
NPY_ARGS = ("train_inputs", "train_labels", "test_inputs", "test_labels")
TEACHER_NPY = ("train_teacher_inputs", "test_teacher_inputs")
FORMS = (
    "data.root: data.npz (arrays x_train, y_train and optionally x_test, y_test); or data.args.train: train.npz "
    "(+ test: test.npz); or data.args.train_inputs, train_labels (+ test_inputs, test_labels) naming .npy files"
)
PICKLE_FIX = (
    "holds Python objects (a pickle), which potstill never loads since loading one can run any code; "
    "save numeric arrays instead, e.g. np.save(path, np.asarray(x, dtype=np.float32))"
)
Pair = tuple[tuple[str, np.ndarray], tuple[str, np.ndarray]]  # (source, inputs), (source, labels)


@DATASETS.register("arrays")
def arrays(
    root: str | None = None,
    train: str | None = None,
    test: str | None = None,
    train_inputs: str | None = None,
    train_labels: str | None = None,
    test_inputs: str | None = None,
    test_labels: str | None = None,
    train_teacher_inputs: str | None = None,
    test_teacher_inputs: str | None = None,
    keys: dict[str, str] | None = None,
    layout: str | None = None,
    num_classes: int | None = None,
    classes: list[str] | None = None,
) -> RawData:
    """NumPy arrays from .npz (x_train, y_train, x_test, y_test) or .npy files; never unpickles.
    Paired data (cross-modal): the teacher's modality as t_train / t_test in the archive, or as
    .npy files in train_teacher_inputs / test_teacher_inputs, same shape as the inputs."""
    if layout not in (None, "nchw", "nhwc"):
        raise PotstillError(f"data.args.layout must be nchw or nhwc, got {layout!r}")
    npy = {
        key: value
        for key, value in zip(NPY_ARGS, (train_inputs, train_labels, test_inputs, test_labels), strict=True)
        if value is not None
    }
    names = {**DEFAULT_KEYS, **check_keys(keys)}
    (x_train, y_train), test_pair = read_files(root, train, test, npy, names)
    given = (train_teacher_inputs, test_teacher_inputs)
    teacher_npy = {key: value for key, value in zip(TEACHER_NPY, given, strict=True) if value is not None}
    t_train, t_test = read_teacher_inputs(root, train, test, teacher_npy, names, npy, test_pair is not None)
    notes = [
        f"arrays: train {x_train[0]} + {y_train[0]}"
        + (f", test {test_pair[0][0]} + {test_pair[1][0]}" if test_pair else "")
    ]
    train_x = as_images(*x_train, *y_train, layout, notes, "train")
    test_x = as_images(*test_pair[0], *test_pair[1], layout, notes, "test") if test_pair else None
    if test_x is not None:
        check_same_inputs(train_x, test_x, x_train[0], test_pair[0][0])
    parts = [y_train] + ([test_pair[1]] if test_pair else [])
    labels = encode_labels(parts, classes, num_classes)
    notes += labels.notes
    paired = [None if t is None else as_images(*t, *y, layout, notes, split)
              for t, y, split in ((t_train, y_train, "train"), (t_test, test_pair[1] if test_pair else None, "test"))]
    if t_train is not None:
        notes.append(f"paired: teacher_input from {t_train[0]}" + (f" and {t_test[0]}" if t_test else ""))
    train_data = make_split(train_x, labels.parts[0], labels.num_classes, "train", x_train[0], paired[0])
    test_data = (make_split(test_x, labels.parts[1], labels.num_classes, "test", test_pair[0][0], paired[1])
                 if test_pair else None)
    if test_data is None:
        notes.append("no test arrays: potstill holds out data.test_fraction of the training samples as the test split")
    return RawData(train_data, test_data, list(dict.fromkeys(notes)))


def read_files(
    root: str | None, train: str | None, test: str | None, npy: dict[str, str], names: dict[str, str]
) -> tuple[Pair, Pair | None]:
    """The training (inputs, labels) pair and the test pair (None when the files hold none)."""
    if root is not None and Path(root).expanduser().is_file():
        if train or test or npy:
            raise PotstillError(
                f"data.root {root} is the archive itself; remove data.args.train/test/*_inputs/*_labels, or set "
                "data.root to their folder"
            )
        if Path(root).suffix.lower() != ".npz":
            raise PotstillError(
                f"data.root {root} is a file but not an .npz archive; set data.root to its folder and name .npy "
                f"files in data.args: {FORMS}"
            )
        train, root, train_key = root, None, "data.root"
    else:
        train_key = "data.args.train"
    if train and npy:
        raise PotstillError(f"give either data.args.train (.npz) or data.args.{', '.join(npy)} (.npy), not both")
    if test and not train:
        raise PotstillError("data.args.test is given without data.args.train; name the training archive too")
    if train:
        train_path = locate(root, train, train_key)
        train_pair = read_npz(train_path, names["x_train"], names["y_train"], required=True)
        test_path = locate(root, test, "data.args.test") if test else train_path
        return train_pair, read_npz(test_path, names["x_test"], names["y_test"], required=test is not None)
    if npy:
        for inputs_key, labels_key in (NPY_ARGS[:2], NPY_ARGS[2:]):
            if (inputs_key in npy) != (labels_key in npy) or "train_inputs" not in npy:
                raise PotstillError(
                    f"data.args.{inputs_key} and {labels_key} go together (the training pair is required): {FORMS}"
                )
        files = [read_npy(locate(root, npy[key], f"data.args.{key}")) for key in NPY_ARGS if key in npy]
        return (files[0], files[1]), ((files[2], files[3]) if len(files) == 4 else None)
    raise PotstillError(f"arrays: no files named; give {FORMS}")


Named = tuple[str, np.ndarray]  # (source, array)


def read_teacher_inputs(root: str | None, train: str | None, test: str | None, teacher_npy: dict[str, str],
                        names: dict[str, str], npy: dict[str, str], has_test: bool
                        ) -> tuple[Named | None, Named | None]:
    """The optional second modality (train, test): arrays t_train / t_test of the archive(s), or
    .npy files; given for the training split, it must be given for the test split too."""
    if teacher_npy:
        if not npy:
            raise PotstillError("data.args.train_teacher_inputs / test_teacher_inputs name .npy files beside "
                                "data.args.train_inputs, ...; with an .npz archive store the arrays as t_train, t_test")
        found = [read_npy(locate(root, teacher_npy[key], f"data.args.{key}")) if key in teacher_npy else None
                 for key in TEACHER_NPY]
    elif npy:
        return None, None
    else:
        archive = Path(root).expanduser() if root is not None and Path(root).expanduser().is_file() else None
        train_path = archive or locate(root, train, "data.args.train")
        found = [read_optional(train_path, names["t_train"]), None]
        if has_test:  # the test pair's archive: data.args.test, or the same one
            test_path = locate(root, test, "data.args.test") if test and archive is None else train_path
            found[1] = read_optional(test_path, names["t_test"])
    if found[0] is None and found[1] is not None:
        raise PotstillError(f"{found[1][0]} gives the test split a teacher_input but the training split has none; "
                            "give both, or neither")
    if found[0] is not None and has_test and found[1] is None:
        raise PotstillError(f"{found[0][0]} gives the training split a teacher_input but the test split has none "
                            f"({names['t_test']} / data.args.test_teacher_inputs); give both, or neither")
    return found[0], found[1]


def read_optional(path: Path, key: str) -> Named | None:
    """Array `key` of the .npz archive at `path`, or None when it holds none."""
    with load(path) as archive:
        if key not in archive.files:
            return None
        source = f"{path} ['{key}']"
        try:
            return source, archive[key]
        except READ_ERRORS as error:
            raise refusal(source, error) from error


def check_keys(keys: object) -> dict[str, str]:
    if keys is None:
        return {}
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise PotstillError(f"data.args.keys must map x_train, y_train, x_test, y_test to array names, got {keys!r}")
    unknown = [k for k in keys if k not in DEFAULT_KEYS]
    if unknown:
        raise PotstillError(
            f"data.args.keys: unknown {', '.join(map(str, unknown))}; it maps {', '.join(DEFAULT_KEYS)} to array names"
        )
    return keys


READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def refusal(source: str, error: Exception, path: Path | None = None) -> PotstillError:
    """The message for a file np.load could not read: an object array or a pickle (whose protocol 2+
    stream starts with byte 0x80), or a damaged or foreign file (which numpy takes for a pickle too)."""
    pickled = "Object arrays" in str(error) or (
        path is not None and "pickle" in str(error) and first_byte(path) == b"\x80"
    )
    if isinstance(error, ValueError) and pickled:
        return PotstillError(f"{source} {PICKLE_FIX}")
    detail = "" if "pickle" in str(error) else f" ({error})"  # numpy calls any unknown format a pickle
    return PotstillError(
        f"cannot read {source}: not NumPy .npy/.npz data, or damaged{detail}; save it with np.save or np.savez"
    )


def first_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(1)


def load(path: Path):
    """np.load with pickles refused (an .npz archive is opened; its arrays are read on access)."""
    try:
        return np.load(path, allow_pickle=False)
    except READ_ERRORS as error:
        raise refusal(str(path), error, path) from error


def read_npy(path: Path) -> tuple[str, np.ndarray]:
    loaded = load(path)
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise PotstillError(
            f"{path} is an .npz archive, not one .npy array; name it in data.args.train instead: {FORMS}"
        )
    return str(path), loaded


def read_npz(path: Path, x_key: str, y_key: str, required: bool) -> Pair | None:
    """The (inputs, labels) pair stored under x_key, y_key; None when both are absent and not required."""
    loaded = load(path)
    if isinstance(loaded, np.ndarray):
        raise PotstillError(
            f"{path} is one .npy array, not an .npz archive; name .npy files in data.args.train_inputs, ...: {FORMS}"
        )
    with loaded as archive:
        present = [key for key in (x_key, y_key) if key in archive.files]
        if not present and not required:
            return None
        if len(present) < 2:
            absent = [key for key in (x_key, y_key) if key not in present]
            raise PotstillError(
                f"{path} has no array named {', '.join(absent)} (it holds: {', '.join(archive.files) or 'nothing'}); "
                "name the arrays with data.args.keys, e.g. keys: {x_train: images, y_train: labels}"
            )
        pair = []
        for key in (x_key, y_key):
            source = f"{path} ['{key}']"
            try:
                pair.append((source, archive[key]))
            except READ_ERRORS as error:
                raise refusal(source, error) from error
        return pair[0], pair[1]


def as_images(
    source: str,
    inputs: np.ndarray,
    label_source: str,
    labels: np.ndarray,
    layout: str | None,
    notes: list[str],
    split: str,
) -> np.ndarray:
    """Inputs as (N, C, H, W) uint8 or float32, each change stated in `notes`."""
    if len(inputs) == 0:
        raise PotstillError(f"{source} holds no samples")
    if len(inputs) != len(labels):
        raise PotstillError(
            f"{source} holds {len(inputs)} samples but {label_source} holds {len(labels)} labels; they must match "
            "one to one"
        )
    if inputs.dtype == np.uint8:
        notes.append("uint8 inputs: potstill scales them from 0..255 to [0, 1]")
    elif inputs.dtype.kind == "f":
        if inputs.dtype != np.float32:
            notes.append(f"{inputs.dtype} inputs stored as float32")
        inputs = inputs.astype(np.float32, copy=False)
        low, high = inputs.min(), inputs.max()  # NaN or inf here is refused with sample indices by ArrayData
        notes.append(f"float {split} inputs used as they are, no rescaling (range {low:.4g}..{high:.4g})")
    else:
        raise PotstillError(
            f"{source}: inputs are {inputs.dtype}; potstill reads uint8 pixels (scaled from 0..255 to [0, 1]) or "
            "floats (used "
            "as they are): save x.astype(np.uint8) for 0..255 pixels, or x.astype(np.float32)"
        )
    shape = inputs.shape
    if layout is not None and inputs.ndim != 4:
        raise PotstillError(f"data.args.layout applies to 4-D inputs, but {source} has shape {shape}; remove it")
    if inputs.ndim == 2:
        notes.append(f"flat features (N, {shape[1]}) read as (N, 1, 1, {shape[1]})")
        return inputs[:, None, None, :]
    if inputs.ndim == 3:
        notes.append(
            f"inputs (N, {shape[1]}, {shape[2]}) without a channel axis read as (N, 1, {shape[1]}, {shape[2]})"
        )
        return inputs[:, None]
    if inputs.ndim != 4:
        raise PotstillError(
            f"{source}: inputs have shape {shape}; potstill reads (N, C, H, W), (N, H, W, C), (N, H, W) or (N, D)"
        )
    channels = (1, 3)
    if layout is None:
        if shape[1] in channels and shape[3] not in channels:
            layout = "nchw"
        elif shape[3] in channels and shape[1] not in channels:
            layout = "nhwc"
        else:
            raise PotstillError(
                f"{source}: inputs of shape {shape} could be (N, C, H, W) or (N, H, W, C); set data.args.layout: "
                "nchw or nhwc"
            )
        why = "the last axis holds 1 or 3 channels"
    else:
        why = "data.args.layout: nhwc"
    if layout == "nhwc":
        notes.append(
            f"channels-last inputs (N, {shape[1]}, {shape[2]}, {shape[3]}) moved to (N, {shape[3]}, {shape[1]}, "
            f"{shape[2]}) ({why})"
        )
        return np.ascontiguousarray(inputs.transpose(0, 3, 1, 2))
    return inputs


arrays.fields = ("input", "teacher_input")  # teacher_input when the files hold a second modality (t_train)
