"""MLflow copy of a run's metrics: one MLflow run per potstill run, its id kept in RUN/mlflow.json so
that --resume continues the same MLflow run. Metrics are named <stage>/<metric> (student/loss,
student/weighted/kd, baseline/test_acc) at step = epoch; the resolved recipe is logged once as
params (distill.temperature, ...); the summary's results as final/<role>/<measure> at step 0.

MLflow keeps every value logged, including a second one at the same step: it cannot forget a point.
So only checkpointed epochs are sent (the tracker calls `add` after the checkpoint), never one a
resumed run redoes; an epoch that a kill kept from being sent is sent by the next `sync`, which asks
MLflow for the last step it holds of the stage. Within one record `loss` goes last, so a record cut
short by a kill counts as not sent and goes again in full.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from potstill.engine.checkpoint import atomic_write
from potstill.recipe_logging import MlflowSpec
from potstill.tracking.records import final_numbers, flat_record, numbers

STATE_FILE = "mlflow.json"  # {"tracking_uri", "experiment_id", "run_id"}
LOCAL_STORE = "mlflow.db"  # the default store: SQLite inside the run folder
PARAMS_PER_CALL = 100  # MLflow's limit of params in one log_batch
PARAM_VALUE_MAX = 6000  # MLflow's longest param value (characters)
PROGRESS_KEY = "loss"  # every record has it; sent last, it marks a record as sent whole


def import_mlflow():
    """mlflow's client with its usage telemetry off (no network) unless the user chose otherwise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    return MlflowClient, Metric, Param


def tracking_uri(spec: MlflowSpec, run_path: Path) -> str:
    return spec.tracking_uri or f"sqlite:///{(run_path / LOCAL_STORE).absolute()}"


@contextlib.contextmanager
def mlflow_calls(retries: int = 3, timeout_s: int = 30) -> Iterator[None]:
    """MLflow calls that give up on a server that does not answer within about a minute (MLflow's
    own defaults retry for minutes, all that time a pause in training), with its INFO lines (e.g.
    creating the SQLite tables) kept off the run's output. MLFLOW_HTTP_REQUEST_* the user set win."""
    chosen = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    added = [name for name in chosen if name not in os.environ]
    os.environ.update({name: chosen[name] for name in added})
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        for name in added:
            os.environ.pop(name, None)


def experiment_id(client, name: str, artifacts: str | None) -> str:
    """The id of experiment `name`, created when missing (artifacts: where its runs keep files)."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name, artifact_location=artifacts)


class MlflowSink:
    name = "mlflow"

    def __init__(self, spec: MlflowSpec, run_path: Path, recipe_name: str, settings: dict[str, str]) -> None:
        MlflowClient, self.Metric, self.Param = import_mlflow()
        self.state_path = run_path / STATE_FILE
        with mlflow_calls():
            self.client = MlflowClient(tracking_uri=tracking_uri(spec, run_path))
            if self.state_path.is_file():  # a resumed run: the MLflow run it started
                self.run_id = json.loads(self.state_path.read_text())["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                self.resumed = True
            else:
                self.run_id = self.start(spec, run_path, recipe_name, settings)
                self.resumed = False

    def start(self, spec: MlflowSpec, run_path: Path, recipe_name: str, settings: dict[str, str]) -> str:
        # the default store lives in the run folder, and so do its artifacts (never the working directory)
        artifacts = (run_path / "mlflow-artifacts").absolute().as_uri() if spec.tracking_uri is None else None
        experiment = experiment_id(self.client, spec.experiment or recipe_name, artifacts)
        run = self.client.create_run(experiment, run_name=run_path.name, tags={"potstill.run_dir": str(run_path.absolute())})
        params = [self.Param(key, value[:PARAM_VALUE_MAX]) for key, value in settings.items()]
        for start in range(0, len(params), PARAMS_PER_CALL):
            self.client.log_batch(run.info.run_id, params=params[start:start + PARAMS_PER_CALL])
        state = {"tracking_uri": self.client.tracking_uri, "experiment_id": experiment, "run_id": run.info.run_id}
        atomic_write(self.state_path, json.dumps(state, indent=2) + "\n")
        return run.info.run_id

    def sync(self, stage: str, records: list[dict[str, Any]]) -> None:
        """Send the records MLflow lacks: those after the last step it holds of the stage."""
        if not records:
            return
        last = 0
        if self.resumed:  # an MLflow run made in this process holds nothing of a stage before its sync
            with mlflow_calls():
                history = self.client.get_metric_history(self.run_id, f"{stage}/{PROGRESS_KEY}")
            last = max((metric.step for metric in history), default=0)
        for record in records:
            if record["epoch"] > last:
                self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        values = numbers(flat_record(record))
        order = sorted(values, key=lambda name: name == PROGRESS_KEY)  # loss last
        self.log({f"{record['stage']}/{name}": values[name] for name in order}, step=record["epoch"])

    def finish(self, summary: dict[str, Any]) -> None:
        """The results, each once: a resumed run killed while finishing may have sent some already."""
        with mlflow_calls():
            sent = self.client.get_run(self.run_id).data.metrics if self.resumed else {}
        self.log({name: value for name, value in final_numbers(summary).items() if name not in sent}, step=0)

    def log(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self.Metric(name, value, now, step) for name, value in values.items()]
        with mlflow_calls():
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: str = "FINISHED") -> None:
        with mlflow_calls():
            self.client.set_terminated(self.run_id, status=status)
