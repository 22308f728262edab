"""Atomic writers: parquet shards for intermediate stages, SlimPajama release chunks (jsonl.zst).

Every writer writes to a temporary name beside the target and renames it into place only when the file is
complete, so a killed run never leaves a file that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slimpajama.core.schema import DOC_SCHEMA
from slimpajama.io import storage

TMP_PREFIX = ".tmp-"
RELEASE_ZSTD_LEVEL = 3

# The driver run that temporary files belong to (`.tmp-<run>-<unique>-<name>`): start-up cleanup removes only
# other runs' files. Ray tasks adopt their driver's id (runner.execute_task).
_run_id = uuid.uuid4().hex[:8]
# SHA-256 of the files this process committed, by final path: a task's marker records its outputs' digests
# without reading them back (from an object store, above all).
_digests: dict[str, str] = {}


def run_id() -> str:
    return _run_id


def set_run_id(value: str) -> None:
    global _run_id
    _run_id = value


def tmp_path_for(path: str) -> str:
    d, base = os.path.split(path)
    return os.path.join(d, f"{TMP_PREFIX}{_run_id}-{uuid.uuid4().hex[:12]}-{base}")


def tmp_run_id(name: str) -> str | None:
    """The run id in a temporary file's name (None for other names)."""
    if not name.startswith(TMP_PREFIX):
        return None
    return name[len(TMP_PREFIX):].split("-", 1)[0]


class AtomicFile:
    """One output file written under a temporary local name: `commit()` fsyncs and renames it to `path` (or uploads
    it, for an object-store URI), `abort()` removes it. As a context manager it yields the temporary path and
    commits on success, aborts on an exception (`atomic_path`); a writer that outlives a `with` block holds one and
    calls commit or abort itself."""

    def __init__(self, path: str):
        self.path, self.remote = str(path), storage.is_remote(path)
        if not self.remote:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.tmp = storage.staging_path(self.path) if self.remote else tmp_path_for(self.path)
        self.done = False

    def commit(self) -> None:
        try:
            _digests[self.path] = sha256_file(self.tmp)
            if self.remote:
                storage.publish(self.tmp, self.path)
                os.remove(self.tmp)
            else:
                with open(self.tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.done = True

    def abort(self) -> None:
        if not self.done:
            self.done = True
            with contextlib.suppress(OSError):  # gone, or a read-only folder: the original error is the news
                os.remove(self.tmp)

    def __del__(self):  # dropped without commit or abort (an error on a path nobody caught): nothing stays
        self.abort()

    def __enter__(self) -> str:
        return self.tmp

    def __exit__(self, et, ev, tb) -> bool:
        if et is None:
            self.commit()
        else:
            self.abort()
        return False


def atomic_path(path: str) -> AtomicFile:
    """`with atomic_path(path) as tmp:` write to `tmp`; on success it is fsynced and renamed to `path` (or
    uploaded, for an object-store URI), on failure removed."""
    return AtomicFile(path)


def write_bytes_atomic(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def save_npy_atomic(path: str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def save_shuffled_range(path: str, n: int, seed: int) -> None:
    """`np.random.default_rng(seed).permutation(n)` saved as .npy (the same bytes), made in its own file: arange
    written a block at a time, then shuffled in place, so no memory per value is held (the pages are the file's)."""
    if n == 0:
        return save_npy_atomic(path, np.random.default_rng(seed).permutation(0))
    with atomic_path(path) as tmp:
        mapped = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int64, shape=(n,))
        for lo in range(0, n, 1 << 18):
            mapped[lo: lo + (1 << 18)] = np.arange(lo, min(n, lo + (1 << 18)), dtype=np.int64)
        # a plain ndarray over the mapping: permutation shuffles an ndarray of arange(n) by the same draws
        np.random.default_rng(seed).shuffle(np.ndarray((n,), np.int64, buffer=mapped))
        mapped.flush()
        del mapped


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with storage.open_input(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str) -> str:
    """SHA-256 of a file: remembered from its atomic commit in this process, else read."""
    return _digests.get(str(path)) or sha256_file(path)


def forget_digests() -> None:
    _digests.clear()


def remove_stale_tmp(directory: str, keep_run: str | None = None, prune=None) -> int:
    """Delete temporary files killed runs left behind (all but `keep_run`'s); returns how many. `prune(dirpath)`
    -> True skips a subdirectory (one another live run owns)."""
    n = 0
    if storage.is_remote(directory) or not os.path.isdir(directory):  # objects are never uploaded half-written
        return 0
    for dirpath, dirnames, files in os.walk(directory):
        if prune is not None:
            dirnames[:] = [d for d in dirnames if not prune(os.path.join(dirpath, d))]
        for name in files:
            if name.startswith(TMP_PREFIX) and (keep_run is None or tmp_run_id(name) != keep_run):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(dirpath, name))
                n += 1
    return n


GROUP_ROWS = 1024
GROUP_TEXT_BYTES = 8 << 20
# The stages' own shards are written once and read by two or three later stages. LZ4 (parquet's LZ4_RAW) against
# zstd level 1, 160-203 MB of web pages and real text: writes in 0.75-0.8x the time, reads in half, at 1.5x the bytes
# (3.1-3.8x smaller than the text, against 4.6-6x). The release stays zstd: its bytes are SlimPajama's format.
SHARD_CODEC = "lz4"
PAGE_BYTES = 1 << 30  # pages end with their column chunk (see ParquetShardWriter)


class AtomicFileWriter:
    """A writer of one file through an `AtomicFile` (its `_file`): leaving `with` normally closes and publishes the
    file; an exception discards it (`_discard` closes what is open, the temporary file is removed)."""

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            try:
                self.close()
            except BaseException:  # e.g. a full disk refused the last write: the file is not published
                self._file.abort()
                raise
            return False
        try:
            self._discard()
        finally:
            self._file.abort()
        return False


class ParquetShardWriter(AtomicFileWriter):
    """Streams rows into one parquet file (SHARD_CODEC); atomic on close.

    Row groups are cut by the rows themselves (at most GROUP_ROWS rows, closed once their text reaches
    GROUP_TEXT_BYTES), each column chunk one page, never by how the caller batched or chunked them, so the file's
    bytes do not depend on read batch sizes.
    Memory: one row group plus one incoming batch.
    """

    def __init__(self, path: str, schema: pa.Schema = DOC_SCHEMA, compression: str = SHARD_CODEC):
        self.path = path
        self.schema = schema
        self._file = AtomicFile(path)
        self._tmp = self._file.tmp
        # dictionary pages only for columns that repeat (source): tried on text, they cost a quarter of the write
        # and fall back to plain pages anyway
        dictionary = [c for c in ("source",) if c in schema.names] if "text" in schema.names else True
        # one page per column chunk: Arrow closes a page after a batch of values (1024, never spanning two chunks
        # of the column) that took it past data_page_size, so with 1 MB pages where pages ended, and the file's
        # bytes, depended on how the rows arrived in chunks (read batch sizes, the slices `keep_rows` makes). A row
        # group holds at most GROUP_TEXT_BYTES plus one document (--max-doc-bytes), far below 1 GiB. (A check
        # after every value, write_batch_size=1, did the same at 4-5x the write time on 100-byte documents.)
        self._writer = pq.ParquetWriter(self._tmp, schema, compression=compression, write_statistics=False,
                                        use_dictionary=dictionary, data_page_size=PAGE_BYTES)
        self._pending = schema.empty_table()
        self.rows = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            self._pending = pa.concat_tables([self._pending, table])
            self.rows += batch.num_rows
            self._flush(final=False)

    def _group_rows(self) -> int:
        """Rows of the next row group, from the pending rows' text sizes."""
        n = min(self._pending.num_rows, GROUP_ROWS)
        if "text" in self.schema.names and n:
            sizes = pc.binary_length(self._pending["text"].slice(0, n)).to_numpy(zero_copy_only=False)
            reached = np.flatnonzero(np.cumsum(sizes) >= GROUP_TEXT_BYTES)
            if len(reached):
                n = int(reached[0]) + 1
        return n

    def _flush(self, final: bool) -> None:
        while self._pending.num_rows:
            n = self._group_rows()
            full = n < self._pending.num_rows or n == GROUP_ROWS
            if not (full or final):
                break
            self._writer.write_table(self._pending.slice(0, n), row_group_size=n)
            self._pending = self._pending.slice(n)

    def close(self) -> None:
        self._flush(final=True)
        self._writer.close()
        self._file.commit()

    def _discard(self) -> None:
        self._writer.close()


class NpyAppender(AtomicFileWriter):
    """A 1-D .npy file written a piece at a time, its length unknown until it closes: the bytes `np.save` gives
    the whole array. The header goes in last: for one dimension its size does not depend on the length."""

    def __init__(self, path: str, dtype):
        self.path, self.dtype, self.count = path, np.dtype(dtype), 0
        self._file = AtomicFile(path)
        self._tmp = self._file.tmp
        self._fh = open(self._tmp, "wb")
        self._fh.seek(len(self._header(0)))

    def _header(self, n: int) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                   "fortran_order": False, "shape": (n,)})
        return buf.getvalue()

    def write(self, values: np.ndarray) -> None:
        a = np.ascontiguousarray(values, dtype=self.dtype)
        self._fh.write(a.data)
        self.count += len(a)

    def close(self) -> None:
        head = self._header(self.count)
        assert len(head) == self._fh.tell() - self.count * self.dtype.itemsize  # the space left for it
        self._fh.seek(0)
        self._fh.write(head)
        self._fh.close()
        self._file.commit()

    def _discard(self) -> None:
        self._fh.close()


