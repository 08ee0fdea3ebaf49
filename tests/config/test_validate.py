"""potstill.config.validate: building, unknown keys, types, ranges, check(), to_dict."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from potstill.config import to_dict, validate
from potstill.errors import PotstillError
from tests.config.example_schema import ModelSpec, Recipe, Schedule, problems_of


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
