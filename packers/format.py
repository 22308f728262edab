"""The packed shard format: Arrow IPC stream files (uncompressed, memory-mapped, zero-copy) plus an index,
`.slimpajama-index.json`. No library takes it for its own: litdata's and MosaicML's readers open a folder's
`index.json`, and HF's `load_dataset` skips hidden files, so it sees a split's Arrow files alone (and no split
where one packed to 0 rows: HF has no empty splits, only absent ones). Splits packed before this name are still
read from `index.json`.

A row holds `seq_len + 1` tokens (inputs = tokens[:-1], labels = tokens[1:]), the lengths of the document
segments it is made of (summing to seq_len + 1 - padding) and its padding (pad tokens at the end, bestfit only).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.writers import atomic_path, sha256_file, write_bytes_atomic

FORMAT = "slimpajama-packed"
FORMAT_VERSION = 1
INDEX_FILE = ".slimpajama-index.json"
OLD_INDEX_FILE = "index.json"  # what versions before 0.2 wrote


def index_path(directory: str) -> str | None:
    """The index file of a packed split directory (either name), or None where there is none."""
    for name in (INDEX_FILE, OLD_INDEX_FILE):
        path = storage.join(directory, name)
        if storage.file_size(path) is not None:
            return path
    return None


def row_schema(seq_len: int, dtype: np.dtype) -> pa.Schema:
    return pa.schema([("tokens", pa.list_(pa.from_numpy_dtype(dtype), seq_len + 1)),
                      ("doc_lens", pa.list_(pa.int32())), ("padding", pa.int32())])


def write_rows(path: str, tokens: np.ndarray, doc_lens: tuple[np.ndarray, np.ndarray], padding: np.ndarray,
               batch_rows: int = 1024) -> None:
    """Rows (n, seq_len + 1) -> one IPC stream file, atomically, in record batches of `batch_rows`. `doc_lens`:
    every row's document segment lengths back to back, and where each row's begin (n + 1 offsets)."""
    n, width = tokens.shape
    values, offsets = doc_lens
    schema = row_schema(width - 1, tokens.dtype)
    with atomic_path(path) as tmp, pa.OSFile(tmp, "wb") as sink, ipc.new_stream(sink, schema) as writer:
        for lo in range(0, n, batch_rows):
            hi = min(n, lo + batch_rows)
            flat = pa.array(np.ascontiguousarray(tokens[lo:hi]).reshape(-1))
            lens = pa.ListArray.from_arrays(pa.array((offsets[lo: hi + 1] - offsets[lo]).astype(np.int32)),
                                            pa.array(values[offsets[lo]: offsets[hi]].astype(np.int32)))
            writer.write_batch(pa.record_batch([pa.FixedSizeListArray.from_arrays(flat, width), lens,
                                                pa.array(padding[lo:hi].astype(np.int32))], schema=schema))


def same_lens(lens: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """`write_rows`' doc_lens for `rows` rows that share one list of segment lengths."""
    lens = np.asarray(lens, dtype=np.int32)
    return np.tile(lens, rows), np.arange(rows + 1, dtype=np.int64) * len(lens)


def write_index(directory: str, index: dict) -> str:
    """A split's index (written last: its presence means the split's files are complete); its path."""
    path = storage.join(directory, INDEX_FILE)
    write_bytes_atomic(path, json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **index}, indent=1).encode())
    return path


def index_digest(index: dict) -> str:
    """A SHA-256 of an index's content (key order aside)."""
    return hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()


def read_index(directory: str) -> dict:
    path = index_path(directory)
    try:
        if path is None:
            raise FileNotFoundError(directory)
        index = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise SlimPajamaError(f"not a packed shard directory (no {INDEX_FILE}): {directory}") from None
    except json.JSONDecodeError as e:
        raise SlimPajamaError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(index, dict) or "format" not in index:
        raise SlimPajamaError(f"{path}: not a packed shard index (no 'format' field): damaged or not ours; rebuild "
                              "the shards")
    if index.get("format") != FORMAT or index.get("version") != FORMAT_VERSION:
        raise SlimPajamaError(f"{path}: format {index.get('format')} v{index.get('version')}, expected {FORMAT} "
                              f"v{FORMAT_VERSION}")
    return index


def verify(directory: str) -> dict:
    """Checksums and structure of every file of a shard directory; raises SlimPajamaError naming the file."""
    index = read_index(directory)
    rows = 0
    for f in index["files"]:
        path = storage.join(directory, f["path"])
        size = storage.file_size(path)
        if size is None:
            raise SlimPajamaError(f"{path}: missing")
        if size != f["bytes"] or sha256_file(path) != f["sha256"]:
            raise SlimPajamaError(f"{path}: checksum mismatch (truncated or edited)")
        try:
            with pa.memory_map(storage.local_copy(path, size)) as src:
                table = ipc.open_stream(src).read_all()
        except pa.ArrowException as e:
            raise SlimPajamaError(f"{path}: unreadable ({e})") from None
        if table.num_rows != f["rows"] or table.schema.field("tokens").type.list_size != index["seq_len"] + 1:
            raise SlimPajamaError(f"{path}: {table.num_rows} rows of width "
                                  f"{table.schema.field('tokens').type.list_size}, index says {f['rows']} of "
                                  f"{index['seq_len'] + 1}")
        rows += table.num_rows
    if rows != index["rows"]:
        raise SlimPajamaError(f"{directory}: files hold {rows} rows, index says {index['rows']}")
    tokenizer = index.get("tokenizer") or {}
    if "file" in tokenizer:  # a model tokenizer's copy, which decodes the rows
        path = storage.join(directory, tokenizer["file"])
        if storage.stat(path) is None:
            raise SlimPajamaError(f"{path}: missing (the split's tokenizer)")
        if sha256_file(path) != tokenizer["sha256"]:
            raise SlimPajamaError(f"{path}: checksum mismatch (not the tokenizer the shards were packed with)")
    return index
