"""Every registered loss: finite scalar, gradients reach the student, never the frozen teacher."""

import pytest
import torch
from torch import nn

from potstill.engine.task import WeightedTerm
from potstill.knowledge import LOSSES, create_loss
from potstill.schedules import WeightSchedule
from potstill.schemes import OfflineDistillation


def small_net(seed: int, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, classes))


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("batch_size,classes", [(1, 2), (7, 5), (32, 100)])
def test_loss_is_a_finite_scalar(name, batch_size, classes):
    loss = create_loss(name)
    student = torch.randn(batch_size, classes, requires_grad=True)
    batch = {"target": torch.randint(0, classes, (batch_size,)), "index": torch.arange(batch_size)}
    value = loss({"logits": student}, {"logits": torch.randn(batch_size, classes)}, batch)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_reach_the_student_and_never_the_teacher(name, mode):
    student, teacher = small_net(0), small_net(1)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    task = OfflineDistillation(student, teacher, [WeightedTerm(name, create_loss(name), 1.0, WeightSchedule())], alpha=0.0)
    task.module.train(mode == "train")
    batch = {"input": torch.randn(8, 1, 3, 4), "target": torch.randint(0, 5, (8,)), "index": torch.arange(8)}
    result = task.step(batch, progress=0.0)
    sum(result.terms.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    optimizer = torch.optim.SGD(task.module.parameters(), lr=0.1)
    optimizer.step()
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training  # frozen teacher stays in eval mode
