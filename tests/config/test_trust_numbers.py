"""Issue 11, numbers: a bad number in a recipe, a loss or a model is one clear PotstillError, never a
silent wrong result (NaN passes every bound) nor a traceback from deep inside torch.

The schema-wide tests loop over every key of `Recipe`, so a key added later is covered too.
"""

from __future__ import annotations

import contextlib
import io
import math
import typing
from typing import Any

import pytest

from potstill.cli.main import main
from potstill.config import validate
from potstill.config.schema import container_kind, is_schema, is_union, item_types, join, schema_fields, sections
from potstill.errors import PotstillError
from potstill.knowledge.base import LOSSES, check_non_negative, check_positive
from potstill.models import MODELS
from potstill.recipe import Recipe
from potstill.registry import Registry
from tests.config.bounded import outcome_within
from tests.conftest import tiny_recipe, write_recipe

NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
SHOWN = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}


# --- building a minimal recipe around any key path -----------------------------------------------


def typed_keys() -> dict[str, Any]:
    """Every key path of the schema (`distill.terms[].weight`) with its type."""
    return {join(path, field.name): tp for path, section in sections(Recipe) for field, tp in schema_fields(section)}


def holds(tp: Any, wanted: Any) -> bool:
    """Whether values of type `tp` are, or contain, `wanted` (float in Optional[list[float]])."""
    if tp is wanted:
        return True
    if is_union(tp):
        return any(holds(member, wanted) for member in typing.get_args(tp))
    if container_kind(tp) == "dict":
        return holds(item_types(tp)[1], wanted)
    if container_kind(tp) is not None:
        return any(holds(item, wanted) for item in item_types(tp) if item is not Ellipsis)
    return False


def minimal(schema: type) -> dict[str, Any]:
    """The required keys of a section, filled with the simplest valid values."""
    filled = {}
    for field, tp in schema_fields(schema):
        if field.default is field.default_factory:  # both MISSING: required
            filled[field.name] = simplest(tp)
    return filled


def simplest(tp: Any) -> Any:
    """A valid value of a required key's type: a section, a list of one number, a number, a word."""
    if is_schema(tp):
        return minimal(tp)
    if container_kind(tp) == "list":
        return [simplest(item_types(tp)[0])]
    return {float: 1.0, int: 1}.get(tp, "x")


def recipe_with(key_path: str, value: Any) -> tuple[dict[str, Any], str]:
    """A recipe that is valid except that `key_path` holds `value`, and the path an error names
    (`distill.terms[].weight` -> `distill.terms[0].weight`)."""
    schemas = dict(sections(Recipe))
    recipe: dict[str, Any] = minimal(Recipe)
    node, prefix = recipe, ""
    *parents, last = key_path.split(".")
    for part in parents:
        key = part.removesuffix("[]")
        prefix = join(prefix, part)
        if prefix not in schemas:  # a mapping of sections (search.space): its entry is named `<key>` below
            node = node.setdefault(key, {})
            continue
        filled = minimal(schemas[prefix])
        if part.endswith("[]"):
            node[key] = [filled]
            node = filled
        else:
            node = node.setdefault(key, filled)
    node[last] = value
    return recipe, key_path.replace("[]", "[0]")


def wrapped(tp: Any, value: Any) -> tuple[Any, str]:
    """`value` placed where a key of type `tp` takes a number ([value] for a list of numbers),
    and what that adds to the key path."""
    members = typing.get_args(tp) if is_union(tp) else (tp,)
    if any(member in (int, float) for member in members):
        return value, ""
    for member in members:
        if container_kind(member) in ("list", "tuple"):
            return [value], "[0]"
        if container_kind(member) == "dict":
            return {"k": value}, ".k"
    raise AssertionError(f"no place for a number in {tp}")


def problems_of(data: dict[str, Any]) -> str:
    with pytest.raises(PotstillError) as caught:
        validate(data, Recipe)
    return str(caught.value)


FLOAT_KEYS = sorted(path for path, tp in typed_keys().items() if holds(tp, float))
INT_KEYS = sorted(path for path, tp in typed_keys().items() if holds(tp, int))
ARGS_KEYS = sorted(
    path for path, tp in typed_keys().items() if container_kind(tp) == "dict" and item_types(tp)[1] is Any
)