def release_line(text: str, source: str) -> bytes:
    """One SlimPajama line: exactly {"text": ..., "meta": {"redpajama_set_name": ...}} (compact, UTF-8)."""
    import orjson  # here, not at the top: the shard readers (packers.format) import this module on GPU boxes

    return orjson.dumps({"text": text, "meta": {"redpajama_set_name": source}}) + b"\n"


class ReleaseChunkWriter(AtomicFileWriter):
    """A SlimPajama release file: jsonl compressed with zstd level 3; atomic on close."""

    def __init__(self, path: str, level: int = RELEASE_ZSTD_LEVEL):
        self.path = path
        self._file = AtomicFile(path)
        self._tmp = self._file.tmp
        self._fh = open(self._tmp, "wb")
        import zstandard

        # write_content_size off and single-threaded: the bytes depend only on the lines written.
        self._zw = zstandard.ZstdCompressor(level=level).stream_writer(self._fh, closefd=False)
        self.docs = 0

    def write(self, text: str, source: str) -> None:
        self._zw.write(release_line(text, source))
        self.docs += 1

    def write_batch(self, batch: pa.RecordBatch | pa.Table, rows: int = 512) -> None:
        """The batch's lines, `rows` at a time: one compressor call per slice (zstd's output does not depend on how
        its input was cut), and never more than a slice of lines in memory."""
        for lo in range(0, batch.num_rows, rows):
            part = batch.slice(lo, rows)
            self._zw.write(b"".join(map(release_line, part.column("text").to_pylist(),
                                        part.column("source").to_pylist())))
            self.docs += part.num_rows

    def close(self) -> None:
        self._zw.close()
        self._fh.close()
        self._file.commit()

    def _discard(self) -> None:
        with contextlib.suppress(BaseException):
            self._zw.close()
            self._fh.close()
