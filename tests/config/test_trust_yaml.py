"""Issue 11, hostile YAML: every recipe file or `--set` value ends, within seconds, in a recipe or in
one clear PotstillError; never a hang, a traceback, or a value read differently than written.

Calls that hung or grew without end before the fix run in a forked child with a time and memory
limit (`tests.config.bounded`).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from potstill.cli.main import main
from potstill.config import apply_overrides, dump_yaml, load, load_yaml_file, parse_yaml, validate
from potstill.config.describe import value_words
from potstill.errors import PotstillError
from potstill.recipe import Recipe
from tests.config.bounded import error_within, outcome_within
from tests.conftest import tiny_recipe

ROOT = Path(__file__).resolve().parents[2]
TOO_MANY = "too many YAML aliases/nodes"


def laughs(levels: int = 9) -> str:
    """A flow list whose anchors nest `levels` deep, each repeating the last ten times: about
    10**levels values once expanded, in a few hundred characters of text."""
    items = ["&l0 [" + ", ".join(["lol"] * 10) + "]"]
    for level in range(1, levels + 1):
        items.append(f"&l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "[" + ", ".join(items) + "]"


def recipe_text(placeholder_at: str | None = None, text: str = "") -> str:
    """The tiny test recipe as YAML, with the value at dotted `placeholder_at` written as `text`."""
    recipe = tiny_recipe()
    if placeholder_at is not None:
        *parents, last = placeholder_at.split(".")
        node = recipe
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = "PLACEHOLDER"
    return yaml.safe_dump(recipe).replace("PLACEHOLDER", text)


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(PotstillError) as caught:
        load(path, Recipe)
    return str(caught.value)


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


# --- aliases, nesting and size: every read ends quickly ------------------------------------------


@pytest.mark.parametrize("where", ["lol", "student.args.hidden", "teacher.model.args.channels", "train.milestones"])
def test_billion_laughs_is_refused_quickly(tmp_path, where: str) -> None:
    """Catches: nested anchors expanding to 10**10 values hung the validator or the error message
    (train.milestones), or reached a model builder (student.args, teacher.model.args)."""
    path = write(tmp_path, recipe_text(where, laughs()))
    message = error_within(load, path, Recipe)
    assert message.startswith(f"recipe {path}: {TOO_MANY}") and "\n" not in message


def test_billion_laughs_in_a_set_value_is_refused_quickly() -> None:
    """Catches: `--set student.args.hidden=<nested anchors>` was read without a bound on aliases."""
    message = error_within(apply_overrides, {}, [f"student.args.hidden={laughs()}"])
    assert message.startswith("override 'student.args.hidden=[&l0 [lol") and TOO_MANY in message
    assert len(message) < 400  # the override is quoted cut, not whole


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path) -> None:
    """Catches: `&a [*a]` built a list that contains itself; walking it never ends."""
    path = write(tmp_path, "name: x\nstudent:\n  name: mlp\n  args: {hidden: &a [1, *a]}\n")
    assert error_within(load, path, Recipe) == f"recipe {path}: line 4: an alias refers to the section that contains it"


def test_aliases_that_chain_deeper_than_the_limit_are_refused(tmp_path) -> None:
    """Catches: a chain of anchors, each one level inside the last, nests as deep as it is long
    (a RecursionError in any walk of the data)."""
    chain = "\n".join(["x0: &x0 [1]"] + [f"x{i}: &x{i} [*x{i - 1}]" for i in range(1, 2000)]) + "\n"
    message = error_within(load_yaml_file, write(tmp_path, chain))
    assert "aliases nest sections more than 32 levels deep" in message


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path) -> None:
    """Catches: 5000 nested brackets raised RecursionError inside PyYAML's composer (a traceback)."""
    path = write(tmp_path, "name: x\nhidden: " + "[" * 5000 + "]" * 5000 + "\n")
    assert (
        error_within(load_yaml_file, path)
        == f"recipe {path}: nested more than 32 levels deep (line 2); recipes nest a few levels"
    )


