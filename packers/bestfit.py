"""The best-fit plan's kernel (`slimpajama.packers.pack.bestfit_plan`): best-fit decreasing per buffer, O(log) per piece
(after Ding et al. 2024, "Fewer Truncations Improve Language Modeling"): a tree over capacities 0..w finds the
smallest capacity that fits, and the open bins of each capacity are a leftist heap on their ids, so among equal
capacities the oldest bin is taken, as in the reference's sorted list. Bins that are full leave both. The plan
before this one shifted a sorted array per piece: O(bins) per piece.

Its own module, imported only when a plan is made: the shard readers import packers/pack.py on GPU machines,
which have no numba. Helpers are module globals, not closures: numba's cache cannot key a closure and
recompiled the kernel in every process."""

import numba
import numpy as np


@numba.njit(inline="always")
def merge(a, b, left, right, dist, stack):
    """The leftist heap of heaps `a` and `b` (-1: empty), smallest id at the root: their right spines are
    merged, then walked back up swapping children so that the right spine stays the short one."""
    if a < 0:
        return b
    if b < 0:
        return a
    if b < a:
        a, b = b, a
    root, top = a, 1
    stack[0] = a
    while True:
        r = right[a]
        if r < 0:
            right[a] = b
            break
        if b < r:
            right[a] = b
            b = r
        a = right[a]
        stack[top] = a
        top += 1
    for t in range(top - 1, -1, -1):
        x = stack[t]
        dl = dist[left[x]] if left[x] >= 0 else 0
        dr = dist[right[x]] if right[x] >= 0 else 0
        if dl < dr:
            left[x], right[x] = right[x], left[x]
            dr = dl
        dist[x] = dr + 1
    return root


@numba.njit(inline="always")
def mark(tree, size, c, on):
    """Capacity c has open bins (on) or none: the flag and its ancestors' ORs."""
    i = c + size
    tree[i] = on
    i >>= 1
    while i >= 1:
        v = tree[2 * i] | tree[2 * i + 1]
        if tree[i] == v:
            break
        tree[i] = v
        i >>= 1


@numba.njit(inline="always")
def fitting(tree, size, n):
    """The smallest capacity >= n that has an open bin, or -1."""
    i = n + size
    if tree[i]:
        return n
    while i > 1:
        if i % 2 == 0 and tree[i + 1]:
            i += 1
            break
        i >>= 1
    if i == 1:
        return -1
    while i < size:
        i = 2 * i if tree[2 * i] else 2 * i + 1
    return i - size


@numba.njit(cache=True, nogil=True)
def bestfit(starts, lens, w, buffer_docs, piece_start, piece_len, row_ptr):
    out, rows, cut = 0, 0, 0
    row_ptr[0] = 0
    n_docs = starts.shape[0]
    size = 1
    while size < w + 1:
        size *= 2
    tree = np.zeros(2 * size, np.uint8)
    heap = np.full(w + 1, -1, np.int64)  # per capacity: the root of its open bins' heap
    stack = np.empty(130, np.int64)  # a merge walks two right spines of <= 64 nodes each
    for lo in range(0, n_docs, buffer_docs):
        hi = min(n_docs, lo + buffer_docs)
        m = 0
        for d in range(lo, hi):
            n = lens[d]
            m += (n - 1) // w + 1 if n > 0 else 0
        p_len = np.empty(m, np.int64)
        p_start = np.empty(m, np.int64)
        k = 0
        for d in range(lo, hi):
            s, n = starts[d], lens[d]
            if n > w:
                cut += 1
                while n > w:
                    p_len[k], p_start[k] = w, s
                    k += 1
                    s += w
                    n -= w
            if n:
                p_len[k], p_start[k] = n, s
                k += 1
        # decreasing length, position breaking ties (the reference's key (-len, start)): pieces were made in
        # increasing position, so a stable counting sort by length alone keeps that order among equal lengths
        at = np.zeros(w + 2, np.int64)  # at[w - n + 1]: pieces longer than n, then where n's begin
        for i in range(k):
            at[w - p_len[i] + 1] += 1
        for n in range(1, w + 2):
            at[n] += at[n - 1]
        order = np.empty(k, np.int64)
        for i in range(k):
            order[at[w - p_len[i]]] = i
            at[w - p_len[i]] += 1
        left = np.empty(k, np.int64)
        right = np.empty(k, np.int64)
        dist = np.empty(k, np.int64)
        bin_of = np.empty(k, np.int64)
        n_bins = 0
        for j in range(k):
            n = p_len[order[j]]
            c = fitting(tree, size, n)
            if c >= 0:  # the oldest bin of the smallest capacity that fits leaves its heap
                b = heap[c]
                heap[c] = merge(left[b], right[b], left, right, dist, stack)
                if heap[c] < 0:
                    mark(tree, size, c, 0)
            else:  # a new bin
                b, c = n_bins, w
                n_bins += 1
            bin_of[j] = b
            c -= n
            if c > 0:  # the bin, with less room, joins the heap of its new capacity
                left[b], right[b], dist[b] = -1, -1, 1
                if heap[c] < 0:
                    mark(tree, size, c, 1)
                heap[c] = merge(heap[c], b, left, right, dist, stack)
        for c in range(w + 1):  # the next buffer starts with no open bin
            if heap[c] >= 0:
                heap[c] = -1
                mark(tree, size, c, 0)
        # each bin's pieces in the order they were placed, bins in order of creation (a counting sort)
        slot = np.bincount(bin_of[:k], minlength=n_bins)  # the bin's pieces, then where its next piece goes
        for b in range(n_bins):
            row_ptr[rows + 1] = row_ptr[rows] + slot[b]
            slot[b] = row_ptr[rows]
            rows += 1
        for j in range(k):
            b, i = bin_of[j], order[j]
            piece_start[slot[b]], piece_len[slot[b]] = p_start[i], p_len[i]
            slot[b] += 1
        out += k
    return out, rows, cut
