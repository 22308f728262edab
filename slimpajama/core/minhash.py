"""MinHash signatures and LSH band keys of cleaned views (pure array code, no I/O).

Two hash modes:
  * "slimpajama": datasketch's `MinHash(num_perm, seed=1)` in its legacy scheme (datasketch 1.x, what SlimPajama
    ran: sha1_hash32 of each UTF-8 shingle, permutations (a*h+b) mod 2^61-1), computed by datasketch itself, so
    signatures are bit-identical to SlimPajama's.
  * "fast" (default): one hash per shingle (one-permutation hashing, Li, Owen and Zhang 2012): a 64-bit
    polynomial hash of each character n-gram over code points, seeded and mixed with splitmix64; its high bits pick
    one of `num_perm` bins, its low 32 bits are the value, each bin keeps its min. An empty bin (a short document
    has fewer shingles than bins) takes the value of the first non-empty bin of its own fixed random probe
    sequence (optimal densification, Shrivastava 2017), so every slot of two documents collides with probability
    J and the LSH S-curve 1-(1-J^r)^b holds (tests/test_scurve.py). All in one compiled loop that reads the UTF-8
    bytes (an Arrow column's own buffer) and cleans as it goes, so no cleaned string is built. A plain numpy
    version (`fast_signatures_numpy`, over `clean_text`) defines it and tests check the kernel against it.
A document with fewer characters than the n-gram width has no shingles: its signature is all 0xFFFFFFFF and it is
never a duplicate (`has_shingles` is False).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np

from slimpajama.core import defaults
from slimpajama.core.cleaned import clean_into, clean_table, clean_text, utf8_buffers

EMPTY = np.uint32(0xFFFFFFFF)
# fast 1: 128 multiply-shift permutations of every shingle; 2: one-permutation hashing, optimally densified
SCHEMES = {"fast": 2, "slimpajama": 1}
_POLY = np.uint64(0x100000001B3)  # FNV-64 prime: odd, so the rolling polynomial is invertible mod 2^64
_FAST_SEED = 0x5EED_51A7


@dataclass(frozen=True)
class MinHashConfig:
    ngram: int = defaults.NGRAM
    num_perm: int = defaults.NUM_PERM
    bands: int = defaults.BANDS
    rows: int = defaults.ROWS
    hash: str = "fast"  # fast | slimpajama
    seed: int = 1
    threshold: float = defaults.THRESHOLD  # used by --verify; bands x rows is SlimPajama's choice for it

    def __post_init__(self):
        if self.hash not in ("fast", "slimpajama"):
            raise ValueError(f"hash must be fast or slimpajama, not {self.hash!r}")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")

    @classmethod
    def for_threshold(cls, threshold: float, num_perm: int = defaults.NUM_PERM, **kw) -> MinHashConfig:
        """Bands and rows chosen the way datasketch's MinHashLSH does (equal false positive/negative weights)."""
        from datasketch.lsh import _optimal_param

        bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
        return cls(num_perm=num_perm, bands=bands, rows=rows, threshold=threshold, **kw)

    @property
    def scheme(self) -> int:
        """The version of the hash scheme: part of every fingerprint and run key, so signatures, clusters and an
        --against index made by an earlier scheme are recomputed or refused, never mixed."""
        return SCHEMES[self.hash]

    def to_dict(self) -> dict:
        return {**asdict(self), "scheme": self.scheme}


# ------------------------------------------------------------------------------------------------ slimpajama mode


def _datasketch_minhash(num_perm: int, seed: int):
    from datasketch import MinHash

    try:
        return MinHash(num_perm=num_perm, seed=seed, scheme="legacy")
    except TypeError:  # datasketch 1.x has only the legacy scheme
        return MinHash(num_perm=num_perm, seed=seed)


