"""CIFAR-style ResNets, as used throughout the distillation literature.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition" (CVPR 2016, arXiv:1512.03385),
section 4.2: a 3x3 stem, three stages of basic blocks at strides 1/2/2, depth = 6n + 2. The
`x4` variants (four times wider: stem 32, stages 64/128/256) and the depths registered here are the
teacher/student zoo of Tian, Krishnan & Isola, "Contrastive Representation Distillation" (ICLR
2020, arXiv:1910.10699). Adaptive average pooling (not a fixed 8x8 pool) lets 28x28 input through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from potstill.models import MODELS, check_depth, check_int_list, check_shape, kaiming_init


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # a 1x1 projection where the shape changes, as in the CRD code the literature's parameter
        # counts come from (He et al. zero-padded the identity on CIFAR instead)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """Stem conv1-bn1, stages layer1/layer2/layer3 of basic blocks, global average pool, fc."""

    def __init__(self, in_channels: int, num_classes: int, blocks_per_stage: int, widths: list[int]) -> None:
        super().__init__()
        stem, *stage_widths = widths
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        stages = []
        channels = stem
        for stride, width in zip((1, 2, 2), stage_widths):
            # only the first block of a stage changes width and resolution
            blocks = [
                BasicBlock(channels if i == 0 else width, width, stride if i == 0 else 1)
                for i in range(blocks_per_stage)
            ]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = F.relu(self.bn1(self.conv1(x)))  # (B, w0, H, W)
        x = self.layer1(x)  # (B, w1, H, W)
        x = self.layer2(x)  # (B, w2, H/2, W/2)
        x = self.layer3(x)  # (B, w3, H/4, W/4)
        x = self.pool(x).flatten(1)  # (B, w3)
        return self.fc(x)


@MODELS.register("resnet")
def resnet(
    input_shape: tuple[int, int, int],
    num_classes: int,
    depth: int = 20,
    widths: list[int] = [16, 16, 32, 64],  # noqa: B006 - never mutated; a list default reads as the config
) -> nn.Module:
    """CIFAR ResNet of any depth 6n+2 with widths [stem, stage1, stage2, stage3] (He et al. 2016)."""
    return _resnet("resnet", input_shape, num_classes, depth, widths)


def _resnet(
    model: str, input_shape: tuple[int, int, int], num_classes: int, depth: int, widths: list[int]
) -> nn.Module:
    in_channels, _, _ = check_shape(model, input_shape, num_classes)
    widths = check_int_list(model, "widths", widths, length=4, example=[16, 16, 32, 64])
    depth = check_depth(model, depth, offset=2, examples="8, 14, 20, 32, 44, 56, 110")
    return CifarResNet(in_channels, num_classes, (depth - 2) // 6, widths)


_STANDARD = [16, 16, 32, 64]
_WIDE_X4 = [32, 64, 128, 256]


@MODELS.register("resnet8")
def resnet8(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-8, widths 16/32/64 (0.08M params at 100 classes)."""
    return _resnet("resnet8", input_shape, num_classes, 8, _STANDARD)


@MODELS.register("resnet14")
def resnet14(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-14, widths 16/32/64 (0.18M params at 100 classes)."""
    return _resnet("resnet14", input_shape, num_classes, 14, _STANDARD)


@MODELS.register("resnet20")
def resnet20(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-20, widths 16/32/64 (0.28M params at 100 classes)."""
    return _resnet("resnet20", input_shape, num_classes, 20, _STANDARD)


@MODELS.register("resnet32")
def resnet32(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-32, widths 16/32/64 (0.47M params at 100 classes)."""
    return _resnet("resnet32", input_shape, num_classes, 32, _STANDARD)


@MODELS.register("resnet44")
def resnet44(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-44, widths 16/32/64 (0.67M params at 100 classes)."""
    return _resnet("resnet44", input_shape, num_classes, 44, _STANDARD)


@MODELS.register("resnet56")
def resnet56(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-56, widths 16/32/64 (0.86M params at 100 classes)."""
    return _resnet("resnet56", input_shape, num_classes, 56, _STANDARD)


@MODELS.register("resnet110")
def resnet110(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-110, widths 16/32/64 (1.73M params at 100 classes)."""
    return _resnet("resnet110", input_shape, num_classes, 110, _STANDARD)


@MODELS.register("resnet8x4")
def resnet8x4(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-8 four times wider, stem 32, stages 64/128/256 (1.23M params at 100 classes)."""
    return _resnet("resnet8x4", input_shape, num_classes, 8, _WIDE_X4)


@MODELS.register("resnet32x4")
def resnet32x4(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-32 four times wider, stem 32, stages 64/128/256 (7.43M params at 100 classes)."""
    return _resnet("resnet32x4", input_shape, num_classes, 32, _WIDE_X4)
