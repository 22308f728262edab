"""Text views shared by the stages.

`normalize_text` is the released text: exactly `ftfy.fix_text(text, normalization="NFC")`, as SlimPajama did,
with a fast path for the many documents ftfy would leave unchanged or only touch with character-local fixes.

The cleaned view used for the length filter and MinHash lives in `slimpajama.core.cleaned`.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy
import numba
import numpy as np
from ftfy import badness, chardata, fixes
from numba.cpython.unicode import _get_code_point

from slimpajama.core.jit import entry_point

# ------------------------------------------------------------------------------------------------ normalize
#
# What ftfy.fix_text(text, normalization="NFC") does, per line (segment): unescape HTML entities, fix mojibake
# (only when `badness.is_bad` matches), then character-local fixes (C1 controls, ligatures, character width,
# curly quotes, line breaks, surrogates, terminal escapes, control characters), then NFC, repeated until the
# segment stops changing. The fast path below reproduces exactly that for text where
#   * no character could start an HTML entity, a C1/surrogate/terminal-escape fix ("bail" characters), and
#   * the badness regex matches nowhere (checked on the whole text with ^ matching after every newline, which
#     finds every match any single line would have, so ftfy's mojibake fixer would do nothing),
# by applying the character-local fixes as one translation table built from ftfy's own functions, then NFC, and
# looping until stable like ftfy does. Anything else goes to ftfy itself. Tests compare it with plain ftfy on
# real corpora, the sample corpus and hypothesis-generated text.
#
# The badness regex is what makes ftfy slow (it tries ~37 alternatives at every position). `_badness_shape`
# reads the installed regex and finds, for each alternative, what any match of it must hold: one character of a
# small set (Â, Ã, Œ, œ, C1 controls), or two non-ASCII characters of its classes next to each other (at most a
# few characters apart in general). One compiled scan (`_scan`) for those "triggers" finds the few places a
# match could be; only windows around them (the longest match on each side) get the full regex. English
# web pages (a pilcrow, curly quotes or a dash per paragraph, never two such characters side by side) hold none.

_FTFY_MAX_SEGMENT = ftfy.TextFixerConfig().max_decode_length
_BAIL = re.compile("[\x1b\x80-\x9f\ud800-\udfff]")
_HTML_ENTITY = fixes.HTML_ENTITY_RE  # unescape_html only touches these
_BADNESS_ANY_LINE = re.compile(badness.BADNESS_RE.pattern, badness.BADNESS_RE.flags | re.MULTILINE)


def _badness_shape() -> tuple[set[int], set[int], int, int] | None:
    """What every match of ftfy's badness regex holds: (characters of which one is enough, characters of which two
    at most `gap` apart are, gap, the longest match), or None where the installed regex is not of the shape this
    relies on (then every text gets the full search)."""
    from re import _parser  # the stdlib's regex parser (sre_parse)

    flags = badness.BADNESS_RE.flags
    tree = _parser.parse(badness.BADNESS_RE.pattern, flags)
    if flags & re.IGNORECASE or len(tree.data) != 1 or str(tree.data[0][0]) != "BRANCH":
        return None

    def non_ascii_chars(item) -> set[int] | None:
        """The characters a one-character item matches when all are non-ASCII, else None."""
        op, av = item
        if str(op) == "LITERAL":
            return {av} if av >= 128 else None
        if str(op) != "IN":
            return None
        out: set[int] = set()
        for o, a in av:
            if str(o) == "LITERAL" and a >= 128:
                out.add(a)
            elif str(o) == "RANGE" and a[0] >= 128:
                out.update(range(a[0], a[1] + 1))
            else:
                return None
        return out

    def width(items) -> int:
        return _parser.SubPattern(tree.state, list(items)).getwidth()[1]

    singles: set[int] = set()  # an alternative with one such item: a match holds one of its characters
    pairs: set[int] = set()  # with two or more: a match holds two of them, at most `gap` characters apart
    gap = 0
    branches = tree.data[0][1][1]
    for br in branches:
        items = list(br.data)
        found = [(i, cs) for i, it in enumerate(items) if (cs := non_ascii_chars(it))]
        if not found:
            return None  # an alternative that can match ASCII alone: no window can be trusted
        if len(found) == 1:
            singles |= found[0][1]
            continue
        d, a, b = min(((width(items[i + 1: j]), ci, cj) for (i, ci), (j, cj) in zip(found, found[1:], strict=False)),
                      key=lambda t: t[0])
        gap, pairs = max(gap, d), pairs | a | b
    longest = max(width(br.data) for br in branches)
    if longest >= 64 or gap >= longest:
        return None

    return singles, pairs, gap, longest


_SHAPE = _badness_shape()


_GAP, _LONGEST = (0, 1) if _SHAPE is None else _SHAPE[2:]


def _looks_bad(text: str) -> bool:
    """Whether ftfy's badness regex matches in any line of `text` (a superset: `^` matches after newlines)."""
    return _bad(text, _scan(text)[2])


