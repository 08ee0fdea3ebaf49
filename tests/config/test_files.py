"""potstill.config: --set overrides, YAML files and the key reference."""

from __future__ import annotations

import pytest

from potstill.config import apply_overrides, load, load_yaml_file, reference
from potstill.errors import PotstillError
from tests.config.example_schema import Recipe, problems_of

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


def test_override_indexes_lists_by_position() -> None:
    data = {"distill": {"terms": [{"loss": "at"}, {"loss": "crd", "weight": 0.8}], "milestones": [3, 6]}}
    result = apply_overrides(data, ["distill.terms.1.weight=0.5", "distill.terms.0.loss=fitnet", "distill.milestones.1=7"])
    assert result["distill"] == {"terms": [{"loss": "fitnet"}, {"loss": "crd", "weight": 0.5}], "milestones": [3, 7]}
    assert data["distill"]["terms"][0]["loss"] == "at"  # the input is not changed


@pytest.mark.parametrize("override", ["distill.terms.2.loss=kd", "distill.terms.first.loss=kd", "distill.terms.-1.loss=kd"])
def test_override_with_a_bad_list_index_names_the_valid_range(override: str) -> None:
    with pytest.raises(PotstillError, match=r"'distill.terms' is a list of 2 item\(s\); index it with 0..1"):
        apply_overrides({"distill": {"terms": [{"loss": "at"}, {"loss": "crd"}]}}, [override])


def test_override_cannot_descend_into_a_scalar_list_item() -> None:
    with pytest.raises(PotstillError, match="'milestones.0' holds the integer 3, not a mapping"):
        apply_overrides({"milestones": [3]}, ["milestones.0.x=1"])


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
