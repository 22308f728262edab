"""Progress display for long work: shards done / total and documents per second (rich)."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class _ShardBar:
    def __init__(self, progress: Progress, task_id):
        self._progress, self._task = progress, task_id
        self.docs = 0

    def advance(self, docs: int) -> None:
        self.docs += docs
        elapsed = self._progress.tasks[self._task].elapsed or 1e-9
        rate = f"{self.docs / elapsed:,.0f} docs/s" if self.docs else ""
        self._progress.update(self._task, advance=1, rate=rate)


@contextlib.contextmanager
def shard_progress(stage: str, total: int, done: int):
    """A bar over the stage's shards (the runner's `Progress`); `done` shards were already complete (resumed)."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("shards"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        console=Console(stderr=True))
    with progress:
        tid = progress.add_task(stage, total=total, completed=done, rate="")
        yield _ShardBar(progress, tid)


@contextlib.contextmanager
def counter_progress(description: str, unit: str, total: int | None = None):
    """A plain counter (of files, documents, ...); yields `tick(n)`."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                        TimeElapsedColumn(), console=Console(stderr=True))
    with progress:
        tid = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(tid, n)
