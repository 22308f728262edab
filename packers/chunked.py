"""Token datasets as a folder of chunk files plus the folder's `index.json`, in the formats two streaming loaders
read: litdata's (`litdata.StreamingDataset(..., item_loader=TokensLoader(block_size))`, what litgpt pretrains
from) and MosaicML's MDS (`streaming.StreamingDataset`, what llm-foundry trains from). Each document is one item
(one MDS sample), its tokens as the cache holds them, EOS included.

    litdata  chunk-0-<k>.bin: uint32 item count N, uint32 byte offsets of the N items and of the end (from the
             file's start), the tokens; index.json {"chunks": [{chunk_bytes, chunk_size, dim, filename}],
             "config": {..., "data_format": ["no_header_tensor:<torch dtype code>"], "item_loader":
             "TokensLoader"}} (litdata/streaming/writer.py)
    MDS      shard.<k>.mds: uint32 sample count N, uint32 offsets[N + 1], the shard's JSON config, the samples;
             a sample is uint32 size of its one variable column, then "ndarray:<dtype>" (a byte (ndim << 2 |
             shape dtype), the length, the tokens); index.json {"version": 2, "shards": [...]}
             (streaming/base/format/mds/writer.py, encodings.py)

Documents are buffered up to the chunk size, then the chunk is written atomically; index.json goes last, so a
folder with one is complete. Chunk files of an earlier, larger export in the same folder are removed at close.
"""

from __future__ import annotations

import contextlib
import json
import os
import re

import numpy as np

from slimpajama.io import storage
from slimpajama.io.writers import write_bytes_atomic

CHUNK_BYTES = 64 << 20


class ChunkedWriter:
    """One dataset folder: `add` documents, `close` writes the last chunk and the index."""

    chunk_pattern: re.Pattern

    def __init__(self, prefix: str, dtype, chunk_bytes: int = CHUNK_BYTES):
        self.prefix, self.dtype, self.chunk_bytes = prefix, np.dtype(dtype), chunk_bytes
        self._parts: list[np.ndarray] = []
        self._lens: list[np.ndarray] = []
        self._buffered = 0
        self.chunks: list[dict] = []
        self.files: list[str] = []  # paths written, the index last
        self.sequences = self.tokens = 0

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Documents given as their tokens back to back and their lengths."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(tokens):
            raise ValueError(f"{len(tokens)} tokens for documents of {int(lengths.sum())}")
        self.sequences += len(lengths)
        self.tokens += len(tokens)
        ends = np.cumsum(lengths)
        d = t = 0
        while d < len(lengths):  # whole documents into the chunk until it holds chunk_bytes
            room = (self.chunk_bytes - self._buffered) // self.dtype.itemsize
            e = max(d + 1, int(np.searchsorted(ends, t + room, side="right")))
            self._parts.append(np.ascontiguousarray(tokens[t: ends[e - 1]], dtype=self.dtype))
            self._lens.append(lengths[d:e])
            self._buffered += (int(ends[e - 1]) - t) * self.dtype.itemsize
            d, t = e, int(ends[e - 1])
            if self._buffered >= self.chunk_bytes:
                self._flush()

    def _flush(self) -> None:
        if not self._parts:
            return
        tokens, lengths = np.concatenate(self._parts), np.concatenate(self._lens)
        self._parts, self._lens, self._buffered = [], [], 0
        name = self.chunk_name(len(self.chunks))
        data = self.encode(tokens, lengths)
        path = storage.join(self.prefix, name)
        write_bytes_atomic(path, data)
        self.files.append(path)
        self.chunks.append(self.chunk_info(name, len(data), tokens, lengths))

    def close(self) -> None:
        self._flush()
        index = storage.join(self.prefix, "index.json")
        write_bytes_atomic(index, json.dumps(self.index(), sort_keys=True).encode())
        self.files.append(index)
        if not storage.is_remote(self.prefix):  # chunks of an earlier, larger export here
            mine = {os.path.basename(p) for p in self.files}
            for name in os.listdir(self.prefix):
                if self.chunk_pattern.fullmatch(name) and name not in mine:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(self.prefix, name))

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.close()
        return False  # on failure: the chunks written so far are complete files; no index claims them

    # format-specific
    def chunk_name(self, k: int) -> str:
        raise NotImplementedError

    def encode(self, tokens: np.ndarray, lengths: np.ndarray) -> bytes:
        raise NotImplementedError

    def chunk_info(self, name: str, size: int, tokens: np.ndarray, lengths: np.ndarray) -> dict:
        raise NotImplementedError

    def index(self) -> dict:
        raise NotImplementedError