def _bad(text: str, windows: np.ndarray) -> bool:
    """The badness search, in the scan's windows only (or everywhere where the regex's shape was not understood)."""
    if _SHAPE is None:
        return not text.isascii() and bool(_BADNESS_ANY_LINE.search(text))
    return len(windows) > 0 and any(_BADNESS_ANY_LINE.search(text, int(a), int(b)) for a, b in windows)


def _char_local_table() -> dict[int, str]:
    keys = set(chardata.LIGATURES) | set(chardata.WIDTH_MAP) | set(chardata.CONTROL_CHARS)
    keys |= {0x02BC, *range(0x2018, 0x2020), ord("\r"), 0x2028, 0x2029}
    table = {}
    for k in keys:
        ch = out = chr(k)
        if _BAIL.match(ch):
            continue
        for fix in (fixes.fix_latin_ligatures, fixes.fix_character_width, fixes.uncurl_quotes,
                    fixes.fix_line_breaks, fixes.remove_control_chars):
            out = fix(out)
        if out != ch:
            table[k] = out
    return table


_LOCAL_TABLE = _char_local_table()
_LOCAL_CHARS = re.compile("[" + "".join(re.escape(chr(k)) for k in sorted(_LOCAL_TABLE)) + "]")


def _local_fix(m: re.Match) -> str:
    return _LOCAL_TABLE[ord(m.group())]


# ASCII characters some ftfy step changes: CR and control characters (the escape of terminal codes among them).
_ASCII_TRIGGERS = re.compile("[\x1b" + "".join(re.escape(chr(k)) for k in sorted(_LOCAL_TABLE) if k < 128) + "]")


# What `_fast_fix` asks of a text in each pass, answered by one compiled scan over its code points instead of a
# regex search each (they ran at 210-500 MB/s apiece on web pages): a character ftfy's own code must handle
# (_BAIL), the first "&", a character-local fix to apply, and the windows where ftfy's badness regex could match.
# Every match of that regex holds a trigger: a `singles` character, or a `pairs` character with another at most
# `gap` characters after it; a match is at most `longest` long, so it lies within `longest` of its trigger.
# Characters that can make a text not NFC are flagged too (_NFC_K): where none occurs, is_normalized is skipped.
_BAIL_K, _AMP_K, _LOCAL_K, _SINGLE_K, _PAIR_K, _NFC_K = 1, 2, 4, 8, 16, 32
_MAX_LOCAL = 8  # distinct local characters a scan lists (more: one regex substitution instead of replaces)


_KIND_CHARS = 0x20000  # the BMP and the plane of emoji; a character beyond counts as _NFC_K


def _not_nfc_safe() -> list[int]:
    """Characters (below _KIND_CHARS) in whose presence a text may not be NFC: a combining class, a character NFC changes on its
    own, or one that composes with the character before it (the second of a canonical pair; Hangul vowels and
    trailing consonants). Without any of these CPython's own quick check says "normalized" without normalizing,
    so it is skipped."""
    out = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    for c in range(_KIND_CHARS):
        ch = chr(c)
        if 0xD800 <= c < 0xE000:
            continue
        if unicodedata.combining(ch) or unicodedata.normalize("NFC", ch) != ch:
            out.add(c)
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<") and len(d.split()) == 2:
            out.add(int(d.split()[1], 16))
    return sorted(c for c in out if c < _KIND_CHARS)


