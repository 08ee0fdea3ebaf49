"""Building blocks of data-free distillation (schemes dafl, dfad, deep_inversion): a generator of
images from noise, a loader of synthetic steps that reads no data, and a PNG grid writer for the
samples a run synthesises. Nothing here knows a scheme."""

from potstill.synthesis.generator import Generator
from potstill.synthesis.png import write_grid
from potstill.synthesis.steps import SyntheticSteps

__all__ = ["Generator", "SyntheticSteps", "write_grid"]
