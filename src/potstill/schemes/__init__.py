"""Schemes decide who teaches whom, one file each, registered in SCHEMES. Each trains its stages
as Tasks for the one training loop. Every module in this folder is imported here, so adding a
scheme is adding one file."""

import importlib
import pkgutil

from potstill.schemes.base import SCHEMES, Scheme, create_scheme, needs_teacher
from potstill.schemes.offline import OfflineDistillation
from potstill.schemes.preparation import Preparation

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registers its schemes

__all__ = ["SCHEMES", "OfflineDistillation", "Preparation", "Scheme", "create_scheme", "needs_teacher"]
