"""The image generator of DAFL (Chen et al., "Data-Free Learning of Student Networks", ICCV 2019,
arXiv 1904.01186) and DFAD (Fang et al., "Data-Free Adversarial Distillation", arXiv 1912.11006):
a DCGAN-style stack that turns noise z into a batch of images of the data's shape.

    z (B, latent_dim) -> Linear -> (B, width, H/4, W/4) -> BN -> up x2 -> conv-BN-LeakyReLU
      -> up x2 -> conv-BN-LeakyReLU (width/2) -> conv -> sigmoid -> (B, C, H, W) in [0, 1]

The papers end with tanh (+ a BatchNorm without affine in DAFL) because their teachers read
normalised images. potstill's teachers carry their own normalisation (potstill.preprocess), so the
generator produces raw pixels in [0, 1], the space the data loader hands every model, and the
teacher normalises them as it normalises real images. Sizes not divisible by 4 are reached by the
upsampling (interpolation to ceil(H/2), then to H).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from potstill.errors import PotstillError


class Generator(nn.Module):
    """Noise (B, latent_dim) -> images (B, C, H, W) in [0, 1]. `width`: channels of the first
    feature map (DAFL's and DFAD's 128 and 64*2 alike)."""

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int = 100, width: int = 128) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise PotstillError(f"a generator makes images (C, H, W); the data's input shape is {tuple(input_shape)}")
        if latent_dim < 1 or width < 2:
            raise PotstillError(f"generator latent_dim must be >= 1 and width >= 2, got {latent_dim} and {width}")
        channels, height, width_px = input_shape
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.start = (math.ceil(height / 4), math.ceil(width_px / 4))
        self.middle = (math.ceil(height / 2), math.ceil(width_px / 2))
        self.project = nn.Linear(latent_dim, width * self.start[0] * self.start[1])
        self.bn0 = nn.BatchNorm2d(width)
        self.block1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(nn.Conv2d(width, width // 2, 3, padding=1), nn.BatchNorm2d(width // 2), nn.LeakyReLU(0.2))
        self.to_image = nn.Conv2d(width // 2, channels, 3, padding=1)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        x = self.project(noise).view(len(noise), -1, *self.start)  # (B, width, H/4, W/4)
        x = self.bn0(x)
        x = self.block1(F.interpolate(x, size=self.middle, mode="nearest"))  # (B, width, H/2, W/2)
        x = self.block2(F.interpolate(x, size=self.input_shape[1:], mode="nearest"))  # (B, width/2, H, W)
        return torch.sigmoid(self.to_image(x))  # (B, C, H, W) raw pixels in [0, 1]

    def noise(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """z ~ N(0, I), drawn from torch's global RNG (the loop seeds and checkpoints it)."""
        return torch.randn(batch_size, self.latent_dim, device=device)
