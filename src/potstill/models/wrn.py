"""Wide Residual Networks for CIFAR-sized input.

Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016, arXiv:1605.07146): a 3x3 stem of 16
channels, three stages of pre-activation basic blocks with widths 16k/32k/64k at strides 1/2/2,
depth = 6n + 4. WRN-40-2 and WRN-16-2 are the common teacher/student pair of the CRD benchmark
(Tian et al., ICLR 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from potstill.models import MODELS, check_depth, check_dropout, check_positive_int, check_shape, kaiming_init


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        activated = F.relu(self.bn1(x))
        # the projection reads the activated input, as in the authors' code; identity keeps raw x
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """Stem conv1, stages block1/block2/block3, final bn-ReLU, global average pool, fc."""

    def __init__(self, in_channels: int, num_classes: int, depth: int, widen_factor: int, dropout: float) -> None:
        super().__init__()
        blocks_per_stage = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        stages = []
        channels = 16
        for stride, width in zip((1, 2, 2), widths):
            # only the first block of a stage changes width and resolution
            blocks = [
                WideBlock(channels if i == 0 else width, width, stride if i == 0 else 1, dropout)
                for i in range(blocks_per_stage)
            ]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.block1, self.block2, self.block3 = stages
        # blocks end without activation (pre-activation design), so the head normalises once more
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.conv1(x)  # (B, 16, H, W)
        x = self.block1(x)  # (B, 16k, H, W)
        x = self.block2(x)  # (B, 32k, H/2, W/2)
        x = self.block3(x)  # (B, 64k, H/4, W/4)
        x = F.relu(self.bn(x))
        x = self.pool(x).flatten(1)  # (B, 64k)
        return self.fc(x)


@MODELS.register("wrn")
def wrn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    depth: int = 16,
    widen_factor: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """Wide ResNet WRN-depth-widen_factor, depth 6n+4 (Zagoruyko & Komodakis, BMVC 2016)."""
    return _wrn("wrn", input_shape, num_classes, depth, widen_factor, dropout)


def _wrn(
    model: str, input_shape: tuple[int, int, int], num_classes: int, depth: int, widen_factor: int, dropout: float
) -> nn.Module:
    in_channels, _, _ = check_shape(model, input_shape, num_classes)
    check_positive_int(model, "widen_factor", widen_factor)
    dropout = check_dropout(model, "dropout", dropout)
    depth = check_depth(model, depth, offset=4, examples="10, 16, 22, 28, 40")
    return WideResNet(in_channels, num_classes, depth, widen_factor, dropout)


@MODELS.register("wrn_16_1")
def wrn_16_1(input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0) -> nn.Module:
    """WRN-16-1: depth 16, widths 16/32/64 (0.18M params at 100 classes)."""
    return _wrn("wrn_16_1", input_shape, num_classes, 16, 1, dropout)


@MODELS.register("wrn_16_2")
def wrn_16_2(input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0) -> nn.Module:
    """WRN-16-2: depth 16, widths 32/64/128 (0.70M params at 100 classes)."""
    return _wrn("wrn_16_2", input_shape, num_classes, 16, 2, dropout)


@MODELS.register("wrn_40_1")
def wrn_40_1(input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0) -> nn.Module:
    """WRN-40-1: depth 40, widths 16/32/64 (0.57M params at 100 classes)."""
    return _wrn("wrn_40_1", input_shape, num_classes, 40, 1, dropout)


@MODELS.register("wrn_40_2")
def wrn_40_2(input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0) -> nn.Module:
    """WRN-40-2: depth 40, widths 32/64/128 (2.26M params at 100 classes)."""
    return _wrn("wrn_40_2", input_shape, num_classes, 40, 2, dropout)
