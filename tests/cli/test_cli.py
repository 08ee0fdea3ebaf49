"""The command line: happy path, and every kind of bad input gives one readable line and exit 2."""

import json
import re
from pathlib import Path

import pytest
import torch

from potstill.cli.main import main
from potstill.engine.checkpoint import save_tensors
from tests.conftest import tiny_recipe, write_recipe


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(capsys, argv, *fragments):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err and "potstill: error: " in err
    assert all(line.startswith("  - ") for line in err.split("potstill: error: ")[1].splitlines()[1:])
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    recipe = write_recipe(folder, tiny_recipe(refine__epochs=1))
    assert main(["distill", str(recipe), "--run-dir", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def test_distill_writes_a_complete_run(finished_run):
    for name in ("recipe.yaml", "run.json", "metrics.jsonl", "summary.json"):
        assert (finished_run / name).is_file(), name
    for stage in ("teacher", "baseline", "student", "refine"):
        assert (finished_run / stage / "model.safetensors").is_file(), stage
    summary = json.loads((finished_run / "summary.json").read_text())
    roles = [row["role"] for row in summary["models"]]
    assert roles == ["teacher", "baseline", "student", "refine"]
    for row in summary["models"]:
        assert 0 <= row["test_acc"] <= 1 and row["params"] > 0 and row["size_bytes"] > 0 and row["latency_ms"] > 0
    assert summary["models"][1]["teacher_agreement"] is not None
    assert "distillation_gain_points" in summary and summary["data"]["dataset"] == "synthetic"
    stages = {json.loads(line)["stage"] for line in (finished_run / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"teacher", "baseline", "student", "refine"}
    record = json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss", "terms", "lr", "train_acc", "test_acc", "time_s"} <= record.keys()


def test_baseline_gets_the_same_budget_including_refinement(finished_run):
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    epochs = lambda stage: max(r["epoch"] for r in records if r["stage"] == stage)
    assert epochs("baseline") == epochs("student") + epochs("refine")


def test_eval_re_measures_a_finished_run(finished_run, capsys):
    code, out, _ = run_cli(capsys, "eval", str(finished_run))
    assert code == 0 and "distilled" in out
    saved = json.loads((finished_run / "summary.json").read_text())["models"]
    again = json.loads((finished_run / "eval.json").read_text())["models"]
    assert [r["test_acc"] for r in saved] == pytest.approx([r["test_acc"] for r in again])


def test_train_then_distill_from_the_teacher_run(tmp_path, capsys):
    recipe = tiny_recipe()
    teacher_path = write_recipe(tmp_path, recipe, "teacher.yaml")
    assert run_cli(capsys, "train", str(teacher_path), "--run-dir", str(tmp_path / "t"), "-q")[0] == 0
    recipe["teacher"]["checkpoint"] = str(tmp_path / "t")
    recipe["distill"]["baseline"] = False
    distill_path = write_recipe(tmp_path, recipe, "kd.yaml")
    code, _, err = run_cli(capsys, "distill", str(distill_path), "--run-dir", str(tmp_path / "d"), "--set", "distill.temperature=2")
    assert code == 0, err
    assert not (tmp_path / "d" / "teacher").exists()  # loaded, not retrained
    teacher_row = json.loads((tmp_path / "d" / "summary.json").read_text())["models"][0]
    assert teacher_row["size_bytes"] == (tmp_path / "t" / "teacher" / "model.safetensors").stat().st_size
    assert "temperature: 2.0" in (tmp_path / "d" / "recipe.yaml").read_text()


def listed_names(text):
    """The first cell of every table row (continuation lines have an empty first cell)."""
    return [match.group(1) for match in re.finditer(r"^\s*│ (\S+)\s+│", text, re.MULTILINE)]


def test_list_shows_registered_names(capsys):
    """Catches: a registered name missing from its table (matching whole cells: "kd" must not be
    found inside "dkd"), or a name listed twice or listed that is not registered."""
    from potstill.data import DATASETS
    from potstill.knowledge import LOSSES
    from potstill.models import MODELS

    for what, registry, example in (("models", MODELS, "resnet8x4"), ("losses", LOSSES, "kd"), ("datasets", DATASETS, "fashion_mnist")):
        code, out, _ = run_cli(capsys, "list", what)
        names = listed_names(out)
        assert code == 0 and example in names, names
        assert sorted(names) == sorted(registry.names()), what


def test_unknown_key_suggests_the_full_path(tmp_path, capsys):
    recipe = tiny_recipe()
    recipe["distill"]["temprature"] = 2
    recipe["train"]["lr"] = "fast"
    assert_user_error(capsys, ["distill", str(write_recipe(tmp_path, recipe))],
                            "2 problems", "distill.temprature", "did you mean 'distill.temperature'", "train.lr")


def test_bad_set_override(tmp_path, capsys):
    path = str(write_recipe(tmp_path, tiny_recipe()))
    assert_user_error(capsys, ["distill", path, "--set", "distill.alpha"], "--set")
    assert_user_error(capsys, ["distill", path, "--set", "distill.alpha=much"], "distill.alpha", "much")


@pytest.mark.parametrize(
    "change,fragments",
    [
        ({"student": {"name": "resnet_8x4"}}, ["unknown model 'resnet_8x4'", "did you mean 'resnet8x4'"]),
        ({"student": {"name": "mlp", "args": {"hiden": [4]}}}, ["student.args", "did you mean 'hidden'"]),
        ({"distill": {"loss": "kdd"}}, ["unknown loss 'kdd'", "did you mean 'kd'"]),
        ({"distill": {"loss_args": {"temp": 3}}}, ["distill.loss_args", "temp"]),
        ({"data": {"name": "fashion_mnist", "root": "/nonexistent/fm"}}, ["fashion_mnist not found", "/nonexistent/fm"]),
        ({"data": {"name": "cifar_10"}}, ["unknown dataset 'cifar_10'", "did you mean 'cifar10'"]),
        ({"student": {"name": "mlp", "args": {"num_classes": 3}}}, ["student.args.num_classes is set from the dataset"]),
    ],
)
def test_bad_names_and_arguments(tmp_path, capsys, change, fragments):
    recipe = tiny_recipe()
    for key, value in change.items():
        recipe[key] = {**recipe.get(key, {}), **value} if key == "distill" else value
    err = assert_user_error(capsys, ["distill", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "r")], *fragments)
    assert len(err.strip().splitlines()) == 1  # caught before any training or output
    assert not (tmp_path / "r").exists()  # and before the run folder is made


def test_teacher_checkpoint_of_another_architecture(tmp_path, capsys):
    wrong = tmp_path / "wrong.safetensors"
    save_tensors(wrong, {"fc.weight": torch.zeros(10, 3)}, {})
    recipe = tiny_recipe(teacher__checkpoint=str(wrong))
    assert_user_error(capsys, ["distill", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "r")],
                      "does not match the teacher architecture", "missing:", "unexpected: fc.weight")
    recipe = tiny_recipe(teacher__checkpoint=str(tmp_path / "missing.safetensors"))
    assert_user_error(capsys, ["distill", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "r2")],
                      "teacher checkpoint not found")


