"""Release logic (pure): which split and shuffle bucket every document goes to, sampling weights, decontamination.

Every decision is a keyed hash of (seed, doc_id), so it is the same whatever the worker count or shard order:
  * holdout: u < holdout fraction (SlimPajama: 0.17%), then split evenly into validation and test;
  * train copies: weight w gives floor(w) copies plus one more with probability w - floor(w) (w < 1 subsamples);
  * bucket: each copy lands in one of the split's buckets; a bucket is then shuffled in memory (two-pass shuffle).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slimpajama.core import defaults

SPLITS = ("train", "validation", "test")
FILE_STEM = {"train": "example_train", "validation": "example_holdout", "test": "example_holdout"}
_TWO64 = float(2**64)
MAX_WEIGHT = 1000.0  # copies of every document of a source: beyond this a weight is a typo, not a recipe


@dataclass(frozen=True)
class ReleaseConfig:
    seed: int = defaults.RELEASE_SEED
    holdout: float = defaults.HOLDOUT
    weights: dict[str, float] = field(default_factory=dict)  # source -> sampling weight (default 1)
    chunks: int = defaults.CHUNKS  # train/chunk1..chunkN
    docs_per_file: int = defaults.DOCS_PER_FILE
    bucket_bytes: int = defaults.BUCKET_BYTES  # text per shuffle bucket: what one pass-2 task holds

    def __post_init__(self):
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), not {self.holdout}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("sampling weights must be >= 0")
        if self.chunks < 1 or self.docs_per_file < 1:
            raise ValueError("chunks and docs per file must be >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = dict(sorted(self.weights.items()))
        return d


def parse_weights(spec: str | None) -> dict[str, float]:
    """'RedPajamaC4=0.5,RedPajamaBook=2.0' -> {...}"""
    out = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--weights: {part!r} is not SOURCE=WEIGHT")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"--weights: {value.strip()!r} (for {name.strip()}) is not a number") from None
        if not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"--weights: {name.strip()}={value.strip()}: a weight is a finite number from 0 to "
                             f"{MAX_WEIGHT:g} (copies of each document)")
        if name.strip() in out:
            raise ValueError(f"--weights: {name.strip()} is given twice")
        out[name.strip()] = weight
    return out


def _u64(seed: int, purpose: str, key: str) -> int:
    h = hashlib.blake2b(key.encode("utf-8"), digest_size=8, key=f"{seed}:{purpose}".encode())
    return int.from_bytes(h.digest(), "little")


def split_of(doc_id: str, cfg: ReleaseConfig) -> str:
    u = _u64(cfg.seed, "holdout", doc_id) / _TWO64
    if u >= cfg.holdout:
        return "train"
    return "validation" if u < cfg.holdout / 2 else "test"


def copies_of(doc_id: str, source: str, cfg: ReleaseConfig) -> int:
    w = cfg.weights.get(source, 1.0)
    whole = math.floor(w)
    frac = w - whole
    if frac and _u64(cfg.seed, "weight", doc_id) / _TWO64 < frac:
        whole += 1
    return whole


def bucket_of(doc_id: str, copy: int, n_buckets: int, cfg: ReleaseConfig) -> int:
    return _u64(cfg.seed, "bucket", f"{doc_id}#{copy}") % n_buckets


def bucket_order(n: int, split: str, bucket: int, cfg: ReleaseConfig) -> np.ndarray:
    """The in-memory shuffle of one bucket (pass 2)."""
    return np.random.default_rng([cfg.seed, SPLITS.index(split), bucket]).permutation(n)


def holdout_keys(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(n, 40) uint8: each text's UTF-8 length (8 bytes, little-endian) and SHA-256. The length lets the shuffle
    hash only the train texts that could equal a holdout text."""
    out = np.empty((len(texts), 40), dtype=np.uint8)
    out[:, :8] = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype("<i8").reshape(-1, 1).view(np.uint8)
    for i, t in enumerate(texts.cast(pa.binary()).to_pylist()):
        out[i, 8:] = np.frombuffer(hashlib.sha256(t).digest(), dtype=np.uint8)
    return out


def file_path(split: str, k: int, cfg: ReleaseConfig) -> str:
    """The k-th file of a split, spread over chunk1..chunkN like SlimPajama: chunk{k % N + 1}/<stem>_{k // N}."""
    return f"{split}/chunk{k % cfg.chunks + 1}/{FILE_STEM[split]}_{k // cfg.chunks}.jsonl.zst"
