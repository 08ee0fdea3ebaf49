"""Progress output: rich bars with ETA on a terminal, one line per epoch otherwise, nothing when quiet.

It goes to stderr, so stdout holds only results (and with --json only the summary). Piped lines are
never wrapped (one log line per epoch, whole); on a terminal the bar shrinks to fit narrow windows.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None

    def stage_start(self, name: str, total_steps: int, done_steps: int = 0) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=max(10, min(40, self.console.width - 60))),  # the other columns take about 60
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(name, total=total_steps, completed=done_steps, status="")

    def advance(self, status: str, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, status=status)

    def epoch_end(self, line: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(line, markup=False)
        else:
            self.console.print(line, highlight=False, markup=False, soft_wrap=not self.console.is_terminal)

    def stage_end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=not self.console.is_terminal)
