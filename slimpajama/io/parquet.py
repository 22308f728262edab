"""The parquet reader: row-group ranges, our own shards passed through, other schemas' columns kept as meta, invalid
UTF-8 and damaged files counted as bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from slimpajama.core import defaults, sources
from slimpajama.core.schema import DOC_SCHEMA, make_batch
from slimpajama.errors import BadRecord
from slimpajama.io import storage
from slimpajama.io.discover import InputFile
from slimpajama.io.reading import (
    OnBad,
    default_source,
)


def _invalid_utf8_rows(batch: pa.RecordBatch) -> list[int]:
    """Rows whose strings are not valid UTF-8 (parquet does not check; Python would raise on them)."""
    try:
        batch.validate(full=True)
        return []
    except pa.ArrowInvalid:
        pass
    bad = set()
    for col in batch.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            for i, v in enumerate(col.cast(pa.large_binary()).to_pylist()):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        bad.add(i)
    return sorted(bad)


def _decode_dictionaries(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary-encoded columns (what some writers make of repetitive strings) as plain ones."""
    if not any(pa.types.is_dictionary(f.type) for f in batch.schema):
        return batch
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _string_or_none(values: list, fallback) -> list:
    """Nulls (and non-strings) of an optional string column replaced, one by one, by `fallback(i)`."""
    return [v if isinstance(v, str) and v else fallback(i) for i, v in enumerate(values)]


def _own_shard_batch(batch: pa.RecordBatch) -> pa.RecordBatch | None:
    """A batch of one of our own shards, as it is, when it needs no repair (DOC_SCHEMA's columns, no null or empty
    id, source or meta, valid UTF-8); None otherwise (the row-by-row path decides). Every later stage reads such
    shards: no text becomes a Python object here. No size limit: the stage that wrote them applied its own, and a
    stage accepts what the stage before it wrote (a 40 MB document normalized with --max-doc-bytes 0 is deduped)."""
    if (not batch.num_rows or batch.schema.names != DOC_SCHEMA.names
            or any(t != pa.string() for t in batch.schema.types)):
        return None
    for name in ("doc_id", "source", "meta"):
        col = batch.column(name)
        if col.null_count or pc.min(pc.binary_length(col)).as_py() == 0:
            return None
    text = batch.column("text")
    if text.null_count:
        return None
    try:
        batch.validate(full=True)  # UTF-8, which parquet does not check
    except pa.ArrowInvalid:
        return None
    return pa.RecordBatch.from_arrays(batch.columns, schema=DOC_SCHEMA)


