"""Small plain ConvNets: the Fashion-MNIST teacher and a smaller student of the same shape."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from potstill.errors import PotstillError
from potstill.models import MODELS, check_dropout, check_int_list, check_positive_int, check_shape


@MODELS.register("cnn")
def cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels: list[int] = [32, 64],  # noqa: B006 - never mutated; a list default reads as the config
    hidden: int = 256,
    dropout: float = 0.3,
) -> nn.Module:
    """ConvNet: [conv3x3-BN-ReLU-maxpool] per channels entry, dropout, FC-ReLU-dropout, FC.

    With input_shape (1, 28, 28) and the defaults this is the 3136-256-10 Fashion-MNIST teacher
    (about 0.82M parameters). Tap `blockN` for the pooled feature map of block N, `fc1` for the
    pre-ReLU hidden features.
    """
    return _conv_net("cnn", input_shape, num_classes, channels, hidden, dropout)


@MODELS.register("small_cnn")
def small_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels: list[int] = [16, 32],  # noqa: B006 - never mutated; a list default reads as the config
    hidden: int = 64,
    dropout: float = 0.1,
) -> nn.Module:
    """Student ConvNet: the `cnn` layout, narrower (channels [16, 32], hidden 64, dropout 0.1)."""
    return _conv_net("small_cnn", input_shape, num_classes, channels, hidden, dropout)


def _conv_net(
    model: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels: list[int],
    hidden: int,
    dropout: float,
) -> nn.Sequential:
    in_channels, height, width = check_shape(model, input_shape, num_classes)
    widths = check_int_list(model, "channels", channels, example=[32, 64])
    check_positive_int(model, "hidden", hidden)
    dropout = check_dropout(model, "dropout", dropout)

    layers: dict[str, nn.Module] = {}
    for index, out_channels in enumerate(widths, start=1):
        if height < 2 or width < 2:  # a 2x2 max-pool of a 1-pixel map leaves nothing
            raise PotstillError(
                f"model '{model}': input_shape {tuple(input_shape)} is too small for {len(widths)} "
                f"pooling blocks (channels={widths}): block {index} would get a {height}x{width} map; "
                f"use fewer channels entries or a larger input"
            )
        # (B, C_in, H, W) -> (B, C_out, H // 2, W // 2); padding 1 keeps H, W until the pool
        layers[f"block{index}"] = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                bn=nn.BatchNorm2d(out_channels),
                # not in-place: an in-place ReLU would overwrite what a tap captured from `bn`
                relu=nn.ReLU(),
                pool=nn.MaxPool2d(2),
            )
        )
        in_channels, height, width = out_channels, height // 2, width // 2

    flat_features = in_channels * height * width  # 64 * 7 * 7 = 3136 for the default on 28x28
    layers["dropout1"] = nn.Dropout(dropout)
    layers["flatten"] = nn.Flatten()  # (B, C, H, W) -> (B, flat_features)
    layers["fc1"] = nn.Linear(flat_features, hidden)  # (B, flat_features) -> (B, hidden)
    layers["relu"] = nn.ReLU()
    layers["dropout2"] = nn.Dropout(dropout)
    layers["classifier"] = nn.Linear(hidden, num_classes)  # (B, hidden) -> (B, num_classes)
    return nn.Sequential(OrderedDict(layers))
