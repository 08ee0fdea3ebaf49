"""Text classification datasets read from disk: Debian's fortune quotes by topic, and your own
JSONL or CSV files. Texts are tokenised once by a local model folder's tokenizer (cached on disk,
see tokens.py) and held as TokenData; nothing is ever downloaded."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

from potstill.data.arrays import stratified_split
from potstill.data.readers.common import class_order
from potstill.data.registry import DATASETS, RawData
from potstill.data.tokens import Encoded, TokenData, check_max_length, encode, truncation_notes
from potstill.errors import PotstillError, did_you_mean

FORTUNES = "/usr/share/games/fortunes"
INSTALL_FORTUNES = (
    "install Debian's fortunes package (apt-get install fortunes) or set data.root to a folder of fortune files"
)
INTEGER = re.compile(r"[+-]?\d+")


@DATASETS.register("fortunes")
def fortunes(
    root: str = FORTUNES,
    topics: list[str] = ["people", "definitions", "cookie", "computers", "songs-poems", "politics"],  # noqa: B006
    per_topic: int = 600,  # at most this many quotes per topic, chosen with `seed`
    max_length: int = 128,  # tokens, special tokens included; longer quotes are dropped, not cut
    tokenizer: str = "minilm-l6",  # a shipped model name or a local model folder
    test_fraction: float = 0.2,
    seed: int = 0,
) -> RawData:
    """Debian's fortune quotes classified by topic (the file they come from): people, definitions, ..."""
    if not isinstance(topics, (list, tuple)) or len(topics) < 2 or not all(isinstance(t, str) for t in topics):
        raise PotstillError(f"fortunes: data.args.topics must list at least 2 topic names, got {topics!r}")
    if len(set(topics)) != len(topics):
        raise PotstillError(f"fortunes: data.args.topics names a topic twice: {topics}")
    if not isinstance(per_topic, int) or isinstance(per_topic, bool) or per_topic < 1:
        raise PotstillError(f"fortunes: data.args.per_topic must be a whole number >= 1, got {per_topic!r}")
    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise PotstillError(
            f"fortunes: data.args.test_fraction must lie strictly between 0 and 1, got {test_fraction!r}"
        )
    check_max_length(max_length)
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise PotstillError(f"fortunes not found: {folder} is not a folder; {INSTALL_FORTUNES}")
    available = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.suffix not in (".dat", ".u8") and not p.name.startswith(".")
    )
    per_file: list[dict[str, str]] = []  # per topic: normalised quote -> quote, first occurrence kept
    read, repeated = [], []
    for topic in topics:
        path = folder / topic
        if topic not in available:
            raise PotstillError(
                f"fortune topic '{topic}' not found: no file {path}{did_you_mean(topic, available)}; topics in "
                f"{folder}: {', '.join(available) or 'none'} ({INSTALL_FORTUNES})"
            )
        quotes = read_fortune_file(path)
        unique: dict[str, str] = {}
        for quote in quotes:
            unique.setdefault(" ".join(quote.split()), quote)
        per_file.append(unique)
        read.append(len(quotes))
        repeated.append(len(quotes) - len(unique))
    seen_in = Counter(key for unique in per_file for key in unique)
    candidates = [[quote for key, quote in unique.items() if seen_in[key] == 1] for unique in per_file]
    shared = [len(unique) - len(kept) for unique, kept in zip(per_file, candidates)]
    encoded = encode([quote for kept in candidates for quote in kept], tokenizer, max_length, what="fortune quotes")
    notes = [f"fortunes from {folder}; topics as classes: {class_order(list(topics))}"]
    rows, labels, too_long, start = [], [], [], 0
    for label, (topic, kept) in enumerate(zip(topics, candidates)):
        fits = torch.nonzero(encoded.lengths[start : start + len(kept)] <= max_length).flatten() + start
        start += len(kept)
        if len(fits) == 0:
            raise PotstillError(
                f"fortunes: topic '{topic}' has no quote left after dropping duplicates and long quotes"
            )
        chosen = fits[choose(len(fits), per_topic, seed, topic)]
        too_long.append(len(kept) - len(fits))
        rows.append(chosen)
        labels.append(torch.full((len(chosen),), label, dtype=torch.int64))
        notes.append(
            f"{topic}: {read[label]} quotes read, {repeated[label]} repeats within the topic (kept once), "
            f"{shared[label]} also in another topic (dropped), {too_long[-1]} longer than {max_length} "
            f"tokens (dropped), {len(chosen)} kept"
        )
    rows_all, targets = torch.cat(rows), torch.cat(labels)
    keep, held = stratified_split(targets, float(test_fraction), seed=seed)
    train, test = (
        make_data(encoded, rows_all[part], targets[part], list(topics), name)
        for part, name in ((keep, "train"), (held, "test"))
    )
    notes.append(
        f"{sum(read)} quotes read, {sum(shared)} dropped as cross-topic duplicates, {sum(too_long)} as longer than "
        f"{max_length} tokens; {len(targets)} kept (at most per_topic={per_topic} a topic, chosen with seed {seed})"
    )
    notes.append(f"{len(train)} train / {len(test)} test quotes (stratified {test_fraction:g} test split, seed {seed})")
    return RawData(train, test, notes + encoded.notes)