def slimpajama_signature(cleaned: str, cfg: MinHashConfig) -> np.ndarray:
    """SlimPajama's loop, vectorized by datasketch: identical values to `m.update(shingle)` per shingle."""
    m = _datasketch_minhash(cfg.num_perm, cfg.seed)
    n = cfg.ngram
    m.update_batch([cleaned[i: i + n].encode("utf-8") for i in range(len(cleaned) - n + 1)])
    return np.asarray(m.hashvalues, dtype=np.uint64).astype(np.uint32)


# ------------------------------------------------------------------------------------------------ fast mode


def _seed_key(seed: int) -> np.uint64:
    """What the seed adds to every shingle's polynomial hash before mixing (another seed: other signatures)."""
    return np.uint64(np.random.default_rng([_FAST_SEED, seed]).integers(0, 2**63, dtype=np.uint64) * 2 + 1)


def _mix64_np(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def shingle_hashes_numpy(cps: np.ndarray, ngram: int, key: int = 0) -> np.ndarray:
    """The fast mode's 64-bit hash of every character n-gram of one text (definition)."""
    n = len(cps) - ngram + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(ngram):
            h = h * _POLY + cps[k: k + n].astype(np.uint64) + np.uint64(1)
        return _mix64_np(h + np.uint64(key))


def fast_signatures_numpy(texts: list[str], cfg: MinHashConfig) -> np.ndarray:
    """Plain numpy definition of the fast signatures of the cleaned views (slow; the compiled kernel must match):
    one-permutation hashing, then optimal densification (see the module docstring)."""
    k, key = cfg.num_perm, _seed_key(cfg.seed)
    out = np.full((len(texts), k), EMPTY, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for i, text in enumerate(texts):
            cps = np.frombuffer(clean_text(text).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            h = shingle_hashes_numpy(cps, cfg.ngram, key)
            if not len(h):
                continue
            bins = ((h >> np.uint64(32)) * np.uint64(k) >> np.uint64(32)).astype(np.int64)
            sig = np.full(k, EMPTY, dtype=np.uint32)
            np.minimum.at(sig, bins, (h & np.uint64(0xFFFFFFFF)).astype(np.uint32))
            filled = np.zeros(k, dtype=bool)
            filled[bins] = True
            for b in np.flatnonzero(~filled):
                attempt = 1
                while not filled[_probe_np(b, attempt, k)]:
                    attempt += 1
                sig[b] = sig[_probe_np(b, attempt, k)]
            out[i] = sig
    return out


def _probe_np(i: int, attempt: int, k: int) -> int:
    with np.errstate(over="ignore"):
        h = np.uint64(i) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(attempt) * np.uint64(0xD1B54A32D192ED03)
        return int((_mix64_np(np.array([h + np.uint64(_FAST_SEED)]))[0] >> np.uint64(32)) * np.uint64(k)
                   >> np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _mix64(h):
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@numba.njit(cache=True, nogil=True, inline="always")
def _probe(i, attempt, k):
    """The bin that empty bin i borrows from at its `attempt`-th try (optimal densification): a fixed random
    sequence per bin, the same for every document, so two documents' bin i borrow alike (`_probe_np`: the same)."""
    h = np.uint64(i) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(attempt) * np.uint64(0xD1B54A32D192ED03)
    return np.int64(((_mix64(h + np.uint64(_FAST_SEED)) >> np.uint64(32)) * np.uint64(k)) >> np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _fused_kernel(data, offsets, table, ngram, key, out, python):
    """UTF-8 bytes of each document -> the fast signature of its cleaned view: clean into a buffer of code points
    (lowercase / delete / space through the table, spaces collapsed), roll the n-gram hash over it, and put each
    shingle's hash in one bin (its high bits pick the bin, its low 32 bits are the value: a min per bin), then
    fill every empty bin from the bins its probe sequence names (optimal densification). A document holding a
    `PYTHON` character is flagged and left to the caller."""
    k = out.shape[1]
    top = np.uint64(1)  # POLY ** ngram, to drop the character leaving the rolling window
    for _ in range(ngram):
        top = top * _POLY
    longest = 0
    for d in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    buf = np.empty(longest + 1, dtype=np.uint64)  # a character per byte at most
    filled = np.empty(k, dtype=np.bool_)
    shift, low = np.uint64(32), np.uint64(0xFFFFFFFF)
    kk = np.uint64(k)
    for d in range(offsets.shape[0] - 1):
        sig = out[d]
        for j in range(k):
            sig[j] = EMPTY
            filled[j] = False
        n = clean_into(data, offsets[d], offsets[d + 1], table, buf)
        if n < 0:
            python[d] = True
            continue
        if n < ngram:
            continue
        h = np.uint64(0)
        for t in range(ngram):
            h = h * _POLY + buf[t]
        for i in range(n - ngram + 1):
            if i > 0:
                h = h * _POLY + buf[i + ngram - 1] - top * buf[i - 1]
            m = _mix64(h + key)
            b = np.int64(((m >> shift) * kk) >> shift)
            v = np.uint32(m & low)
            if v < sig[b]:
                sig[b] = v
            filled[b] = True
        for b in range(k):
            if not filled[b]:
                attempt = 1
                while not filled[_probe(b, attempt, k)]:
                    attempt += 1
                sig[b] = sig[_probe(b, attempt, k)]


def fast_signatures(texts, cfg: MinHashConfig) -> np.ndarray:
    """Fast signatures of the cleaned views of `texts` (a list of str or an Arrow string array), without building
    the cleaned strings; the few documents the table leaves to Python are cleaned by `clean_text` and signed
    again (cleaning is idempotent)."""
    key = _seed_key(cfg.seed)
    data, offsets = utf8_buffers(texts)
    out = np.empty((len(offsets) - 1, cfg.num_perm), dtype=np.uint32)
    python = np.zeros(len(offsets) - 1, dtype=np.bool_)
    _fused_kernel(data, offsets, clean_table(), cfg.ngram, key, out, python)
    if python.any():
        rows = np.flatnonzero(python)
        raw = texts if isinstance(texts, list) else None
        cleaned = [clean_text(raw[r] if raw is not None else texts[int(r)].as_py()) for r in rows]
        data, offsets = utf8_buffers(cleaned)
        again = np.zeros(len(rows), dtype=np.bool_)
        _fused_kernel(data, offsets, clean_table(), cfg.ngram, key, out_rows := out[rows], again)
        assert not again.any()
        out[rows] = out_rows
    return out


# ------------------------------------------------------------------------------------------------ both modes


def signatures(texts, cfg: MinHashConfig, *, already_clean: bool = False) -> np.ndarray:
    """(n, num_perm) uint32 signatures of the cleaned views of `texts` (a list of str or an Arrow string array)."""
    if cfg.hash == "fast":
        return fast_signatures(texts, cfg)  # cleans as it goes; an already clean text cleans to itself
    if not isinstance(texts, list):
        texts = texts.to_pylist()
    out = np.empty((len(texts), cfg.num_perm), dtype=np.uint32)
    for i, t in enumerate(texts):
        out[i] = slimpajama_signature(t if already_clean else clean_text(t), cfg)
    return out


def has_shingles(sigs: np.ndarray) -> np.ndarray:
    return ~(sigs == EMPTY).all(axis=1)


@numba.njit(cache=True, nogil=True)
def _band_keys_kernel(sigs, bands, rows, out):
    for d in range(sigs.shape[0]):
        for band in range(bands):
            h = np.uint64(0x9E3779B97F4A7C15) * np.uint64(band + 1)
            for r in range(rows):
                h = _mix64(h ^ np.uint64(sigs[d, band * rows + r]))
            out[band, d] = h


def band_keys(sigs: np.ndarray, cfg: MinHashConfig) -> np.ndarray:
    """(bands, n) uint64: a 64-bit hash of each band's `rows` signature values. Two documents share a key exactly
    when their band values are equal (up to 64-bit collisions, about 1e-19 per pair)."""
    out = np.empty((cfg.bands, sigs.shape[0]), dtype=np.uint64)
    _band_keys_kernel(np.ascontiguousarray(sigs), cfg.bands, cfg.rows, out)
    return out