def test_a_list_of_more_values_than_the_limit_is_refused_quickly(tmp_path) -> None:
    """Catches: a flow list of 120,000 numbers was composed, built and walked in full."""
    path = write(tmp_path, "name: x\nlol: [" + ",".join(["1"] * 120_000) + "]\n")
    kind, message, seconds = outcome_within(load, path, Recipe)
    assert kind == "error" and TOO_MANY in message and seconds < 10


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_at_once(device: str) -> None:
    """Catches: `potstill distill /dev/zero` read an endless file until memory ran out."""
    assert (
        error_within(load_yaml_file, device, seconds=10)
        == f"recipe path is not a regular file: {device}; give a .yaml file"
    )


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path) -> None:
    """Catches: a file of any size was read whole and handed to the parser."""
    path = write(tmp_path, "name: x\n" + "# padding\n" * 40_000)
    assert (
        error_within(load_yaml_file, path, seconds=10)
        == f"recipe file {path} is larger than 256 KiB; recipes are short text files"
    )


def test_a_recipe_from_a_pipe_is_still_read(tmp_path) -> None:
    """Guards the size cap: `potstill distill <(cat recipe.yaml)` reads a pipe, not a regular file."""
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text("name: piped\n"), daemon=True)  # blocks until read
    writer.start()
    assert load_yaml_file(pipe) == {"name": "piped"}
    writer.join(timeout=10)


def test_long_values_in_messages_are_cut_without_rendering_them() -> None:
    """Catches: value_words rendered a whole value before cutting it to 40 characters, so a shared
    structure of 10**10 leaves (or a huge list) hung the error message."""
    shared: Any = ["lol"] * 10
    for _ in range(9):
        shared = [shared] * 10
    kind, text, seconds = outcome_within(value_words, shared, seconds=10)
    assert kind == "ok" and seconds < 5 and text == "a list [[[[[[[[[['lol', 'lol', 'lol', 'lol',..."
    message = error_within(validate, {"name": shared}, Recipe, seconds=10)
    assert message.startswith("recipe: name: expected a string, got a list [[[[")


def test_problem_lines_are_cut_and_counted() -> None:
    """Catches: a 100 kB key was printed whole in its 'unknown key' line (with a difflib guess over
    it), and 5000 problems made a 5000-line message."""
    message = str(pytest.raises(PotstillError, validate, {"name": "x", "k" * 100_000: 1}, Recipe).value)
    assert len(message) < 400 and message.endswith("...")
    many = {"name": "x", **{f"unknown{i}": i for i in range(5000)}}
    message = str(pytest.raises(PotstillError, validate, many, Recipe).value)
    assert message.startswith("recipe has 5000 problems:") and message.endswith("  ... and 4980 more")
    assert message.count("\n") == 21


def test_an_integer_of_thousands_of_digits_is_one_line(tmp_path) -> None:
    """Catches: Python refuses int() of more than 4300 digits: a ValueError traceback from PyYAML."""
    path = write(tmp_path, "name: x\nseed: " + "9" * 5000 + "\n")
    assert error_within(load_yaml_file, path) == f"recipe {path}: line 2: an integer of 5000 digits is too long"


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, first, second, key",
    [
        ("name: x\nseed: 1\nseed: 2\n", 2, 3, "seed"),
        ("name: x\ndistill:\n  alpha: 1\nseed: 0\ndistill:\n  beta: 2\n", 2, 5, "distill"),
        ("name: x\ntrain:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n", 3, 5, "lr"),
        ("name: x\nstudent: {name: mlp, args: {hidden: [8], hidden: [16]}}\n", 2, 2, "hidden"),
    ],
    ids=["scalar", "section", "nested", "flow"],
)
def test_a_key_written_twice_is_refused_naming_both_lines(
    tmp_path, text: str, first: int, second: int, key: str
) -> None:
    """Catches: PyYAML keeps the last of two equal keys, silently dropping a whole section."""
    path = write(tmp_path, text)
    assert load_error(path) == f"recipe {path}: key '{key}' appears twice (lines {first} and {second}); keep one"


def test_a_key_written_twice_in_a_set_value_is_refused() -> None:
    """Catches: `--set student.args={hidden: [8], hidden: [16]}` silently kept [16]."""
    with pytest.raises(PotstillError, match=r"key 'hidden' appears twice \(lines 1 and 1\)"):
        apply_overrides({}, ["student.args={hidden: [8], hidden: [16]}"])


def test_merged_keys_may_still_be_overridden(tmp_path) -> None:
    """Guards the duplicate check: `<<: *base` then `lr: ...` overrides a merged key on purpose."""
    path = write(
        tmp_path,
        "name: x\nteacher:\n  model: {name: mlp}\n  train: &base {lr: 0.1, epochs: 4}\ntrain: {<<: *base, lr: 0.2}\n",
    )
    recipe = load(path, Recipe)
    assert (recipe.train.lr, recipe.train.epochs, recipe.teacher.train.lr) == (0.2, 4, 0.1)


