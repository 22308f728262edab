"""Megatron-core's MMap indexed dataset (`PREFIX.bin` + `PREFIX.idx`), the format Megatron-LM, NeMo and GPT-NeoX
read, written as a stream.

    .bin  the tokens of every sequence, back to back, in the dataset's dtype
    .idx  b"MMIDIDX\\x00\\x00", version (<Q, 1), dtype code (<B), sequence count (<Q), document count (<Q),
          sequence lengths (int32 each), sequence byte pointers into .bin (int64 each), document indices (int64:
          the first sequence of each document, then the total; here one sequence per document)
(megatron/core/datasets/indexed_dataset.py, `_IndexWriter`). The lengths go to a temporary file while the tokens
stream, and the index is assembled at close in fixed-size chunks, so memory does not grow with the corpus. Both
files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import struct

import numpy as np

from slimpajama.io.writers import AtomicFile

EXPORT_FORMAT = "megatron-mmap-indexed-dataset"  # the "format" of an export's PREFIX.json
INDEX_HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
_CHUNK = 1 << 22  # sequences per chunk when the index is assembled


def megatron_dtype(token_dtype) -> np.dtype:
    """The dtype a token cache exports as: uint16 as it is; uint32 (vocabularies over 65,536) as int32, since
    Megatron has no unsigned 32-bit code (token ids stay far below 2**31)."""
    dt = np.dtype(token_dtype)
    return dt if dt in DTYPE_CODES else np.dtype(np.int32)


class MegatronWriter:
    FORMAT = EXPORT_FORMAT

    def __init__(self, prefix: str, dtype):
        self.prefix, self.dtype = prefix, np.dtype(dtype)
        self.files = [prefix + ".bin", prefix + ".idx"]
        if self.dtype not in DTYPE_CODES:
            raise ValueError(f"Megatron's indexed dataset has no dtype {self.dtype}")
        self._bin = self._lens = None
        self._outs: list[AtomicFile] = []
        self.sequences = self.tokens = 0
        try:
            self._outs = [AtomicFile(prefix + ".bin")]
            self._outs.append(AtomicFile(prefix + ".idx"))
            self._bin = open(self._outs[0].tmp, "wb")
            self._idx_tmp = self._outs[1].tmp
            self._lens = open(self._idx_tmp + ".lengths", "w+b")
        except BaseException as e:  # e.g. a read-only folder: no temporary file, no half-entered context left
            self.__exit__(type(e), e, None)
            raise

    def add(self, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Sequences given as their tokens back to back and their lengths."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(tokens):
            raise ValueError(f"{len(tokens)} tokens for sequences of {int(lengths.sum())}")
        self._bin.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self._lens.write(lengths.astype(np.int32).tobytes())
        self.sequences += len(lengths)
        self.tokens += len(tokens)

    def close(self) -> None:
        self._bin.close()
        n, item = self.sequences, self.dtype.itemsize
        with open(self._idx_tmp, "wb") as idx:
            idx.write(INDEX_HEADER + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_CODES[self.dtype]))
            idx.write(struct.pack("<Q", n) + struct.pack("<Q", n + 1))
            self._lens.flush()
            lens = np.memmap(self._lens.name, dtype=np.int32, mode="r") if n else np.zeros(0, np.int32)
            for lo in range(0, n, _CHUNK):
                idx.write(np.asarray(lens[lo: lo + _CHUNK]).tobytes())
            pointer = 0
            for lo in range(0, n, _CHUNK):
                ends = np.cumsum(lens[lo: lo + _CHUNK], dtype=np.int64) * item + pointer
                idx.write(np.concatenate(([pointer], ends[:-1])).astype(np.int64).tobytes())
                pointer = int(ends[-1])
            for lo in range(0, n + 1, _CHUNK):
                idx.write(np.arange(lo, min(lo + _CHUNK, n + 1), dtype=np.int64).tobytes())
            del lens
        self._close_lengths()
        for out in self._outs:
            out.commit()

    def _close_lengths(self) -> None:
        if self._lens is not None:
            with contextlib.suppress(OSError):  # a full disk may refuse the flush: the file goes anyway
                self._lens.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._lens.name)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            try:
                self.close()
            except BaseException:  # a write refused at the end: nothing published
                for out in self._outs:
                    out.abort()
                raise
            return False
        if self._bin is not None:
            with contextlib.suppress(OSError):  # a full disk may refuse the flush: the original error is the news
                self._bin.close()
        self._close_lengths()
        for out in self._outs:  # those made (a read-only folder fails the first), not yet committed
            out.abort()
        return False
