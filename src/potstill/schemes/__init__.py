"""Schemes decide who teaches whom. Each is a Task for the one training loop."""

from potstill.schemes.offline import OfflineDistillation
from potstill.schemes.preparation import Preparation

__all__ = ["OfflineDistillation", "Preparation"]
