"""Document stages: one input file -> one parquet shard of DOC_SCHEMA rows, through a pure batch transform.

`DocumentStage.transform(batch)` returns the output batch and the rows it dropped, by reason, as boolean masks
over the input batch; this module does the reading, writing, bad-input log and ledger around it. The ingest
stage (identity transform) converts any corpus to parquet shards; normalize and later stages subclass it.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pyarrow as pa

from slimpajama.core.ledger import Ledger, sizes_by_source
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.discover import InputFile, corpus_suffix
from slimpajama.io.documents import read_documents
from slimpajama.io.reading import ReadOptions
from slimpajama.io.writers import ParquetShardWriter

from .stage import ShardOutcome, ShardTask, Stage


def strip_corpus_suffix(rel: str) -> str:
    suf = corpus_suffix(rel)
    return rel[: -len(suf)] if suf else rel


def file_tasks(files: list[InputFile]) -> list[ShardTask]:
    """One task per input file, or per part of a split file (split.py); its output mirrors the input's relative
    path (`a/b.jsonl.zst` -> `a/b.parquet`; the parts of `a/c.jsonl` -> `a/c.part-00000.parquet`, ...)."""
    tasks, seen, parts = [], {}, {}
    for f in files:
        key = strip_corpus_suffix(f.rel)
        if f.span is not None:
            parts[f.rel] = parts.get(f.rel, -1) + 1
            key = f"{key}.part-{parts[f.rel]:05d}"
        if key in seen:
            raise SlimPajamaError(f"inputs {seen[key]} and {f.rel} would write the same shard {key}.parquet; "
                                  "rename one of them")
        seen[key] = f.rel
        tasks.append(ShardTask(key=key, inputs=(f,)))
    return tasks


class DocumentStage(Stage):
    name = "ingest"
    documents_root = ""  # its parquet shards are the next stage's documents

    def __init__(self, read: ReadOptions | None = None):
        self.read = read or ReadOptions()

    def config(self) -> dict:
        """Settings of the transform that change its output (subclasses extend)."""
        return {}

    def fingerprint(self) -> dict:
        read = asdict(self.read)
        for k in ("on_error", "batch_rows", "batch_bytes"):  # a fail run that succeeds, and any read batch size,
            read.pop(k)  # write the same bytes (the fail policy is checked apart: runner._check_known_bad)
        return {"stage": self.name, "read": read, **self.config()}

    def transform(self, batch: pa.RecordBatch, first_row: int) -> tuple[pa.RecordBatch | pa.Table, dict[str, np.ndarray]]:
        """-> (output rows, {reason: boolean mask of dropped input rows}). Output rows are the input rows in
        none of the masks, in order. `first_row`: the batch's first row among the shard's documents.
        Identity here."""
        return batch, {}

    def start_shard(self, task: ShardTask, out_dir: str) -> None:
        """Called before the shard's first batch."""

    def finish_shard(self, task: ShardTask, out_dir: str) -> list[str]:
        """Called after the shard's last batch; returns extra outputs written (relative to out_dir)."""
        return []

    def run_shard(self, task: ShardTask, out_dir: str) -> ShardOutcome:
        ledger = Ledger(self.name)
        out_rel = task.key + ".parquet"
        row = 0
        self.start_shard(task, out_dir)
        with self.error_log(task, out_dir, ledger) as errors:
            with ParquetShardWriter(storage.join(out_dir, out_rel)) as writer:
                for f in task.inputs:
                    for batch in read_documents(f, errors, **self.read.reader_kwargs()):
                        writer.write(self._account(batch, row, ledger))
                        row += batch.num_rows
            extra = self.finish_shard(task, out_dir)
        return ShardOutcome(outputs=[out_rel, *extra], ledger=ledger, errors_file=errors.written)

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
