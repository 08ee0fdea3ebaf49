"""Tests for potstill.config: validation, overrides, YAML loading and the key reference."""

from __future__ import annotations  # schemas below must resolve through get_type_hints

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pytest
import yaml

from potstill.config import apply_overrides, load, load_yaml_file, reference, to_dict, validate
from potstill.errors import PotstillError


@dataclass
class ModelSpec:
    model: str = field(metadata={"help": "registered model name"})
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "constructor arguments"})
    checkpoint: Optional[str] = None


@dataclass
class Schedule:
    kind: Literal["constant", "linear_warmup", "early_stop"] = field(
        default="constant", metadata={"help": "shape of the weight over epochs"}
    )
    warmup_epochs: int = field(default=0, metadata={"min": 0})
    stop_epoch: Optional[int] = None

    def check(self) -> list[str]:
        if self.kind == "early_stop" and self.stop_epoch is None:
            return ["stop_epoch: is required when kind is 'early_stop'"]
        return []


@dataclass
class Distill:
    temperature: float = field(default=4.0, metadata={"help": "softmax temperature T"})
    alpha: float = field(default=0.5, metadata={"min": 0, "max": 1, "help": "weight of the KD term"})
    learning_rate: float = 1e-3
    loss_args: dict[str, Any] = field(default_factory=dict)
    layer_weights: dict[str, float] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)

    def check(self) -> list[str]:
        return ["temperature: must be > 0"] if self.temperature <= 0 else []


@dataclass
class Recipe:
    """A toy recipe."""

    name: str
    seed: int = 0
    deterministic: bool = False
    distill: Distill = field(default_factory=Distill)
    tags: list[str] = field(default_factory=list)
    hidden: tuple[int, ...] = field(default=(64, 64), metadata={"min": 1})
    image_size: tuple[int, int] = (32, 32)
    batch_size: Union[int, Literal["auto"]] = 64
    student: Optional[ModelSpec] = None
    teachers: list[ModelSpec] = field(default_factory=list)


def problems_of(data: Any, schema: type = Recipe) -> str:
    with pytest.raises(PotstillError) as caught:
        validate(data, schema)
    return str(caught.value)


# --- building ----------------------------------------------------------------------------------


def test_full_recipe_builds_nested_instances() -> None:
    data = yaml.safe_load(
        """
        name: kd
        distill:
          temperature: 2
          schedule: {kind: linear_warmup, warmup_epochs: 3}
        tags: [cifar, small]
        hidden: [128, 32]
        student: {model: mlp, args: {hidden: [64]}}
        teachers: [{model: wrn}, {model: resnet, checkpoint: t.pt}]
        """
    )
    recipe = validate(data, Recipe)
    assert recipe.distill.temperature == 2.0 and isinstance(recipe.distill.temperature, float)
    assert recipe.distill.schedule == Schedule(kind="linear_warmup", warmup_epochs=3)
    assert recipe.hidden == (128, 32)
    assert recipe.student == ModelSpec(model="mlp", args={"hidden": [64]})
    assert recipe.teachers[1].checkpoint == "t.pt"


def test_missing_keys_take_defaults() -> None:
    recipe = validate({"name": "kd"}, Recipe)
    assert recipe == Recipe(name="kd")
    assert recipe.distill.schedule.kind == "constant"


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_key_suggests_sibling_as_full_path() -> None:
    message = problems_of({"name": "kd", "distill": {"temprature": 2}})
    assert message == "recipe: distill.temprature: unknown key (did you mean 'distill.temperature'?)"


def test_top_level_typo_suggests_nested_path() -> None:
    message = problems_of({"name": "kd", "temperature": 2})
    assert "temperature: unknown key (did you mean 'distill.temperature'?)" in message


def test_misplaced_key_suggests_its_path_anywhere() -> None:
    message = problems_of({"name": "kd", "distill": {"schedule": {"temperature": 2}}})
    assert "distill.schedule.temperature: unknown key (did you mean 'distill.temperature'?)" in message


def test_flat_dotted_key_suggests_the_nested_path() -> None:
    message = problems_of({"name": "kd", "distill.temprature": 2})
    assert "did you mean 'distill.temperature'?" in message


