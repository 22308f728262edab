"""One band's keys in one key range, gathered from every shard's minhash files: what an LSH task and an index task
of the same (band, part) read."""

from __future__ import annotations

import numpy as np

from slimpajama.core.lsh import INDEX_DTYPE, key_partition


def collect_partition(side, band: int, part: int, parts: int, offsets) -> tuple[np.ndarray, np.ndarray]:
    """This partition's (key, global index) pairs from every shard (side inputs `bands` and `valid`), in corpus
    order, in arrays sized up front (12 bytes per entry) so nothing is held twice."""
    shards = range(len(offsets) - 1)
    local = [(k.local(), v.local()) for k, v in zip(side["bands"], side["valid"], strict=True)]

    def selected(i):
        k = np.load(local[i][0], mmap_mode="r")[band]
        valid = np.load(local[i][1], mmap_mode="r")
        return k, np.flatnonzero(valid & (key_partition(k, parts) == part))

    counts = [len(selected(i)[1]) for i in shards]
    keys = np.empty(sum(counts), dtype=np.uint64)
    index = np.empty(sum(counts), dtype=INDEX_DTYPE)
    pos = 0
    for i in shards:
        k, rows = selected(i)
        keys[pos: pos + len(rows)] = k[rows]
        index[pos: pos + len(rows)] = rows + offsets[i]
        pos += len(rows)
    return keys, index


def key_range(part: int, parts: int) -> tuple[int, int]:
    """The keys [lo, hi) of partition `part` of `parts` (a power of two: the keys' top bits)."""
    width = 1 << (64 - (parts.bit_length() - 1))
    return part * width, (part + 1) * width
