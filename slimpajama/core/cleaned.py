"""SlimPajama's cleaned view of a document, used only for the length filter and for MinHash, never released:
lowercase, delete `string.punctuation`, strip, collapse every whitespace run to one space.

`clean_table` is the same view as one table over code points, read by the compiled loops here and in minhash.
"""

from __future__ import annotations

import re
import string

import numba
import numpy as np
from numba.cpython.unicode import _get_code_point

from slimpajama.core.jit import entry_point

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


@numba.njit(cache=True, nogil=True)
def _cleaned_length_jit(text, table, at_least):
    """len(clean_text(text)), counted only up to `at_least`; -1 where a character only Python cleans occurs."""
    n, pending = 0, False
    for i in range(len(text)):
        v = table[_get_code_point(text, i)]
        if v == DELETE:
            continue
        if v == SPACE:
            pending = n > 0
            continue
        if v == PYTHON:
            return -1
        n += 2 if pending else 1
        pending = False
        if n >= at_least:
            break
    return n


_CLEANED_LENGTH = None


def is_short(text: str, min_chars: int) -> bool:
    """len(clean_text(text)) < min_chars, counted by a compiled loop that stops at `min_chars`: a long page costs
    its first few hundred characters."""
    global _CLEANED_LENGTH
    if _CLEANED_LENGTH is None:
        _CLEANED_LENGTH = entry_point(_cleaned_length_jit, "", clean_table(), 1)
    n = _CLEANED_LENGTH(text, clean_table(), min_chars)
    return (n if n >= 0 else len(clean_text(text))) < min_chars


def char_shingles(cleaned: str, n: int = 13) -> set[str]:
    """The set of character n-grams of a cleaned view (what MinHash sees)."""
    return {cleaned[i: i + n] for i in range(len(cleaned) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
