"""Adapters: learned projections from student features to the teacher's shape.

Built from the shapes a dry-run forward pass showed (see `Probe`), so nobody writes channel
counts into a recipe. An adapter is a submodule of its loss: it trains with the student, is saved
in the run's checkpoints and is left out of the exported student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.base import Probe


def resize_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size): average pooling to shrink, bilinear interpolation to grow."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if x.shape[2] >= size[0] and x.shape[3] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def match_spatial(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter-free: pool the larger of two feature maps down to the smaller one's size."""
    s_size, t_size = tuple(student.shape[2:]), tuple(teacher.shape[2:])
    if s_size == t_size:
        return student, teacher
    if s_size[0] * s_size[1] > t_size[0] * t_size[1]:
        return resize_map(student, t_size), teacher
    return student, resize_map(teacher, s_size)


class FeatureAdapter(nn.Module):
    """Student features (B, *s) -> teacher shape (B, *t).

    maps -> maps:     1x1 conv + BatchNorm to the teacher's channels, then resize to its H x W
    maps -> vector:   global average pool, then Linear
    vector -> vector: Linear
    """

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.teacher_shape = tuple(teacher_shape)
        if len(student_shape) == 3 and len(teacher_shape) == 3:
            self.project = nn.Sequential(
                nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1, bias=False),
                nn.BatchNorm2d(teacher_shape[0]),
            )
        elif len(student_shape) in (1, 3) and len(teacher_shape) == 1:
            layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if len(student_shape) == 3 else []
            self.project = nn.Sequential(*layers, nn.Linear(student_shape[0], teacher_shape[0]))
        else:
            raise PotstillError(
                f"no adapter maps student features of shape {tuple(student_shape)} to teacher features of shape "
                f"{tuple(teacher_shape)}; pair layers of the same kind (both feature maps, or both vectors)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        if len(self.teacher_shape) == 3:
            x = resize_map(x, self.teacher_shape[1:])
        return x


def adapter(probe: Probe, index: int, always: bool = False) -> nn.Module:
    """The projection for pair `index`: identity when the shapes already match (unless the method
    always learns one, like FitNets' regressor), else a FeatureAdapter. With adapters disabled,
    equal shapes compare directly and a mismatch is an error that names the pair."""
    student_shape, teacher_shape = tuple(probe.student[index].shape[1:]), tuple(probe.teacher[index].shape[1:])
    if student_shape == teacher_shape and (not always or not probe.adapters):
        return nn.Identity()
    if not probe.adapters:
        raise PotstillError(
            f"loss '{probe.loss}' cannot compare {probe.label(index)} without an adapter, and distill.adapters is false; "
            "set distill.adapters: true or pair layers of equal shape"
        )
    return FeatureAdapter(student_shape, teacher_shape)


def adapters(probe: Probe, always: bool = False) -> nn.ModuleList:
    """One projection per layer pair."""
    return nn.ModuleList(adapter(probe, index, always) for index in range(len(probe.student)))
