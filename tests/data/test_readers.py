"""The readers of a user's own files (`arrays`, `image_folder`, `table`), on small real files written
here: what they read, what they state in the notes, and the one error each kind of bad input gets."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import potstill
from potstill.cli.main import main
from potstill.errors import PotstillError
from tests.conftest import tiny_recipe, write_recipe

Image = pytest.importorskip("PIL.Image")


def refused(name: str, *fragments: str, root=None, **args) -> str:
    """Load and expect one PotstillError holding every fragment (a file name, the fix)."""
    with pytest.raises(PotstillError) as error:
        potstill.load_dataset(name, root=None if root is None else str(root), args=args)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def notes_text(splits) -> str:
    return "\n".join(splits.notes)


# ---- arrays -------------------------------------------------------------------------------------


def test_npz_channels_last_uint8_is_transposed_not_reshaped_and_kept_uint8(tmp_path):
    """Catches: an (N, H, W, C) array reshaped instead of transposed to (N, C, H, W) (pixels
    scrambled), uint8 pixels rescaled or cast before the loader, or the test arrays ignored."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 8, 6, 3), dtype=np.uint8)
    y = np.arange(30) % 3
    np.savez(tmp_path / "data.npz", x_train=x, y_train=y, x_test=x[:9], y_test=y[:9])
    splits = potstill.load_dataset("arrays", root=str(tmp_path / "data.npz"))
    assert splits.input_shape == (3, 8, 6) and splits.num_classes == 3 and len(splits.test) == 9
    assert splits.train.inputs.dtype == torch.uint8
    assert torch.equal(splits.train.inputs, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    assert "channels-last inputs (N, 8, 6, 3) moved to (N, 3, 8, 6)" in notes_text(splits)
    assert "uint8 inputs: potstill scales them from 0..255" in notes_text(splits)


def test_npy_floats_are_used_as_they_are_and_a_test_split_is_held_out(tmp_path):
    """Catches: float inputs rescaled or clipped to [0, 1] (the user's preprocessing is theirs), a
    missing channel axis not added, or no test split when the files have none."""
    x = np.linspace(-3, 7, 40 * 5 * 5).reshape(40, 5, 5)  # (N, H, W) float64 outside [0, 1]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (np.arange(40) % 4).astype(np.float32))  # whole-number floats
    splits = potstill.load_dataset(
        "arrays", root=str(tmp_path), args={"train_inputs": "x.npy", "train_labels": "y.npy"}
    )
    together = torch.cat([splits.train.inputs, splits.test.inputs]).flatten()
    assert splits.input_shape == (1, 5, 5) and splits.train.inputs.dtype == torch.float32
    assert torch.equal(together.sort().values, torch.from_numpy(x.astype(np.float32)).flatten().sort().values)
    text = notes_text(splits)
    assert "(N, 5, 5) without a channel axis read as (N, 1, 5, 5)" in text and "no rescaling (range -3..7)" in text
    assert "float32 whole numbers: read as integer class indices" in text and "held out as test" in text


def test_npz_pair_with_custom_keys_flat_features_and_class_names(tmp_path):
    """Catches: data.args.keys ignored for a train/test pair of archives, (N, D) features not read as
    (N, 1, 1, D), or class names not recorded in the notes."""
    rng = np.random.default_rng(1)
    for split, count in (("train", 20), ("test", 8)):
        np.savez(
            tmp_path / f"{split}.npz", feats=rng.normal(size=(count, 7)).astype(np.float32), cls=np.arange(count) % 2
        )
    keys = {"x_train": "feats", "y_train": "cls", "x_test": "feats", "y_test": "cls"}
    splits = potstill.load_dataset(
        "arrays",
        root=str(tmp_path),
        args={"train": "train.npz", "test": "test.npz", "keys": keys, "classes": ["no", "yes"]},
    )
    assert splits.input_shape == (1, 1, 7) and len(splits.train) == 20 and len(splits.test) == 8
    assert "flat features (N, 7) read as (N, 1, 1, 7)" in notes_text(splits) and "0=no, 1=yes" in notes_text(splits)
    refused(
        "arrays",
        "train.npz has no array named x_train",
        "it holds: feats, cls",
        "data.args.keys",
        root=tmp_path,
        train="train.npz",
    )


def test_ambiguous_layout_is_refused_until_given(tmp_path):
    """Catches: a guess between (N, C, H, W) and (N, H, W, C) when both axes could be channels."""
    np.save(tmp_path / "x.npy", np.zeros((12, 3, 8, 3), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.arange(12) % 2)
    files = {"train_inputs": "x.npy", "train_labels": "y.npy"}
    refused(
        "arrays",
        "x.npy",
        "(12, 3, 8, 3) could be (N, C, H, W) or (N, H, W, C)",
        "layout: nchw or nhwc",
        root=tmp_path,
        **files,
    )
    assert potstill.load_dataset("arrays", root=str(tmp_path), args={**files, "layout": "nhwc"}).input_shape == (
        3,
        3,
        8,
    )
    assert potstill.load_dataset("arrays", root=str(tmp_path), args={**files, "layout": "nchw"}).input_shape == (
        3,
        8,
        3,
    )


def test_object_arrays_and_pickles_are_never_loaded(tmp_path):
    """Catches: np.load with allow_pickle=True (a pickle can run any code), or numpy's bare
    ValueError reaching the user instead of one message naming the file and the fix."""
    np.save(tmp_path / "y.npy", np.arange(4) % 2)
    np.save(tmp_path / "objects.npy", np.array([[1], "a", None, 2.0], dtype=object), allow_pickle=True)
    (tmp_path / "pickled.npy").write_bytes(b"\x80\x04\x95" + bytes(20))
    np.savez(tmp_path / "objects.npz", x_train=np.array([1, "a"], dtype=object), y_train=np.arange(2))
    for name in ("objects.npy", "pickled.npy"):
        refused(
            "arrays",
            name,
            "Python objects (a pickle)",
            "np.save",
            root=tmp_path,
            train_inputs=name,
            train_labels="y.npy",
        )
    refused("arrays", "objects.npz ['x_train']", "Python objects", root=tmp_path / "objects.npz")
    (tmp_path / "text.npy").write_text("1,2,3\n")
    refused(
        "arrays", "text.npy", "not NumPy .npy/.npz data", root=tmp_path, train_inputs="text.npy", train_labels="y.npy"
    )


@pytest.mark.parametrize(
    "labels, fragments",
    [
        (np.array([0, 1, 2, 1, 0, 2]), ["x.npy holds 8 samples but", "y.npy holds 6 labels"]),
        (np.array([0, 1, 0.5, 1, 0, 1, 0, 1]), ["y.npy: label 0.5 at index 2 is not a whole number"]),
        (np.array([0, 1, -1, 1, 0, 1, 0, 1]), ["y.npy: label -1 at index 2 is negative"]),
        (np.array([0, 2, 0, 2, 0, 3, 0, 2]), ["classes 0, 2, 3, so class 1 never appears", "num_classes (e.g. 4)"]),
        (np.eye(2)[np.arange(8) % 2], ["y.npy: labels have shape (8, 2)", "argmax(axis=1)"]),
    ],
)
def test_bad_labels_are_refused_naming_the_file(tmp_path, labels, fragments):
    """Catches: labels silently rounded, negative, skipping a class (a model with the wrong number of
    outputs), one-hot, or fewer than the inputs, instead of one error naming the labels file."""
    np.save(tmp_path / "x.npy", np.zeros((8, 4), dtype=np.float32))
    np.save(tmp_path / "y.npy", labels)
    refused("arrays", *fragments, root=tmp_path, train_inputs="x.npy", train_labels="y.npy")


def test_num_classes_allows_absent_classes_and_text_labels_follow_classes(tmp_path):
    """Catches: num_classes ignored (the model would get too few outputs) or text labels numbered
    in sorted order when data.args.classes gives the teacher's order."""
    np.save(tmp_path / "x.npy", np.zeros((6, 4), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 2, 0, 2, 0, 2]))
    files = {"train_inputs": "x.npy", "train_labels": "y.npy"}
    assert (
        potstill.load_dataset(
            "arrays", root=str(tmp_path), test_fraction=0.34, args={**files, "num_classes": 5}
        ).num_classes
        == 5
    )
    np.save(tmp_path / "y.npy", np.array(["dog", "cat", "dog", "cat", "dog", "cat"]))
    splits = potstill.load_dataset(
        "arrays", root=str(tmp_path), test_fraction=0.34, args={**files, "classes": ["dog", "cat"]}
    )
    assert splits.train.targets.tolist() == [0, 1, 0, 1] and "0=dog, 1=cat" in notes_text(splits)


# ---- image_folder -------------------------------------------------------------------------------


def write_images(
    folder: Path, classes=("ant", "bee", "cow"), per_class=20, size=(8, 8), mode="RGB", suffix="png", seed=0
):
    """`per_class` random images per class folder; returns {path: (pixels, class name)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            shape = size + ((3,) if mode == "RGB" else ())
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            path = folder / name / f"{index:03d}.{suffix}"
            Image.fromarray(pixels, mode).save(path)
            written[path] = (pixels, name)
    return written


def test_image_folder_reads_pixels_and_numbers_classes_in_sorted_order(tmp_path):
    """Catches: classes numbered in directory-listing order (differs between machines, and from the
    teacher's), pixels transposed or rescaled, JPEG files skipped, or the class order left unstated."""
    written = write_images(tmp_path / "train", classes=("cow", "ant", "bee"))
    write_images(tmp_path / "test", per_class=4, suffix="jpg", seed=1)
    splits = potstill.load_dataset("image_folder", root=str(tmp_path))
    assert splits.input_shape == (3, 8, 8) and splits.train.inputs.dtype == torch.uint8
    assert len(splits.train) == 60 and len(splits.test) == 12 and splits.num_classes == 3
    path, (pixels, name) = sorted(written.items())[25]  # bee/005.png: ant (0..19), bee (20..39)
    index = sorted(written).index(path)
    assert torch.equal(splits.train.inputs[index], torch.from_numpy(pixels).permute(2, 0, 1))
    assert int(splits.train.targets[index]) == ["ant", "bee", "cow"].index(name) == 1
    assert "class order (sorted folder names): 0=ant, 1=bee, 2=cow" in notes_text(splits)


def test_image_folder_without_splits_and_with_a_given_class_order(tmp_path):
    """Catches: data.args.classes ignored, grey images given three channels, or no held-out test."""
    write_images(tmp_path, mode="L")
    splits = potstill.load_dataset("image_folder", root=str(tmp_path), args={"classes": ["cow", "bee", "ant"]})
    assert splits.input_shape == (1, 8, 8) and len(splits.train) + len(splits.test) == 60
    assert "class order (data.args.classes): 0=cow, 1=bee, 2=ant" in notes_text(splits)
    assert "held out as test" in notes_text(splits)
    refused("image_folder", "not in data.args.classes", root=tmp_path, classes=["cow", "bee"])


def test_image_folder_refuses_ragged_sizes_and_mixed_modes_until_told_how_to_convert(tmp_path):
    """Catches: images of different sizes or modes stacked by silent resizing or conversion; given
    size/mode, the conversion happens and is stated."""
    write_images(tmp_path)
    odd = tmp_path / "bee" / "odd.png"
    Image.fromarray(np.zeros((10, 8), dtype=np.uint8), "L").save(odd)
    refused("image_folder", "mixed modes", str(odd), "mode: L or RGB", root=tmp_path)
    refused("image_folder", "images differ in size", str(odd), "is 10x8", "size: [H, W]", root=tmp_path, mode="RGB")
    splits = potstill.load_dataset("image_folder", root=str(tmp_path), args={"mode": "RGB", "size": [8, 8]})
    assert splits.input_shape == (3, 8, 8) and "converted to RGB with Pillow: 1 L" in notes_text(splits)
    assert "1 of 61 images resized to 8x8" in notes_text(splits)


@pytest.mark.parametrize("damage", ["corrupt", "empty_class", "stray_image", "missing_root"])
def test_image_folder_bad_input_names_the_file(tmp_path, damage):
    """Catches: a corrupt image, an empty class folder (a class with no samples), or an image outside
    any class folder surfacing as a Pillow traceback or silently shifting the class indices."""
    write_images(tmp_path)
    if damage == "corrupt":
        (tmp_path / "bee" / "005.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
        refused(
            "image_folder",
            "cannot read image",
            str(tmp_path / "bee" / "005.png"),
            "replace or remove it",
            root=tmp_path,
        )
    elif damage == "empty_class":
        (tmp_path / "dog").mkdir()
        refused("image_folder", f"class folder {tmp_path / 'dog'} holds no .png/.jpg/.jpeg images", root=tmp_path)
    elif damage == "stray_image":
        (tmp_path / "ant" / "000.png").rename(tmp_path / "loose.png")
        refused("image_folder", f"image {tmp_path / 'loose.png'} lies outside a class folder", root=tmp_path)
    else:
        refused("image_folder", "not a folder", root=tmp_path / "absent")


def test_missing_optional_packages_name_the_extra(tmp_path, monkeypatch):
    """Catches: a bare ImportError (or a crash at `import potstill`) when Pillow or pyarrow is absent."""
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    refused("image_folder", "needs Pillow", "pip install 'potstill[files]'", root=tmp_path)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    refused("table", "needs pyarrow", "pip install 'potstill[files]'", root=tmp_path / "t.parquet")


# ---- table --------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list], header=("f0", "f1", "f2", "label")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def table_rows(count=30, seed=0) -> list[list]:
    rng = np.random.default_rng(seed)
    return [
        [*np.round(rng.normal(size=3) * 100, 3), ["setosa", "virginica", "versicolor"][i % 3]] for i in range(count)
    ]


def test_csv_features_are_kept_and_text_labels_sorted(tmp_path):
    """Catches: features scaled, the label column read as a feature, columns reordered, or text
    labels numbered in order of appearance instead of sorted (stated in the notes)."""
    rows = table_rows()
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", rows[:6])
    splits = potstill.load_dataset("table", root=str(tmp_path), args={"train": "train.csv", "test": "test.csv"})
    assert splits.input_shape == (1, 1, 3) and splits.num_classes == 3 and len(splits.test) == 6
    expected = torch.tensor([row[:3] for row in rows], dtype=torch.float32)
    assert torch.equal(splits.train.inputs[:, 0, 0, :], expected)
    assert splits.train.targets[:3].tolist() == [0, 2, 1]  # setosa, virginica, versicolor
    assert "0=setosa, 1=versicolor, 2=virginica" in notes_text(splits)
    picked = potstill.load_dataset("table", root=str(tmp_path / "train.csv"), args={"features": ["f2", "f0"]})
    assert picked.input_shape == (1, 1, 2) and "columns not used: f1" in notes_text(picked)


def test_parquet_table_with_integer_labels(tmp_path):
    """Catches: parquet columns read in the wrong order, or integer labels treated as text."""
    pyarrow = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    features = np.random.default_rng(2).normal(size=(24, 4))
    columns = {f"x{i}": features[:, i] for i in range(4)} | {"target": np.arange(24) % 2}
    parquet.write_table(pyarrow.table(columns), tmp_path / "data.parquet")
    splits = potstill.load_dataset("table", root=str(tmp_path / "data.parquet"), args={"label_column": "target"})
    together = torch.cat([splits.train.inputs, splits.test.inputs])[:, 0, 0, :]
    assert splits.input_shape == (1, 1, 4) and splits.num_classes == 2
    assert together.shape == (24, 4) and "2 classes (0..1) inferred" in notes_text(splits)
    features[5, 2] = np.nan
    parquet.write_table(
        pyarrow.table({f"x{i}": features[:, i] for i in range(4)} | {"label": np.arange(24) % 2}),
        tmp_path / "nan.parquet",
    )
    refused(
        "table", "nan.parquet row 5 (counting from 0), column 'x2': the value is NaN", root=tmp_path / "nan.parquet"
    )


@pytest.mark.parametrize(
    "cell, fragments",
    [
        ("abc", ["bad.csv line 5, column 'f1': 'abc' is not a number"]),
        ("", ["bad.csv line 5, column 'f1': missing value"]),
        ("nan", ["bad.csv line 5, column 'f1': the value is NaN"]),
        ("-inf", ["bad.csv line 5, column 'f1': the value is infinite"]),
        ("1e300", ["bad.csv line 5, column 'f1': the value is 1e+300, beyond float32's range"]),
    ],
)
def test_bad_csv_cells_name_line_and_column(tmp_path, cell, fragments):
    """Catches: a non-numeric, empty, NaN or infinite feature cell read as 0/NaN and trained on."""
    rows = table_rows()
    rows[3][1] = cell  # line 5: the header is line 1
    refused("table", *fragments, root=write_csv(tmp_path / "bad.csv", rows))


def test_csv_without_the_label_column_or_with_an_index_column(tmp_path):
    """Catches: a missing label column (e.g. a typo) read as 'no labels', or a saved pandas index
    column silently used as a feature."""
    write_csv(tmp_path / "t.csv", table_rows(), header=("f0", "f1", "f2", "species"))
    refused("table", "t.csv has no label column 'label'", "its columns: f0, f1, f2, species", root=tmp_path / "t.csv")
    assert (
        potstill.load_dataset("table", root=str(tmp_path / "t.csv"), args={"label_column": "species"}).num_classes == 3
    )
    write_csv(
        tmp_path / "i.csv", [[i, *row] for i, row in enumerate(table_rows())], header=("", "f0", "f1", "f2", "label")
    )
    refused("table", "i.csv: a column has no name", "index=False", root=tmp_path / "i.csv")


# ---- recipes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["image_folder", "arrays", "table"])
def test_a_recipe_distils_from_the_users_files(tmp_path, reader):
    """Catches: a reader that works from Python but not from a recipe (data.root, data.args not
    passed through, or rejected by the recipe checks), or notes missing from run.json."""
    if reader == "image_folder":
        write_images(tmp_path / "images", per_class=20)
        data = {"name": "image_folder", "root": str(tmp_path / "images")}
    elif reader == "arrays":
        rng = np.random.default_rng(3)
        np.savez(tmp_path / "d.npz", x_train=rng.random((60, 8, 8), dtype=np.float32), y_train=np.arange(60) % 3)
        data = {"name": "arrays", "root": str(tmp_path / "d.npz")}
    else:
        data = {
            "name": "table",
            "root": str(write_csv(tmp_path / "t.csv", table_rows(60))),
            "args": {"label_column": "label"},
        }
    recipe = tiny_recipe(teacher__train__epochs=1, train__epochs=1)
    recipe["data"] = {**data, "batch_size": 16}
    if reader == "table":  # features (1, 1, 3): models without convolutions
        recipe["teacher"]["model"] = {"name": "mlp", "args": {"hidden": [16]}}
    path = write_recipe(tmp_path, recipe)
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    data = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert data["dataset"] == reader and data["num_classes"] == 3
    expected = {"image_folder": "0=ant, 1=bee, 2=cow", "arrays": "no rescaling", "table": "0=setosa, 1=versicolor"}
    assert any(expected[reader] in note for note in data["notes"]), data["notes"]
