"""Engine speed settings: bf16 autocast, channels_last and torch.compile run and train; the
stopwatch shows the teacher's share of a step."""

import time

import pytest
import torch

from potstill import config
from potstill.engine.run import RunDir
from potstill.engine.speed import Stopwatch
from potstill.errors import PotstillError
from potstill.recipe import Recipe
from potstill.startup import build_model, open_workbench
from tests.conftest import tiny_recipe
from tests.engine.test_resume import run_recipe, weights

CNN_STUDENT = {"name": "small_cnn", "args": {"channels": [4], "hidden": 8}}


def test_stopwatch_adds_up_sections_and_resets_on_read():
    clock = Stopwatch(torch.device("cpu"))
    for _ in range(3):
        with clock.section("teacher"):
            time.sleep(0.01)
    totals = clock.read()
    assert list(totals) == ["teacher"] and 0.03 <= totals["teacher"] < 0.5
    assert clock.read() == {}


def test_bf16_and_channels_last_train_and_log_teacher_time(tmp_path):
    recipe = tiny_recipe(engine={"precision": "bf16", "channels_last": True}, train__epochs=2)
    recipe["student"] = CNN_STUDENT
    summary = run_recipe(tmp_path / "run", recipe)
    records = [r for r in RunDir(tmp_path / "run").records() if r["stage"] == "student"]
    assert all(0 < r["teacher_ms"] < r["step_ms"] for r in records)  # augmented data: the teacher runs online
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert {row["role"] for row in summary["models"]} >= {"student", "baseline"}


def test_bf16_changes_the_numbers_only_by_rounding(tmp_path):
    """Catches: a bf16 path that trains differently, not just less precisely: a smaller step (the
    learning rate halved under bf16: 48-51% of the change) or no training at all. The difference to
    fp32 is measured against what one epoch of training changed: 4-6.5% of that change per tensor
    (torch 2.13, CPU), bounded here by 15%. (The old absolute atol=0.05 let both bugs pass: one
    epoch moves no weight by more than 0.045.)"""
    plain = tiny_recipe(train__epochs=1, distill__baseline=False)
    run_recipe(tmp_path / "fp32", plain)
    run_recipe(tmp_path / "bf16", plain | {"engine": {"precision": "bf16"}})
    a, b = weights(tmp_path / "fp32", "student"), weights(tmp_path / "bf16", "student")
    recipe = config.validate(plain, Recipe)
    initial = build_model(recipe.student, open_workbench(recipe), "student", recipe.seed).state_dict()
    assert a.keys() == b.keys() == initial.keys()
    for key in a:
        change = (a[key] - initial[key]).norm()  # what fp32 training did to this tensor
        difference = (b[key] - a[key]).norm()
        assert change > 0 and difference <= 0.15 * change, f"{key}: bf16 - fp32 is {difference / change:.1%} of the training change"
    assert any(not torch.equal(a[k], b[k]) for k in a)  # bf16 did run


def test_compiled_teacher_and_student_train_like_the_eager_ones(tmp_path):
    # no dropout anywhere: compiled dropout draws its masks from another random stream
    plain = tiny_recipe(train__epochs=1, distill__baseline=False, teacher__model__args={"channels": [8], "hidden": 16, "dropout": 0.0})
    eager = run_recipe(tmp_path / "eager", plain)
    compiled = run_recipe(tmp_path / "compiled", plain | {"engine": {"compile": True}})
    for stage in ("teacher", "student"):
        a, b = weights(tmp_path / "eager", stage), weights(tmp_path / "compiled", stage)
        assert a.keys() == b.keys()  # the compiled callables live in the task: exported names do not change
    # the MLP student matches closely; the teacher's conv bias before BatchNorm (zero gradient in exact
    # arithmetic, cancelled by the BN) drifts with rounding, so the teacher is compared by its predictions
    a, b = weights(tmp_path / "eager", "student"), weights(tmp_path / "compiled", "student")
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)  # measured: max difference 2e-4
    assert [row["test_acc"] for row in eager["models"]] == [row["test_acc"] for row in compiled["models"]]


def test_compile_with_hooked_layers_is_refused(tmp_path):
    recipe = tiny_recipe(engine={"compile": True}, distill__terms=[{"loss": "rkd"}])
    with pytest.raises(PotstillError, match="engine.compile: the loss terms hook layers"):
        run_recipe(tmp_path / "run", recipe)
