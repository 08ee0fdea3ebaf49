"""Feature distillation from the command line: pairs printed at start-up, adapters saved with
the run but not in the exported student, the FitNets two-stage option, resume, bad layer names."""

import pytest
import torch

from potstill import config
from potstill.engine.checkpoint import load_tensors
from potstill.engine.run import RunDir
from potstill.recipe import Recipe
from potstill.startup import build_model, open_workbench
from tests.cli.test_cli import assert_user_error, run_cli
from tests.conftest import tiny_recipe, write_recipe
from tests.engine.test_resume import Stop, run_recipe, same, weights


def conv_recipe(**changes):
    # teacher small_cnn [8, 16] on 8x8 synthetic images, student small_cnn [4, 6]: two stages each
    recipe = tiny_recipe(**changes)
    recipe["teacher"]["model"]["args"] = {"channels": [8, 16], "hidden": 16}
    recipe["student"] = {"name": "small_cnn", "args": {"channels": [4, 6], "hidden": 8}}
    return recipe


def test_pairs_are_printed_and_adapters_stay_out_of_the_exported_student(tmp_path, capsys):
    recipe = conv_recipe(distill={"loss": "fitnet", "beta": None, "terms": [{"loss": "at", "weight": 10.0}]})
    code, _, err = run_cli(capsys, "distill", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "run"))
    assert code == 0, err
    assert "pairs  fitnet: student block1 (4, 4, 4) -> teacher block1 (8, 4, 4)" in err
    assert "pairs  at: student block2 (6, 2, 2) -> teacher block2 (16, 2, 2)" in err
    exported, _ = load_tensors(tmp_path / "run" / "student" / "model.safetensors")
    whole, _ = load_tensors(tmp_path / "run" / "student" / "module.safetensors")
    assert not any("regressor" in key for key in exported)
    assert any(key.startswith("losses.fitnet.regressors.0.") for key in whole)
    assert all(torch.equal(whole[f"student.{key}"], value) for key, value in exported.items())
    record = next(r for r in RunDir(tmp_path / "run").records() if r["stage"] == "student")
    assert set(record["terms"]) == {"ce", "fitnet", "at"} and record["weights"]["fitnet"] == 100.0


def test_fitnets_two_stages_hints_first_then_kd(tmp_path):
    recipe = conv_recipe(distill={"loss": "kd", "init_epochs": 2, "terms": [{"loss": "fitnet", "stages": ["init"]}]})
    run_recipe(tmp_path, recipe)
    records = RunDir(tmp_path).records()
    init = [r for r in records if r["stage"] == "init"]
    main_stage = [r for r in records if r["stage"] == "student"]
    assert len(init) == 2 and set(init[0]["terms"]) == {"fitnet"} and init[0]["weights"]["ce"] == 0.0
    assert set(main_stage[0]["terms"]) == {"ce", "kd"}  # the hint term is an initialisation only
    # the hint stage trains the layers up to the guided layer (block1), never those after it
    validated = config.validate(recipe, Recipe)
    initial = build_model(validated.student, open_workbench(validated), "student", validated.seed).state_dict()
    hinted = weights(tmp_path, "init")
    assert not torch.equal(hinted["block1.conv.weight"], initial["block1.conv.weight"])
    for key in ("block2.conv.weight", "fc1.weight", "classifier.weight"):
        assert torch.equal(hinted[key], initial[key]), key


@pytest.mark.parametrize("stop_stage", ["init", "student"])
def test_feature_run_resumed_equals_uninterrupted(tmp_path, stop_stage):
    recipe = conv_recipe(train__epochs=3, distill={
        "loss": "fitnet", "init_epochs": 2, "terms": [{"loss": "at", "stages": ["init", "main"]}]})
    run_recipe(tmp_path / "whole", recipe)

    def interrupt(stage, epochs_done, record):
        if stage == stop_stage and epochs_done == 1:
            raise Stop

    with pytest.raises(Stop):
        run_recipe(tmp_path / "cut", recipe, callbacks=[interrupt])
    run_recipe(tmp_path / "cut", recipe, resume=True)
    for stage in ("init", "student"):
        assert same(weights(tmp_path / "whole", stage), weights(tmp_path / "cut", stage)), stage
    whole = load_tensors(tmp_path / "whole" / "student" / "module.safetensors")[0]
    assert same(whole, load_tensors(tmp_path / "cut" / "student" / "module.safetensors")[0])


def test_misspelt_layer_fails_before_the_teacher_trains(tmp_path, capsys):
    recipe = conv_recipe(distill={"loss": "at", "pairs": [{"student": "block1", "teacher": "blok1"}]})
    assert_user_error(capsys, ["distill", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "run")],
                      "teacher (loss at) has no module named 'blok1' (nearest: block1")
    assert not (tmp_path / "run" / "teacher").exists()


def test_list_taps_shows_shapes_and_pairing(capsys):
    code, out, err = run_cli(capsys, "list", "taps", "small_cnn", "--input-shape", "1", "28", "28")
    assert code == 0, err
    assert "block2" in out and "'B', 32, 7, 7" in out and "stage end 2" in out and "classifier:input" in out
    assert_user_error(capsys, ["list", "taps"], "give a model")
    assert_user_error(capsys, ["list", "taps", "mlp", "--args", "{hiden: [3]}"], "'hiden' (did you mean 'hidden'?)")


def test_a_virtual_teacher_needs_no_teacher_section(tmp_path, capsys):
    recipe = tiny_recipe(distill={"loss": "lsr", "alpha": 0.9, "beta": None})
    del recipe["teacher"]
    code, out, err = run_cli(capsys, "distill", str(write_recipe(tmp_path, recipe)), "--run-dir", str(tmp_path / "run"))
    assert code == 0, err
    assert not (tmp_path / "run" / "teacher").exists()
    assert "student alone" in out and "distilled" in out
    recipe["distill"] = {"loss": "kd"}
    assert_user_error(capsys, ["distill", str(write_recipe(tmp_path, recipe, "kd.yaml")), "--run-dir", str(tmp_path / "kd")],
                      "the recipe has no teacher section")
