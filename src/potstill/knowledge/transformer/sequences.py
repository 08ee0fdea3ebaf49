"""What the transformer losses share: which tokens are real, shape checks with messages that name
the fix, the mean squared error over real tokens, and one learned width projection."""

from __future__ import annotations

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.knowledge.base import Probe

HIDDEN = "hidden states (B, L, D)"
ATTENTION = "attention maps (B, H, L, L)"


def token_mask(loss: str, batch: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """(B, L) bool, True at real tokens: batch["attention_mask"] (1 = token, 0 = padding), else all.
    `features` is (B, L, D) or (B, H, L, L); its batch size and length must be the mask's."""
    size, length = features.shape[0], features.shape[-2]
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones(size, length, dtype=torch.bool, device=features.device)
    if tuple(mask.shape) != (size, length):
        raise PotstillError(
            f"loss '{loss}': batch['attention_mask'] has shape {tuple(mask.shape)} but the tapped features "
            f"cover (B, L) = ({size}, {length}); tap layers whose outputs follow the input tokens"
        )
    return mask.to(device=features.device, dtype=torch.bool)


def check_sequences(loss: str, student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    """Both tensors are `what` (HIDDEN or ATTENTION) for the same batch of the same tokens."""
    ndim = 3 if what == HIDDEN else 4
    if student.ndim != ndim or teacher.ndim != ndim:
        raise PotstillError(
            f"loss '{loss}' needs {what} from both models, got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}; it is for transformers (pair their embedding, layer or attention outputs)"
        )
    if student.shape[0] != teacher.shape[0] or student.shape[-2] != teacher.shape[-2]:
        raise PotstillError(
            f"loss '{loss}' compares token by token, but the student's sequence is {tuple(student.shape)} and "
            f"the teacher's {tuple(teacher.shape)} (different lengths); give both models the same tokens: "
            "one tokenizer (or the same vocabulary) and the same max_length and padding"
        )


def rows_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of (s - t)^2 over rows and features of (N, D) tensors: the real tokens, selected with
    `x[mask]`, so padded values (whatever they hold) take no part, not even in gradients."""
    return (student - teacher).pow(2).sum() / max(student.numel(), 1)  # no real token: 0, not NaN


def width_projection(probe: Probe, indices: range | list[int]) -> nn.Module:
    """One nn.Linear (student width -> teacher width) shared by the pairs `indices`, or Identity
    when the widths are equal. Every pair must have the same two widths."""
    student_widths = {probe.student[i].shape[-1] for i in indices}
    teacher_widths = {probe.teacher[i].shape[-1] for i in indices}
    if len(student_widths) != 1 or len(teacher_widths) != 1:
        raise PotstillError(
            f"loss '{probe.loss}' learns one projection for all its layer pairs, but the widths differ between pairs "
            f"(student {sorted(student_widths)}, teacher {sorted(teacher_widths)}); pair layers of one width per model"
        )
    (student_width,), (teacher_width,) = student_widths, teacher_widths
    if student_width == teacher_width:
        return nn.Identity()
    if not probe.adapters:
        raise PotstillError(
            f"loss '{probe.loss}' maps student width {student_width} onto teacher width {teacher_width} with a learned "
            "projection, and distill.adapters is false; set distill.adapters: true or use models of equal width"
        )
    return nn.Linear(student_width, teacher_width)  # W_h / W_e, with a bias as in TinyBERT's released `fit_dense`
