"""Batch tokenization: documents -> one token array with EOS after every document (pure; no I/O)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 when every id fits (GPT-2: 50257), else uint32."""
    return np.dtype(np.uint16) if n_vocab <= 1 << 16 else np.dtype(np.uint32)


def _encode_ordinary_numpy(enc, text: str) -> np.ndarray:
    # encode() with no special tokens allowed and none disallowed is encode_ordinary: "<|endoftext|>" inside a
    # document is plain text, so a document cannot inject an EOS. The numpy variant skips building Python ints.
    return enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())


def _ids(enc, texts: list[str], threads: int) -> list[np.ndarray]:
    if hasattr(enc, "encode_batch_numpy"):  # a model's tokenizer.json / tokenizer.model (modelfiles.py)
        return enc.encode_batch_numpy(texts, threads)
    if hasattr(enc, "encode_to_numpy"):  # tiktoken
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                return list(pool.map(lambda t: _encode_ordinary_numpy(enc, t), texts))
        return [_encode_ordinary_numpy(enc, t) for t in texts]
    return [np.asarray(x, dtype=np.uint32) for x in enc.encode_ordinary_batch(texts, num_threads=threads)]


def encode_documents(enc, texts: list[str], threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """-> (tokens, per-document lengths including the EOS, and the BOS where the tokenizer prepends one)."""
    dtype = token_dtype(enc.n_vocab)
    ids = _ids(enc, texts, threads)
    eos = np.array([enc.eot_token], dtype=np.uint32)
    bos = getattr(enc, "bos_token", None)
    head = () if bos is None else (np.array([bos], dtype=np.uint32),)
    lengths = np.fromiter((len(x) + 1 + len(head) for x in ids), dtype=np.int64, count=len(ids))
    if not ids:
        return np.zeros(0, dtype), lengths
    return np.concatenate([x for seq in ids for x in (*head, seq, eos)]).astype(dtype, copy=False), lengths
