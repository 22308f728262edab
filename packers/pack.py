"""Packing algorithms over a token stream (documents with EOS, concatenated in token-cache order).

  concat  (BTLM's): the stream cut into rows of seq_len + 1 tokens with stride seq_len (a row's last token is the
          next row's first input), no padding. Rows are computed from stream positions, nothing is planned.
  bestfit: best-fit-decreasing within a buffer of documents: whole documents go into rows of seq_len + 1 tokens
          so that none is cut unless it is longer than a row; rows are padded at the end.
Rows are then written in a seeded global shuffle; every row keeps the lengths of its document segments.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

import numpy as np

from slimpajama.errors import SlimPajamaError


def check_range(range_: tuple[float, float]) -> tuple[float, float]:
    """A fraction A:B of a split's tokens (`--range`), with 0 <= A < B <= 1."""
    if not 0 <= range_[0] < range_[1] <= 1:
        raise SlimPajamaError(f"--range must be A:B with 0 <= A < B <= 1, not {range_[0]}:{range_[1]}")
    return range_


def in_range(doc_starts: np.ndarray, total: int, range_: tuple[float, float]) -> np.ndarray:
    """Which documents a range A:B of a split's `total` tokens holds: those whose first token lies in
    [A * total, B * total) (document-aligned, so 0:0.75 and 0.75:1 share no document). `doc_starts`: the
    documents' first-token positions in the split (any subset, e.g. one cache file's)."""
    a, b = range_
    return (doc_starts >= a * total) & (doc_starts < b * total)


class TokenStream:
    """Memory-mapped token arrays (cache shards, in order) seen as one array."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.starts = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=self.starts[1:])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def slice(self, a: int, b: int) -> np.ndarray:
        i = int(np.searchsorted(self.starts, a, side="right")) - 1
        parts = []
        while a < b:
            lo = a - self.starts[i]
            take = min(b - a, len(self.arrays[i]) - lo)
            parts.append(self.arrays[i][lo: lo + take])
            a += take
            i += 1
        return np.concatenate(parts) if len(parts) != 1 else np.array(parts[0])

    def windows(self, starts: np.ndarray, width: int) -> np.ndarray:
        """Rows `stream[s: s + width]` for every s in `starts` (no Python per row)."""
        out = np.empty((len(starts), width), dtype=self.arrays[0].dtype)
        self.copy_runs(np.asarray(starts, dtype=np.int64), np.full(len(starts), width, dtype=np.int64),
                       out.reshape(-1), np.arange(len(starts), dtype=np.int64) * width)
        return out

    def copy_runs(self, starts: np.ndarray, lens: np.ndarray, out: np.ndarray, dst: np.ndarray) -> None:
        """out[dst[k]: dst[k] + lens[k]] = stream[starts[k]: starts[k] + lens[k]] for every k: runs inside one
        array by a compiled loop, per array (a fancy-indexed gather measured 8x slower on 1 GB of rows); the few
        that cross from one array into the next are sliced."""
        which = np.searchsorted(self.starts, starts, side="right") - 1
        inside = starts + lens <= self.starts[which + 1]
        order = np.flatnonzero(inside)[np.argsort(which[inside], kind="stable")]
        arrays, bounds = np.unique(which[order], return_index=True)
        compiled = len(order) >= PYTHON_RUNS  # loading the compiled loop (~0.5 s) repays itself past that
        for i, runs in zip(arrays.tolist(), np.split(order, bounds[1:]) if len(order) else [], strict=True):
            copy = _copy_runs() if compiled else _copy_runs_plain
            copy(self.arrays[i], starts[runs] - self.starts[i], lens[runs], out, dst[runs])
        for k in np.flatnonzero(~inside).tolist():
            out[dst[k]: dst[k] + lens[k]] = self.slice(int(starts[k]), int(starts[k] + lens[k]))


PYTHON_RUNS = 20_000  # fewer runs per call are copied by a plain loop (~1 us a run): a small pack loads no numba


def _copy_runs_plain(src, starts, lens, out, dst):
    for s, n, d in zip(starts.tolist(), lens.tolist(), dst.tolist(), strict=True):
        out[d: d + n] = src[s: s + n]


@functools.cache
def _copy_runs():
    """The compiled copy loop, built on first use: the shard readers import this package on GPU machines, which
    have no numba (only packing, a pipeline stage, calls it)."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def copy_runs(src, starts, lens, out, dst):
        for k in range(starts.shape[0]):
            out[dst[k]: dst[k] + lens[k]] = src[starts[k]: starts[k] + lens[k]]

    return copy_runs


