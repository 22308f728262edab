"""Batch tokenization: documents -> one token array with EOS after every document (pure; no I/O)."""

from __future__ import annotations

import numpy as np


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 when every id fits (GPT-2: 50257), else uint32."""
    return np.dtype(np.uint16) if n_vocab <= 1 << 16 else np.dtype(np.uint32)


def encode_documents(enc, texts: list[str], threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """-> (tokens, per-document lengths including the EOS). Special-token text in documents is encoded as
    ordinary text (`encode_ordinary`), so a document cannot inject an EOS."""
    ids = enc.encode_ordinary_batch(texts, num_threads=threads)
    eos = enc.eot_token
    flat: list[int] = []
    for seq in ids:  # list.extend runs in C: cheaper than per-document numpy assignment
        flat.extend(seq)
        flat.append(eos)
    lengths = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))
    return np.array(flat, dtype=token_dtype(enc.n_vocab)), lengths
