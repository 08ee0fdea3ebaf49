"""The tracker: hands each epoch's record to the sinks a recipe asks for (TensorBoard, MLflow) while
a run trains, and the summary at its end.

metrics.jsonl stays the record of the run; a sink holds a copy, kept exact across kills:
  - records reach the sinks after their epoch's checkpoint (as a Stage callback, first in the
    list), so a sink never holds an epoch that a resumed run forgets and redoes;
  - before a stage's first epoch in this process, the sink is brought to what metrics.jsonl holds
    of that stage (`sync`): an epoch checkpointed just before a kill, but not yet sent, is added;
  - at the end, stages that ran no epoch in this process (finished before a resume) are synced too.
A sink that fails (disk full, server gone) is reported once and dropped; training goes on.

A sink (tensorboard_sink.py, mlflow_sink.py) has a `name` and four methods: sync(stage, records)
makes it hold exactly `records` of the stage, add(record) appends one epoch, finish(summary) adds
the results, close(status) ends it with FINISHED, KILLED or FAILED.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from potstill.config import to_dict
from potstill.engine.progress import Reporter
from potstill.engine.run import RunDir
from potstill.tracking.check import error_words, require
from potstill.tracking.records import flat_settings


class Tracker:
    """The sinks of one run in one process, and the stages already synced in it."""

    def __init__(self, sinks: list, run: RunDir, reporter: Reporter) -> None:
        self.sinks, self.run, self.reporter = sinks, run, reporter
        self.synced: set[str] = set()

    def epoch(self, stage: str, epochs_done: int, record: dict[str, Any]) -> None:
        """A Stage callback: `record` is checkpointed."""
        if not self.sinks:
            return
        if stage not in self.synced:
            self.synced.add(stage)
            earlier = [r for r in self.run.records() if r.get("stage") == stage and r.get("epoch", 0) < record["epoch"]]
            self.each("sync", stage, earlier)
        self.each("add", record)

    def finished(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The run's end: every stage brought to metrics.jsonl, then the results; gives `summary` back."""
        if self.sinks:
            by_stage: dict[str, list[dict[str, Any]]] = {}
            for record in self.run.records():
                by_stage.setdefault(record.get("stage"), []).append(record)
            for stage, records in by_stage.items():
                if stage not in self.synced:
                    self.synced.add(stage)
                    self.each("sync", stage, records)
            self.each("finish", summary)
        return summary

    def close(self, status: str) -> None:
        self.each("close", status)

    def each(self, method: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as error:  # a copy of the metrics must never cost the training
                self.drop(sink, f"{method} failed", error)

    def drop(self, sink, what: str, error: Exception) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)
            with contextlib.suppress(Exception):
                sink.close("FAILED")
        self.reporter.message(f"warning: {sink.name}: {what} ({error_words(error)}); it gets nothing more from this run, "
                              f"training goes on and {self.run.metrics_path} keeps every epoch")


def open_sinks(recipe, run: RunDir, reporter: Reporter) -> list:
    """The sinks the recipe's logging section asks for; one that cannot open is reported and left out."""
    from potstill.tracking.mlflow_sink import MlflowSink
    from potstill.tracking.tensorboard_sink import TensorBoardSink

    spec, sinks = recipe.logging, []
    settings = flat_settings(to_dict(recipe))
    openers = []
    if spec.tensorboard:
        openers.append(("tensorboard", lambda: TensorBoardSink(run.path, settings)))
    if spec.mlflow is not None:
        openers.append(("mlflow", lambda: MlflowSink(spec.mlflow, run.path, recipe.name, settings)))
    for name, opener in openers:
        try:
            sinks.append(opener())
        except Exception as error:
            reporter.message(f"warning: {name}: cannot open ({error_words(error)}); training goes on without it and "
                             f"{run.metrics_path} keeps every epoch")
    return sinks


@contextlib.contextmanager
def tracking(recipe, run: RunDir, reporter: Reporter, callbacks: list) -> Iterator[Tracker]:
    """Open the recipe's sinks, feed them each checkpointed epoch (as the first of `callbacks`,
    a Runner's list) and close them with the run's status: FINISHED, KILLED (interrupted) or FAILED."""
    require(recipe.logging)  # a missing package: one line, before anything trains
    sinks = open_sinks(recipe, run, reporter) if recipe.logging is not None else []
    tracker = Tracker(sinks, run, reporter)
    callbacks.insert(0, tracker.epoch)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        callbacks.remove(tracker.epoch)
        tracker.close(status)
