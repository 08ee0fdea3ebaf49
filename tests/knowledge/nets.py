"""Small named conv nets and a one-call set-up of a distillation task, for loss tests."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from potstill.engine.task import WeightedTerm
from potstill.knowledge import create_loss
from potstill.knowledge.wiring import connect_terms
from potstill.model_io import KeywordIO, attach_io, model_inputs
from potstill.schedules import WeightSchedule
from potstill.schemes import OfflineDistillation

CLASSES = 5
INPUT = (1, 8, 8)


def conv_net(seed: int, channels=(4, 8), hidden: int = 6, first_stride: int = 1) -> nn.Module:
    """block1 (C1, 8/s, 8/s) -> block2 (C2, 4/s, 4/s) -> pool -> fc (hidden) -> classifier."""
    torch.manual_seed(seed)
    c1, c2 = channels
    return nn.Sequential(OrderedDict(
        block1=nn.Sequential(nn.Conv2d(INPUT[0], c1, 3, stride=first_stride, padding=1), nn.BatchNorm2d(c1), nn.ReLU()),
        block2=nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(2),
        flatten=nn.Flatten(),
        fc=nn.Linear(4 * c2, hidden),
        relu=nn.ReLU(),
        classifier=nn.Linear(hidden, CLASSES),
    ))


# (student kwargs, teacher kwargs): equal shapes, a wider teacher, a teacher at twice the resolution
SHAPES = {
    "equal": (dict(channels=(4, 8)), dict(channels=(4, 8))),
    "wider_teacher": (dict(channels=(3, 5), hidden=4), dict(channels=(6, 10), hidden=9)),
    "smaller_student_maps": (dict(channels=(4, 6), first_stride=2), dict(channels=(5, 8))),
}


# text losses (modality "text") run on tiny BERTs instead: (layers, hidden) of student and teacher
TEXT_SHAPES = {
    "equal": ((2, 16), (2, 16)),
    "wider_teacher": ((2, 8), (4, 16)),
    "smaller_student_maps": ((1, 16), (3, 16)),
}
VOCAB, LENGTH = 50, 7


def tiny_bert(seed: int, layers: int, hidden: int) -> nn.Module:
    """A random BertForSequenceClassification with 2 heads, called like any Hugging Face model."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                     intermediate_size=2 * hidden, max_position_embeddings=16, num_labels=CLASSES)
    return attach_io(transformers.BertForSequenceClassification(config), KeywordIO())


def make_batch(size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Images for conv nets and token ids for BERTs in one batch (each model reads its own fields);
    every other text is padded after 4 tokens."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(size, LENGTH, dtype=torch.long)
    mask[::2, 4:] = 0
    return {
        "input": torch.randn(size, *INPUT, generator=generator),
        "input_ids": torch.randint(1, VOCAB, (size, LENGTH), generator=generator) * mask,
        "attention_mask": mask,
        "target": torch.randint(0, CLASSES, (size,), generator=generator),
        "index": torch.randperm(64, generator=generator)[:size],
    }


def make_models(name: str, shape: str) -> tuple[nn.Module, nn.Module]:
    if create_loss(name).modality == "text":
        (student_layers, student_hidden), (teacher_layers, teacher_hidden) = TEXT_SHAPES[shape]
        if name == "distilbert":  # DistilBERT keeps the teacher's width
            student_hidden = teacher_hidden
        return tiny_bert(0, student_layers, student_hidden), tiny_bert(1, teacher_layers, teacher_hidden)
    student_kwargs, teacher_kwargs = SHAPES[shape]
    return conv_net(0, **student_kwargs), conv_net(1, **teacher_kwargs)


def make_task(name: str, shape: str = "wider_teacher", batch_size: int = 8, adapters: bool = True,
              pairs="auto", num_samples: int = 64, **loss_args) -> tuple[OfflineDistillation, WeightedTerm]:
    """A student, a frozen teacher and one term of loss `name`, wired by a dry run."""
    student, teacher = make_models(name, shape)
    term = WeightedTerm(name, create_loss(name, **loss_args), 1.0, WeightSchedule(), pairs=pairs)
    torch.manual_seed(2)
    connect_terms([term], student, teacher, model_inputs(make_batch(batch_size)), num_classes=CLASSES,
                  num_samples=num_samples, adapters=adapters)
    return OfflineDistillation(student, teacher, [term], alpha=0.0), term
