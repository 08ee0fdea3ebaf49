"""Teacher assistants: each link is taught by the one before; the report compares the chain with direct KD."""

import numpy
import pytest
import torch

from potstill.engine.checkpoint import load_tensors
from potstill.schemes.offline import OfflineDistillation
from tests.engine.test_resume import run_recipe, same
from tests.schemes.helpers import scheme_recipe


def test_chain_teacher_assistant_student_and_direct_kd(tmp_path, monkeypatch):
    taught = []  # (student parameter count, teacher state) per transfer
    original = OfflineDistillation.__init__

    def remember(self, student, teacher, *args, **kwargs):
        taught.append((sum(p.numel() for p in student.parameters()), {k: v.clone() for k, v in teacher.state_dict().items()}))
        original(self, student, teacher, *args, **kwargs)

    monkeypatch.setattr(OfflineDistillation, "__init__", remember)
    summary = run_recipe(tmp_path, scheme_recipe("assistant"))
    rows = {row["role"]: row for row in summary["models"]}
    assert list(rows) == ["teacher", "baseline", "direct", "assistant1", "student"]
    assert rows["direct"]["title"] == "distilled directly" and rows["student"]["title"] == "distilled via assistants"
    assert summary["assistant_gain_points"] == round(100 * (rows["student"]["test_acc"] - rows["direct"]["test_acc"]), 3)
    teacher = load_tensors(tmp_path / "teacher" / "model.safetensors")[0]
    assistant = load_tensors(tmp_path / "assistant1" / "model.safetensors")[0]
    assert len(taught) == 3  # direct, assistant1, student
    assert same(taught[0][1], teacher) and same(taught[1][1], teacher)  # the teacher teaches direct KD and the assistant
    assert same(taught[2][1], assistant)  # the assistant, as saved, teaches the student
    assert taught[0][0] == taught[2][0] < taught[1][0]  # same student both ways; the assistant is larger
    # the direct and the chained student start from the same weights and differ only by their teacher
    direct, chained = load_tensors(tmp_path / "direct" / "model.safetensors")[0], load_tensors(tmp_path / "student" / "model.safetensors")[0]
    assert direct.keys() == chained.keys() and not same(direct, chained)


def test_each_frozen_teacher_of_the_chain_gets_its_own_cache(tmp_path):
    recipe = scheme_recipe("assistant", data__hflip=False, scheme__args={"compare_direct": False})
    run_recipe(tmp_path, recipe)
    assert (tmp_path / "teacher_cache" / "manifest.json").is_file()  # the recipe's teacher
    assert (tmp_path / "teacher_cache_assistant1" / "manifest.json").is_file()
    assert not (tmp_path / "direct").exists()
    teacher, assistant = (torch.from_numpy(numpy.load(next((tmp_path / folder).glob("shard-00000-*.npy"))))
                          for folder in ("teacher_cache", "teacher_cache_assistant1"))
    assert teacher.shape == assistant.shape and teacher.ndim == 3  # (samples, views, classes)
    assert not torch.equal(teacher, assistant)  # each holds its own teacher's logits


@pytest.mark.parametrize("scheme", ["assistant", "born_again"])
def test_chains_of_frozen_teachers_take_feature_losses(tmp_path, scheme):
    """Each link pairs its own layers (pairs: auto), so a feature loss works along the chain."""
    recipe = scheme_recipe(scheme, student={"name": "small_cnn", "args": {"channels": [4, 8], "hidden": 8}},
                           distill={"loss": "at", "alpha": 1.0, "beta": None}, train__epochs=1)
    if scheme == "assistant":
        recipe["scheme"]["assistants"] = [{"name": "small_cnn", "args": {"channels": [8, 8], "hidden": 8}}]
    summary = run_recipe(tmp_path, recipe)
    log = (tmp_path / "metrics.jsonl").read_text()
    assert '"at":' in log and summary["final_role"] in {row["role"] for row in summary["models"]}