def test_the_schema_loops_find_the_keys_of_the_issue() -> None:
    """Guards the loops below: they must reach every args mapping and the keys the issue names."""
    assert {"distill.alpha", "distill.beta", "train.lr", "distill.terms[].weight", "scheme.teachers[].train.lr"} <= set(
        FLOAT_KEYS
    )
    assert {"seed", "data.crop_padding", "report.ece_bins", "train.epochs", "train.milestones"} <= set(INT_KEYS)
    assert {
        "student.args", "teacher.model.args", "distill.loss_args", "distill.terms[].args", "scheme.args", "data.args",
    } <= set(ARGS_KEYS)  # fmt: skip


# --- NaN and infinities --------------------------------------------------------------------------


@pytest.mark.parametrize("word", list(NON_FINITE))
@pytest.mark.parametrize("key_path", FLOAT_KEYS)
def test_every_float_key_refuses_nan_and_infinities(key_path: str, word: str) -> None:
    """Catches: NaN passes `min=0.0` (NaN < 0 is False) and `distill.alpha: .nan` silently drops the
    cross-entropy; inf passes every lower bound and overflows in torch."""
    value, suffix = wrapped(typed_keys()[key_path], NON_FINITE[word])
    recipe, error_path = recipe_with(key_path, value)
    assert problems_of(recipe) == f"recipe: {error_path}{suffix}: must be a finite number, got {SHOWN[word]}"


@pytest.mark.parametrize("key_path", INT_KEYS)
def test_every_int_key_refuses_integers_beyond_64_bits(key_path: str) -> None:
    """Catches: `seed: 99999999999999999999999` (and any unbounded int key) passed validation and
    ended in torch's 'Overflow when unpacking long long' traceback."""
    value, suffix = wrapped(typed_keys()[key_path], 2**64)
    recipe, error_path = recipe_with(key_path, value)
    message = problems_of(recipe)
    assert message.startswith(f"recipe: {error_path}{suffix}: must ") and message.endswith("got 18446744073709551616")
    assert "\n" not in message


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2**64], ids=["nan", "inf", "2**64"])
@pytest.mark.parametrize("key_path", ARGS_KEYS)
def test_every_args_mapping_refuses_bad_numbers_nested_inside(key_path: str, bad: Any) -> None:
    """Catches: args mappings are typed Any, so `student.args.dropout: .nan` or a NaN deep in
    `distill.loss_args` reached the constructor unchecked."""
    recipe, error_path = recipe_with(key_path, {"outer": {"inner": [1, bad]}})
    message = problems_of(recipe)
    assert message.startswith(f"recipe: {error_path}.outer.inner[1]: must ")
    assert "\n" not in message


@pytest.mark.parametrize("text", ["1e999", "-1.0e+400"])
def test_float_text_beyond_the_float_range_is_refused(text: str) -> None:
    """Catches: float fields read number text such as '1e999' as float('1e999') == inf and let it pass."""
    assert (
        problems_of({"name": "x", "train": {"lr": text}}) == f"recipe: train.lr: must be a finite number, got '{text}'"
    )


def test_an_integer_too_large_for_a_float_is_refused_not_a_traceback() -> None:
    """Catches: float(10**400) raised OverflowError inside the validator (a traceback)."""
    message = problems_of({"name": "x", "distill": {"temperature": 10**400}})
    assert message.startswith("recipe: distill.temperature: must be a finite number, got 1000000")


