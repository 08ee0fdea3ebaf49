"""potstill: knowledge distillation, measured.

    import potstill
    result = potstill.distill(teacher, student, train_data, test_data, loss="kd", temperature=4.0, alpha=0.5, epochs=20)
    result.student, result.summary["distillation_gain_points"]
"""

__version__ = "0.1.0"

from potstill.errors import PotstillError  # noqa: E402
from potstill.api import DistillResult, distill, train  # noqa: E402
from potstill.data import ArrayData, load_dataset  # noqa: E402
from potstill.knowledge import LOSSES, create_loss  # noqa: E402
from potstill.models import MODELS, create_model  # noqa: E402

__all__ = [
    "ArrayData", "DistillResult", "LOSSES", "MODELS", "PotstillError", "__version__",
    "create_loss", "create_model", "distill", "load_dataset", "train",
]
