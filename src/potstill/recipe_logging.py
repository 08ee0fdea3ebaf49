"""The recipe's `logging` section: copies of every epoch's metrics in TensorBoard and MLflow.

metrics.jsonl in the run folder is always written and stays the record the run is judged by;
these are extra views of it (potstill.tracking writes them, docs/tracking.md shows them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from potstill.recipe_fields import name_problem, option


@dataclass
class MlflowSpec:
    tracking_uri: Optional[str] = option(
        None, "where the MLflow run goes: a server (http://host:5000), a database (sqlite:///runs/mlflow.db) or any "
        "URI MLflow reads; null = RUN/mlflow.db, a SQLite store inside the run folder (nothing leaves the machine)"
    )
    experiment: Optional[str] = option(None, "the MLflow experiment the run is filed under; null = the recipe's name")

    def check(self) -> list[str]:
        return name_problem("tracking_uri", self.tracking_uri) + name_problem("experiment", self.experiment)


@dataclass
class LoggingSpec:
    tensorboard: bool = option(
        False, "also write each epoch's metrics as TensorBoard event files, one TensorBoard run per stage in "
        "RUN/tensorboard/<stage>/ (needs `pip install 'potstill[tracking]'`)"
    )
    mlflow: Optional[MlflowSpec] = option(
        None, "also log to MLflow: one MLflow run per potstill run, continued by --resume, with the recipe as params "
        "and metrics named <stage>/<metric> (needs `pip install 'potstill[tracking]'`); {} = the defaults; null = off"
    )