def test_teacher_with_another_class_count(tmp_path, capsys):
    # a teacher trained on a 5-class dataset cannot teach on a 10-class one
    five = tiny_recipe(data__args={"num_samples": 100, "num_classes": 5})
    assert main(["train", str(write_recipe(tmp_path, five, "five.yaml")), "--run-dir", str(tmp_path / "t5"), "-q"]) == 0
    recipe = tiny_recipe(teacher__checkpoint=str(tmp_path / "t5"))
    assert_user_error(capsys, ["distill", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "r")],
                      "does not match the teacher architecture", "wrong shape")


def test_run_folder_is_never_overwritten_and_must_be_writable(tmp_path, capsys, finished_run):
    path = str(write_recipe(tmp_path, tiny_recipe()))
    before = (finished_run / "summary.json").read_bytes()
    assert_user_error(capsys, ["distill", path, "--run-dir", str(finished_run)], "already exists", "--resume")
    assert (finished_run / "summary.json").read_bytes() == before
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert_user_error(capsys, ["distill", path, "--run-dir", str(blocker / "run")], "cannot write")


def test_resume_with_a_different_recipe_is_refused(tmp_path, capsys, finished_run):
    path = str(write_recipe(tmp_path, tiny_recipe(train__epochs=9)))
    assert_user_error(capsys, ["distill", path, "--resume", str(finished_run)], "differs from the one")
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, ["distill", "--resume", str(tmp_path / "empty")], "not a potstill run")
    assert_user_error(capsys, ["distill", "--resume", str(tmp_path)], "not a potstill run")  # a recipe.yaml alone


def test_missing_or_broken_recipe_file(tmp_path, capsys):
    assert_user_error(capsys, ["distill", str(tmp_path / "none.yaml")], "recipe file not found")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ndistill: [unclosed\n")
    assert_user_error(capsys, ["distill", str(broken)], "line")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="recipe file not found"):
        main(["distill", str(tmp_path / "none.yaml"), "--debug"])


def test_import_flag_registers_user_models(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\nfrom potstill.models import MODELS\n"
        "@MODELS.register('my_linear_for_test')\n"
        "def my_linear(input_shape, num_classes):\n"
        "    '''A user model.'''\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes))\n"
    )
    monkeypatch.chdir(tmp_path)
    recipe = tiny_recipe(student={"name": "my_linear_for_test"})
    recipe["distill"]["baseline"] = False
    path = str(write_recipe(tmp_path, recipe))
    assert_user_error(capsys, ["distill", path, "--run-dir", "r0"], "unknown model 'my_linear_for_test'")
    code, _, err = run_cli(capsys, "distill", path, "--import", "my_models", "--run-dir", "r1", "-q")
    assert code == 0, err
    assert_user_error(capsys, ["list", "models", "--import", "no_such_module"], "cannot import")


def test_demo_recipe_runs_end_to_end(tmp_path, capsys):
    """`make demo` runs recipes/digits/demo.yaml; here with a short budget."""
    recipe = str(Path(__file__).parents[2] / "recipes" / "digits" / "demo.yaml")
    code, out, err = run_cli(capsys, "distill", recipe, "--run-dir", str(tmp_path / "demo"),
                             "--set", "train.epochs=2", "--set", "teacher.train.epochs=2")
    assert code == 0, err
    assert "did distillation pay off?" in out and "student alone" in out and "distilled" in out
    assert re.search(r"student\s+2/2 loss", err)  # one progress line per epoch without a terminal


@pytest.mark.parametrize("loss,temperature,expected", [("kd", None, 4.0), ("dist", None, 1.0), ("kd_standardized", 3.0, 3.0)])
def test_temperature_defaults_to_the_losses_own(tmp_path, capsys, loss, temperature, expected):
    from potstill import config
    from potstill.knowledge.wiring import build_terms
    from potstill.recipe import Recipe

    recipe = tiny_recipe()
    recipe["distill"] = {"loss": loss, **({"temperature": temperature} if temperature else {})}
    terms = build_terms(config.validate(recipe, Recipe).distill, epochs=3)
    assert terms[0].loss.temperature == expected
