"""What every distillation loss looks like."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from potstill.errors import PotstillError
from potstill.registry import Registry

LOSSES = Registry("loss")

# A model's outputs for one batch, as a loss sees them:
#   "logits"   (B, K), always;
#   "features" a list of tapped tensors, one per layer pair of the term (student and teacher
#              lists are aligned: features[i] of both come from pair i), for feature and relation losses.
Outputs = dict

# Which layers an automatic pairing (`pairs: auto`) gives a loss:
#   none          logits only
#   stages        every stage end, paired by relative depth
#   last_stage    the deepest stage end (the last feature map)
#   middle_stage  one stage end in the middle (FitNets' hint/guided layers)
#   embedding     the input of the classifier (the penultimate feature vector)
# and, for transformers (sequences of tokens):
#   embeddings            one pair: the embedding layer's output (B, L, D)
#   layers                the hidden state (B, L, D) of each mapped encoder layer (e.g. TinyBERT's g(m) = m*N/M)
#   attentions            the attention probabilities (B, H, L, L) of each mapped encoder layer
#   last_layer            one pair: the last encoder layer's hidden state (B, L, D)
#   last_attention_value  two pairs from the last layer: attention probabilities (B, H, L, L), then
#                         the value projection's output (B, L, H * d_head)
PAIRINGS = (
    "none", "stages", "last_stage", "middle_stage", "embedding",
    "embeddings", "layers", "attentions", "last_layer", "last_attention_value",
)


@dataclass
class Probe:
    """What one dry-run forward pass (eval mode, no gradients) showed a loss before training:
    example features of each paired layer, their names, and facts about the data. A loss builds
    its adapters and buffers from it in `setup`."""

    loss: str  # the registered name, for messages
    student: list[torch.Tensor]  # example features, aligned with `teacher`
    teacher: list[torch.Tensor]
    student_names: list[str]
    teacher_names: list[str]
    num_classes: int
    num_samples: int  # training-set size: memory banks are keyed by sample index
    adapters: bool = True  # False: shapes that need a learned projection are an error

    def label(self, index: int) -> str:
        """'student layer2 (32, 7, 7) -> teacher layer3 (64, 7, 7)' for messages."""
        s, t = self.student[index], self.teacher[index]
        return (
            f"student {self.student_names[index]} {tuple(s.shape[1:])} -> "
            f"teacher {self.teacher_names[index]} {tuple(t.shape[1:])}"
        )

    def require_maps(self, index: int) -> None:
        """Feature-map losses need (B, C, H, W) tensors from both models."""
        if self.student[index].ndim != 4 or self.teacher[index].ndim != 4:
            raise PotstillError(
                f"loss '{self.loss}' needs feature maps (B, C, H, W) from both models, got {self.label(index)}; "
                "pair convolutional layers (`potstill list taps MODEL` shows each layer's shape)"
            )


class DistillationLoss(nn.Module):
    """Base class: compares student and teacher outputs on one batch and returns a scalar.

    `teacher` outputs arrive already detached (computed under inference mode), so a loss can
    never push gradients into a frozen teacher. Any learned projection a loss needs is a
    submodule of it, built in `setup` from the shapes of a dry run, so it trains and is
    checkpointed with the student and is left out of the exported student.
    """

    kind: ClassVar[str] = "response"  # response | feature | relation (knowledge kinds, for docs and listing)
    pairing: ClassVar[str] = "none"  # what `pairs: auto` picks, one of PAIRINGS
    # what the features must be: "any" (logits only), "image" (feature maps / image features),
    # "text" (token sequences: hidden states (B, L, D), attention maps (B, H, L, L))
    modality: ClassVar[str] = "any"
    # which data tasks (potstill.engine.tasks) its logits may come from: classification (B, K), or
    # also causal_lm (B, L, V) for a loss that compares distributions per counted position
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    needs_teacher: ClassVar[bool] = True  # False for a virtual teacher (label smoothing as KD)
    default_weight: ClassVar[float] = 1.0  # the paper's weight, used when the recipe leaves the weight null
    min_pairs: ClassVar[int] = 1  # layer pairs the loss needs (FSP: 2, a matrix between two layers)
    # why it cannot run under torchrun yet ("": it can), where each process holds only its part of
    # every batch: e.g. it compares the batch's samples with each other (engine/distributed.py)
    single_process: ClassVar[str] = ""

    def setup(self, probe: Probe) -> None:
        """Build adapters and buffers from a dry run; called once before training."""

    prepare_epochs: int = 0  # > 0: the loss pre-trains its own modules on teacher outputs first

    def preparation_loss(self, teacher: Outputs) -> torch.Tensor:
        """The objective of the preparation stage (e.g. FT's paraphraser reconstruction)."""
        raise NotImplementedError

    def finish_preparation(self) -> None:
        """Called after the preparation stage (e.g. to freeze what was prepared)."""

    def forward(self, student: Outputs, teacher: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


def check_positive(loss: str, **values: float) -> None:
    """Hyperparameters that must be finite numbers > 0."""
    bad = [f"{name}={value}" for name, value in values.items() if not (_is_finite(value) and value > 0)]
    if bad:
        raise PotstillError(f"loss '{loss}' needs {', '.join(values)} > 0 (finite numbers), got {', '.join(bad)}")


def check_non_negative(loss: str, **values: float) -> None:
    """Hyperparameters that must be finite numbers >= 0 (weights inside a loss)."""
    bad = [f"{name}={value}" for name, value in values.items() if not (_is_finite(value) and value >= 0)]
    if bad:
        raise PotstillError(f"loss '{loss}' needs {', '.join(values)} >= 0 (finite numbers), got {', '.join(bad)}")


def _is_finite(value: object) -> bool:
    # NaN fails `> 0` already, but inf passes it; a string or None is a mistake too, not a TypeError
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