def test_unknown_key_with_nothing_close_has_no_suggestion() -> None:
    assert problems_of({"name": "kd", "zzzz": 1}) == "recipe: zzzz: unknown key"


def test_unknown_key_inside_list_item_names_the_index() -> None:
    message = problems_of({"name": "kd", "teachers": [{"model": "a"}, {"modle": "b"}]})
    assert "teachers[1].modle: unknown key (did you mean 'teachers[1].model'?)" in message


# --- several problems --------------------------------------------------------------------------


def test_all_problems_are_reported_at_once() -> None:
    data = {
        "distill": {"temprature": 2, "alpha": "high", "schedule": {"kind": "cosine"}},
        "seed": 1.5,
        "tags": ["a", 3],
    }
    message = problems_of(data)
    assert message.startswith("recipe has 6 problems:\n")
    for expected in [
        "  - distill.temprature: unknown key",
        "  - distill.alpha: expected a number, got the string 'high'",
        "  - distill.schedule.kind: expected one of 'constant', 'linear_warmup', 'early_stop'",
        "  - seed: expected an integer, got the number 1.5",
        "  - tags[1]: expected a string, got the integer 3",
        "  - missing required key 'name'",
    ]:
        assert expected in message


def test_source_starts_the_message() -> None:
    with pytest.raises(PotstillError, match=r"^recipes/kd.yaml: missing required key 'name'$"):
        validate({}, Recipe, source="recipes/kd.yaml")


# --- types -------------------------------------------------------------------------------------


def test_wrong_type_names_path_expected_type_and_value() -> None:
    message = problems_of({"name": "kd", "distill": {"temperature": "hot"}})
    assert message == "recipe: distill.temperature: expected a number, got the string 'hot'"


@pytest.mark.parametrize("text", ["1e-3", "2e-3", "5e-4", "1.0e3", "-1E+2"])
def test_float_field_accepts_exponent_text_pyyaml_reads_as_string(text: str) -> None:
    data = yaml.safe_load(f"name: kd\ndistill: {{learning_rate: {text}}}")
    if "e" in text and "." not in text:
        assert isinstance(data["distill"]["learning_rate"], str)  # the PyYAML gotcha itself
    recipe = validate(data, Recipe)
    assert recipe.distill.learning_rate == float(text)
    assert isinstance(recipe.distill.learning_rate, float)


def test_number_text_is_not_accepted_for_int_or_str_fields() -> None:
    assert "seed: expected an integer, got the string '1e3'" in problems_of({"name": "kd", "seed": "1e3"})


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"seed": True}, "seed: expected an integer, got true"),
        ({"distill": {"temperature": False}}, "distill.temperature: expected a number, got false"),
        ({"deterministic": 1}, "deterministic: expected a boolean, got the integer 1"),
        ({"deterministic": "yes please"}, "deterministic: expected a boolean, got the string 'yes please'"),
    ],
)
def test_bool_and_numbers_do_not_mix(data: dict, expected: str) -> None:
    assert expected in problems_of({"name": "kd", **data})


def test_int_is_accepted_for_float_and_converted() -> None:
    recipe = validate({"name": "kd", "distill": {"temperature": 3}}, Recipe)
    assert recipe.distill.temperature == 3.0 and isinstance(recipe.distill.temperature, float)


def test_integral_float_is_rejected_for_int_with_a_hint() -> None:
    message = problems_of({"name": "kd", "seed": 2.0})
    assert "seed: expected an integer, got the number 2.0 (write 2 without the decimal point)" in message


def test_number_for_string_field_hints_at_quotes() -> None:
    message = problems_of({"name": 1.10})
    assert message == "recipe: name: expected a string, got the number 1.1 (put it in quotes to make it a string)"


def test_list_element_error_names_its_index() -> None:
    message = problems_of({"name": "kd", "tags": ["a", "b", None]})
    assert message == "recipe: tags[2]: expected a string, got null"


def test_list_field_rejects_a_scalar() -> None:
    assert "tags: expected a list of strings, got the string 'cifar'" in problems_of({"name": "kd", "tags": "cifar"})


