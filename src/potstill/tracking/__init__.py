"""Copies of a run's metrics outside the run folder's metrics.jsonl: TensorBoard event files and
MLflow runs (the recipe's `logging` section), and the flat naming they and `potstill metrics` share.

    tracker.py           feeds the sinks while a run trains; keeps them exact across kill and resume
    tensorboard_sink.py  RUN/tensorboard/<stage>/ event files
    mlflow_sink.py       one MLflow run per potstill run
    records.py           a record or a recipe as flat name -> value maps
    check.py             packages and server checked before anything is written
"""

from potstill.tracking.check import check_tracking, require
from potstill.tracking.records import flat_record, flat_settings
from potstill.tracking.tracker import Tracker, tracking

__all__ = ["Tracker", "check_tracking", "flat_record", "flat_settings", "require", "tracking"]
