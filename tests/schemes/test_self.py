"""Self-distillation: BYOT heads, born-again generations, earlier-epoch teachers."""

import pytest
import torch
from torch import nn

import potstill
from potstill import config
from potstill.engine.checkpoint import load_tensors
from potstill.engine.metrics import accuracy, predict
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.errors import PotstillError
from potstill.knowledge.wiring import build_terms
from potstill.model_io import call_model
from potstill.models import create_model
from potstill.pipeline import Runner
from potstill.recipe import DistillSpec, Recipe
from potstill.schemes.byot import EarlyExit, ExitHead, SelfDistillation
from potstill.schemes.offline import OfflineDistillation
from potstill.schemes.snapshot import SnapshotDistillation
from tests.engine.test_resume import run_recipe, same
from tests.schemes.helpers import CNN_STUDENT, scheme_recipe


def runner_for(folder, recipe):
    run = RunDir(folder)
    run.create(resume=False)
    return Runner(config.validate(recipe, Recipe), run, Reporter(quiet=True))


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", input_shape=(1, 8, 8), num_classes=4, channels=[4, 8], hidden=8)


def kd_terms(temperature=3.0):
    return build_terms(DistillSpec(loss="kd", temperature=temperature, beta=0.3), epochs=1)


def batch(size=6):
    torch.manual_seed(1)
    return {"input": torch.randn(size, 1, 8, 8), "target": torch.randint(0, 4, (size,)), "index": torch.arange(size)}


# ---- BYOT ---------------------------------------------------------------------------------------


def byot_task(hint_weight=0.03):
    student = tiny_cnn()
    heads = {"exit1": ExitHead((4, 4, 4), (8, 2, 2), 4)}  # block1 maps (4, 4, 4) -> block2's (8, 2, 2)
    return SelfDistillation(student, heads, ["block1"], "block2", kd_terms(), alpha=0.7, hint_weight=hint_weight), student


def test_byot_kd_and_hint_train_the_head_and_shallow_trunk_never_the_deeper_teacher():
    task, student = byot_task()
    result = task.step(batch(), 0.0)
    (result.terms["exit1_kd"] + result.terms["exit1_hint"]).backward()
    head = task.heads["exit1"]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.bottleneck.parameters() if p.ndim > 1)
    assert student.block1.conv.weight.grad.abs().sum() > 0  # the shallow section learns from the deeper one
    # the deepest section and classifier are the teacher here: detached
    for module in (student.block2, student.fc1, student.classifier):
        assert all(p.grad is None for p in module.parameters())


def test_byot_deepest_classifier_learns_from_labels_only():
    task, _ = byot_task()
    result = task.step(batch(), 0.0)
    assert set(result.terms) == {"ce", "exit1_ce", "exit1_kd", "exit1_hint"}
    assert result.weights == {"ce": 1.0, "exit1_ce": 0.7, "exit1_kd": 0.3, "exit1_hint": 0.03}
    result.terms["ce"].backward()
    assert all(p.grad is None for p in task.heads.parameters())


def test_early_exit_runs_the_trunk_to_the_exit_then_the_head():
    task, student = byot_task()
    data = {"input": batch()["input"]}
    exit_model = EarlyExit(student, task.heads["exit1"], "block1").eval()
    student.eval()
    with torch.no_grad():
        expected = task.heads["exit1"](student.block1(data["input"]))[1]
        assert torch.allclose(call_model(exit_model, data), expected)
    called = []
    handle = student.classifier.register_forward_hook(lambda *args: called.append(1))
    with torch.no_grad():
        call_model(exit_model, data)
    handle.remove()
    assert not called  # nothing after the exit ran
    assert exit_model.used_parameters(data) < sum(p.numel() for p in student.parameters()) + sum(p.numel() for p in task.heads.parameters())


def test_byot_heads_are_removable_and_the_trunk_predicts_alone(tmp_path):
    runner = runner_for(tmp_path, scheme_recipe("byot"))
    summary = runner.run_distill()
    rows = {row["role"]: row for row in summary["models"]}
    assert list(rows) == ["baseline", "exit1", "student"]
    assert rows["exit1"]["title"] == "exit 1 (block1)" and rows["exit1"]["params"] < rows["student"]["params"]
    assert rows["exit1"]["latency_ms"] > 0
    # model.safetensors is the plain student architecture: heads removed, it loads and predicts alone
    splits = runner.bench.splits
    plain = create_model(CNN_STUDENT["name"], input_shape=splits.input_shape, num_classes=splits.num_classes, **CNN_STUDENT["args"])
    potstill.load_model(tmp_path / "student" / "model.safetensors", model=plain)  # weights + recorded preprocessing
    assert accuracy(*predict(plain, runner.bench.eval_loader("test"))) == rows["student"]["test_acc"]
    tensors, _ = load_tensors(tmp_path / "student" / "model.safetensors")
    heads, _ = load_tensors(tmp_path / "student" / "heads.safetensors")
    assert heads and all(key.startswith("exit1.") for key in heads)
    assert not any(key.startswith("exit") for key in tensors)


