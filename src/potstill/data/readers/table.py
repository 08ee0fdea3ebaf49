"""The `table` dataset: CSV (Python's csv module) or parquet (pyarrow, optional) tables of numeric
features plus a label column; each row is one sample, read as (1, 1, D) float32 features.

Labels are integer class indices or text (mapped to indices in sorted order, or in the order of
`classes`). Non-numeric cells, missing values, NaN and inf are refused naming the row and column.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from potstill.data.readers.common import Position, encode_labels, locate, make_split, optional_import
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError, did_you_mean

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
FIX = "fill or drop those rows before giving potstill the file"


@DATASETS.register("table")
def table(
    root: str | None = None,
    train: str | None = None,
    test: str | None = None,
    label_column: str = "label",
    features: list[str] | None = None,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    delimiter: str | None = None,
) -> RawData:
    """CSV or parquet tables: numeric feature columns plus a label column, one sample per row."""
    if features is not None and (
        not isinstance(features, list) or not all(isinstance(f, str) for f in features) or not features
    ):
        raise PotstillError(f"data.args.features must be a list of column names, got {features!r}")
    if root is not None and Path(root).expanduser().is_file():
        if train or test:
            raise PotstillError(
                f"data.root {root} is the table itself; remove data.args.train/test, or set data.root to their folder"
            )
        train, root, train_key = root, None, "data.root"
    else:
        train_key = "data.args.train"
    if not train:
        raise PotstillError(
            "table: no file named; set data.root: data.csv, or data.args.train: train.csv (+ test: test.csv)"
        )
    train_path = locate(root, train, train_key)
    train_x, train_y, names, where, notes = read_table(train_path, label_column, features, delimiter)
    parts = [(f"{train_path} column '{label_column}'", train_y, where)]
    if test:
        test_path = locate(root, test, "data.args.test")
        test_x, test_y, _, test_where, test_notes = read_table(test_path, label_column, names, delimiter)
        parts.append((f"{test_path} column '{label_column}'", test_y, test_where))
        notes += test_notes
    labels = encode_labels(parts, classes, num_classes)
    notes += [
        f"{len(names)} feature columns used as they are (float32, no scaling), each row read as (1, 1, {len(names)})"
    ]
    notes += labels.notes
    train_data = make_split(train_x[:, None, None, :], labels.parts[0], labels.num_classes, "train", str(train_path))
    test_data = None
    if test:
        test_data = make_split(test_x[:, None, None, :], labels.parts[1], labels.num_classes, "test", str(test_path))
    else:
        notes.append("no test table: potstill holds out data.test_fraction of the rows as the test split")
    return RawData(train_data, test_data, notes)


def read_table(path: Path, label_column: str, wanted: list[str] | None, delimiter: str | None):
    """(features (N, D) float32, labels (N,), feature names, position of row i, notes) of one file."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        header, cells, labels, where = read_parquet(path, label_column)
    elif suffix in CSV_SUFFIXES:
        header, cells, labels, where = read_csv(path, label_column, delimiter or ("\t" if suffix == ".tsv" else ","))
    else:
        raise PotstillError(
            f"{path}: table reads .csv, .tsv or .parquet files, not '{suffix or path.name}'; save the table in one "
            "of those"
        )
    names = pick_columns(path, header, label_column, wanted)
    features = cells(names)  # (N, D) float64
    if len(features) == 0:
        raise PotstillError(f"{path} holds no rows")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
        as_float32 = features.astype(np.float32)
    bad = ~np.isfinite(as_float32)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        value = float(features[row, column])
        what = "NaN" if np.isnan(value) else "infinite" if np.isinf(value) else f"{value!r}, beyond float32's range"
        more = f" ({int(bad.sum())} such cells in all)" if bad.sum() > 1 else ""
        raise PotstillError(f"{path} {where(row)}, column '{names[column]}': the value is {what}{more}; {FIX}")
    unused = [c for c in header if c not in names and c != label_column]
    kind = "parquet" if suffix in PARQUET_SUFFIXES else "CSV"
    notes = [f"{kind} {path}: {len(features)} rows, {len(names)} feature columns, label column '{label_column}'"]
    if unused:
        notes.append(f"{path}: columns not used: {', '.join(unused)}")
    return as_float32, labels, names, where, notes