def ragged(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, s + c) for every (s, c): the flat index of ragged ranges."""
    total = int(counts.sum())
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + (np.arange(total) - first)


@dataclass
class ConcatPlan:
    t0: int  # first stream position of the range
    seq: int
    rows: int
    doc_starts: np.ndarray  # stream positions where documents start (ascending)

    def materialize(self, stream: TokenStream, row_ids: np.ndarray):
        """-> (tokens (n, seq + 1), document segment lengths and their offsets per row, padding)."""
        w = self.seq + 1
        starts = self.t0 + np.asarray(row_ids, dtype=np.int64) * self.seq
        tokens = stream.windows(starts, w)
        # a row's segments: from its start to each document starting inside it, to its end
        lo = np.searchsorted(self.doc_starts, starts + 1)
        inner = np.searchsorted(self.doc_starts, starts + w) - lo
        seg_offsets = np.zeros(len(starts) + 1, dtype=np.int64)
        np.cumsum(inner + 1, out=seg_offsets[1:])
        cuts_at = seg_offsets[:-1] + np.arange(len(starts))  # where each row's cuts begin in `cuts`
        cuts = np.empty(int(seg_offsets[-1]) + len(starts), dtype=np.int64)
        inner_at = ragged(cuts_at + 1, inner)
        cuts[cuts_at] = starts
        cuts[inner_at] = self.doc_starts[ragged(lo, inner)]
        cuts[cuts_at + inner + 1] = starts + w
        lens = np.diff(cuts)
        keep = np.ones(len(lens), dtype=bool)
        keep[cuts_at[1:] - 1] = False  # from one row's end to the next row's start: no segment
        return tokens, (lens[keep].astype(np.int32), seg_offsets), np.zeros(len(starts), dtype=np.int32)


class PiecePlan:
    """Rows made of pieces (whole documents or row-sized cuts of one); `row_pieces` says which, row after row."""

    seq: int
    pad_id: int

    def row_pieces(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (pieces per row, the pieces' stream positions, their lengths), the rows' pieces one row after another."""
        raise NotImplementedError

    def materialize(self, stream: TokenStream, row_ids: np.ndarray):
        """-> (tokens (n, seq + 1), document segment lengths and their offsets per row, padding). Tokens are
        copied a piece (a document, mostly) at a time: a gather per token measured 7x slower on real lengths."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        per_row, starts, lens = self.row_pieces(row_ids)
        tokens = np.full((len(row_ids), self.seq + 1), self.pad_id, dtype=stream.arrays[0].dtype)
        seg_offsets = np.zeros(len(row_ids) + 1, dtype=np.int64)
        np.cumsum(per_row, out=seg_offsets[1:])
        rows = np.repeat(np.arange(len(row_ids)), per_row)
        cols = np.cumsum(lens) - lens
        cols -= np.repeat(cols[seg_offsets[:-1][per_row > 0]], per_row[per_row > 0])  # from each row's start
        stream.copy_runs(starts, lens, tokens.reshape(-1), rows * (self.seq + 1) + cols)
        # these rows' padding, from their own pieces (padding() sums every row of the plan)
        ends = np.concatenate(([0], np.cumsum(lens)))
        padding = (self.seq + 1 - (ends[seg_offsets[1:]] - ends[seg_offsets[:-1]])).astype(np.int32)
        return tokens, (lens.astype(np.int32), seg_offsets), padding


@dataclass
class BestFitPlan(PiecePlan):
    seq: int
    piece_start: np.ndarray  # stream position of each piece (a whole document or a row-sized cut of one)
    piece_len: np.ndarray
    row_ptr: np.ndarray  # pieces of row r: row_ptr[r]:row_ptr[r+1]
    pad_id: int

    @property
    def rows(self) -> int:
        return len(self.row_ptr) - 1

    def padding(self) -> np.ndarray:
        used = np.add.reduceat(self.piece_len, self.row_ptr[:-1]) if self.rows else np.zeros(0, np.int64)
        return (self.seq + 1 - used).astype(np.int32)

    def row_pieces(self, row_ids):
        per_row = self.row_ptr[row_ids + 1] - self.row_ptr[row_ids]
        pieces = ragged(self.row_ptr[row_ids], per_row)
        return per_row, self.piece_start[pieces], self.piece_len[pieces]


@dataclass
class ChunkedPlan(PiecePlan):
    """A split's best-fit plan as its plan tasks made it, one chunk of documents each (whole best-fit buffers, so
    the chunks' rows, one chunk after another, are the rows of one plan of the split): the split's row r is row
    r - first[c] of the chunk c that holds it."""

    chunks: list[BestFitPlan]

    def __post_init__(self):
        self.seq, self.pad_id = self.chunks[0].seq, self.chunks[0].pad_id
        self.first = np.cumsum([0] + [c.rows for c in self.chunks])

    @property
    def rows(self) -> int:
        return int(self.first[-1])

    def row_pieces(self, row_ids):
        which = np.searchsorted(self.first, row_ids, side="right") - 1
        per_row, parts = np.zeros(len(row_ids), np.int64), []
        for c in np.unique(which):
            at = np.flatnonzero(which == c)
            n, starts, lens = self.chunks[c].row_pieces(row_ids[at] - self.first[c])
            per_row[at] = n
            parts.append((at, n, starts, lens))
        offsets = np.cumsum(per_row) - per_row  # each row's first piece among all the rows' pieces
        total = int(per_row.sum())
        starts, lens = np.empty(total, np.int64), np.empty(total, np.int64)
        for at, n, s, ln in parts:
            where = ragged(offsets[at], n)
            starts[where], lens[where] = s, ln
        return per_row, starts, lens


def concat_plan(doc_starts: np.ndarray, t0: int, t1: int, seq: int) -> ConcatPlan:
    rows = max(0, (t1 - t0 - 1) // seq)
    return ConcatPlan(t0=t0, seq=seq, rows=rows, doc_starts=doc_starts)


def concat_cut_docs(doc_starts: np.ndarray, doc_lens: np.ndarray, t0: int, seq: int) -> int:
    """Documents that concat packing splits across rows (a row boundary falls strictly inside them); the plan
    counts them a read batch at a time."""
    s = doc_starts - t0
    return int((s // seq != (s + doc_lens - 1) // seq).sum())


def bestfit_plan(doc_starts: np.ndarray, doc_lens: np.ndarray, seq: int, pad_id: int,
                 buffer_docs: int = 8192) -> tuple[BestFitPlan, int]:
    """-> (plan, documents cut). Documents longer than a row are cut into row-sized pieces (the last piece goes
    through best fit like any document). Compiled (packers/bestfit.py): 0.16-0.19 s per million web-like documents
    at seq 2048 or 8192, whatever the buffer (the shifting kernel before it: 0.33-0.70 s at 8,192 documents,
    1.1-4.2 s at 65,536), against 3.9 s for `bestfit_plan_reference`, the plain definition it must equal."""
    # numba: imported here, not where only shards are read (see packers/bestfit.py)
    from .bestfit import bestfit

    w = seq + 1
    starts = np.ascontiguousarray(doc_starts, dtype=np.int64)
    lens = np.ascontiguousarray(doc_lens, dtype=np.int64)
    n_pieces = int(np.sum(np.maximum(lens - 1, 0) // w + (lens > 0)))  # full rows + a last piece, per document
    piece_start = np.empty(n_pieces, dtype=np.int64)
    piece_len = np.empty(n_pieces, dtype=np.int64)
    row_ptr = np.empty(n_pieces + 1, dtype=np.int64)
    counts = bestfit(starts, lens, w, buffer_docs, piece_start, piece_len, row_ptr)
    n, rows, cut = (int(c) for c in counts)
    plan = BestFitPlan(seq=seq, piece_start=piece_start[:n], piece_len=piece_len[:n],
                       row_ptr=row_ptr[: rows + 1].copy(), pad_id=pad_id)
    return plan, cut


def bestfit_plan_reference(doc_starts: np.ndarray, doc_lens: np.ndarray, seq: int, pad_id: int,
                           buffer_docs: int = 8192) -> tuple[BestFitPlan, int]:
    """The plain definition of `bestfit_plan` (tests compare them)."""
    w = seq + 1
    piece_start, piece_len, row_ptr = [], [], [0]
    cut = 0
    for lo in range(0, len(doc_starts), buffer_docs):
        pieces = []
        for s, n in zip(doc_starts[lo: lo + buffer_docs].tolist(), doc_lens[lo: lo + buffer_docs].tolist(),
                        strict=True):
            if n > w:
                cut += 1
                while n > w:
                    pieces.append((w, s))
                    s += w
                    n -= w
            if n:
                pieces.append((n, s))
        pieces.sort(key=lambda p: (-p[0], p[1]))  # decreasing length; position breaks ties deterministically
        rem: list[tuple[int, int]] = []  # (remaining capacity, bin id), sorted
        bins: list[list[tuple[int, int]]] = []
        for n, s in pieces:
            i = bisect.bisect_left(rem, (n, -1))
            if i < len(rem):
                left, b = rem.pop(i)
                bins[b].append((s, n))
                bisect.insort(rem, (left - n, b))
            else:
                bins.append([(s, n)])
                bisect.insort(rem, (w - n, len(bins) - 1))
        for b in bins:
            for s, n in b:
                piece_start.append(s)
                piece_len.append(n)
            row_ptr.append(len(piece_start))
    plan = BestFitPlan(seq=seq, piece_start=np.array(piece_start, dtype=np.int64),
                       piece_len=np.array(piece_len, dtype=np.int64), row_ptr=np.array(row_ptr, dtype=np.int64),
                       pad_id=pad_id)
    return plan, cut


def row_order(rows: int, seed: int) -> np.ndarray:
    """The seeded global shuffle of rows."""
    return np.random.default_rng(seed).permutation(rows)