def test_byot_names_a_misspelt_exit(tmp_path):
    recipe = scheme_recipe("byot", scheme__args={"exits": ["blok1"]})
    with pytest.raises(PotstillError, match="no module named 'blok1' .*nearest: block1"):
        run_recipe(tmp_path, recipe)


def test_byot_refuses_an_exit_after_the_deepest_layer(tmp_path):
    recipe = scheme_recipe("byot", scheme__args={"exits": ["block2"], "deepest": "block1"})
    with pytest.raises(PotstillError, match="every exit must come before the deepest layer 'block1'"):
        run_recipe(tmp_path, recipe)


# ---- born-again -------------------------------------------------------------------------------


def test_born_again_generation_k_learns_from_generation_k_minus_1_as_saved(tmp_path, monkeypatch):
    taught_by = []
    original = OfflineDistillation.__init__

    def remember(self, student, teacher, *args, **kwargs):
        taught_by.append({k: v.clone() for k, v in teacher.state_dict().items()})
        original(self, student, teacher, *args, **kwargs)

    monkeypatch.setattr(OfflineDistillation, "__init__", remember)
    recipe = scheme_recipe("born_again", scheme__args={"generations": 3})
    recipe.pop("teacher")  # generation 0 is the student trained alone
    summary = run_recipe(tmp_path, recipe)
    assert [row["role"] for row in summary["models"]] == ["baseline", "gen1", "gen2", "gen3"]
    assert summary["final_role"] == "gen3" and summary["models"][0]["title"] == "student alone (generation 0)"
    saved = [load_tensors(tmp_path / stage / "model.safetensors")[0] for stage in ("baseline", "gen1", "gen2")]
    assert len(taught_by) == 3
    for teacher, generation in zip(taught_by, saved):
        assert same(teacher, generation)
    assert not same(saved[1], saved[2])  # each generation is a new network
    assert summary["distillation_gain_points"] == round(100 * (summary["models"][3]["test_acc"] - summary["models"][0]["test_acc"]), 3)


def test_born_again_with_a_teacher_starts_from_it(tmp_path):
    summary = run_recipe(tmp_path, scheme_recipe("born_again", scheme__args={"generations": 1}))
    assert [row["role"] for row in summary["models"]] == ["teacher", "baseline", "gen1"]


# ---- earlier epochs ---------------------------------------------------------------------------


def test_last_epoch_teacher_is_the_students_weights_at_the_end_of_the_previous_epoch():
    student = tiny_cnn()
    task = SnapshotDistillation(student, kd_terms(), source="last_epoch", start_epoch=1)
    data = batch()
    result = task.step(data, 0.0)
    assert "kd" not in result.terms and result.weights["kd"] == 0.0  # no teacher before start_epoch
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)  # stands for the rest of epoch 0's training
    task.step(data, 0.5)  # the last step of epoch 0 (its forward pass also moves BatchNorm statistics)
    end_of_epoch_0 = {k: v.clone() for k, v in student.state_dict().items()}
    assert not same(task.teacher.model.state_dict(), end_of_epoch_0)  # still epoch 0's first weights
    result = task.step(data, 1.0)  # first step of epoch 1
    assert same(task.teacher.model.state_dict(), end_of_epoch_0) and int(task.teacher.epoch) == 1
    assert result.terms["kd"] > 0
    result.terms["kd"].backward()
    assert all(p.grad is None for p in task.teacher.model.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.ndim > 1)


def test_ema_teacher_averages_weights_and_copies_batchnorm_statistics():
    student = tiny_cnn()
    task = SnapshotDistillation(student, kd_terms(), source="ema", ema_decay=0.9, start_epoch=0)
    start = {k: v.clone() for k, v in student.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student.block1.bn.running_mean.fill_(5.0)
    task.step(batch(), 0.0)
    teacher = task.teacher.model.state_dict()
    weight = "block1.conv.weight"
    assert torch.allclose(teacher[weight], 0.9 * start[weight] + 0.1 * (start[weight] + 1.0))
    assert torch.equal(teacher["block1.bn.running_mean"], torch.full((4,), 5.0))


def test_snapshot_run_reports_a_self_distilled_student(tmp_path):
    summary = run_recipe(tmp_path, scheme_recipe("snapshot", scheme__args={"source": "ema", "start_epoch": 1}))
    assert [row["title"] for row in summary["models"]] == ["student alone", "self-distilled (ema)"]


def test_exit_head_refuses_vectors_before_a_map():
    with pytest.raises(PotstillError, match="pick exits with feature maps"):
        ExitHead((16,), (8, 2, 2), 4)
    assert isinstance(ExitHead((4, 4, 4), (16,), 4).bottleneck[0], nn.AdaptiveAvgPool2d)