def test_tuples_accept_yaml_lists_and_check_length() -> None:
    recipe = validate({"name": "kd", "hidden": [8, 8, 8], "image_size": [28, 28]}, Recipe)
    assert recipe.hidden == (8, 8, 8) and recipe.image_size == (28, 28)
    message = problems_of({"name": "kd", "image_size": [28, 28, 3]})
    assert "image_size: expected a list [integer, integer], got a list [28, 28, 3]" in message
    assert "image_size[1]: expected an integer" in problems_of({"name": "kd", "image_size": [28, "x"]})


def test_dict_values_are_checked_with_their_key_path() -> None:
    message = problems_of({"name": "kd", "distill": {"layer_weights": {"conv1": 1, "conv2": "big"}}})
    assert message == "recipe: distill.layer_weights.conv2: expected a number, got the string 'big'"


def test_dict_of_any_accepts_anything() -> None:
    args = {"hidden": [64, 64], "act": "relu", "nested": {"x": None}}
    recipe = validate({"name": "kd", "distill": {"loss_args": args}}, Recipe)
    assert recipe.distill.loss_args == args


def test_literal_names_allowed_values_and_suggests_nearest() -> None:
    message = problems_of({"name": "kd", "distill": {"schedule": {"kind": "lnear_warmup"}}})
    assert message == (
        "recipe: distill.schedule.kind: expected one of 'constant', 'linear_warmup', 'early_stop', "
        "got the string 'lnear_warmup' (did you mean 'linear_warmup'?)"
    )


def test_optional_accepts_null() -> None:
    recipe = validate({"name": "kd", "student": None, "distill": {"schedule": {"stop_epoch": None}}}, Recipe)
    assert recipe.student is None and recipe.distill.schedule.stop_epoch is None


def test_optional_scalar_names_null_in_the_expected_type() -> None:
    message = problems_of({"name": "kd", "distill": {"schedule": {"stop_epoch": "late"}}})
    assert "distill.schedule.stop_epoch: expected an integer or null, got the string 'late'" in message


def test_union_of_scalars_tries_each_member() -> None:
    assert validate({"name": "kd", "batch_size": "auto"}, Recipe).batch_size == "auto"
    assert validate({"name": "kd", "batch_size": 32}, Recipe).batch_size == 32
    message = problems_of({"name": "kd", "batch_size": "atuo"})
    assert "batch_size: expected an integer or one of 'auto', got the string 'atuo' (did you mean 'auto'?)" in message


def test_section_must_be_a_mapping() -> None:
    assert problems_of({"name": "kd", "distill": 4.0}) == "recipe: distill: expected a mapping, got the number 4.0"
    assert "student: expected a mapping or null, got the string 'mlp'" in problems_of({"name": "kd", "student": "mlp"})


def test_top_level_must_be_a_mapping() -> None:
    assert problems_of(["name", "kd"]) == "recipe: expected a mapping, got a list ['name', 'kd']"


def test_missing_required_key_names_full_path() -> None:
    assert problems_of({"name": "kd", "student": {"args": {}}}) == "recipe: missing required key 'student.model'"


def test_unsupported_schema_type_is_a_bug_not_a_user_error() -> None:
    @dataclass
    class Odd:
        value: complex = 1j

    with pytest.raises(TypeError, match="unsupported type"):
        validate({"value": 2}, Odd)


# --- range checks and check() --------------------------------------------------------------------


def test_range_check_is_inclusive() -> None:
    assert validate({"name": "kd", "distill": {"alpha": 1}}, Recipe).distill.alpha == 1.0
    message = problems_of({"name": "kd", "distill": {"alpha": 1.5}})
    assert message == "recipe: distill.alpha: must be between 0 and 1, got 1.5"
    assert "distill.schedule.warmup_epochs: must be at least 0, got -1" in problems_of(
        {"name": "kd", "distill": {"schedule": {"warmup_epochs": -1}}}
    )


def test_range_check_applies_to_each_list_item() -> None:
    assert problems_of({"name": "kd", "hidden": [64, 0]}) == "recipe: hidden[1]: must be at least 1, got 0"


def test_check_hook_problems_get_the_section_path() -> None:
    data = {"name": "kd", "distill": {"temperature": 0, "schedule": {"kind": "early_stop"}}}
    message = problems_of(data)
    assert "  - distill.schedule.stop_epoch: is required when kind is 'early_stop'" in message
    assert "  - distill.temperature: must be > 0" in message


