"""Paired datasets for cross-modal distillation: every sample seen by two sensors.

Gupta et al. (CVPR 2016) distil an RGB teacher into a depth student on paired RGB-D frames. No
second real sensor ships with potstill, so these datasets render a second modality from each
image with a fixed, documented, non-invertible transform, and carry both by name:

    teacher_input   the original image (the modality the teacher is trained on or was trained on)
    input           the rendering: the student's modality, which the teacher never sees

Sensors (`sensor`):
    lowres   a low-resolution, noisy camera (thermal-like): each `factor` x `factor` block is
             averaged (Fashion-MNIST 28x28 -> 7x7), Gaussian read noise of std `noise` (fixed per
             sample by `seed`) is added, the result clipped to [0, 1] and quantised to 8 bits,
             then shown at the image's size by nearest-neighbour upsampling (blocks)
    edges    an edge sensor: the Sobel gradient magnitude, scaled to [0, 1] by its largest possible
             value and quantised to 8 bits; it keeps outlines, loses shading and absolute brightness

Both keep the image's (C, H, W), so one view (flip, crop) is applied to both modalities of a
sample. Both discard information (block averages and noise; gradient signs and flat levels), so
the student's modality carries less than the teacher's. What they are not: a real second sensor;
the student's signal is a function of the teacher's, so the two modalities fail together (an
occluded image is occluded in both), which real paired sensors need not do. docs/cross-modal.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from potstill.data.arrays import ArrayData, to_unit_float
from potstill.data.embedded import digits
from potstill.data.idx import fashion_mnist
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError

SENSORS = ("lowres", "edges")
FIELDS = ("input", "teacher_input")  # what a paired dataset's batches carry (checked before the data is read)


def lowres(images: torch.Tensor, factor: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    """images (N, C, H, W) in [0, 1] -> block means plus read noise, upsampled back to (H, W)."""
    small = F.avg_pool2d(images, factor)  # (N, C, H/f, W/f)
    small = small + noise * torch.randn(small.shape, generator=generator)
    small = (small.clamp(0.0, 1.0) * 255).round() / 255  # an 8-bit sensor
    return small.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)  # (N, C, H, W)


def edges(images: torch.Tensor) -> torch.Tensor:
    """images (N, C, H, W) in [0, 1] -> Sobel gradient magnitude per channel, in [0, 1]."""
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel_x, sobel_x.T]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    channels = images.shape[1]
    flat = images.reshape(-1, 1, *images.shape[2:])  # each channel on its own
    gradient = F.conv2d(F.pad(flat, (1, 1, 1, 1), mode="replicate"), kernels)  # (N*C, 2, H, W)
    magnitude = gradient.pow(2).sum(dim=1).sqrt() / (4 * 2**0.5)  # a step of 1 in both directions: 1.0
    return magnitude.reshape(-1, channels, *images.shape[2:]).clamp(0.0, 1.0)


def render(images: torch.Tensor, sensor: str, factor: int, noise: float, seed: int) -> torch.Tensor:
    """The student's modality of `images` (N, C, H, W) as uint8, deterministic for a given seed."""
    unit = to_unit_float(images)
    if sensor == "lowres":
        rendered = lowres(unit, factor, noise, torch.Generator().manual_seed(seed))
    else:
        rendered = edges(unit)
    return (rendered * 255).round().to(torch.uint8)


def pair(raw: RawData, name: str, sensor: str, factor: int, noise: float, seed: int) -> RawData:
    """Both splits of `raw` with the sensor's rendering as `input` and the image as `teacher_input`."""
    if sensor not in SENSORS:
        raise PotstillError(f"{name}: data.args.sensor must be one of {', '.join(SENSORS)}, got {sensor!r}")
    height, width = raw.train.input_shape[1:]
    if sensor == "lowres" and (factor < 1 or height % factor or width % factor):
        raise PotstillError(f"{name}: data.args.factor must divide the image size {height}x{width}, got {factor}")
    if noise < 0:
        raise PotstillError(f"{name}: data.args.noise is a standard deviation, so it cannot be negative (got {noise})")

    def both(split: ArrayData, offset: int) -> ArrayData:
        seen = render(split.inputs, sensor, factor, noise, seed * 2 + offset)  # train and test: their own noise
        return ArrayData(seen, split.targets, split.num_classes, split=split.split, teacher_inputs=split.inputs)

    test = None if raw.test is None else both(raw.test, 1)
    what = (f"lowres sensor: {factor}x{factor} block means + read noise std {noise} (seed {seed}), 8-bit"
            if sensor == "lowres" else "edge sensor: Sobel gradient magnitude, 8-bit")
    return RawData(both(raw.train, 0), test, raw.notes + [f"paired: input = {what}; teacher_input = the original image"])


@DATASETS.register("fashion_mnist_pair")
def fashion_mnist_pair(root: str | None = None, sensor: str = "lowres", factor: int = 4, noise: float = 0.1,
                       seed: int = 0) -> RawData:
    """Fashion-MNIST paired with a second sensor's rendering (input) of each image (teacher_input)."""
    return pair(fashion_mnist(root), "fashion_mnist_pair", sensor, factor, noise, seed)


@DATASETS.register("digits_pair")
def digits_pair(sensor: str = "lowres", factor: int = 2, noise: float = 0.1, seed: int = 0) -> RawData:
    """scikit-learn's 8x8 digits paired with a second sensor's rendering (input) of each image (teacher_input)."""
    return pair(digits(), "digits_pair", sensor, factor, noise, seed)


fashion_mnist_pair.fields = digits_pair.fields = FIELDS
