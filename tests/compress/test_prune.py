"""Pruning + distillation: structured pruning really removes channels, unstructured keeps shapes and
zeros, a pruned run saves, reloads, evaluates and resumes, and every bad input is one line."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

import potstill
from potstill import config
from potstill.cli.main import main
from potstill.compress import prune_model
from potstill.compress.prune import sparsity
from potstill.engine.checkpoint import load_tensors, save_tensors
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.errors import PotstillError
from potstill.models import create_model
from potstill.pipeline import Runner
from potstill.recipe import Recipe
from tests.conftest import write_recipe

pytest.importorskip("torch_pruning")
SHAPE = (1, 8, 8)
INPUTS = torch.rand(4, *SHAPE)
CNN = {"channels": [8, 16], "hidden": 32, "dropout": 0.0}


def model(name: str, **args) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, input_shape=SHAPE, num_classes=10, **args).eval()


def widths(net: nn.Module) -> dict[str, int]:
    return {name: getattr(module, "out_channels", getattr(module, "out_features", None))
            for name, module in net.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}


def count(net: nn.Module) -> int:
    return sum(parameter.numel() for parameter in net.parameters())


@pytest.mark.parametrize("name,args,ratio", [("cnn", CNN, (0.2, 0.32)), ("mlp", {"hidden": [64, 32]}, (0.4, 0.55))])
def test_structured_pruning_removes_channels_and_keeps_the_classes(name, args, ratio):
    original = model(name, **args)
    before = {key: value.clone() for key, value in original.state_dict().items()}
    pruned, report = prune_model(original, 0.5, example_inputs=INPUTS[:2])
    assert all(torch.equal(before[key], value) for key, value in original.state_dict().items())  # the caller's model
    old, new = widths(original), widths(pruned)
    assert new["classifier"] == 10
    assert all(new[layer] == old[layer] // 2 for layer in old if layer != "classifier"), new
    assert ratio[0] < count(pruned) / count(original) < ratio[1]  # hidden x hidden weights drop to a quarter
    assert report["params_before"] == count(original) and report["params_after"] == count(pruned)
    assert report["line"].startswith(f"structured 50%: {count(original):,} -> {count(pruned):,} parameters (")
    with torch.no_grad():
        logits = pruned(INPUTS)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


def test_unstructured_pruning_keeps_shapes_and_its_zeros_through_training():
    original = model("cnn", **CNN)
    pruned, report = prune_model(original, 0.75, "unstructured", example_inputs=INPUTS[:2])
    assert {k: v.shape for k, v in pruned.state_dict().items()} == {k: v.shape for k, v in original.state_dict().items()}
    assert report["sparsity"] == pytest.approx(0.75, abs=0.01) and report["params_after"] == report["params_before"]
    assert not (pruned.classifier.weight == 0).any()  # the classifier is left whole
    student = copy.deepcopy(pruned).train()  # the baseline's copy: tensor hooks are not copied, the layer hook is
    optimizer = torch.optim.AdamW(student.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(student(INPUTS), torch.arange(4)).backward()
        optimizer.step()
    assert sparsity(student) == report["sparsity"]
    assert not torch.equal(student.block1.conv.weight, pruned.block1.conv.weight)  # the kept weights did train


def test_a_users_own_module_is_pruned_and_distilled_from_python(tmp_path):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
            self.head = nn.Linear(48, 10)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))

    torch.manual_seed(0)
    teacher = Net()
    student, report = prune_model(teacher, 0.5, example_inputs=INPUTS[:2])
    assert student.features[0].out_channels == 6 and student.head.in_features == 24 and teacher.head.in_features == 48
    images, labels = torch.rand(64, *SHAPE), torch.arange(64) % 10
    result = potstill.distill(teacher, student, (images, labels), (images, labels), epochs=1, lr=1e-3, quiet=True,
                              teacher_check="off", run_dir=tmp_path / "run", report={"latency_repeats": 1})
    assert result.summary["models"][2]["params"] == report["params_after"] < result.summary["models"][0]["params"]
    loaded = potstill.load_model(tmp_path / "run", model=Net())  # your own class: the recorded pruning is redone
    with torch.no_grad():
        assert torch.allclose(loaded(images[:4]), result.student(images[:4]), atol=1e-6)


def test_a_model_the_pruner_cannot_prune_is_named():
    class Fixed(nn.Module):  # reads the conv map through a reshape to a fixed size: the tracer cannot follow it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc, self.head = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(512, 16), nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.fc(self.conv(x).reshape(-1, 512)))

    with pytest.raises(PotstillError, match="fails at layer 'fc'"):
        prune_model(Fixed(), 0.5, example_inputs=INPUTS[:2])
    with pytest.raises(PotstillError, match="no Conv or Linear layer besides '1'"):
        prune_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), 0.5, example_inputs=INPUTS[:2])
    with pytest.raises(PotstillError, match="removes no channel"):
        prune_model(model("mlp", hidden=[1]), 0.5, example_inputs=INPUTS[:2])
    for amount in (0, 1, 1.5, -0.1):
        with pytest.raises(PotstillError, match="strictly between 0 and 1"):
            prune_model(model("mlp", hidden=[4]), amount, example_inputs=INPUTS[:2])


def digits_recipe(**student_changes) -> dict:
    return {
        "name": "prune", "seed": 0,
        "data": {"name": "digits", "batch_size": 64, "train_size": 300, "test_size": 200},
        "teacher": {"model": {"name": "cnn", "args": dict(CNN)}, "train": {"epochs": 2, "lr": 0.01}},
        "student": {"name": "cnn", "args": dict(CNN), "prune": {"amount": 0.5}, **student_changes},
        "train": {"epochs": 2, "lr": 0.003},
        "distill": {"teacher_check": "warn"},
        "report": {"latency_repeats": 1, "latency_batch_size": 8},
    }


def run_recipe(folder, data, resume=False, callbacks=None):
    run = RunDir(folder)
    run.create(resume=resume)
    if not resume:
        (folder / "recipe.yaml").write_text("name: saved\n")
    runner = Runner(config.validate(data, Recipe), run, Reporter(quiet=True), resume=resume, callbacks=callbacks)
    return runner, runner.run_distill()


def test_prune_then_kd_end_to_end_saves_reloads_evaluates_and_resumes(tmp_path, capsys):
    path = write_recipe(tmp_path, digits_recipe())
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "cli")]) == 0
    assert "prune  structured 50%: " in capsys.readouterr().err
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    rows = {row["role"]: row for row in summary["models"]}
    assert list(rows) == ["teacher", "baseline", "student"]
    assert rows["student"]["params"] == rows["baseline"]["params"] < rows["teacher"]["params"] / 2
    assert rows["student"]["architecture"]["prune"]["method"] == "structured" and "prune" not in rows["teacher"]["architecture"]
    assert main(["eval", str(tmp_path / "cli"), "--quiet"]) == 0
    evaluated = json.loads((tmp_path / "cli" / "eval.json").read_text())["models"]
    assert [row["test_acc"] for row in evaluated] == [row["test_acc"] for row in summary["models"]]

    class Stop(Exception):
        pass

    def interrupt(stage, epochs_done, record):
        if stage == "student" and epochs_done == 1:
            raise Stop

    whole, _ = run_recipe(tmp_path / "whole", digits_recipe())
    with pytest.raises(Stop):
        run_recipe(tmp_path / "cut", digits_recipe(), callbacks=[interrupt])
    run_recipe(tmp_path / "cut", digits_recipe(), resume=True)  # the pruned skeleton is rebuilt before loading
    for stage in ("baseline", "student"):
        first, second = (load_tensors(tmp_path / run / stage / "model.safetensors")[0] for run in ("whole", "cut"))
        assert all(torch.equal(first[key], second[key]) for key in first), stage
    loaded = potstill.load_model(tmp_path / "whole")  # the history replayed on a fresh cnn, then the weights
    images = torch.rand(4, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(loaded(images), whole.models["student"].eval()(images), atol=1e-6)


def test_unstructured_run_from_a_weights_file_reports_its_sparsity(tmp_path):
    source = tmp_path / "source.safetensors"
    save_tensors(source, create_model("cnn", input_shape=SHAPE, num_classes=10, **CNN).state_dict(), {})
    data = digits_recipe(prune={"amount": 0.6, "method": "unstructured", "source": str(source)})
    data["distill"]["baseline"] = False
    _, summary = run_recipe(tmp_path / "run", data)
    student = summary["models"][1]
    assert student["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert student["params"] == summary["models"][0]["params"]  # same shapes


def assert_user_error(capsys, argv, *fragments):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.mark.parametrize("change,fragments", [
    ({"student.prune.amount": 0}, ["amount: 0", "strictly between 0 and 1"]),
    ({"student.prune.amount": 1}, ["amount: 1", "strictly between 0 and 1"]),
    ({"student.prune.amount": 1.5}, ["student.prune.amount"]),
    ({"student.prune.amount": -0.1}, ["student.prune.amount"]),
    ({"student.init": {}}, ["prune", "remove init or prune"]),
    ({"teacher.model.prune": {"amount": 0.5}}, ["teacher.prune: only the student can be pruned"]),
    ({"student.prune.source": "missing/run"}, ["student.prune.source", "missing/run"]),
    ({"student.args.hidden": 64}, ["student.prune.source: the teacher (cnn", "fc1.weight (64, 64) vs (32, 64)"]),
    ({"scheme": "born_again"}, ["student.prune: scheme 'born_again' does not start its student from trained weights"]),
])
def test_bad_pruning_input_is_one_line(tmp_path, capsys, change, fragments):
    data = digits_recipe()
    for dotted, value in change.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = write_recipe(tmp_path, data)
    assert_user_error(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run")], *fragments)
    assert not (tmp_path / "run").exists()


def test_a_source_file_of_another_architecture_is_refused(tmp_path, capsys):
    other = create_model("cnn", input_shape=SHAPE, num_classes=10, channels=[4])
    save_tensors(tmp_path / "other.safetensors", other.state_dict(), {})
    path = write_recipe(tmp_path, digits_recipe(prune={"amount": 0.5, "source": str(tmp_path / "other.safetensors")}))
    assert_user_error(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run")],
                      "other.safetensors is not the student's architecture", "block1.conv.weight (8, 1, 3, 3) vs (4, 1, 3, 3)")
