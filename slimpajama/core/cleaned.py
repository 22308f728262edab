"""SlimPajama's cleaned view of a document, used only for the length filter and for MinHash, never released:
lowercase, delete `string.punctuation`, strip, collapse every whitespace run to one space.

`clean_table` is the same view as one table over code points, read by the compiled loops here and in minhash.
"""

from __future__ import annotations

import re
import string

import numba
import numpy as np

_ASCII_PUNCT = string.punctuation.encode()
_UNICODE_ONLY_ASCII_SPACE = re.compile("[\x1c-\x1f]")  # str.isspace but not bytes whitespace


def clean_text(text: str) -> str:
    """`clean_text_reference`, without a regex substitution per match: punctuation (ASCII) is deleted from the
    UTF-8 bytes, where no ASCII byte is ever part of another character, and strip + collapsing whitespace runs is
    split + join (both use str.isspace, as the reference's regex does)."""
    if text.isascii() and not _UNICODE_ONLY_ASCII_SPACE.search(text):
        # bytes: lower/translate/split in C without per-character dispatch (bytes whitespace is the ASCII one)
        return b" ".join(text.encode("ascii").lower().translate(None, _ASCII_PUNCT).split()).decode("ascii")
    lowered = text.lower().encode("utf-8", "surrogatepass").translate(None, _ASCII_PUNCT)
    return " ".join(lowered.decode("utf-8", "surrogatepass").split())


def clean_text_reference(text: str) -> str:
    """SlimPajama's clean(): the definition `clean_text` is tested against."""
    return re.sub(r"\s+", " ", text.lower().translate(str.maketrans("", "", string.punctuation)).strip())


# The cleaned view in one table over code points: each maps to its lowercase, or deletes (ASCII punctuation), is a
# space, or leaves the document to Python (str.lower's only non-local cases: Σ depends on its neighbours, İ becomes
# two characters).
DELETE, SPACE, PYTHON = np.uint32(0xFFFFFFFF), np.uint32(0xFFFFFFFE), np.uint32(0xFFFFFFFD)
_CLEAN_TABLE: np.ndarray | None = None


def clean_table() -> np.ndarray:
    """What `clean_text` does to each code point, read from Python's own str.lower / str.isspace (built once per
    process: ~50 ms)."""
    global _CLEAN_TABLE
    if _CLEAN_TABLE is None:
        cps = np.arange(0x110000, dtype=np.uint32)
        table = cps.copy()
        python = [0x03A3, 0x0130]  # Σ, İ
        spaces = []
        for lo, hi in ((0, 0xD800), (0xE000, 0x110000)):  # no str can lower a surrogate: they stay themselves
            text = cps[lo:hi].tobytes().decode("utf-32-le")
            low = np.frombuffer(text.replace("\u0130", "\0").lower().encode("utf-32-le"), dtype=np.uint32)
            table[lo:hi] = low
            spaces += [lo + m.start() for m in re.finditer(r"\s", text)]  # str.isspace, as split() uses
        changed = table != cps
        assert (table[table[changed]] == table[changed]).all(), "str.lower is not idempotent here"
        table[spaces] = SPACE
        table[np.frombuffer(string.punctuation.encode(), dtype=np.uint8)] = DELETE
        table[python] = PYTHON
        _CLEAN_TABLE = table
    return _CLEAN_TABLE


@numba.njit(cache=True, nogil=True, inline="always")
def clean_into(data, i, e, table, buf, limit=-1):
    """The cleaned view of data[i:e] (UTF-8) as code point + 1 values in `buf`: -> how many, or -1 where the
    document holds a character only Python cleans (or is not valid UTF-8). With `limit` >= 0 it stops once it
    has that many (a length test reads only the start of a long page)."""
    n = 0
    pending = False  # a space run after a character: written as one space before the next character
    while i < e:
        c0 = data[i]
        if c0 < 0x80:
            cp, i = c0, i + 1
        elif i + (2 if c0 < 0xE0 else 3 if c0 < 0xF0 else 4) > e:  # cut short: not valid UTF-8
            return -1
        elif c0 < 0xE0:
            cp, i = ((c0 & 0x1F) << 6) | (data[i + 1] & 0x3F), i + 2
        elif c0 < 0xF0:
            cp, i = ((c0 & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F), i + 3
        else:
            cp = ((c0 & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6)
            cp, i = cp | (data[i + 3] & 0x3F), i + 4
        v = table[cp]
        if v == DELETE:
            continue
        if v == SPACE:
            pending = n > 0
            continue
        if v == PYTHON:
            return -1
        if pending:
            buf[n] = 33  # " " + 1
            n += 1
            pending = False
        buf[n] = np.uint64(v) + np.uint64(1)
        n += 1
        if 0 <= limit <= n:
            break
    return n


def utf8_buffers(texts) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets) of the texts: an Arrow string array's own buffers (no copy), or a list's UTF-8 encode."""
    import pyarrow as pa

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array) and texts.null_count == 0 and texts.type in (pa.string(), pa.large_string()):
        _, off, data = texts.buffers()
        width = np.int32 if texts.type == pa.string() else np.int64
        offsets = np.frombuffer(off, dtype=width)[texts.offset: texts.offset + len(texts) + 1].astype(np.int64)
        return (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)), offsets
    if isinstance(texts, pa.Array):
        texts = texts.to_pylist()
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


@numba.njit(cache=True, nogil=True)
def _short_kernel(data, offsets, table, min_chars, short, python):
    buf = np.empty(min_chars + 2, dtype=np.uint64)
    for d in range(offsets.shape[0] - 1):
        n = clean_into(data, offsets[d], offsets[d + 1], table, buf, min_chars)
        if n < 0:
            python[d] = True
        short[d] = n < min_chars


def short_mask(texts, min_chars: int) -> np.ndarray:
    """len(clean_text(text)) < min_chars for every text of an Arrow string array (or a list), read from its UTF-8
    buffer without making a Python str: a compiled loop that stops at `min_chars` characters of each cleaned view,
    so a long page costs its first few hundred characters."""
    data, offsets = utf8_buffers(texts)
    short = np.zeros(len(offsets) - 1, dtype=np.bool_)
    python = np.zeros(len(offsets) - 1, dtype=np.bool_)
    _short_kernel(data, offsets, clean_table(), max(int(min_chars), 0), short, python)
    for r in np.flatnonzero(python):  # Σ or İ, or not UTF-8 (a lone surrogate): Python's own lower()
        t = texts[int(r)]
        short[r] = len(clean_text(t if isinstance(t, str) else t.as_py())) < min_chars
    return short


def is_short(text: str, min_chars: int) -> bool:
    """`short_mask` of one text."""
    return bool(short_mask([text], min_chars)[0])


def char_shingles(cleaned: str, n: int = 13) -> set[str]:
    """The set of character n-grams of a cleaned view (what MinHash sees)."""
    return {cleaned[i: i + n] for i in range(len(cleaned) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
