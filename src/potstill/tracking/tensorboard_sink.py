"""TensorBoard copy of a run's metrics: RUN/tensorboard/<stage>/ holds one TensorBoard run per
stage, with tags loss, test_acc, lr, weighted/<term>, ... at step = epoch, so the baseline's and the
distilled student's curves share one chart. RUN/tensorboard/ itself holds the recipe (as a text
table) and, once the run is finished, the summary's results as final/<role>/<measure> at step 0.

A folder that may hold points a resumed run redoes is written anew from metrics.jsonl: its old event
files are deleted and the new writer starts with purge_step 1, so a TensorBoard that already read
them drops those points too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from potstill.tracking.records import final_numbers, flat_record, numbers

FOLDER = "tensorboard"


class TensorBoardSink:
    name = "tensorboard"

    def __init__(self, run_path: Path, settings: dict[str, str]) -> None:
        from torch.utils.tensorboard import SummaryWriter  # the tensorboard package: checked by tracking.require

        self.SummaryWriter = SummaryWriter
        self.folder = run_path / FOLDER
        self.settings = settings
        self.stage: str | None = None
        self.writer = None
        self.write_root({})  # an unfinished run (new or resumed) has no results yet

    def sync(self, stage: str, records: list[dict[str, Any]]) -> None:
        """From now on the stage's folder holds exactly `records`; later epochs arrive by `add`."""
        self.close()
        self.writer = self.fresh_writer(self.folder / stage, first_step=1)
        self.stage = stage
        for record in records:
            self.write(record)
        self.writer.flush()

    def add(self, record: dict[str, Any]) -> None:
        if record["stage"] != self.stage:
            raise RuntimeError(f"tensorboard: epoch of stage {record['stage']} logged before the stage was synced")
        self.write(record)
        self.writer.flush()  # an epoch is seconds or more: each one is on disk before the next starts

    def write(self, record: dict[str, Any]) -> None:
        for tag, value in numbers(flat_record(record)).items():
            self.writer.add_scalar(tag, value, global_step=record["epoch"])

    def finish(self, summary: dict[str, Any]) -> None:
        self.write_root(final_numbers(summary))

    def write_root(self, results: dict[str, float]) -> None:
        """The recipe's settings as a markdown table (text plugin) and the results, in one go."""
        writer = self.fresh_writer(self.folder, first_step=0)
        rows = "\n".join(f"| {key} | {value} |" for key, value in self.settings.items())
        writer.add_text("recipe", f"| setting | value |\n|---|---|\n{rows}", global_step=0)
        for tag, value in results.items():
            writer.add_scalar(tag, value, global_step=0)
        writer.close()

    def fresh_writer(self, folder: Path, first_step: int):
        """A writer in `folder` after the event files already there are deleted."""
        stale = sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []
        writer = self.SummaryWriter(str(folder), purge_step=first_step if stale else None)
        for path in stale:
            path.unlink()
        return writer

    def close(self, status: str = "FINISHED") -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer, self.stage = None, None
