"""Streaming corpus readers: jsonl / json (JSON lines) / parquet, plain or compressed (.zst, .gz, .bz2, .xz; suffixes
in any case), a directory tree of them, a glob, or a stage's output directory (read through its `_outputs.json`).

Every reader yields Arrow record batches with DOC_SCHEMA, holding at most `batch_rows` rows or about
`batch_bytes` bytes of text, so memory is bounded by the batch, never by the file. A record that cannot become a
document is reported to `on_bad` (a BadRecord naming file and line) and skipped; `raise_on_bad` turns that into
the `--on-error fail` policy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from slimpajama.io.discover import InputFile, discover
from slimpajama.io.jsonl import read_jsonl
from slimpajama.io.parquet import read_parquet
from slimpajama.io.reading import OnBad


def read_documents(file: InputFile, on_bad: OnBad, **kwargs) -> Iterator[pa.RecordBatch]:
    """Stream one corpus file as DOC_SCHEMA batches (see the module docstring); with_texts=True: (batch, its texts
    as Python strings) pairs."""
    reader = read_parquet if file.is_parquet else read_jsonl
    return reader(file, on_bad, **kwargs)


def iter_documents(inputs, on_bad: OnBad, **kwargs) -> Iterator[pa.RecordBatch]:
    """All files of `inputs` (paths, directories, globs) in order."""
    for f in discover(inputs):
        yield from read_documents(f, on_bad, **kwargs)
