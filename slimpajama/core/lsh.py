"""LSH candidate edges and duplicate clusters, as array code over global document indices (no I/O).

Documents are numbered 0..N-1 in corpus order (shards sorted by path, rows in order). A partition holds the keys of
one band within one key range; sorting it by (key, index) puts candidate duplicates next to each other, and every
run of equal keys becomes a star of edges from its first (smallest) index to the others. Clusters are the
connected components of all edges, found by an array union-find whose root is always the component's smallest
index: that document is kept, every other member is a duplicate. The rule depends only on the corpus order, not
on workers, partitions or the order edges arrive in.
"""

from __future__ import annotations

import numba
import numpy as np

INDEX_DTYPE = np.uint32  # global document index; RedPajama has ~1e9 documents
MAX_DOCS = int(np.iinfo(INDEX_DTYPE).max)


def key_partition(keys: np.ndarray, n_partitions: int) -> np.ndarray:
    """Which key-range partition each 64-bit key falls in (the top bits; n_partitions is a power of two)."""
    bits = int(n_partitions).bit_length() - 1
    if bits == 0:
        return np.zeros(keys.shape, dtype=np.int64)
    return (keys >> np.uint64(64 - bits)).astype(np.int64)


def partition_edges(keys: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Star edges (first, other) within every run of equal keys. `index` must be increasing (corpus order).
    Peak memory is about 32 bytes per entry (the inputs, the sort order and the sorted copies); pass arrays
    nothing else holds and they are freed once sorted."""
    order = np.argsort(keys, kind="stable")  # stable: equal keys stay in increasing index order
    k = keys[order]
    del keys
    idx = index[order]
    del index, order
    n = _count_repeats(k)
    a = np.empty(n, dtype=INDEX_DTYPE)
    b = np.empty(n, dtype=INDEX_DTYPE)
    _star_edges(k, idx, a, b)
    return a, b


@numba.njit(cache=True, nogil=True)
def _count_repeats(k):
    n = 0
    for i in range(1, k.shape[0]):
        if k[i] == k[i - 1]:
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _star_edges(k, idx, a, b):
    j = 0
    first = 0
    for i in range(1, k.shape[0]):
        if k[i] == k[i - 1]:
            a[j] = idx[first]
            b[j] = idx[i]
            j += 1
        else:
            first = i


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values per row pair: MinHash's Jaccard estimate."""
    return (sig_a == sig_b).mean(axis=1)


@numba.njit(cache=True, nogil=True)
def _find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


@numba.njit(cache=True, nogil=True)
def union_edges(parent, a, b):
    """Merge the components of every edge; the smaller root wins, so a root is its component's minimum."""
    for i in range(a.shape[0]):
        ra = _find(parent, a[i])
        rb = _find(parent, b[i])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb


@numba.njit(cache=True, nogil=True)
def _flatten(parent, is_root):
    """Point every document at its root; mark roots of clusters of two or more; return how many documents are in
    such clusters."""
    n = 0
    for x in range(parent.shape[0]):
        r = _find(parent, x)
        parent[x] = r
        if r != x:
            if not is_root[r]:
                is_root[r] = True
                n += 1
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _members(parent, is_root, out_members, out_roots):
    j = 0
    for x in range(parent.shape[0]):
        if parent[x] != x or is_root[x]:
            out_members[j] = x
            out_roots[j] = parent[x]
            j += 1


def new_forest(n: int) -> np.ndarray:
    if n > MAX_DOCS:
        raise ValueError(f"{n} documents exceed the {MAX_DOCS} a uint32 index holds")
    return np.arange(n, dtype=INDEX_DTYPE)


def clusters(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (members, roots): every document in a cluster of two or more, in index order, and its cluster's root
    (= the kept document). Flattens `parent` in place."""
    is_root = np.zeros(parent.shape[0], dtype=np.bool_)
    n = _flatten(parent, is_root)
    members = np.empty(n, dtype=INDEX_DTYPE)
    roots = np.empty(n, dtype=INDEX_DTYPE)
    _members(parent, is_root, members, roots)
    return members, roots


def clusters_reference(n: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same with scipy's connected components (the plain version the union-find is tested against)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(a), dtype=np.int8), (a.astype(np.int64), b.astype(np.int64))), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    first = np.full(labels.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n))
    root = first[labels]
    size = np.bincount(labels)[labels]
    members = np.flatnonzero(size > 1)
    return members.astype(INDEX_DTYPE), root[members].astype(INDEX_DTYPE)
