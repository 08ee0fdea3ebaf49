"""Tests added for mutants that survived `mutmut run "potstill.engine.checkpoint*"` (issue 13,
docs/testing.md). Each docstring names the mutant(s) it kills (mutmut 3.8 names, as at commit
2155e84); every one was checked by planting the mutant (MUTANT_UNDER_TEST in mutmut's copy) and
seeing the test fail.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from potstill.engine import checkpoint as ckpt
from potstill.errors import PotstillError


class CountingSGD(torch.optim.SGD):
    """SGD that also keeps, per parameter, a plain int (a non-tensor entry, which the checkpoint
    stores in its JSON header) and, in groups marked `dotted`, a tensor under a key with a dot."""

    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for parameter in group["params"]:
                state = self.state[parameter]
                state["count"] = state.get("count", 0) + 1
                if group.get("dotted"):
                    state["slow.avg"] = 0.5 * state.get("slow.avg", torch.zeros_like(parameter)) + 0.5 * parameter.detach()
        return loss


def counting_setup():
    """The weight: momentum, a count and a dotted key; the bias (momentum 0): only the count."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = CountingSGD([{"params": [model.weight], "momentum": 0.9, "dotted": True}, {"params": [model.bias]}], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    return model, optimizer, scheduler


def test_non_tensor_and_dotted_optimizer_state_round_trips(tmp_path):
    """Kills checkpoint.x__unflatten_optimizer__mutmut_18 .. _23 (the non-tensor state dropped or
    filed under a wrong key, _20 and _22 included: they fail only for a parameter whose state has
    no tensor; torch's AdamW and SGD keep only tensors, so the round-trip test never had any) and _6, _7, _9 (`split(".", 2)` -> `split(".")`, `rsplit(".", 2)`, `split(".", 3)`:
    a state key with a dot in it is cut apart)."""
    model, optimizer, scheduler = counting_setup()
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
    ckpt.save_training_state(tmp_path / "c.safetensors", model, optimizer, scheduler, {})
    fresh, fresh_optimizer, fresh_scheduler = counting_setup()
    ckpt.load_training_state(tmp_path / "c.safetensors", fresh, fresh_optimizer, fresh_scheduler)
    restored, original = fresh_optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert restored.keys() == original.keys() == {0, 1}
    assert set(restored[0]) == {"count", "momentum_buffer", "slow.avg"} and restored[1] == {"count": 3}
    assert restored[0]["count"] == 3 and torch.equal(restored[0]["slow.avg"], original[0]["slow.avg"])
    assert torch.equal(restored[0]["momentum_buffer"], original[0]["momentum_buffer"])


@pytest.mark.parametrize("header", [{"scheduler": {}}, {"optimizer": {"param_groups": [], "scalars": {}}}])
def test_a_file_without_optimizer_or_scheduler_state_is_not_resumed(tmp_path, header):
    """Kills checkpoint.x_load_training_state__mutmut_3 (`or` -> `and`: a file with only one of
    the two sections passed the check and failed later with another message or a KeyError) and
    _10 (the message dropped)."""
    model, optimizer, scheduler = counting_setup()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt.save_tensors(tmp_path / "c.safetensors", tensors, header)
    with pytest.raises(PotstillError, match="is not a potstill training checkpoint; start a new run"):
        ckpt.load_training_state(tmp_path / "c.safetensors", model, optimizer, scheduler)


def test_tensor_names_of_a_damaged_file_is_a_readable_error(tmp_path):
    """Kills checkpoint.x_tensor_names__mutmut_9 (the error's message dropped: "None")."""
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(PotstillError, match=r"broken.safetensors is not a readable safetensors file \(.*\); it is damaged"):
        ckpt.tensor_names(path)


def test_a_checkpoint_of_another_architecture_names_the_file_and_the_run(tmp_path):
    """Kills checkpoint.x_load_training_state__mutmut_15, _16, _27 (the file or the role given to
    `load_into` as None) and _28, _29 (the role renamed): the message must name the checkpoint."""
    model, optimizer, scheduler = counting_setup()
    ckpt.save_training_state(tmp_path / "c.safetensors", model, optimizer, scheduler, {})
    other = nn.Linear(3, 4)
    other_optimizer = CountingSGD(other.parameters(), lr=0.1)
    other_scheduler = torch.optim.lr_scheduler.StepLR(other_optimizer, step_size=2)
    with pytest.raises(PotstillError, match=r"c\.safetensors does not match the run architecture \(wrong shape"):
        ckpt.load_training_state(tmp_path / "c.safetensors", other, other_optimizer, other_scheduler)


def test_a_checkpoint_without_model_tensors_lists_them_as_missing(tmp_path):
    """Kills checkpoint.x_load_training_state__mutmut_22, _24 (no `{}` default for the "model"
    group: a file without model tensors crashed with TypeError instead of naming what is missing)."""
    model, optimizer, scheduler = counting_setup()
    header = {"optimizer": {"param_groups": optimizer.state_dict()["param_groups"], "scalars": {}},
              "scheduler": scheduler.state_dict()}
    ckpt.save_tensors(tmp_path / "c.safetensors", {"rng.cpu": torch.get_rng_state()}, header)
    with pytest.raises(PotstillError, match="missing: weight, bias"):
        ckpt.load_training_state(tmp_path / "c.safetensors", model, optimizer, scheduler)


def test_a_checkpoint_saved_before_the_first_step_resumes(tmp_path):
    """Kills checkpoint.x_load_training_state__mutmut_32, _34 (no `{}` default for the
    "optimizer" group: an optimizer that has not stepped yet has no tensors, and resuming from
    its checkpoint crashed with AttributeError)."""
    model, optimizer, scheduler = counting_setup()
    ckpt.save_training_state(tmp_path / "c.safetensors", model, optimizer, scheduler, {"epochs_done": 0})
    fresh, fresh_optimizer, fresh_scheduler = counting_setup()
    header = ckpt.load_training_state(tmp_path / "c.safetensors", fresh, fresh_optimizer, fresh_scheduler)
    assert header["epochs_done"] == 0 and fresh_optimizer.state_dict()["state"] == {}