def test_check_hook_skipped_when_its_section_has_type_errors() -> None:
    message = problems_of({"name": "kd", "distill": {"temperature": 0, "alpha": "x"}})
    assert message == "recipe: distill.alpha: expected a number, got the string 'x'"


def test_check_message_without_field_goes_to_the_section() -> None:
    @dataclass
    class Pair:
        low: int = 0
        high: int = 1

        def check(self) -> list[str]:
            return ["low must not exceed high"] if self.low > self.high else []

    with pytest.raises(PotstillError, match=r"^recipe: low must not exceed high$"):
        validate({"low": 3}, Pair)


@dataclass
class EvenSize:
    size: int = 2

    def __post_init__(self) -> None:
        if self.size % 2:
            raise PotstillError("size must be even")


@dataclass
class HoldsEvenSize:
    inner: EvenSize = field(default_factory=EvenSize)


def test_post_init_error_is_reported_with_its_path() -> None:
    assert problems_of({"inner": {"size": 3}}, HoldsEvenSize) == "recipe: inner: size must be even"


# --- to_dict -----------------------------------------------------------------------------------


def test_to_dict_round_trips_through_yaml() -> None:
    recipe = validate(
        {
            "name": "kd",
            "distill": {"learning_rate": "5e-4", "schedule": {"kind": "early_stop", "stop_epoch": 7}},
            "hidden": [16, 8],
            "student": {"model": "mlp", "args": {"hidden": [64]}},
            "teachers": [{"model": "wrn"}],
        },
        Recipe,
    )
    plain = to_dict(recipe)
    assert plain["hidden"] == [16, 8] and plain["image_size"] == [32, 32]
    assert plain["student"] == {"model": "mlp", "args": {"hidden": [64]}, "checkpoint": None}
    assert validate(plain, Recipe) == recipe
    assert validate(yaml.safe_load(yaml.safe_dump(plain)), Recipe) == recipe


# --- overrides ---------------------------------------------------------------------------------


def test_overrides_parse_yaml_values_and_create_sections() -> None:
    data = {"name": "kd", "distill": {"temperature": 4.0}, "teacher": {"checkpoint": "t.pt"}}
    result = apply_overrides(
        data,
        ["distill.temperature=2", "student.args.hidden=[64,64]", "teacher.checkpoint=null", "name=a=b"],
    )
    assert result["distill"]["temperature"] == 2 and isinstance(result["distill"]["temperature"], int)
    assert result["student"] == {"args": {"hidden": [64, 64]}}
    assert result["teacher"]["checkpoint"] is None
    assert result["name"] == "a=b"
    assert data == {"name": "kd", "distill": {"temperature": 4.0}, "teacher": {"checkpoint": "t.pt"}}


def test_override_replaces_a_null_section() -> None:
    assert apply_overrides({"student": None}, ["student.model=mlp"]) == {"student": {"model": "mlp"}}


@pytest.mark.parametrize("override", ["distill.temperature", "=2", ".temperature=2", "distill..alpha=1", " =1"])
def test_malformed_override_names_it_and_the_expected_form(override: str) -> None:
    with pytest.raises(PotstillError) as caught:
        apply_overrides({}, [override])
    assert repr(override) in str(caught.value)
    assert "--set section.key=value" in str(caught.value)


def test_override_cannot_descend_into_a_scalar() -> None:
    with pytest.raises(PotstillError, match="'distill.temperature' holds the number 4.0, not a mapping"):
        apply_overrides({"distill": {"temperature": 4.0}}, ["distill.temperature.x=1"])


def test_override_with_invalid_yaml_value() -> None:
    with pytest.raises(PotstillError, match=r"override 'tags=\[a, b': the value is not valid YAML"):
        apply_overrides({}, ["tags=[a, b"])


def test_override_mistakes_are_reported_by_validate_with_their_path() -> None:
    data = apply_overrides({"name": "kd"}, ["distill.temprature=2", "distill.alpha=hot"])
    message = problems_of(data)
    assert "distill.temprature: unknown key (did you mean 'distill.temperature'?)" in message
    assert "distill.alpha: expected a number, got the string 'hot'" in message