def pick_columns(path: Path, header: list[str], label_column: str, wanted: list[str] | None) -> list[str]:
    """The feature columns: `wanted`, or every column but the label; refuses what cannot be right."""
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        raise PotstillError(
            f"{path}: column name(s) {', '.join(map(repr, repeated))} appear more than once; give each column its "
            "own name"
        )
    if label_column not in header:
        raise PotstillError(
            f"{path} has no label column '{label_column}'{did_you_mean(label_column, header)}; its columns: "
            f"{', '.join(header[:20])}{' ...' if len(header) > 20 else ''}; name the label column in "
            "data.args.label_column"
        )
    if wanted is None:
        names = [c for c in header if c != label_column]
        unnamed = [c for c in names if c == "" or c.startswith("__index_level_") or c.startswith("Unnamed:")]
        if unnamed:
            raise PotstillError(
                f"{path}: a column has no name ({unnamed[0]!r}): a saved pandas index? save with index=False, "
                "or list the feature columns in data.args.features"
            )
    else:
        absent = [c for c in wanted if c not in header]
        if absent:
            raise PotstillError(
                f"{path} has no column {', '.join(repr(c) + did_you_mean(c, header) for c in absent)}; fix "
                "data.args.features"
            )
        if label_column in wanted or len(set(wanted)) != len(wanted):
            raise PotstillError(
                f"data.args.features must name distinct columns other than the label column '{label_column}'"
            )
        names = list(wanted)
    if not names:
        raise PotstillError(f"{path} has no feature columns besides the label column '{label_column}'")
    return names


def read_csv(path: Path, label_column: str, delimiter: str):
    """Header row, then one row per sample; every cell parsed here so errors name the line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise PotstillError(f"{path} is empty; a table needs a header row naming its columns")
            rows, lines = [], []
            for row in reader:
                if not row:
                    continue  # a blank line holds no sample
                if len(row) != len(header):
                    raise PotstillError(
                        f"{path} line {reader.line_num}: {len(row)} cells but the header names {len(header)} columns"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as error:
        raise PotstillError(f"{path} is not UTF-8 text ({error}); save the table as UTF-8 CSV") from error
    except csv.Error as error:
        raise PotstillError(f"{path}: not a readable CSV file ({error}); check its quoting and delimiter") from error

    def where(index: int) -> str:
        return f"line {lines[index]}"

    def cells(names: list[str]) -> np.ndarray:
        columns = [header.index(name) for name in names]
        out = np.empty((len(rows), len(columns)), dtype=np.float64)
        for r, row in enumerate(rows):
            for c, column in enumerate(columns):
                out[r, c] = number(row[column], path, where(r), header[column])
        return out

    labels = label_texts(
        [row[header.index(label_column)] for row in rows] if label_column in header else [], path, label_column, where
    )
    return header, cells, labels, where


def number(cell: str, path: Path, where: str, column: str) -> float:
    text = cell.strip()
    if not text:
        raise PotstillError(f"{path} {where}, column '{column}': missing value; {FIX}")
    try:
        return float(text)
    except ValueError:
        raise PotstillError(
            f"{path} {where}, column '{column}': '{text}' is not a number; feature columns must hold numbers only"
        ) from None


def label_texts(texts: list[str], path: Path, column: str, where: Position) -> np.ndarray:
    """CSV label cells as int64 when all are integers, float64 when all are numbers, else text."""
    texts = [t.strip() for t in texts]
    if "" in texts:
        raise PotstillError(
            f"{path} {where(texts.index(''))}, column '{column}': missing label; every row needs a class"
        )
    for parse, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([parse(t) for t in texts], dtype=dtype)
        except (ValueError, OverflowError):
            continue
    return np.array(texts, dtype=str)


def read_parquet(path: Path, label_column: str):
    """Typed columns: features must be integer or float columns without nulls."""
    pyarrow = optional_import("pyarrow", "pyarrow", "reading parquet tables")
    parquet = optional_import("pyarrow.parquet", "pyarrow", "reading parquet tables")
    try:
        data = parquet.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise PotstillError(f"cannot read {path} as parquet: {error}; is it damaged, or another format?") from error
    header = list(data.column_names)

    def where(index: int) -> str:
        return f"row {index} (counting from 0)"

    def column_values(name: str, numeric: bool) -> np.ndarray:
        column = data.column(name)
        if column.null_count:
            row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise PotstillError(f"{path} {where(row)}, column '{name}': missing value (null); {FIX}")
        kind = column.type
        if pyarrow.types.is_integer(kind) or pyarrow.types.is_floating(kind):
            return column.to_numpy()
        if not numeric and (
            pyarrow.types.is_string(kind) or pyarrow.types.is_large_string(kind) or pyarrow.types.is_dictionary(kind)
        ):
            return np.array([str(v) for v in column.to_pylist()], dtype=str)
        first = column.slice(0, 1).to_pylist()
        raise PotstillError(
            f"{path} column '{name}' holds {kind} values (e.g. {where(0)}: {first[0] if first else None!r}); "
            + ("feature columns must hold numbers only" if numeric else "labels must be integers or text")
        )

    def cells(names: list[str]) -> np.ndarray:
        return np.stack([column_values(name, True).astype(np.float64) for name in names], axis=1)  # (N, D)

    labels = column_values(label_column, False) if label_column in header else np.array([])
    return header, cells, labels, where
