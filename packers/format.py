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
import os
import shlex

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
# in a packed set (the folder of its splits): the `slimpajama shards` settings that wrote it, so a damaged file's
# message can give the command that rebuilds it
REBUILD_FILE = "_state/_rebuild.json"


def index_path(directory: str) -> str | None:
    """The index file of a packed split directory (either name), or None where there is none. An `index.json` is
    ours only with our format in it: litdata's and MosaicML's folders have one too."""
    path = storage.join(directory, INDEX_FILE)
    if storage.file_size(path) is not None:
        return path
    return storage.join(directory, OLD_INDEX_FILE) if foreign_index(directory) is False else None


def foreign_index(directory: str) -> bool | None:
    """Whether `directory`'s index.json is another library's (None: there is none)."""
    path = storage.join(directory, OLD_INDEX_FILE)
    size = storage.file_size(path)
    if size is None:
        return None
    if size > 64 << 20:  # no index of ours is that big
        return True
    try:
        index = json.loads(storage.read_bytes(path))
    except ValueError:
        return False  # ours, damaged: read_index says so
    return not (isinstance(index, dict) and "format" in index)


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
        raise SlimPajamaError(_no_index(directory)) from None
    except json.JSONDecodeError as e:
        raise SlimPajamaError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(index, dict) or "format" not in index:
        raise SlimPajamaError(f"{path}: not a packed shard index (no 'format' field): damaged or not ours; rebuild "
                              "the shards")
    if index.get("format") != FORMAT or index.get("version") != FORMAT_VERSION:
        raise SlimPajamaError(f"{path}: format {index.get('format')} v{index.get('version')}, expected {FORMAT} "
                              f"v{FORMAT_VERSION}")
    return index


def _no_index(directory: str) -> str:
    """Why `directory` is no packed split: missing, a packed set (name its splits), or something else."""
    if not storage.is_remote(directory) and not os.path.isdir(directory):
        return f"{directory}: no such directory (a packed split such as data/shards/seq2048/train)"
    if storage.is_remote(directory):
        children = {rel.split("/")[0] for rel, _ in storage.list_files(directory) if "/" in rel}
    else:
        children = {d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d))}
    splits = sorted(d for d in children if index_path(storage.join(directory, d)) is not None)
    if splits:
        names = ", ".join(storage.join(directory, s) for s in splits)
        return f"{directory} is a packed set of splits, not one split: pass one of {names}"
    if foreign_index(directory):
        return (f"{directory} holds another library's {OLD_INDEX_FILE} (a litdata or MosaicML export?), not packed "
                f"shards: `slimpajama stats` describes an export, your trainer's reader reads it")
    return f"not a packed shard directory (no {INDEX_FILE}): {directory}"


def rebuild_command(shards_dir: str) -> str | None:
    """The `slimpajama shards` command that rebuilds the damaged files of packed set `shards_dir`: the settings
    that wrote it, with `shards_dir` itself as --out (a copied folder is rebuilt where it is, not where it was
    packed)."""
    try:
        rebuild = json.loads(storage.read_bytes(storage.join(shards_dir, REBUILD_FILE)))
        return (f"slimpajama shards {shlex.quote(rebuild['cache'])} {rebuild['args']} --out "
                f"{shlex.quote(shards_dir)} --verify-outputs")
    except (FileNotFoundError, ValueError, KeyError):
        return None


def damaged(split_dir: str, path: str, why: str) -> SlimPajamaError:
    """The error of a damaged file of split `split_dir`: the file, what is wrong, and the commands that check
    every file and rebuild the damaged ones."""
    whole = os.path.dirname(os.path.abspath(split_dir)) if not storage.is_remote(split_dir) else \
        storage.parent(split_dir)
    command = rebuild_command(whole)
    fix = f"; rebuild it with: {command}" if command else "; rebuild the shards"
    return SlimPajamaError(f"{path}: damaged ({why}); `slimpajama verify {shlex.quote(split_dir)}` checks every "
                           f"file{fix}")


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
