"""Schemes decide who teaches whom. Each is a Task for the one training loop."""

from potstill.schemes.offline import OfflineDistillation

__all__ = ["OfflineDistillation"]
