"""Text views shared by the stages.

`clean_text` is SlimPajama's cleaned view, used only for the length filter and for MinHash, never released:
lowercase, delete `string.punctuation`, strip, collapse every whitespace run to one space.
"""

from __future__ import annotations

import re
import string

_DELETE_PUNCT = str.maketrans("", "", string.punctuation)
_WHITESPACE_RUN = re.compile(r"\s+")


def clean_text(text: str) -> str:
    return _WHITESPACE_RUN.sub(" ", text.lower().translate(_DELETE_PUNCT).strip())


def char_shingles(cleaned: str, n: int = 13) -> set[str]:
    """The set of character n-grams of a cleaned view (what MinHash sees)."""
    return {cleaned[i: i + n] for i in range(len(cleaned) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
