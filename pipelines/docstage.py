"""Document stages: one input file -> one parquet file of DOC_SCHEMA rows, through a list of `Transform`s.

Each transform returns the rows it keeps and the rows it dropped, by reason, as boolean masks over its input;
this module does the reading, writing, bad-input log, per-worker setup and ledger around them. With no
transform the stage is `ingest` (any corpus to parquet files); normalize is two transforms, dedup's remove one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import pyarrow as pa

from slimpajama.core.ledger import Ledger, sizes_by_source
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.discover import InputFile, corpus_suffix
from slimpajama.io.reading import ReadOptions
from slimpajama.io.writers import ParquetShardWriter

from . import registry
from .stage import Stage, Task, TaskResult


def strip_corpus_suffix(rel: str) -> str:
    suf = corpus_suffix(rel)
    return rel[: -len(suf)] if suf else rel


def file_tasks(files: list[InputFile]) -> list[Task]:
    """One task per input file, or per part of a split file (split.py); its output mirrors the input's relative
    path (`a/b.jsonl.zst` -> `a/b.parquet`; the parts of `a/c.jsonl` -> `a/c.part-00000.parquet`, ...)."""
    tasks, seen, parts = [], {}, {}
    for f in files:
        key = strip_corpus_suffix(f.rel)
        if f.span is not None:
            parts[f.rel] = parts.get(f.rel, -1) + 1
            key = f"{key}.part-{parts[f.rel]:05d}"
        if key in seen:
            raise SlimPajamaError(f"inputs {seen[key]} and {f.rel} would write the same file {key}.parquet; "
                                  "rename one of them")
        seen[key] = f.rel
        tasks.append(Task(key=key, inputs=(f,)))
    return tasks


class Transform:
    """One step of a document stage, applied to every batch the stage reads, in the stage's order.

    `config()`: the settings its output depends on (merged into the stage's fingerprint: a changed one recomputes);
    `setup()`: once per worker process, before its first batch: what it returns (a loaded model, an index attached
    from the object store) is `self.state` in every task that process runs; `start(task, out_dir)` and
    `finish(task, out_dir) -> extra outputs` around each task; `__call__(batch, rows) -> (kept rows, {reason:
    boolean mask of dropped input rows})`, where `rows` are the batch's row numbers among the task's documents.
    """

    state = None

    def config(self) -> dict:
        return {}

    def setup(self):
        return None

    def start(self, task: Task, out_dir: str) -> None:
        pass

    def finish(self, task: Task, out_dir: str) -> list[str]:
        return []

    def figures(self) -> dict:
        """What the task's marker records beside its ledger (`extra`), asked after `finish`."""
        return {}

    def __call__(self, batch: pa.RecordBatch, rows: np.ndarray) -> tuple[pa.RecordBatch, dict[str, np.ndarray]]:
        raise NotImplementedError


# what each transform class's setup() returned in this process, for which config: one per class, so a long-lived
# driver (a notebook running stage after stage inline) holds one index or model per transform, not every one
_STATES: dict[type, tuple[str, object]] = {}


def _set_up(t: Transform) -> None:
    config = json.dumps(t.config(), sort_keys=True, default=str)
    if _STATES.get(type(t), (None,))[0] != config:
        _STATES[type(t)] = (config, t.setup())
    t.state = _STATES[type(t)][1]


class DocumentStage(Stage):
    """A stage whose task reads documents and writes the ones its transforms keep, in order, as one parquet file,
    every document counted in its ledger (in = out + dropped by the reason of the first transform that drops it).
    With no transform it is `ingest`: any corpus to parquet files."""

    name = registry.INGEST.name
    documents_root = ""  # its parquet files are the next stage's documents

    def __init__(self, read: ReadOptions | None = None, transforms: Sequence[Transform] = (), name: str | None = None):
        self.read = read or ReadOptions()
        self.transforms = tuple(transforms)
        if name is not None:
            self.name = name

    def config(self) -> dict:
        """Settings of the transforms that change the output."""
        out: dict = {}
        for t in self.transforms:
            out.update(t.config())
        return out

    def fingerprint(self) -> dict:
        read = asdict(self.read)
        for k in ("on_error", "batch_rows", "batch_bytes"):  # a fail run that succeeds, and any read batch size,
            read.pop(k)  # write the same bytes (the fail policy is checked apart: runner._check_known_bad)
        return {"stage": self.name, "read": read, **self.config()}

    def transform(self, batch: pa.RecordBatch, first_row: int) -> tuple[pa.RecordBatch | pa.Table, dict[str, np.ndarray]]:
        """-> (output rows, {reason: boolean mask of dropped input rows}): the transforms in turn, each given the
        rows the ones before it kept. `first_row`: the batch's first row among the task's documents."""
        n = batch.num_rows
        rows = np.arange(first_row, first_row + n, dtype=np.int64)
        drops: dict[str, np.ndarray] = {}
        for t in self.transforms:
            batch, dropped = t(batch, rows)
            gone = np.zeros(len(rows), dtype=bool)
            for reason, mask in dropped.items():
                mask = np.asarray(mask, dtype=bool) & ~gone
                gone |= mask
                drops.setdefault(reason, np.zeros(n, dtype=bool))[rows[mask] - first_row] = True
            rows = rows[~gone]
        return batch, drops

    def start_task(self, task: Task, out_dir: str) -> None:
        """Called before the task's first batch."""
        for t in self.transforms:
            _set_up(t)
            t.start(task, out_dir)

    def finish_task(self, task: Task, out_dir: str) -> list[str]:
        """Called after the task's last batch; returns the extra outputs written (relative to out_dir)."""
        return [rel for t in self.transforms for rel in t.finish(task, out_dir)]

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        ledger = Ledger(self.name)
        out_rel = task.key + ".parquet"
        row = 0
        self.start_task(task, out_dir)
        with self.error_log(task, out_dir, ledger) as errors:
            with ParquetShardWriter(storage.join(out_dir, out_rel)) as writer:
                for batch in self.documents(task, errors):
                    writer.write(self._account(batch, row, ledger))
                    row += batch.num_rows
            extra = self.finish_task(task, out_dir)
        figures = {k: v for t in self.transforms for k, v in t.figures().items()}
        return TaskResult(outputs=[out_rel, *extra], ledger=ledger, errors_file=errors.written, extra=figures)

    def _account(self, batch: pa.RecordBatch, first_row: int, ledger: Ledger) -> pa.RecordBatch:
        ledger.batch_in(batch)
        out, drops = self.transform(batch, first_row)
        keep = np.ones(batch.num_rows, dtype=bool)
        for reason, mask in drops.items():
            mask = np.asarray(mask, dtype=bool) & keep  # a row is dropped once, for its first reason
            if mask.any():
                ledger.batch_dropped(batch, reason, where=mask)
            keep &= ~mask
        if out.num_rows != int(keep.sum()):
            raise AssertionError(f"{self.name}: transform returned {out.num_rows} rows, expected {int(keep.sum())}")
        written = sizes_by_source(out)
        for s, (d, b) in sizes_by_source(batch, where=None if keep.all() else keep).items():
            ledger.count_out(s, d, b, written.get(s, (0, 0))[1])
        return out
