"""Every registered loss, wired to real tapped layers: a finite scalar for several shapes and
batch sizes; gradients reach the student and every trainable adapter, never the frozen teacher;
train and eval mode; the same value after a save/load of the run's state."""

import pytest
import torch

from potstill.engine.checkpoint import load_into, load_tensors, save_tensors
from potstill.knowledge import LOSSES, DistillationLoss
from potstill.schemes import Preparation
from tests.knowledge.nets import SHAPES, make_batch, make_task


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("batch_size", [2, 16])
def test_loss_is_a_finite_scalar(name, shape, batch_size):
    task, term = make_task(name, shape, batch_size)
    result = task.step(make_batch(batch_size, seed=1), progress=0.0)
    value = result.terms[name]
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in task.module.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_reach_the_student_and_adapters_never_the_teacher(name, mode):
    task, term = make_task(name)
    teacher = task.teacher
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    task.module.train(mode == "train")
    result = task.step(make_batch(8, seed=1), progress=0.0)
    result.terms[name].backward()
    student = task.model
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()), "no gradient reached the student"
    for label, parameter in term.loss.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"adapter {label} got no gradient"
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    torch.optim.SGD([p for p in task.module.parameters() if p.requires_grad], lr=0.1).step()
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training  # a frozen teacher stays in eval mode


@pytest.mark.parametrize("name", LOSSES.names())
def test_state_survives_a_save_and_load(name, tmp_path):
    task, _ = make_task(name)
    optimizer = torch.optim.SGD([p for p in task.module.parameters() if p.requires_grad], lr=0.05)
    for step in range(2):  # move adapters and any memory away from their initial values
        optimizer.zero_grad()
        sum(task.step(make_batch(8, seed=step), progress=0.0).terms.values()).backward()
        optimizer.step()
    save_tensors(tmp_path / "module.safetensors", task.module.state_dict(), {"stage": "student"})
    restored, _ = make_task(name)
    tensors, _ = load_tensors(tmp_path / "module.safetensors")
    load_into(restored.module, tensors, "module.safetensors", "student")
    for model in (task.module, restored.module):
        model.eval()
    batch = make_batch(8, seed=5)
    with torch.no_grad():
        original, reloaded = task.step(batch, 1.0).terms[name], restored.step(batch, 1.0).terms[name]
    assert torch.allclose(original, reloaded, atol=1e-6)


PREPARING = [n for n in LOSSES.names() if LOSSES.get(n).preparation_loss is not DistillationLoss.preparation_loss]


@pytest.mark.skipif(not PREPARING, reason="no registered loss has a preparation stage yet")
@pytest.mark.parametrize("name", PREPARING or ["none"])
def test_preparation_trains_only_the_losses_own_modules(name):
    task, term = make_task(name)
    preparation = Preparation(task.teacher, [term])
    value = sum(preparation.step(make_batch(8), 0.0).terms.values())
    assert torch.isfinite(value)
    value.backward()
    assert any(p.grad is not None for p in term.loss.parameters())
    assert all(p.grad is None for p in task.model.parameters()) and all(p.grad is None for p in task.teacher.parameters())