def _cast_doc_batch(batch: pa.RecordBatch, file: InputFile, first_row: int, source: str | None,
                    on_bad: OnBad, source_names: dict[str, str], max_doc_bytes: int | None) -> pa.RecordBatch:
    """A parquet batch -> DOC_SCHEMA. Our own shards pass through; other parquet keeps non-text columns as meta.
    A null doc_id, source or meta gets what a file without that column would give."""
    own = _own_shard_batch(batch)
    if own is not None:
        return own
    fallback_source = default_source(file, source, source_names)
    batch = _decode_dictionaries(batch)
    invalid = set(_invalid_utf8_rows(batch))
    for i in sorted(invalid):
        on_bad(BadRecord(file.rel, first_row + i + 1, "invalid_utf8", "a string column holds invalid UTF-8",
                         fallback_source, 0))
    keep = [i for i in range(batch.num_rows) if i not in invalid]
    if invalid:
        batch = batch.take(pa.array(keep, pa.int64()))
    row_no = [first_row + i + 1 for i in keep]  # 1-based row in the file, as doc ids and error reports name it
    names = batch.schema.names
    n = batch.num_rows
    text = batch.column("text")
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        for i in range(n):
            on_bad(BadRecord(file.rel, row_no[i], "non_string_text", f"'text' column is {text.type}",
                             fallback_source, 0))
        return make_batch([], [], [], [])
    if "meta" in names and pa.types.is_string(batch.column("meta").type):
        metas = _string_or_none(batch.column("meta").to_pylist(), lambda i: "{}")
    else:
        if "meta" in names:  # a struct or map column
            rows = batch.column("meta").to_pylist()
        else:  # every other column is metadata
            rest = [c for c in names if c not in ("text", "doc_id", "source", "red_pajama_subset")]
            rows = pa.Table.from_batches([batch.select(rest)]).to_pylist() if rest else [{}] * n
        metas = [json.dumps(m, ensure_ascii=False, default=str) for m in rows]
    if "doc_id" in names and batch.column("doc_id").null_count == 0:
        ids = batch.column("doc_id").cast(pa.string())  # our own shards: passed through as they are
    else:
        ids = [f"{file.rel}:{row_no[i]}" for i in range(n)]
        if "doc_id" in names:
            ids = _string_or_none(batch.column("doc_id").cast(pa.string()).to_pylist(), ids.__getitem__)
    if "source" in names and pa.types.is_string(batch.column("source").type):
        sources = _string_or_none(batch.column("source").to_pylist(), lambda i: fallback_source)
    else:
        sources = []
        subsets = (batch.column("red_pajama_subset").to_pylist() if "red_pajama_subset" in names
                   else [None] * n)
        for m, subset in zip(metas, subsets, strict=True):
            try:
                s = json.loads(m).get("redpajama_set_name")
            except (ValueError, AttributeError):
                s = None
            if not (isinstance(s, str) and s):
                s = source_names.get(subset, subset) if isinstance(subset, str) and subset else fallback_source
            sources.append(s)
    texts = text.to_pylist()
    sizes = pc.binary_length(text.cast(pa.large_binary())).to_pylist()
    keep = []
    for i in range(n):
        if texts[i] is None:
            on_bad(BadRecord(file.rel, row_no[i], "missing_text", "'text' is null", sources[i], 0))
        elif max_doc_bytes and sizes[i] > max_doc_bytes:
            on_bad(BadRecord(file.rel, row_no[i], "too_large", f"text of {sizes[i]} bytes exceeds --max-doc-bytes "
                             f"{max_doc_bytes}", sources[i], sizes[i]))
        else:
            keep.append(i)
    if len(keep) == n:
        return pa.RecordBatch.from_arrays([ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string()),
                                           pa.array(sources, pa.string()), text.cast(pa.string()),
                                           pa.array(metas, pa.string())], schema=DOC_SCHEMA)
    ids = ids.to_pylist() if isinstance(ids, pa.Array) else ids
    return make_batch([ids[i] for i in keep], [sources[i] for i in keep], [texts[i] for i in keep],
                      [metas[i] for i in keep])


# what pyarrow raises on a damaged file (a mangled footer can even give undecodable column names)
_PARQUET_ERRORS = (OSError, pa.ArrowException, ValueError, IndexError, KeyError)


def read_parquet(file: InputFile, on_bad: OnBad, *, source: str | None = None,
                 batch_rows: int = defaults.BATCH_ROWS, batch_bytes: int = defaults.BATCH_BYTES,
                 max_doc_bytes: int | None = defaults.MAX_DOC_BYTES,
                 source_map: tuple[tuple[str, str], ...] = (), with_texts: bool = False) -> Iterator[pa.RecordBatch]:
    """`with_texts`: yield (batch, its texts as Python strings) pairs, as read_jsonl does."""
    del batch_bytes  # parquet batches are bounded by rows and row groups
    names = sources.source_map(source_map)
    fallback_source = default_source(file, source, names)
    try:
        pf = storage.open_parquet(file.path)
        columns = pf.schema_arrow.names
    except _PARQUET_ERRORS as e:
        on_bad(BadRecord(file.rel, 0, "corrupt", f"not a readable parquet file: {e}", fallback_source, file.size))
        return
    if "text" not in columns:
        on_bad(BadRecord(file.rel, 0, "bad_schema", f"no 'text' column (columns: {columns})",
                         fallback_source, file.size))
        return
    if pf.metadata.num_rows == 0:  # complete (it has a footer) and empty: zero documents, e.g. a shard whose
        return  # documents were all short or all duplicates
    # a span is a range of row groups, and the row number of its first row
    groups, row = (list(range(file.span[0], file.span[1])), file.span[2] - 1) if file.span else (None, 0)
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups):
            out = _cast_doc_batch(batch, file, row, source, on_bad, names, max_doc_bytes)
            row += batch.num_rows
            if out.num_rows:
                yield (out, out.column("text").to_pylist()) if with_texts else out
    except _PARQUET_ERRORS as e:
        on_bad(BadRecord(file.rel, row + 1, "corrupt", f"{type(e).__name__}: {e}", fallback_source, 0))
