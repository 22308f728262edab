"""The document record every stage reads and writes (docs/DESIGN.md, "On disk")."""

from __future__ import annotations

import pyarrow as pa

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
