"""Benchmark contamination, GPT-3's rule on SlimPajama's cleaned view (pure array code, no I/O).

The words of a text are the words of its cleaned view (`clean_text(text).split()`: lowercase, ASCII punctuation
deleted, whitespace collapsed). A document is contaminated by an evaluation item when they share a run of `ngram`
words; an item shorter than that, of at least `min_words` words, matches where its whole word sequence occurs; a
shorter one is skipped (counted by the caller). `matches_reference` is that definition, by brute force.

The fast path (its compiled loops in core/wordscan.py): every word is a 64-bit hash, read from the UTF-8 bytes by a
loop that cleans as it goes. The index holds the key of `g = min(min_words, ngram)` words at every `ngram - g + 1`-th
position of a long item (each of its `ngram`-word runs holds one of them whole) and at the start of a short one,
sorted, with the item and position of each; a blocked Bloom filter over the keys (32 bits per key, two bits in one
64-bit word: one cache line per lookup, ~0.1% false positives); and the items' word hashes and texts. A document's key at each word position is tested
against the filter; a pass is looked up in the sorted keys, and each posting's words compared by hash at every
place the run could start; what is left is confirmed on the words themselves (`_confirmed`, from the matched bytes
alone), so a hash collision can never drop a document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from slimpajama.core.cleaned import clean_table, clean_text, is_short, utf8_buffers
from slimpajama.core.wordscan import fill_filter, item_keys, match_kernel, words_kernel

_BITS_PER_KEY = 32


def words_of(text: str) -> list[str]:
    """The words the match rule compares."""
    return clean_text(text).split()


def matches_reference(doc: str, item: str, ngram: int, min_words: int) -> int:
    """The definition: how many word positions of `doc` start a match with `item` (an `ngram`-word run the item
    holds, or, for an item of `min_words` to `ngram - 1` words, its whole word sequence); 0 for a shorter item."""
    d, it = words_of(doc), words_of(item)
    if len(it) < ngram and len(it) < min_words:
        return 0
    k = min(len(it), ngram)
    grams = {tuple(it[i: i + k]) for i in range(len(it) - k + 1)}
    return sum(tuple(d[i: i + k]) in grams for i in range(len(d) - k + 1))


# ------------------------------------------------------------------------------------------------ python side


def word_hashes(texts) -> tuple[np.ndarray, np.ndarray]:
    """(the hash of every word of each text, flat; offsets: text i's words are [offsets[i], offsets[i+1])) of a
    list of str or an Arrow string array. A text holding Σ or İ (which only Python's lower() handles) is cleaned
    by `clean_text` first (cleaning is idempotent)."""
    data, offsets = utf8_buffers(texts)
    python = np.zeros(len(offsets) - 1, dtype=np.bool_)
    words, woff = words_kernel(data, offsets, clean_table(), python)
    if not python.any():
        return words, woff
    rows = np.flatnonzero(python)
    raw = texts if isinstance(texts, list) else None
    again = np.zeros(len(rows), dtype=np.bool_)
    fixed, foff = words_kernel(*utf8_buffers([clean_text(raw[r] if raw is not None else texts[int(r)].as_py())
                                               for r in rows]), clean_table(), again)
    parts, counts, at = [], np.diff(woff), 0
    counts[rows] = np.diff(foff)
    for i, r in enumerate(rows):  # splice the re-cleaned texts' words in, in order
        parts += [words[woff[at]: woff[r]], fixed[foff[i]: foff[i + 1]]]
        at = r + 1
    parts.append(words[woff[at]:])
    new_off = np.zeros(len(woff), dtype=np.int64)
    np.cumsum(counts, out=new_off[1:])
    return np.concatenate(parts), new_off


@dataclass
class EvalIndex:
    """What every task reads (numpy arrays only: it travels through Ray's object store without a copy)."""

    ngram: int
    min_words: int
    keys: np.ndarray  # uint64, sorted
    post_item: np.ndarray  # int64: the item of each key
    post_pos: np.ndarray  # int64: the word position in it
    filt: np.ndarray  # uint64 blocked Bloom filter over `keys`
    shift: int  # 64 - log2(len(filt))
    item_words: np.ndarray  # uint64: every item's word hashes, flat
    item_woff: np.ndarray  # int64
    item_text: np.ndarray  # uint8: every item's text (UTF-8), flat
    item_toff: np.ndarray  # int64

    @property
    def g(self) -> int:
        return min(self.min_words, self.ngram)

    @property
    def items(self) -> int:
        return len(self.item_woff) - 1

    def item_words_text(self, item: int) -> list[str]:
        return words_of(bytes(self.item_text[self.item_toff[item]: self.item_toff[item + 1]]).decode(
            "utf-8", "surrogatepass"))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.keys, self.post_item, self.post_pos, self.filt, self.item_words,
                                      self.item_woff, self.item_text, self.item_toff))


class IndexBuilder:
    """Items in, in batches (their texts), an `EvalIndex` out. An item of fewer than `min_words` words and fewer
    than `ngram` can never match: `add` leaves it out and says so."""

    def __init__(self, ngram: int, min_words: int):
        self.ngram, self.min_words = ngram, min_words
        self._words, self._wcounts, self._text, self._tcounts = [], [], [], []

    def add(self, texts: list[str]) -> np.ndarray:
        """Adds the batch's matchable items (in order) and returns which they were."""
        data, offsets = utf8_buffers(texts)
        words, woff = word_hashes(texts)
        counts = np.diff(woff)
        keep = (counts >= self.ngram) | (counts >= self.min_words)
        self._words.append(_ranges(words, woff, keep))
        self._wcounts.append(counts[keep])
        self._text.append(_ranges(data, offsets, keep))
        self._tcounts.append(np.diff(offsets)[keep])
        return keep

    def build(self) -> EvalIndex:
        def flat(parts, dtype):
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        item_woff, item_toff = (np.concatenate(([0], np.cumsum(flat(c, np.int64)))).astype(np.int64)
                                for c in (self._wcounts, self._tcounts))
        item_words, item_text = flat(self._words, np.uint64), flat(self._text, np.uint8)
        self._words, self._text = [], []
        g = min(self.min_words, self.ngram)
        keys, item, pos = item_keys(item_words, item_woff, g, self.ngram, self.min_words)
        order = np.argsort(keys, kind="stable")  # (item, position) order among equal keys
        keys, item, pos = keys[order], item[order], pos[order]
        slots = 1 << max(6, int(np.ceil(np.log2(max(len(keys), 1) * _BITS_PER_KEY / 64))))  # a shift below 64
        filt = np.zeros(slots, dtype=np.uint64)
        shift = 64 - int(np.log2(slots))
        fill_filter(keys, filt, np.uint64(shift))
        return EvalIndex(self.ngram, self.min_words, keys, item, pos, filt, shift, item_words, item_woff,
                         item_text, item_toff)


def _ranges(values: np.ndarray, offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """values[offsets[i]:offsets[i+1]] for every kept i, concatenated."""
    starts, lens = offsets[:-1][keep], np.diff(offsets)[keep]
    if not len(lens):
        return values[:0].copy()
    at = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens) + np.arange(lens.sum())
    return values[at]


@dataclass(frozen=True)
class Match:
    doc: int  # the row in the batch
    item: int  # the item in the index
    positions: tuple[int, ...]  # the document's word positions where a match starts
    length: int  # words per match


def find(texts, index: EvalIndex) -> list[Match]:
    """Every (document, item) pair of `texts` (a list of str or an Arrow string array) that matches by the rule,
    confirmed on the words, in (document, item) order."""
    if index.items == 0:
        return []
    python = np.zeros(len(texts), dtype=np.bool_)
    data, offsets = utf8_buffers(texts)
    found = _confirmed(data, _candidates(data, offsets, index, python), index)
    if python.any():  # Σ or İ: cleaned by Python's lower() first (cleaning is idempotent)
        rows = np.flatnonzero(python)
        data, offsets = utf8_buffers([clean_text(_str(texts[int(r)])) for r in rows])
        again = _confirmed(data, _candidates(data, offsets, index, np.zeros(len(rows), dtype=np.bool_)), index)
        again[:, 0] = rows[again[:, 0]]
        found = np.concatenate([found, again])
    if not len(found):
        return []
    d, it, p = found[:, 0], found[:, 2], found[:, 1]
    order = np.lexsort((p, it, d))
    d, it, p, need = d[order], it[order], p[order], found[order, 4]
    pair = np.ones(len(d), dtype=bool)
    pair[1:] = (d[1:] != d[:-1]) | (it[1:] != it[:-1])
    keep = pair.copy()
    keep[1:] |= p[1:] != p[:-1]  # a position once per pair (an item may hold the run twice)
    d, it, p, need, pair = d[keep], it[keep], p[keep], need[keep], pair[keep]
    starts = np.flatnonzero(pair).tolist() + [len(d)]
    positions = p.tolist()
    return [Match(int(d[a]), int(it[a]), tuple(positions[a:b]), int(need[a]))
            for a, b in zip(starts[:-1], starts[1:], strict=True)]


def _str(t) -> str:
    return t if isinstance(t, str) else t.as_py()


def _candidates(data: np.ndarray, offsets: np.ndarray, index: EvalIndex, python: np.ndarray) -> np.ndarray:
    return match_kernel(data, offsets, clean_table(), index.g, index.ngram, index.filt, np.uint64(index.shift),
                         index.keys, index.post_item, index.post_pos, index.item_words, index.item_woff, python)


def _confirmed(data: np.ndarray, hits: np.ndarray, index: EvalIndex) -> np.ndarray:
    """The candidates whose words are the item's words, read from the matched bytes alone (a long page is not
    cleaned whole). Consecutive positions along one diagonal (a document run longer than the n-gram, as a copied
    paragraph gives) are confirmed at once, as one run, and a run of the same bytes against the same item words
    (a page the corpus repeats) once per batch."""
    if not len(hits):
        return hits
    d, p, it, q, need = (hits[:, k] for k in range(5))
    hits = hits[np.lexsort((p, p - q, it, d))]
    d, p, it, q, need = (hits[:, k] for k in range(5))
    new = np.ones(len(hits), dtype=bool)
    new[1:] = (d[1:] != d[:-1]) | (it[1:] != it[:-1]) | (p[1:] != p[:-1] + 1) | (q[1:] != q[:-1] + 1) | \
        (need[1:] != need[:-1])
    starts = np.flatnonzero(new).tolist() + [len(hits)]
    ok = np.zeros(len(hits), dtype=bool)
    items: dict[int, list[str]] = {}
    seen: dict[tuple, bool] = {}
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        item, q0, lo = int(it[a]), int(q[a]), int(hits[a, 5])
        hi, words_end = int(hits[b - 1, 6]), int(q[b - 1] + need[b - 1])
        key = (item, q0, words_end, bytes(data[lo:hi]))
        if key not in seen:
            if item not in items:
                items[item] = index.item_words_text(item)
            seen[key] = _words_at(data, lo, hi) == items[item][q0:words_end]
        if seen[key]:
            ok[a:b] = True
            continue
        for h in range(a, b):  # a hash collision somewhere in the run: position by position
            ok[h] = _words_at(data, hits[h, 5], hits[h, 6]) == items[item][q[h]: q[h] + need[h]]
    return hits[ok]


def _words_at(data: np.ndarray, lo: int, hi: int) -> list[str]:
    return words_of(bytes(data[lo:hi]).decode("utf-8", "surrogatepass"))


_WORD = re.compile(r"\S+")  # re's \s is str.isspace, as str.split's


def word_spans(text: str) -> list[tuple[int, int]]:
    """The character span in `text` of each word of its cleaned view (a whitespace-separated token that keeps a
    character once punctuation is deleted)."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text) if clean_text(m.group())]


def cut(text: str, matches: list[Match], window: int, min_chars: int) -> tuple[str | None, int]:
    """`text` less each matched span and `window` characters either side, its pieces of at least `min_chars`
    (cleaned) characters joined by a blank line -> (the new text, or None when no piece is left; characters cut)."""
    spans = word_spans(text)
    cuts = sorted((max(spans[p][0] - window, 0), min(spans[p + m.length - 1][1] + window, len(text)))
                  for m in matches for p in m.positions)
    pieces, at = [], 0
    for lo, hi in cuts:
        if lo > at:
            pieces.append(text[at:lo])
        at = max(at, hi)
    pieces.append(text[at:])
    kept = [p.strip() for p in pieces if not is_short(p, min_chars)]  # the low-length filter's own test
    new = "\n\n".join(kept)
    return (new or None), len(text) - sum(len(p) for p in kept)
