"""A PNG grid of images with the standard library alone (zlib + struct): no imaging dependency.

    write_grid(path, images)      # images (N, C, H, W) in [0, 1], C = 1 (grey) or 3 (RGB)

Images are tiled row by row with a one-pixel grey border, each pixel repeated `scale` times so an
8x8 digit is visible. The file is an 8-bit PNG (colour type 0 or 2, no interlace), one IDAT chunk.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import torch

from potstill.errors import PotstillError

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    """length, type, data, CRC-32 of type + data (PNG spec section 5.3)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tile(images: torch.Tensor, columns: int | None = None, scale: int = 1, border: int = 1) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, rows*(H*scale+border)+border, cols*(W*scale+border)+border) uint8 grid."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise PotstillError(f"a PNG grid takes images (N, C, H, W) with 1 or 3 channels, got shape {tuple(images.shape)}")
    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    pixels = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    cell_h, cell_w = height * scale + border, width * scale + border
    grid = torch.full((channels, rows * cell_h + border, columns * cell_w + border), 128, dtype=torch.uint8)  # grey borders
    for index in range(count):
        top, left = border + (index // columns) * cell_h, border + (index % columns) * cell_w
        grid[:, top:top + height * scale, left:left + width * scale] = pixels[index]
    return grid


def encode(grid: torch.Tensor) -> bytes:
    """A (C, H, W) uint8 tensor, C = 1 or 3, as PNG bytes."""
    channels, height, width = grid.shape
    rows = grid.permute(1, 2, 0).reshape(height, width * channels).numpy()
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 (none) before each row
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_grid(path: Path, images: torch.Tensor, columns: int | None = None, scale: int | None = None) -> Path:
    """Write `images` as one PNG grid; `scale` defaults to enough to make each image about 32 pixels."""
    scale = scale or max(1, 32 // max(images.shape[-2:]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(encode(tile(images, columns, scale)))
    temporary.replace(path)
    return path
