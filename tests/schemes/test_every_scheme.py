"""Every registered scheme: runs end to end, reports its models, and resumes to the same weights."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from potstill.engine.checkpoint import load_tensors
from potstill.schemes import SCHEMES
from tests.engine.test_resume import Stop, run_recipe, same
from tests.schemes.helpers import SCHEME_RECIPES, scheme_recipe

# language-model schemes run on language-model data: their run and exact-resume tests are in tests/lm
LM_SCHEMES = {"gkd": "tests/lm/test_gkd.py", "seq_kd": "tests/lm/test_gkd.py"}


def test_every_registered_scheme_has_a_test_recipe_and_cites_its_paper():
    assert sorted([*SCHEME_RECIPES, *LM_SCHEMES]) == SCHEMES.names()
    root = Path(__file__).parents[2]
    for name, tests in LM_SCHEMES.items():  # each has its resume test there
        assert f"def test_{name}_resumes_to_the_same_bits" in (root / tests).read_text(), name
    for name in SCHEMES.names():
        assert SCHEMES.describe(name), name
        paper = sys.modules[SCHEMES.get(name).__module__].__doc__
        assert re.search(r"(19|20)\d\d", paper), f"{name}: its module docstring names no paper"


def saved_weights(folder):
    """Every safetensors file a run exported (not checkpoints or caches), by relative path."""
    files = sorted(p for p in folder.rglob("*.safetensors") if p.name != "checkpoint.safetensors" and "teacher_cache" not in str(p))
    return {str(p.relative_to(folder)): load_tensors(p)[0] for p in files}


def last_training_stage(folder):
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])["stage"]


@pytest.mark.parametrize("name", sorted(SCHEME_RECIPES))
def test_scheme_runs_and_resumed_equals_uninterrupted(tmp_path, name):
    recipe = scheme_recipe(name, train__epochs=3)
    summary = run_recipe(tmp_path / "whole", recipe)
    assert summary["scheme"] == name
    roles = [row["role"] for row in summary["models"]]
    assert summary["final_role"] in roles and "baseline" in roles
    assert all(0.0 <= row["test_acc"] <= 1.0 for row in summary["models"])
    assert "distillation_gain_points" in summary
    final_stage = last_training_stage(tmp_path / "whole")

    def interrupt(stage, epochs_done, record):
        if stage == final_stage and epochs_done == 2:
            raise Stop

    with pytest.raises(Stop):
        run_recipe(tmp_path / "cut", recipe, callbacks=[interrupt])
    resumed = run_recipe(tmp_path / "cut", recipe, resume=True)
    whole, cut = saved_weights(tmp_path / "whole"), saved_weights(tmp_path / "cut")
    assert whole.keys() == cut.keys() and len(whole) >= 2
    for path in whole:
        assert same(whole[path], cut[path]), path
    assert [row["test_acc"] for row in resumed["models"]] == [row["test_acc"] for row in summary["models"]]


@pytest.mark.parametrize("name", sorted(SCHEME_RECIPES))
def test_every_exported_file_loads_without_pickle(tmp_path, name):
    run_recipe(tmp_path / "run", scheme_recipe(name, train__epochs=2))
    for path in (tmp_path / "run").rglob("*.safetensors"):
        tensors, _ = load_tensors(path)
        assert all(isinstance(t, torch.Tensor) and torch.isfinite(t.float()).all() for t in tensors.values()), path


@pytest.mark.parametrize("name,skipped", [("online", []), ("born_again", []), ("byot", ["exit 1 (block1)"]),
                                          ("multi_teacher", ["teachers combined (confidence)"])])
def test_eval_re_measures_every_row_with_its_own_weights_file(tmp_path, capsys, name, skipped):
    from potstill.cli.main import main

    recipe = scheme_recipe(name, train__epochs=2)
    run_recipe(tmp_path, recipe)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["eval", str(tmp_path), "--quiet"]) == 0
    saved = {row["role"]: row for row in json.loads((tmp_path / "summary.json").read_text())["models"]}
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["not_re_measured"] == skipped
    assert len(again["models"]) == len(saved) - len(skipped)
    for row in again["models"]:
        assert row["test_acc"] == pytest.approx(saved[row["role"]]["test_acc"]) and row["title"] == saved[row["role"]]["title"]