# --- ranges --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_path, value, expected",
    [
        ("seed", 99999999999999999999999, "must be between 0 and 4294967295"),
        ("seed", -1, "must be between 0 and 4294967295"),
        ("data.split_seed", 2**32, "must be between 0 and 4294967295"),
        ("distill.cache.view_seed", 2**40, "must be between 0 and 4294967295"),
        ("train.lr", 1e300, "must be between 0.0 and 10.0"),
        ("refine.lr", 1e3, "must be between 0.0 and 10.0"),
        ("train.weight_decay", 1e300, "must be between 0.0 and 10.0"),
        ("train.gamma", 1e300, "must be between 0.0 and 1.0"),
        ("data.crop_padding", 1000000, "must be between 0 and 127"),
        ("report.ece_bins", 100000000000, "must be between 1 and 1000"),
        ("report.latency_batch_size", 10**9, "must be between 1 and 65536"),
        ("report.latency_repeats", 10**9, "must be between 1 and 10000"),
        ("train.epochs", 10**12, "must be between 1 and 100000"),
        ("data.batch_size", 10**12, "must be between 1 and 1000000"),
        ("distill.temperature", 1e300, "must be between 1e-06 and 1000.0"),
        ("distill.alpha", 1e300, "must be between 0.0 and 1000000.0"),
        ("distill.terms[].weight", 1e300, "must be between 0.0 and 1000000.0"),
        ("distill.schedule.warmup_epochs", 1e300, "must be between 0.0 and 100000"),
    ],
)
def test_out_of_range_numbers_are_refused_before_anything_runs(key_path: str, value: Any, expected: str) -> None:
    """Catches: seed beyond 64 bits, lr=1e300, crop_padding=1000000 and ece_bins=1e11 passed
    validation and ended in overflow or allocation tracebacks (or, for crop_padding > 127, offsets
    silently wrapped in the uint8 table of crop positions)."""
    recipe, error_path = recipe_with(key_path, value)
    message = problems_of(recipe)
    assert message.startswith(f"recipe: {error_path}: {expected}, got "), message


@pytest.mark.parametrize(
    "key_path, value",
    [
        ("seed", 2**32 - 1),
        ("train.lr", 10.0),
        ("data.crop_padding", 127),
        ("report.ece_bins", 1000),
        ("distill.beta", 30000.0),
    ],
)
def test_the_bounds_are_inclusive_and_generous(key_path: str, value: Any) -> None:
    """Guards the bounds above against refusing a published setting (PKT's weight 3e4, ...)."""
    recipe, _ = recipe_with(key_path, value)
    validate(recipe, Recipe)


def test_a_zero_gradient_clip_is_refused() -> None:
    """Catches: `train.grad_clip: 0` (allowed by min=0) clipped every gradient to zero: a run that
    silently learns nothing."""
    assert problems_of({"name": "x", "train": {"grad_clip": 0}}).startswith("recipe: train.grad_clip: 0 would zero")


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key_path",
    ["name", "data.name", "student.name", "teacher.model.name", "distill.loss", "distill.terms[].loss",
     "scheme.name", "scheme.peers[].name", "distill.pairs[].student", "distill.terms[].pairs[].teacher"],
)  # fmt: skip
@pytest.mark.parametrize("empty", ["", "  "])
def test_names_must_not_be_empty(key_path: str, empty: str) -> None:
    """Catches: `name: ""` and empty model or loss names were accepted."""
    recipe, error_path = recipe_with(key_path, empty)
    if key_path.startswith("distill.pairs"):
        recipe["distill"]["loss"] = "at"
    assert problems_of(recipe) == f"recipe: {error_path}: must not be empty"


def test_the_scheme_shorthand_must_not_be_empty() -> None:
    """Catches: `scheme: ""` became a scheme section with an empty name."""
    assert problems_of({"name": "x", "scheme": ""}) == "recipe: scheme.name: must not be empty"


@pytest.mark.parametrize("name", [".", "..", "a/b", "/abs", "a\\b", "a\0b"])
def test_the_run_name_must_be_one_folder(name: str) -> None:
    """Catches: the run name becomes output_dir/name, so '..' or 'a/b' put the run elsewhere."""
    assert problems_of({"name": name}).startswith(f"recipe: name: {name!r} must be usable as one folder name")


# --- constructors called from Python -------------------------------------------------------------


def test_registry_create_refuses_non_finite_numbers_before_constructing() -> None:
    """Catches: `Registry.create` passed NaN and inf (also inside lists) to any constructor."""
    things = Registry("thing")
    calls = []

    @things.register("box")
    def box(size: float = 1.0, sides: tuple = (1.0,)) -> None:
        calls.append(size)

    with pytest.raises(PotstillError, match=r"^thing 'box': size must be a finite number, got .nan$"):
        things.create("box", size=math.nan)
    with pytest.raises(PotstillError, match=r"^thing 'box': sides\[1\] must be a finite number, got -.inf$"):
        things.create("box", sides=(1.0, -math.inf))
    with pytest.raises(PotstillError, match="size must fit in 64 bits"):
        things.create("box", size=2**70)
    assert calls == []
    things.create("box", size=2.0)
    assert calls == [2.0]