def _offsets(sizes: np.ndarray, start: int) -> np.ndarray:
    return (start + np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))).astype(np.uint32)


class LitDataWriter(ChunkedWriter):
    FORMAT = "litdata-tokens-loader"  # the "format" of an export's PREFIX.json
    chunk_pattern = re.compile(r"chunk-0-\d+\.bin")
    TORCH_DTYPE_CODES = {np.dtype(np.uint16): 20, np.dtype(np.int32): 15}  # litdata.constants._TORCH_DTYPES_MAPPING

    def __init__(self, prefix: str, dtype, chunk_bytes: int = CHUNK_BYTES):
        super().__init__(prefix, dtype, chunk_bytes)
        if self.dtype not in self.TORCH_DTYPE_CODES:
            raise ValueError(f"litdata export has no dtype {self.dtype}")

    def chunk_name(self, k: int) -> str:
        return f"chunk-0-{k}.bin"

    def encode(self, tokens, lengths) -> bytes:
        n = len(lengths)
        if tokens.nbytes + 4 * (n + 2) >= 1 << 32:
            raise ValueError("a litdata chunk over 4 GB: lower the chunk size")
        head = np.concatenate(([n], _offsets(lengths * self.dtype.itemsize, 4 * (n + 2)))).astype(np.uint32)
        return head.tobytes() + tokens.tobytes()

    def chunk_info(self, name, size, tokens, lengths) -> dict:
        return {"chunk_bytes": size, "chunk_size": int(len(lengths)), "dim": int(len(tokens)), "filename": name}

    def index(self) -> dict:
        return {"chunks": self.chunks, "config": {
            "chunk_bytes": self.chunk_bytes, "chunk_size": None, "compression": None, "compression_batch_size": None,
            "compression_level": None, "data_format": [f"no_header_tensor:{self.TORCH_DTYPE_CODES[self.dtype]}"],
            "data_spec": json.dumps([1, {"type": None, "context": None, "children_spec": []}]),
            "encryption": None, "ipc_compression": None, "item_loader": "TokensLoader", "types": "tensor"}}


class MDSWriter(ChunkedWriter):
    FORMAT = "mosaicml-mds"
    chunk_pattern = re.compile(r"shard\.\d{5,}\.mds")
    SHAPE_DTYPES = ((np.uint8, 0), (np.uint16, 1), (np.uint32, 2))  # streaming's NDArray shape dtype codes

    def __init__(self, prefix: str, dtype, chunk_bytes: int = CHUNK_BYTES):
        super().__init__(prefix, dtype, chunk_bytes)
        if self.dtype not in (np.dtype(np.uint16), np.dtype(np.int32)):
            raise ValueError(f"MDS export has no dtype {self.dtype}")
        self.config = {"column_encodings": [f"ndarray:{self.dtype.name}"], "column_names": ["tokens"],
                       "column_sizes": [None], "compression": None, "format": "mds", "hashes": [],
                       "size_limit": chunk_bytes, "version": 2}
        self._config_data = json.dumps(self.config, sort_keys=True).encode()

    def chunk_name(self, k: int) -> str:
        return f"shard.{k:05d}.mds"

    def encode(self, tokens, lengths) -> bytes:
        n = len(lengths)
        # per sample, as streaming's own writer: uint32 size of the column, the ndarray header (a byte for one
        # axis and the smallest unsigned dtype holding the length, then the length), the tokens
        heads = [self._shape_header(length) for length in lengths.tolist()]
        sizes = 4 + np.array([len(h) for h in heads], np.int64) + lengths * self.dtype.itemsize
        start = 4 + 4 * (n + 1) + len(self._config_data)
        if start + int(sizes.sum()) >= 1 << 32:
            raise ValueError("an MDS shard over 4 GB: lower the chunk size")
        bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
        body = b"".join(np.uint32(sizes[i] - 4).tobytes() + heads[i] + tokens[bounds[i]: bounds[i + 1]].tobytes()
                        for i in range(n))
        return np.uint32(n).tobytes() + _offsets(sizes, start).tobytes() + self._config_data + body

    @classmethod
    def _shape_header(cls, length: int) -> bytes:
        for kind, code in cls.SHAPE_DTYPES:
            if length <= np.iinfo(kind).max:
                return np.uint8((1 << 2) | code).tobytes() + kind(length).tobytes()
        raise ValueError(f"a document of {length} tokens")

    def chunk_info(self, name, size, tokens, lengths) -> dict:
        return {**self.config, "samples": int(len(lengths)),
                "raw_data": {"basename": name, "bytes": size, "hashes": {}}, "zip_data": None}

    def index(self) -> dict:
        return {"shards": self.chunks, "version": 2}
