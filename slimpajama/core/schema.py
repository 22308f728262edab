"""The document record every stage reads and writes (docs/DESIGN.md, "On disk")."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DOC_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),  # "<path relative to input root>:<line or row, 1-based>"
        pa.field("source", pa.string(), nullable=False),  # RedPajama set name, e.g. RedPajamaCommonCrawl
        pa.field("text", pa.string(), nullable=False),
        pa.field("meta", pa.string(), nullable=False),  # the input row's metadata as a JSON object string
    ]
)

REDPAJAMA_SOURCES = (
    "RedPajamaCommonCrawl",
    "RedPajamaC4",
    "RedPajamaGithub",
    "RedPajamaBook",
    "RedPajamaArXiv",
    "RedPajamaWikipedia",
    "RedPajamaStackExchange",
)

UNKNOWN_SOURCE = "unknown"


def make_batch(doc_ids: list, sources: list, texts: list, metas: list) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(doc_ids, pa.string()), pa.array(sources, pa.string()), pa.array(texts, pa.string()),
         pa.array(metas, pa.string())],
        schema=DOC_SCHEMA,
    )


RUN_TEXT_BYTES = 16 << 10  # a slice per run of kept rows costs about what copying this much text does


def keep_rows(batch: pa.RecordBatch | pa.Table, keep: np.ndarray) -> pa.RecordBatch | pa.Table:
    """The rows of a document batch where `keep` is true, in order: zero-copy slices, one per run of kept rows (a
    table), or the batch itself when every row is kept. A filter copies every kept text (a tenth of the remove
    stage's time); where the runs are short (under RUN_TEXT_BYTES of text each, on average) it is the cheaper."""
    keep = np.asarray(keep, dtype=bool)
    if keep.all():
        return batch
    edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.astype(np.int8), [0]))))
    starts, ends = edges[0::2].tolist(), edges[1::2].tolist()
    kept_bytes = int(pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False)[keep].sum())
    if not starts or len(starts) * RUN_TEXT_BYTES > kept_bytes:
        return batch.filter(pa.array(keep))
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return pa.concat_tables([table.slice(s, e - s) for s, e in zip(starts, ends, strict=True)])
