import os
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
    shared = torch.ones(3)
    ckpt.save_tensors(tmp_path / "t.safetensors", {"a": shared, "b": shared}, {})


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


def test_training_state_round_trip_restores_optimizer_scheduler_and_rng(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10)
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    ckpt.save_training_state(tmp_path / "c.safetensors", model, optimizer, scheduler, {"epochs_done": 3})
    expected_next = torch.rand(3)

    fresh = nn.Linear(3, 2)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    fresh_scheduler = torch.optim.lr_scheduler.OneCycleLR(fresh_optimizer, max_lr=0.1, total_steps=10)
    header = ckpt.load_training_state(tmp_path / "c.safetensors", fresh, fresh_optimizer, fresh_scheduler)
    assert header["epochs_done"] == 3
    assert torch.equal(torch.rand(3), expected_next)
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()))


def test_no_pickle_loading_anywhere_in_the_package():
    source = Path(__file__).parents[2] / "src" / "potstill"
    for file in source.rglob("*.py"):
        text = file.read_text().replace("allow_pickle=False", "")  # NumPy's guard against pickled arrays
        assert "pickle" not in text.replace("never unpickles", "").replace("unpickling", "").replace("pickles", ""), file
        assert "torch.load(" not in text or "weights_only=True" in text, file
