"""potstill: knowledge distillation, measured.

    import potstill
    result = potstill.distill(teacher, student, train_data, test_data, loss="kd", temperature=4.0, alpha=0.5, epochs=20)
    result.student, result.summary["distillation_gain_points"]
"""

__version__ = "0.1.0"

from potstill.api import DistillResult, distill, train
from potstill.data import ArrayData, load_dataset
from potstill.data.lm import LMData
from potstill.generation import Generated, generate
from potstill.errors import PotstillError
from potstill.knowledge import LOSSES, create_loss
from potstill.loading import load_model
from potstill.models import MODELS, create_model

__all__ = [
    "LOSSES",
    "MODELS",
    "ArrayData",
    "DistillResult",
    "Generated",
    "LMData",
    "PotstillError",
    "__version__",
    "create_loss",
    "create_model",
    "distill",
    "generate",
    "load_dataset",
    "load_model",
    "train",
]