def _kinds() -> np.ndarray:
    kinds = np.zeros(_KIND_CHARS, dtype=np.uint8)
    kinds[[0x1B, *range(0x80, 0xA0), *range(0xD800, 0xE000)]] |= _BAIL_K
    kinds[ord("&")] |= _AMP_K
    assert all(k < _KIND_CHARS for k in _LOCAL_TABLE)
    kinds[sorted(_LOCAL_TABLE)] |= _LOCAL_K
    kinds[_not_nfc_safe()] |= _NFC_K
    # a local fix that writes such a character (a halfwidth sound mark becomes a combining one) counts as one
    kinds[[k for k, v in _LOCAL_TABLE.items() if any(ord(ch) >= _KIND_CHARS or kinds[ord(ch)] & _NFC_K for ch in v)]] \
        |= _NFC_K
    if _SHAPE is not None:
        singles, pairs = _SHAPE[0], _SHAPE[1]
        assert all(c < _KIND_CHARS for c in singles | pairs)
        kinds[sorted(singles)] |= _SINGLE_K
        kinds[sorted(pairs)] |= _PAIR_K
    return kinds


@numba.njit(cache=True, nogil=True)
def _scan_jit(text, kinds, gap, longest):
    """-> (the kinds found, or-ed; where the first "&" is, or -1; (start, end) windows to search for badness; the
    distinct local characters, or -1 where there are more than _MAX_LOCAL). The table is an argument, not a
    global: numba's cache would keep a global's value across an ftfy upgrade."""
    n = len(text)
    found, first_amp = 0, -1
    windows = np.empty((n // (2 * longest + 1) + 2, 2), dtype=np.int64)
    local = np.empty(_MAX_LOCAL + 1, dtype=np.int64)
    nw, nl, last_pair = 0, 0, 1 << 60  # last_pair: where the nearest pair character after this one is
    for i in range(n - 1, -1, -1):  # backwards, so "another pair character within gap after this one" is known
        c = _get_code_point(text, i)
        k = kinds[c] if c < kinds.shape[0] else _NFC_K
        if k == 0:
            continue
        found |= k
        if k & _AMP_K:
            first_amp = i
        if k & _LOCAL_K and nl <= _MAX_LOCAL:
            j = 0
            while j < nl and local[j] != c:
                j += 1
            if j == nl:
                local[nl] = c
                nl += 1
        if k & _SINGLE_K or (k & _PAIR_K and last_pair - i <= gap + 1):
            lo, hi = max(0, i - longest), min(n, i + 1 + longest)
            if nw > 0 and hi >= windows[nw - 1, 0]:  # overlaps the window after it: one search for both
                windows[nw - 1, 0] = lo
            else:
                windows[nw, 0], windows[nw, 1] = lo, hi
                nw += 1
        if k & _PAIR_K:
            last_pair = i
    if nl > _MAX_LOCAL:
        local[0], nl = -1, 1
    return found, first_amp, windows[:nw][::-1], local[:nl]


_KINDS = _kinds()
_SCAN = None


def _scan(text: str):
    global _SCAN
    if _SCAN is None:
        _SCAN = entry_point(_scan_jit, "", _KINDS, _GAP, _LONGEST)
    return _SCAN(text, _KINDS, _GAP, _LONGEST)


# A local fix replaces a character by a string holding none of them: one str.replace per distinct character
# found (C speed) then equals one substitution of all at once.
_REPLACEABLE = not any(ord(ch) in _LOCAL_TABLE for v in _LOCAL_TABLE.values() for ch in v)


# Local fixes whose result another pass cannot act on: ASCII, no "&" (no entity), no bail or local character, not
# empty (a deletion could bring two badness characters together). A pass that only applied these, to a text with
# no badness window and no "&", leaves a text the next pass would return unchanged.
_INERT = frozenset(k for k, v in _LOCAL_TABLE.items()
                   if v and v.isascii() and "&" not in v and "\x1b" not in v and not any(ord(c) in _LOCAL_TABLE for c in v))


def _inert(chars: np.ndarray) -> bool:
    return len(chars) > 0 and chars[0] >= 0 and all(int(c) in _INERT for c in chars)


def _local_fixes(text: str, chars: np.ndarray) -> str:
    text = text.replace("\r\n", "\n")
    if not _REPLACEABLE or (len(chars) and chars[0] < 0):
        return _LOCAL_CHARS.sub(_local_fix, text)
    for c in chars:
        text = text.replace(chr(c), _LOCAL_TABLE[int(c)])
    return text


def _fits_ftfy_segments(text: str) -> bool:
    """ftfy cuts lines longer than max_decode_length; only then could its per-segment work differ from ours."""
    return len(text) <= _FTFY_MAX_SEGMENT or max(map(len, text.split("\n"))) < _FTFY_MAX_SEGMENT


# ftfy.fix_text stops unescaping HTML entities at the first segment (line) holding a "<", for that segment and
# every later one (it replaces its config; ftfy 6.x): entities from there on stay as they are. Before it, only
# "&" or a character some fix turns into one could ever form an entity.
_AMP_SOURCES = re.compile("[&" + "".join(re.escape(chr(k)) for k, v in sorted(_LOCAL_TABLE.items()) if "&" in v) + "]")


def _unescaped_before(text: str) -> int:
    """Where ftfy stops unescaping HTML entities in `text` (its length if nowhere)."""
    lt = text.find("<")
    return len(text) if lt < 0 else text.rfind("\n", 0, lt) + 1


def _fast_fix(text: str, limit: int | None = None) -> str | None:
    """ftfy's result for `text`, or None where only ftfy itself can say. `limit`: where ftfy stops unescaping
    entities (by default found in `text`; a part of a text gets its whole text's)."""
    limit = _unescaped_before(text) if limit is None else limit
    # a fix that changes the text may form an entity next to an "&" where ftfy unescapes: then ftfy decides
    amp_before = limit < len(text) and _AMP_SOURCES.search(text, 0, limit) is not None
    cur = text
    for i in range(8):
        found, first_amp, windows, local = _scan(cur)
        if found & _BAIL_K or _bad(cur, windows):
            return None
        if limit == len(text):  # entities unescaped everywhere, in every pass
            if first_amp >= 0 and _HTML_ENTITY.search(cur, first_amp):
                return None
        elif (0 <= first_amp < limit and _HTML_ENTITY.search(cur, first_amp, limit) is not None) if i == 0 \
                else amp_before:
            return None
        nxt = _local_fixes(cur, local) if found & _LOCAL_K else cur
        # the NFC check only where the scan saw a character that could need it (or a local fix that writes one)
        nfc = found & _NFC_K and not unicodedata.is_normalized("NFC", nxt)
        if nfc:
            nxt = unicodedata.normalize("NFC", nxt)
        if nxt == cur:
            return cur
        if not nfc and len(windows) == 0 and not found & _AMP_K and _inert(local):
            return nxt  # the next pass would find nothing to do (see _INERT)
        cur = nxt
    return None


def normalize_text(text: str) -> str:
    """Exactly `ftfy.fix_text(text, normalization="NFC")`, faster."""
    if text.isascii() and not _ASCII_TRIGGERS.search(text) and not _HTML_ENTITY.search(text, 0,
                                                                                     _unescaped_before(text)):
        return text  # ASCII without \r, control characters or entities ftfy unescapes: every step is a no-op
    if _fits_ftfy_segments(text):
        if "\n" in text[:-1]:  # several lines (ftfy's segments): the fast path on every run of them it can take
            return _by_parts(text)
        fixed = _fast_fix(text)
        if fixed is not None:
            return fixed
    return ftfy.fix_text(text, normalization="NFC")


def _by_parts(text: str) -> str:
    """ftfy's result for a text the fast path refused whole. ftfy fixes every line on its own, so the fast path
    takes the runs of lines it can and ftfy only the lines it cannot (a refused run is halved until one line is
    left), each part with the entity rule of its place in the text: a few mojibake lines no longer send a long
    document through ftfy whole."""
    limit = _unescaped_before(text)
    out: list[str] = []
    for part, unescape in ((text[:limit], True), (text[limit:], False)):
        if part:
            _fix_lines(part, unescape, out)
    return "".join(out)


def _fix_lines(run: str, unescape: bool, out: list[str]) -> None:
    fixed = _fast_fix(run, len(run) if unescape else 0)
    if fixed is not None:
        out.append(fixed)
        return
    cut = run.find("\n", len(run) // 2)
    if cut < 0 or cut == len(run) - 1:
        cut = run.rfind("\n", 0, len(run) - 1)
    if cut < 0:  # one line: ftfy itself, with the entity rule of its place
        out.append(ftfy.fix_text(run, normalization="NFC", unescape_html="auto" if unescape else False))
        return
    _fix_lines(run[: cut + 1], unescape, out)
    _fix_lines(run[cut + 1:], unescape, out)


def normalize_reference(text: str) -> str:
    """What SlimPajama ran; the fast path is tested and benchmarked against it."""
    return ftfy.fix_text(text, normalization="NFC")