@pytest.mark.parametrize("key", ["on", "off", "yes", "no", "true", "null", "~"])
def test_keys_are_read_as_their_text(tmp_path, key: str) -> None:
    """Catches: YAML 1.1 turned the key `on:` into True (and `null:` into None), so the error
    named a key nobody wrote."""
    path = write(tmp_path, f"name: x\n{key}: 1\n")
    assert load_error(path).startswith(f"{path}: {key}: unknown key")


def test_a_list_as_a_key_is_refused(tmp_path) -> None:
    """Catches: `? [a, b]` keys raised PyYAML's unhashable-key error or became tuples."""
    path = write(tmp_path, "name: x\n? [a, b]\n: 1\n")
    assert load_error(path) == f"recipe {path}: line 2: a key must be a word, not a list"


# --- scalars -------------------------------------------------------------------------------------


def test_yaml_1_1_boolean_words_are_text(tmp_path) -> None:
    """Catches: `hflip: yes` silently meant true, and `name: no` or `mode: off` in args became False."""
    path = write(tmp_path, "name: no\ndata: {hflip: yes}\n")
    assert load_error(path) == (
        f"{path}: data.hflip: expected a boolean, got the string 'yes' "
        "(recipes read only true and false as booleans; write true or false)"
    )
    assert load_yaml_file(write(tmp_path, "name: no\nstudent: {name: mlp, args: {mode: off}}\n")) == {
        "name": "no", "student": {"name": "mlp", "args": {"mode": "off"}},
    }  # fmt: skip


@pytest.mark.parametrize("text", ["010", "1:30"])
def test_octal_and_sexagesimal_numbers_are_not_read_silently(tmp_path, text: str) -> None:
    """Catches: `seed: 010` was read as 8 and `seed: 1:30` as 90."""
    path = write(tmp_path, f"name: x\nseed: {text}\n")
    assert load_error(path) == f"{path}: seed: expected an integer, got the string '{text}'"


def test_numbers_with_an_exponent_are_numbers_in_args(tmp_path) -> None:
    """Catches: `1e-3` (no dot) was the string '1e-3' in args typed Any, so a loss got text."""
    data = load_yaml_file(write(tmp_path, "name: x\ndistill: {loss_args: {eps: 1e-3, big: 2E5}}\n"))
    assert data["distill"]["loss_args"] == {"eps": 0.001, "big": 200000.0}


def test_an_alias_is_a_copy_so_an_override_changes_one_section() -> None:
    """Catches: `train: *sgd` shared one mapping with teacher.train, so `--set train.epochs=300`
    silently changed the teacher's epochs too."""
    recipe = load(ROOT / "recipes" / "cifar100" / "resnet32x4_to_resnet8x4.yaml", Recipe, ["train.epochs=300"])
    assert (recipe.train.epochs, recipe.teacher.train.epochs) == (300, 240)


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile, fragment",
    [("laughs", TOO_MANY), ("device", "not a regular file"), ("duplicate", "key 'train' appears twice")],
)
def test_the_cli_answers_hostile_files_with_one_line(tmp_path, hostile: str, fragment: str) -> None:
    """Catches: `potstill distill` hung on nested anchors or /dev/zero and ran a recipe whose
    duplicated section had been dropped."""
    files = {
        "laughs": lambda: write(tmp_path, recipe_text("train.milestones", laughs())),
        "device": lambda: Path("/dev/zero"),
        "duplicate": lambda: write(tmp_path, recipe_text() + "train: {epochs: 1}\n"),
    }
    kind, answer, seconds = outcome_within(
        run_cli, "distill", str(files[hostile]()), "--run-dir", str(tmp_path / "run"), "--quiet"
    )
    assert kind == "ok", answer
    code, err = answer
    assert code == 2 and err.startswith("potstill: error: ") and err.count("\n") == 1 and fragment in err, err
    assert seconds < 10
    assert not (tmp_path / "run").exists()


def test_dump_yaml_writes_what_the_reader_reads_back() -> None:
    """Catches: yaml.safe_dump writes the string '1e3' bare, which the strict reader (YAML 1.2
    numbers) reads back as the number 1000.0; and 'yes' bare, which YAML 1.1 tools read as true."""
    data = {"name": "1e3", "words": ["yes", "off", "010", "1:30"], "flag": True, "lr": 1e-05, "none": None}
    text = dump_yaml(data)
    assert parse_yaml(text) == data and yaml.safe_load(text) == data