def test_registry_create_walks_shared_arguments_once() -> None:
    """Guards the registry check: a value from Python that shares its parts (10**10 leaves through
    nested references, as `--args` read by plain yaml.safe_load gives) or contains itself is
    checked in linear time, and a NaN in it is still found."""
    things = Registry("thing")
    things.register("box")(lambda sizes=(): "built")
    shared: Any = [1.0] * 10
    for _ in range(9):
        shared = [shared] * 10
    kind, answer, seconds = outcome_within(lambda: things.create("box", sizes=shared), seconds=10)
    assert (kind, answer) == ("ok", "built") and seconds < 5
    looped: list[Any] = [1.0, math.nan]
    looped.append(looped)
    with pytest.raises(PotstillError, match=r"sizes\[1\] must be a finite number"):
        things.create("box", sizes=looped)


def float_arguments(registry: Registry) -> list[tuple[str, str]]:
    """(name, argument) for every constructor argument whose default is a float."""
    return [
        (name, argument)
        for name in registry.names()
        for argument, parameter in registry.parameters(name).items()
        if isinstance(parameter.default, float)
    ]


@pytest.mark.parametrize("word", ["nan", "inf"])
@pytest.mark.parametrize("registry", [LOSSES, MODELS], ids=["losses", "models"])
def test_every_float_argument_of_a_loss_or_model_refuses_non_finite_values(registry: Registry, word: str) -> None:
    """Catches: `LOSSES.create("kd", temperature=inf)` and `dropout=nan` were accepted from Python."""
    cases = float_arguments(registry)
    assert cases, "no float arguments found: the loop tests nothing"
    extra = {"input_shape": (1, 8, 8), "num_classes": 3} if registry is MODELS else {}
    for name, argument in cases:
        with pytest.raises(PotstillError, match=f"{argument} must be a finite number"):
            registry.create(name, **extra, **{argument: NON_FINITE[word]})


def test_check_positive_and_check_non_negative_refuse_infinity() -> None:
    """Catches: `not value > 0` refused NaN but let inf through, so `at` ran with p=inf."""
    with pytest.raises(PotstillError, match=r"loss 'at' needs p > 0 \(finite numbers\), got p=inf"):
        check_positive("at", p=math.inf)
    with pytest.raises(PotstillError, match="loss 'rkd' needs angle_weight >= 0"):
        check_non_negative("rkd", angle_weight=math.inf)
    with pytest.raises(PotstillError, match="needs temperature > 0"):
        check_positive("kd", temperature="4")  # text is a mistake too, not a TypeError
    check_positive("at", p=2.0)
    check_non_negative("rkd", angle_weight=0.0)


# --- the command line ----------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("distill.alpha=.nan", "distill.alpha: must be a finite number, got .nan"),
        ("distill.beta=.inf", "distill.beta: must be a finite number, got .inf"),
        ("seed=99999999999999999999999", "seed: must be between 0 and 4294967295"),
        ("train.lr=1e300", "train.lr: must be between 0.0 and 10.0"),
        ("data.crop_padding=1000000", "data.crop_padding: must be between 0 and 127"),
        ("student.args.hidden=[.nan]", "student.args.hidden[0]: must be a finite number"),
        ("name=''", "name: must not be empty"),
    ],
)
def test_the_cli_prints_one_error_line_and_exits_2(tmp_path, override: str, fragment: str) -> None:
    """Catches: these overrides ran a whole training (NaN) or ended in a traceback (overflow)."""
    recipe = write_recipe(tmp_path, tiny_recipe())
    code, err = run_cli("distill", str(recipe), "--set", override, "--run-dir", str(tmp_path / "run"), "--quiet")
    assert code == 2
    assert err.startswith("potstill: error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "run").exists()