def read_fortune_file(path: Path) -> list[str]:
    """The quotes of a fortune file: text between lines that are exactly '%', stripped, none empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PotstillError(
            f"{path} is not UTF-8 text ({error}); convert it with iconv or leave the topic out"
        ) from None
    except OSError as error:
        raise PotstillError(f"cannot read {path}: {error}") from None
    quotes, lines = [], []
    for line in text.split("\n"):
        if line.rstrip("\r") == "%":
            quotes.append("\n".join(lines))
            lines = []
        else:
            lines.append(line)
    quotes.append("\n".join(lines))
    return [quote for quote in (overstrike(quote).strip() for quote in quotes) if quote]


def overstrike(text: str) -> str:
    """Render backspace overstriking as a terminal shows it: '____\\b\\b\\b\\bthis' -> 'this', 'X\\bX' -> 'X'."""
    if "\b" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        cells: list[str] = []
        cursor = 0
        for char in line:
            if char == "\b":
                cursor = max(cursor - 1, 0)
                continue
            if cursor == len(cells):
                cells.append(char)
            elif cells[cursor] in ("_", " "):  # an underline or blank under a letter: the letter shows
                cells[cursor] = char
            cursor += 1
        lines.append("".join(cells))
    return "\n".join(lines)


def choose(count: int, keep: int, seed: int, topic: str) -> torch.Tensor:
    """Up to `keep` of range(count) in increasing order, drawn by a generator seeded by (seed, topic),
    so a topic's choice does not depend on which other topics are listed."""
    digest = hashlib.sha256(f"{seed}:{topic}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(count, generator=generator)[:keep].sort().values


def make_data(encoded: Encoded, rows: torch.Tensor, targets: torch.Tensor, names: list[str], split: str) -> TokenData:
    return TokenData(
        encoded.input_ids[rows],
        encoded.attention_mask[rows],
        targets,
        len(names),
        split=split,
        label_names=names,
        tokenizer=encoded.tokenizer,
    )


@DATASETS.register("text_files")
def text_files(
    root: str,  # folder holding train.jsonl (+ test.jsonl) or train.csv (+ test.csv)
    tokenizer: str = "minilm-l6",  # a shipped model name or a local model folder
    max_length: int = 128,  # tokens, special tokens included; longer texts are truncated
    text_key: str = "text",  # JSON key or CSV column of the text
    label_key: str = "label",  # JSON key or CSV column of the class (a name or an integer)
) -> RawData:
    """Your own labelled texts: train.jsonl and test.jsonl (or .csv) in the folder data.root."""
    check_max_length(max_length)
    folder = Path(root).expanduser()
    form = f'one JSON object per line, {{"{text_key}": "...", "{label_key}": ...}}, or CSV with a header row'
    if not folder.is_dir():
        raise PotstillError(
            f"text_files: {folder} is not a folder; set data.root to the folder holding train.jsonl or train.csv ({form})"
        )
    found = [suffix for suffix in ("jsonl", "csv") if (folder / f"train.{suffix}").is_file()]
    if len(found) != 1:
        problem = "holds both train.jsonl and train.csv; keep one" if found else "holds no train.jsonl or train.csv"
        raise PotstillError(f"text_files: {folder} {problem} ({form})")
    suffix, other = found[0], "csv" if found[0] == "jsonl" else "jsonl"
    train_path, test_path = folder / f"train.{suffix}", folder / f"test.{suffix}"
    if not test_path.is_file() and (folder / f"test.{other}").is_file():
        raise PotstillError(f"{folder} holds train.{suffix} but test.{other}; save both splits in one format")
    reader = read_jsonl if suffix == "jsonl" else read_csv
    train_records = reader(train_path, text_key, label_key)
    kinds = {type(label) for _, label, _ in train_records}
    if len(kinds) > 1:
        line = next(line for _, label, line in train_records if isinstance(label, int))
        raise PotstillError(
            f"{train_path}:{line}: an integer label among text labels; use one kind of label throughout"
        )
    values = sorted({label for _, label, _ in train_records})
    if len(values) < 2:
        raise PotstillError(
            f"{train_path}: every sample has the label {values[0]!r}; a classifier needs at least 2 classes"
        )
    names, lookup = [str(v) for v in values], {value: index for index, value in enumerate(values)}
    how = "names sorted" if str in kinds else "integers sorted"
    notes = [
        f"{len(values)} classes from {train_path} ({how}): {class_order(names)} (the teacher's class order must match)"
    ]
    test_records = reader(test_path, text_key, label_key) if test_path.is_file() else None
    for _, label, line in test_records or []:
        if label not in lookup:
            raise PotstillError(
                f"{test_path}:{line}: label {label!r} never appears in {train_path}, whose classes are "
                f"{class_order(names)}; fix the label, or add training samples of that class"
            )
    splits = []
    for path, records in ((train_path, train_records), (test_path, test_records)):
        if records is None:
            notes.append("no test file: potstill holds out data.test_fraction of the training texts as the test split")
            splits.append(None)
            continue
        what = f"{path.name} texts"
        encoded = encode([text for text, _, _ in records], tokenizer, max_length, what=what)
        targets = torch.tensor([lookup[label] for _, label, _ in records], dtype=torch.int64)
        notes += [f"{path}: {len(records)} texts", *encoded.notes, *truncation_notes(encoded, max_length, what)]
        splits.append(make_data(encoded, torch.arange(len(records)), targets, names, path.stem))
    return RawData(splits[0], splits[1], notes)


def read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise PotstillError(f"{path} is not UTF-8 text ({error}); save it as UTF-8") from None
    except OSError as error:
        raise PotstillError(f"cannot read {path}: {error}") from None


def read_jsonl(path: Path, text_key: str, label_key: str) -> list[tuple[str, str | int, int]]:
    """(text, label, line number) of every non-blank line, each a JSON object."""
    records = []
    for number, record in json_lines(path):
        for key, argument in ((text_key, "text_key"), (label_key, "label_key")):
            if key not in record:
                raise PotstillError(
                    f"{path}:{number}: no key '{key}'{did_you_mean(key, list(record))}; keys present: "
                    f"{', '.join(map(str, record)) or 'none'}; name the right key with data.args.{argument}"
                )
        records.append(check_record(path, number, record[text_key], record[label_key], text_key))
    return nonempty(path, records)


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of every non-blank line of a JSONL file; one error naming a bad line."""
    for number, line in enumerate(read_utf8(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise PotstillError(
                f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno}); each line must be one JSON object"
            ) from None
        if not isinstance(record, dict):
            raise PotstillError(
                f"{path}:{number}: a JSON {type(record).__name__}, not an object; each line must be one JSON object"
            )
        yield number, record


def read_csv(path: Path, text_key: str, label_key: str) -> list[tuple[str, str | int, int]]:
    """(text, label, line number) of every row after the header row; integer-looking labels become ints."""
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""))
    records = []
    try:
        header = [name.strip() for name in next(reader, [])]
        for key, argument in ((text_key, "text_key"), (label_key, "label_key")):
            if key not in header:
                raise PotstillError(
                    f"{path}: the header row has no column '{key}'{did_you_mean(key, header)}; its first row: "
                    f"{', '.join(header) or '(empty)'}; the first row must name the columns (or set data.args.{argument})"
                )
        text_column, label_column = header.index(text_key), header.index(label_key)
        start = reader.line_num + 1
        for row in reader:
            number, start = start, reader.line_num + 1
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                raise PotstillError(
                    f"{path}:{number}: {len(row)} cells but the header names {len(header)}; quote texts holding commas"
                )
            label = row[label_column].strip()
            label = int(label) if INTEGER.fullmatch(label) else label
            records.append(check_record(path, number, row[text_column], label, text_key))
    except csv.Error as error:
        raise PotstillError(f"{path}:{reader.line_num}: not readable as CSV ({error}); check its quoting") from None
    return nonempty(path, records)


def check_record(path: Path, number: int, text: object, label: object, text_key: str) -> tuple[str, str | int, int]:
    if not isinstance(text, str):
        raise PotstillError(
            f"{path}:{number}: '{text_key}' is {type(text).__name__} {text!r:.40}, not a string; give the text as a string"
        )
    if not text.strip():
        raise PotstillError(f"{path}:{number}: the text is empty; give every sample a text, or drop the line")
    if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
        raise PotstillError(
            f"{path}:{number}: label {label!r} is not a class name or an integer (write 3, not 3.0 or true)"
        )
    return text, label, number


def nonempty(path: Path, records: list) -> list:
    if not records:
        raise PotstillError(
            f"{path} holds no samples; fill it, or delete a test file to let potstill hold out a test split"
        )
    return records


fortunes.modality = text_files.modality = "text"  # token sequences: text models and losses (startup.check_modality)
