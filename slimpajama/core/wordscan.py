"""The compiled loops of benchmark decontamination (core/contamination.py says what they compute): word hashes of
the cleaned view read from UTF-8, the keys an evaluation item is found by, its Bloom filter, and the scan that
finds candidate matches in a batch of documents."""

from __future__ import annotations

import numba
import numpy as np

from slimpajama.core.cleaned import DELETE, PYTHON, SPACE

POLY = np.uint64(0x100000001B3)
KEY_SEED = np.uint64(0x51A7_C0DE_D00D_F00D)


@numba.njit(cache=True, nogil=True, inline="always")
def mix64(h):
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@numba.njit(cache=True, nogil=True, inline="always")
def doc_words(data, i, e, table, out, w, spans):
    """The hash of each word of the cleaned view of data[i:e] (UTF-8) into out[w:], cleaning as it reads (the
    table's lowercase / delete / space, as `clean_into`), and into spans[w:] the bytes of the whitespace-separated
    token each word is (from its first byte, punctuation included, to the whitespace after it) -> how many, or -1
    where the text holds a character only Python cleans (or is not valid UTF-8). `out` and `spans` have room for
    (e - i + 1) // 2 words."""
    start = w
    h = np.uint64(0)
    inword = False  # a kept character since the last space
    token = -1  # where the current token began (-1: in a space run)
    while i < e:
        at = i
        # cleaned.clean_into's UTF-8 decode, written out: a shared numba function returning (code point, next)
        # made this loop 3.6x slower (205 -> 57 MB/s)
        c0 = data[i]
        if c0 < 0x80:
            cp, i = c0, i + 1
        elif i + (2 if c0 < 0xE0 else 3 if c0 < 0xF0 else 4) > e:
            return -1
        elif c0 < 0xE0:
            cp, i = ((c0 & 0x1F) << 6) | (data[i + 1] & 0x3F), i + 2
        elif c0 < 0xF0:
            cp, i = ((c0 & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F), i + 3
        else:
            cp = ((c0 & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6)
            cp, i = cp | (data[i + 3] & 0x3F), i + 4
        v = table[cp]
        if v == SPACE:
            if inword:
                out[w] = mix64(h + KEY_SEED)
                spans[w, 0], spans[w, 1] = token, at
                w += 1
                h = np.uint64(0)
                inword = False
            token = -1
            continue
        if token < 0:
            token = at
        if v == DELETE:
            continue
        if v == PYTHON:
            return -1
        h = h * POLY + np.uint64(v) + np.uint64(1)
        inword = True
    if inword:
        out[w] = mix64(h + KEY_SEED)
        spans[w, 0], spans[w, 1] = token, e
        w += 1
    return w - start


@numba.njit(cache=True, nogil=True)
def words_kernel(data, offsets, table, python):
    """-> (the hash of every word of every text's cleaned view, flat; where each text's words start)."""
    ndocs = offsets.shape[0] - 1
    woff = np.zeros(ndocs + 1, dtype=np.int64)
    out = np.empty((offsets[-1] - offsets[0]) // 2 + ndocs + 1, dtype=np.uint64)
    spans = np.empty((out.shape[0], 2), dtype=np.int64)  # (not returned)
    w = 0
    for d in range(ndocs):
        n = doc_words(data, offsets[d], offsets[d + 1], table, out, w, spans)
        if n < 0:
            python[d] = True
            n = 0
        w += n
        woff[d + 1] = w
    return out[:w].copy(), woff


@numba.njit(cache=True, nogil=True, inline="always")
def run_key(words, at, g):
    h = np.uint64(0)
    for j in range(g):
        h = h * POLY + words[at + j]
    return mix64(h ^ KEY_SEED)


@numba.njit(cache=True, nogil=True)
def item_keys(words, woff, g, ngram, min_words):
    """The keys an item is found by -> (keys, item, position): for an item of `ngram` words or more, the key of
    the `g` words at every `ngram - g + 1`-th position (each of its `ngram`-word runs holds one of them whole, so
    the document's key at that place finds it: a sixth of the keys at 13 and 8); at 0 for an item of `min_words`
    to `ngram - 1` words."""
    step = ngram - g + 1
    total = 0
    for it in range(woff.shape[0] - 1):
        L = woff[it + 1] - woff[it]
        total += (L - g) // step + 1 if L >= ngram else (1 if L >= min_words else 0)
    keys = np.empty(total, dtype=np.uint64)
    item = np.empty(total, dtype=np.int64)
    pos = np.empty(total, dtype=np.int64)
    k = 0
    for it in range(woff.shape[0] - 1):
        L = woff[it + 1] - woff[it]
        starts = (L - g) // step + 1 if L >= ngram else (1 if L >= min_words else 0)
        for i in range(starts):
            q = i * step
            keys[k] = run_key(words, woff[it] + q, g)
            item[k] = it
            pos[k] = q
            k += 1
    return keys, item, pos


@numba.njit(cache=True, nogil=True)
def fill_filter(keys, filt, shift):
    for m in keys:  # a key is already a mixed hash: its high bits pick the word, its low bits the two bits
        low6 = np.uint64(63)
        filt[m >> shift] |= (np.uint64(1) << (m & low6)) | (np.uint64(1) << ((m >> np.uint64(6)) & low6))


@numba.njit(cache=True, nogil=True)
def match_kernel(data, offsets, table, g, ngram, filt, shift, keys, post_item, post_pos, item_words, item_woff,
                  python):
    """Every (document, word position, item, item position, length, first byte, end byte) where the document's
    words equal an item's (by hash): the candidates `find` confirms on the words (the bytes: the matched run's, in
    `data`). Each document's words are hashed into a buffer, then
    a rolling key over each `g` of them is tested against the filter, and only a pass is looked up."""
    cap = 64
    hits = np.empty((cap, 7), dtype=np.int64)
    nh = 0
    longest = 0
    for d in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    words = np.empty(longest // 2 + 1, dtype=np.uint64)
    spans = np.empty((longest // 2 + 1, 2), dtype=np.int64)
    top = np.uint64(1)  # POLY ** g: what the word leaving the window weighs
    for _ in range(g):
        top = top * POLY
    one, six, low6 = np.uint64(1), np.uint64(6), np.uint64(63)
    step = ngram - g + 1
    for d in range(offsets.shape[0] - 1):
        nw = doc_words(data, offsets[d], offsets[d + 1], table, words, 0, spans)
        if nw < 0:
            python[d] = True
            continue
        h = np.uint64(0)
        for p in range(min(g, nw) - 1):
            h = h * POLY + words[p]
        for p in range(nw - g + 1):
            h = h * POLY + words[p + g - 1]
            if p > 0:
                h -= top * words[p - 1]
            key = mix64(h ^ KEY_SEED)
            bits = (one << (key & low6)) | (one << ((key >> six) & low6))
            if filt[key >> shift] & bits != bits:
                continue
            j = np.searchsorted(keys, key)
            while j < keys.shape[0] and keys[j] == key:
                it, qk = post_item[j], post_pos[j]
                j += 1
                L = item_woff[it + 1] - item_woff[it]
                need = ngram if L >= ngram else L
                # the key's words are the run's words `back` after its start, for one back in 0..step-1
                for back in range(step if L >= ngram else 1):
                    q, at = qk - back, p - back
                    if q < 0 or at < 0:
                        break
                    if q + need > L or at + need > nw:
                        continue
                    base = item_woff[it] + q
                    same = True
                    for t in range(need):
                        if words[at + t] != item_words[base + t]:
                            same = False
                            break
                    if not same:
                        continue
                    if nh == cap:
                        cap *= 2
                        grown = np.empty((cap, 7), dtype=np.int64)
                        grown[:nh] = hits[:nh]
                        hits = grown
                    hits[nh, 0], hits[nh, 1], hits[nh, 2], hits[nh, 3], hits[nh, 4] = d, at, it, q, need
                    hits[nh, 5], hits[nh, 6] = spans[at, 0], spans[at + need - 1, 1]
                    nh += 1
    return hits[:nh]
