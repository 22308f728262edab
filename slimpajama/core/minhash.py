"""MinHash signatures and LSH band keys of cleaned views (pure array code, no I/O).

Two hash modes:
  * "slimpajama": datasketch's `MinHash(num_perm, seed=1)` in its legacy scheme (datasketch 1.x, what SlimPajama
    ran: sha1_hash32 of each UTF-8 shingle, permutations (a*h+b) mod 2^61-1), computed by datasketch itself, so
    signatures are bit-identical to SlimPajama's.
  * "fast" (default): a 64-bit polynomial hash of each character n-gram over code points, mixed with
    splitmix64, and `num_perm` multiply-shift permutations (odd a, any b: ((a*h + b) mod 2^64) >> 32), all in
    one compiled loop. A plain numpy version (`fast_signatures_numpy`) defines it and tests check the kernel
    against it.
A document with fewer characters than the n-gram width has no shingles: its signature is all 0xFFFFFFFF and it is
never a duplicate (`has_shingles` is False).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np

from slimpajama.core import defaults
from slimpajama.core.textnorm import clean_text

EMPTY = np.uint32(0xFFFFFFFF)
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

    def to_dict(self) -> dict:
        return asdict(self)


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


def fast_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([_FAST_SEED, seed])
    a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def codepoints(cleaned: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts as one uint32 code point array plus offsets (one UTF-32 encode for the whole batch)."""
    offsets = np.zeros(len(cleaned) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in cleaned], out=offsets[1:])
    cps = np.frombuffer("".join(cleaned).encode("utf-32-le"), dtype=np.uint32)
    return cps, offsets


def _mix64_np(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def shingle_hashes_numpy(cps: np.ndarray, ngram: int) -> np.ndarray:
    """The fast mode's 64-bit hash of every character n-gram of one text (definition)."""
    n = len(cps) - ngram + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(ngram):
            h = h * _POLY + cps[k: k + n].astype(np.uint64) + np.uint64(1)
        return _mix64_np(h)


def fast_signatures_numpy(cleaned: list[str], cfg: MinHashConfig) -> np.ndarray:
    """Plain numpy definition of the fast signatures (slow; the compiled kernel must match it)."""
    a, b = fast_permutations(cfg.num_perm, cfg.seed)
    out = np.full((len(cleaned), cfg.num_perm), EMPTY, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for i, text in enumerate(cleaned):
            h = shingle_hashes_numpy(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), cfg.ngram)
            if len(h):
                out[i] = ((h[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)).min(axis=0).astype(np.uint32)
    return out


@numba.njit(cache=True, nogil=True)
def _mix64(h):
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


_BLOCK = 4  # shingles per pass over the permutations


@numba.njit(cache=True, nogil=True)
def _fast_signatures_kernel(cps, offsets, ngram, a, b, out):
    """The permutations loop runs once per block of 4 shingles and takes a branch-free min, so it compiles to SIMD
    (a conditional store per value did not: 2.9x slower); a short last block repeats its first shingle, which
    leaves a min unchanged."""
    num_perm = a.shape[0]
    # POLY ** ngram, to drop the character leaving the rolling window
    top = np.uint64(1)
    for _ in range(ngram):
        top = top * _POLY
    shift = np.uint64(32)
    one = np.uint64(1)
    ms = np.empty(_BLOCK, dtype=np.uint64)
    for d in range(offsets.shape[0] - 1):
        s = offsets[d]
        e = offsets[d + 1]
        sig = out[d]
        for j in range(num_perm):
            sig[j] = EMPTY
        shingles = e - s - ngram + 1
        if shingles <= 0:
            continue
        h = np.uint64(0)
        for k in range(ngram):
            h = h * _POLY + np.uint64(cps[s + k]) + one
        done = 0
        while done < shingles:
            cnt = min(_BLOCK, shingles - done)
            for t in range(cnt):
                ms[t] = _mix64(h)
                i = s + done + t  # the window starting here moves on by one character
                if i + ngram < e:
                    h = h * _POLY + np.uint64(cps[i + ngram]) + one - top * (np.uint64(cps[i]) + one)
            for t in range(cnt, _BLOCK):
                ms[t] = ms[0]
            m0, m1, m2, m3 = ms[0], ms[1], ms[2], ms[3]
            for j in range(num_perm):
                aj = a[j]
                bj = b[j]
                v0 = np.uint32((m0 * aj + bj) >> shift)
                v1 = np.uint32((m1 * aj + bj) >> shift)
                v2 = np.uint32((m2 * aj + bj) >> shift)
                v3 = np.uint32((m3 * aj + bj) >> shift)
                sig[j] = min(sig[j], min(min(v0, v1), min(v2, v3)))
            done += cnt


def fast_signatures(cleaned: list[str], cfg: MinHashConfig) -> np.ndarray:
    a, b = fast_permutations(cfg.num_perm, cfg.seed)
    cps, offsets = codepoints(cleaned)
    out = np.empty((len(cleaned), cfg.num_perm), dtype=np.uint32)
    _fast_signatures_kernel(cps, offsets, cfg.ngram, a, b, out)
    return out


# ------------------------------------------------------------------------------------------------ both modes


def signatures(texts: list[str], cfg: MinHashConfig, *, already_clean: bool = False) -> np.ndarray:
    """(n, num_perm) uint32 signatures of the cleaned views of `texts`."""
    cleaned = texts if already_clean else [clean_text(t) for t in texts]
    if cfg.hash == "slimpajama":
        out = np.empty((len(cleaned), cfg.num_perm), dtype=np.uint32)
        for i, c in enumerate(cleaned):
            out[i] = slimpajama_signature(c, cfg)
        return out
    return fast_signatures(cleaned, cfg)


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
