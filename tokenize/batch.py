"""Batch tokenization: documents -> one token array with EOS after every document (pure; no I/O)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .engine import engine_for


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 when every id fits (GPT-2: 50257), else uint32."""
    return np.dtype(np.uint16) if n_vocab <= 1 << 16 else np.dtype(np.uint32)


class Encoded(NamedTuple):
    tokens: np.ndarray  # every document's ids, each preceded by the BOS (when the tokenizer has one) and followed by EOS
    lengths: np.ndarray  # int64 per document: its ids + EOS (+ BOS)

    def ids_of(self, i: int, head: int) -> np.ndarray:
        """Document i's own ids (no BOS / EOS); `head`: 1 where a BOS precedes every document."""
        end = int(self.lengths[: i + 1].sum())
        return self.tokens[end - int(self.lengths[i]) + head: end - 1]


def with_specials(ids: np.ndarray, offsets: np.ndarray, eos: int, bos: int | None, dtype: np.dtype) -> Encoded:
    """The flat ids of n documents (`offsets`: n + 1) with BOS before and EOS after each, in one array of `dtype`:
    scattered in place, no per-document arrays."""
    n, head = len(offsets) - 1, 0 if bos is None else 1
    counts = np.diff(offsets)
    lengths = counts + 1 + head
    out = np.empty(len(ids) + n * (1 + head), dtype)
    starts = offsets[:-1] + np.arange(n, dtype=np.int64) * (1 + head)
    eos_at = starts + head + counts
    special = np.zeros(len(out), bool)
    special[eos_at] = True
    out[eos_at] = eos
    if head:
        special[starts] = True
        out[starts] = bos
    out[~special] = ids
    return Encoded(out, lengths.astype(np.int64))


def encode_documents(enc, texts: list[str], threads: int = 1, engine: str = "auto") -> Encoded:
    """-> (tokens, per-document lengths including the EOS, and the BOS where the tokenizer prepends one).
    `engine`: see engine.py (never changes the ids)."""
    ids, offsets = engine_for(enc, engine, threads).encode_flat(texts)
    return with_specials(ids, offsets, enc.eot_token, getattr(enc, "bos_token", None), token_dtype(enc.n_vocab))