# --- files -------------------------------------------------------------------------------------


def test_load_reads_applies_overrides_and_validates(tmp_path) -> None:
    path = tmp_path / "kd.yaml"
    path.write_text("name: kd\ndistill:\n  temperature: 4\n  learning_rate: 1e-3\n")
    recipe = load(path, Recipe, overrides=["distill.temperature=2", "seed=3"])
    assert (recipe.distill.temperature, recipe.distill.learning_rate, recipe.seed) == (2.0, 1e-3, 3)


def test_load_names_the_file_in_validation_errors(tmp_path) -> None:
    path = tmp_path / "kd.yaml"
    path.write_text("name: kd\ndistill: {temprature: 2}\n")
    with pytest.raises(PotstillError, match=rf"^{path}: distill.temprature: unknown key"):
        load(path, Recipe)


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PotstillError, match=rf"^recipe file not found: {path}$"):
        load_yaml_file(path)


def test_directory_is_not_a_recipe(tmp_path) -> None:
    with pytest.raises(PotstillError, match="is a directory"):
        load_yaml_file(tmp_path)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: kd\ndistill:\n  temperature: 4\n   alpha: 0.5\n")
    with pytest.raises(PotstillError) as caught:
        load_yaml_file(path)
    message = str(caught.value)
    assert message.startswith(f"invalid YAML in {path} at line 4, column ")
    assert "mapping values are not allowed here" in message


def test_tab_indentation_gets_a_hint(tmp_path) -> None:
    path = tmp_path / "tabs.yaml"
    path.write_text("distill:\n\ttemperature: 4\n")
    with pytest.raises(PotstillError, match="line 2.*not tabs"):
        load_yaml_file(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file(tmp_path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(PotstillError, match="recipe file is empty"):
        load_yaml_file(path)


def test_top_level_list_is_rejected(tmp_path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: kd\n")
    with pytest.raises(PotstillError, match="must hold a mapping of keys at the top level, got a list"):
        load_yaml_file(path)


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "unsafe.yaml"
    path.write_text("name: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(PotstillError, match="invalid YAML"):
        load_yaml_file(path)


# --- reference ---------------------------------------------------------------------------------


def test_reference_lists_every_key_path() -> None:
    text = reference(Recipe)
    paths = [
        "name", "seed", "deterministic", "distill", "tags", "hidden", "image_size", "batch_size",
        "student", "teachers", "distill.temperature", "distill.alpha", "distill.learning_rate",
        "distill.loss_args", "distill.layer_weights", "distill.schedule", "distill.schedule.kind",
        "distill.schedule.warmup_epochs", "distill.schedule.stop_epoch", "student.model", "student.args",
        "student.checkpoint", "teachers[].model",
    ]  # fmt: skip
    for path in paths:
        assert f"| `{path}` |" in text
    for heading in ["## top level", "## `distill`", "## `distill.schedule`", "## `student`", "## `teachers[]`"]:
        assert heading in text


def test_reference_rows_show_type_default_and_meaning() -> None:
    text = reference(Recipe)
    assert "| `distill.temperature` | number | `4.0` | softmax temperature T |" in text
    assert "| `distill.alpha` | number | `0.5` | weight of the KD term (between 0 and 1) |" in text
    assert "| `distill.learning_rate` | number | `0.001` |  |" in text
    assert "| `name` | string | required |  |" in text
    assert "| `tags` | list of strings | `[]` |  |" in text
    assert "| `hidden` | list of integers | `[64, 64]` | at least 1 |" in text
    assert "| `image_size` | list [integer, integer] | `[32, 32]` |  |" in text
    assert "| `student` | mapping or null, see `student` | `null` |  |" in text
    assert "| `distill.loss_args` | mapping | `{}` |  |" in text
    assert "| `distill.layer_weights` | mapping of numbers | `{}` |  |" in text
    assert "`distill.schedule.kind` | one of 'constant', 'linear_warmup', 'early_stop' | `'constant'` |" in text
    assert "| `distill.schedule.stop_epoch` | integer or null | `null` |  |" in text
    assert "A toy recipe." in text
