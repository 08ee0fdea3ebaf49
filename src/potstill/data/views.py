"""Augmentation as explicit, replayable views.

A view of an image is its augmentation parameters: (flip, crop offset y, crop offset x). The
online loader draws fresh parameters for every batch; a teacher-output cache draws a fixed bank of
V views per sample once, stores it, and the loader then replays exactly those views, so a cached
teacher output is only ever paired with the image the teacher saw (Beyer et al. CVPR 2022, "a good
teacher is patient and consistent"; Shen & Xing ECCV 2022 store crop coordinates the same way).
Both paths apply parameters with the same function, `apply_view`.
"""

from __future__ import annotations

import torch

# a view bank is a uint8 tensor (N, V, 3): flip (0/1), crop offset y, crop offset x (0..2*padding)
FLIP, OFFSET_Y, OFFSET_X = 0, 1, 2


def apply_view(images: torch.Tensor, params: torch.Tensor, hflip: bool, padding: int) -> torch.Tensor:
    """Flip where params[:, FLIP] is 1, then zero-pad by `padding` and cut an H x W window at
    (params[:, OFFSET_Y], params[:, OFFSET_X]). images (B, C, H, W) float; params (B, 3) integer."""
    if hflip:
        flip = params[:, FLIP].bool()
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    if padding > 0:
        images = crop_at(images, padding, params[:, OFFSET_Y].long(), params[:, OFFSET_X].long())
    return images


def crop_at(images: torch.Tensor, padding: int, offset_y: torch.Tensor, offset_x: torch.Tensor) -> torch.Tensor:
    """Zero-pad by `padding` and cut the H x W window whose top-left corner is (offset_y, offset_x)."""
    batch, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    device = images.device
    rows = offset_y.to(device)[:, None] + torch.arange(height, device=device)  # (B, H)
    cols = offset_x.to(device)[:, None] + torch.arange(width, device=device)  # (B, W)
    b = torch.arange(batch, device=device)[:, None, None, None]
    c = torch.arange(channels, device=device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def draw_params(count: int, hflip: bool, padding: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """Random view parameters for `count` images, (count, 3) uint8: flip with p = 0.5, offsets uniform."""
    params = torch.zeros(count, 3, dtype=torch.uint8, device=device)
    if hflip:
        params[:, FLIP] = (torch.rand(count, generator=generator, device=device) < 0.5).to(torch.uint8)
    if padding > 0:
        for column in (OFFSET_Y, OFFSET_X):
            params[:, column] = torch.randint(0, 2 * padding + 1, (count,), generator=generator, device=device).to(torch.uint8)
    return params


def view_bank(count: int, views: int, hflip: bool, padding: int, seed: int) -> torch.Tensor:
    """A fixed bank of `views` views per sample, (count, views, 3) uint8, the same for a given seed.
    View 0 of every sample is the plain image (no flip, centred crop): the cache always holds it."""
    if padding > 127:
        raise ValueError("crop padding above 127 does not fit a view bank")
    generator = torch.Generator().manual_seed(seed)
    bank = torch.stack([draw_params(count, hflip, padding, generator) for _ in range(views)], dim=1)
    bank[:, 0, FLIP] = 0
    bank[:, 0, OFFSET_Y] = padding
    bank[:, 0, OFFSET_X] = padding
    return bank
