"""Multi-layer perceptron on flattened input: the simplest teacher and student."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from potstill.models import MODELS, check_dropout, check_int_list, check_shape


@MODELS.register("mlp")
def mlp(
    input_shape: tuple[int, int, int],
    num_classes: int,
    hidden: list[int] = [1024, 1024],  # noqa: B006 - never mutated; a list default reads as the config
    dropout: float = 0.0,
) -> nn.Module:
    """Fully connected net: flatten, [Linear-ReLU-Dropout] per hidden width, Linear classifier.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (NIPS 2014 Deep
    Learning Workshop, arXiv:1503.02531) distil an MNIST teacher with `hidden: [1200, 1200]` (and
    dropout) into a student with `hidden: [800, 800]`.
    Tap `hiddenN` for the post-ReLU features of layer N, `hiddenN.linear` for the pre-activation.
    """
    shape = check_shape("mlp", input_shape, num_classes)
    widths = check_int_list("mlp", "hidden", hidden, example=[1024, 1024])
    dropout = check_dropout("mlp", "dropout", dropout)

    layers: dict[str, nn.Module] = {"flatten": nn.Flatten()}  # (B, C, H, W) -> (B, C*H*W)
    in_features = math.prod(shape)
    for index, width in enumerate(widths, start=1):
        block = nn.Sequential()
        block.add_module("linear", nn.Linear(in_features, width))
        # not in-place: an in-place ReLU would overwrite what a tap captured from `linear`
        block.add_module("relu", nn.ReLU())
        if dropout > 0:  # no identity module when off, so the printed model stays short
            block.add_module("dropout", nn.Dropout(dropout))
        layers[f"hidden{index}"] = block  # (B, in_features) -> (B, width)
        in_features = width
    layers["classifier"] = nn.Linear(in_features, num_classes)  # (B, width) -> (B, num_classes)
    return nn.Sequential(OrderedDict(layers))
