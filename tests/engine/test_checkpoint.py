import json
import os
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from potstill.engine import checkpoint as ckpt
from potstill.errors import PotstillError


def test_tensors_and_header_round_trip(tmp_path):
    path = tmp_path / "a.safetensors"
    ckpt.save_tensors(path, {"w": torch.arange(6.0).view(2, 3)}, {"epoch": 3, "note": "x"})
    tensors, header = ckpt.load_tensors(path)
    assert torch.equal(tensors["w"], torch.arange(6.0).view(2, 3)) and header == {"epoch": 3, "note": "x"}


def test_written_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        ckpt.atomic_write(tmp_path / "x.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644


def test_tied_weights_can_be_saved(tmp_path):
    """Catches: a save that refuses shared storage, or that drops the second name of a tied
    weight (as safetensors' save_model does), or a load that breaks the tie in the model."""
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    model[1].weight = model[0].weight  # tied: one Parameter under two names
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(9.0).view(3, 3))
    ckpt.save_tensors(tmp_path / "t.safetensors", model.state_dict(), {})
    tensors, _ = ckpt.load_tensors(tmp_path / "t.safetensors")
    assert sorted(tensors) == ["0.weight", "1.weight"]
    assert torch.equal(tensors["0.weight"], torch.arange(9.0).view(3, 3)) and torch.equal(tensors["1.weight"], tensors["0.weight"])
    fresh = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    fresh[1].weight = fresh[0].weight
    ckpt.load_into(fresh, tensors, "t.safetensors", "test")
    assert fresh[1].weight is fresh[0].weight and torch.equal(fresh[1].weight, torch.arange(9.0).view(3, 3))


def test_a_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    ckpt.save_tensors(path, {"w": torch.zeros(2)}, {"epoch": 1})
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        ckpt.save_tensors(path, {"w": torch.ones(2)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_damaged_file_gives_a_readable_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    ckpt.save_tensors(path, {"w": torch.zeros(100)}, {})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(PotstillError, match="not a readable safetensors file"):
        ckpt.load_tensors(path)
    pickle_like = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pickle_like)
    with pytest.raises(PotstillError, match="not a readable safetensors file"):
        ckpt.load_tensors(pickle_like)


def test_architecture_mismatch_lists_the_keys():
    model = nn.Sequential(nn.Linear(4, 3))
    state = {"0.weight": torch.zeros(5, 4), "0.bias": torch.zeros(5), "extra": torch.zeros(1)}
    with pytest.raises(PotstillError) as error:
        ckpt.load_into(model, state, "teacher.safetensors", "teacher")
    message = str(error.value)
    assert "unexpected: extra" in message and "0.weight (5, 4) vs (3, 4)" in message and "teacher's model" in message


def assert_same_optimizer_state(restored: dict, original: dict) -> None:
    """Every entry of every parameter's state (tensors bit for bit, with dtype) and every group setting
    (as JSON: the header stores Adam's betas tuple as a list, which the optimizer reads the same)."""
    assert json.loads(json.dumps(restored["param_groups"])) == json.loads(json.dumps(original["param_groups"]))
    assert restored["state"].keys() == original["state"].keys()
    for param_id, entries in original["state"].items():
        assert restored["state"][param_id].keys() == entries.keys(), param_id
        for key, value in entries.items():
            other = restored["state"][param_id][key]
            if isinstance(value, torch.Tensor):
                assert other.dtype == value.dtype and torch.equal(other, value), (param_id, key)
            else:
                assert other == value, (param_id, key)


def trained(optimizer_class, **settings):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    groups = [{"params": model[0].parameters()}, {"params": [*model[1].parameters(), *model[2].parameters()], "lr": 0.05}]
    optimizer = optimizer_class(groups, **settings)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[0.1, 0.05], total_steps=10)
    return model, optimizer, scheduler


def train_steps(model, optimizer, scheduler, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("optimizer_class,settings", [
    (torch.optim.AdamW, {"amsgrad": True, "weight_decay": 0.01}),  # step, exp_avg, exp_avg_sq, max_exp_avg_sq
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),  # momentum_buffer
])
def test_training_state_round_trip_restores_optimizer_scheduler_and_rng(tmp_path, optimizer_class, settings):
    """Catches: any optimizer tensor lost or mixed up in the checkpoint (a second moment, the step
    count, the state of every parameter but the first, a second parameter group's settings), the
    non-tensor state, the scheduler position, the RNG state. Training on from the restored state
    must give the same weights bit for bit."""
    model, optimizer, scheduler = trained(optimizer_class, **settings)
    train_steps(model, optimizer, scheduler, 3)
    ckpt.save_training_state(tmp_path / "c.safetensors", model, optimizer, scheduler, {"epochs_done": 3})
    expected_next = torch.rand(3)

    fresh, fresh_optimizer, fresh_scheduler = trained(optimizer_class, **settings)
    header = ckpt.load_training_state(tmp_path / "c.safetensors", fresh, fresh_optimizer, fresh_scheduler)
    assert header["epochs_done"] == 3
    assert torch.equal(torch.rand(3), expected_next)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    original = optimizer.state_dict()
    assert len(original["state"]) == 6 and len(original["param_groups"]) == 2  # every parameter has state
    assert_same_optimizer_state(fresh_optimizer.state_dict(), original)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))

    torch.manual_seed(1)
    train_steps(model, optimizer, scheduler, 2)
    torch.manual_seed(1)
    train_steps(fresh, fresh_optimizer, fresh_scheduler, 2)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


UNPICKLERS = re.compile(r"\b(import pickle|from pickle|pickle\.loads?|cloudpickle|dill\.|joblib\.load|allow_pickle=True|"
                        r"weights_only=False|torch\.serialization\.load)")


def test_no_pickle_loading_anywhere_in_the_package():
    """Catches: a loader that can unpickle (pickle itself, np.load without allow_pickle=False,
    torch.load without weights_only=True) anywhere in src/, where a user's file could reach it."""
    source = Path(__file__).parents[2] / "src" / "potstill"
    for file in source.rglob("*.py"):
        for number, text in enumerate(file.read_text().splitlines(), 1):
            line, where = text.split("  # ")[0], f"{file}:{number}"  # code, not its comment
            assert not UNPICKLERS.search(line), where
            if re.search(r"\b(np|numpy)\.load\(", line):
                assert "allow_pickle=False" in line, where  # NumPy's guard against pickled arrays
            if "torch.load(" in line:
                assert "weights_only=True" in line, where
