"""Text views shared by the stages.

`normalize_text` is the released text: exactly `ftfy.fix_text(text, normalization="NFC")`, as SlimPajama did,
with a fast path for the many documents ftfy would leave unchanged or only touch with character-local fixes.

`clean_text` is SlimPajama's cleaned view, used only for the length filter and for MinHash, never released:
lowercase, delete `string.punctuation`, strip, collapse every whitespace run to one space.
"""

from __future__ import annotations

import re
import string
import unicodedata

import ftfy
from ftfy import badness, chardata, fixes

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
# few characters apart in general). One search for those "triggers" over the whole text, in C, finds the few
# places a match could be; only windows around them (the longest match on each side) get the full regex. English
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


def _charset(chars: set[int]) -> str:
    return "[" + "".join(re.escape(chr(c)) for c in sorted(chars)) + "]"


def _trigger_clusters(shape) -> re.Pattern:
    """Runs of triggers at most two windows apart (one full search each). A trigger is a character of `singles`,
    or two of `pairs` at most `gap` apart; written to start with one character class, which re scans for far
    faster than for an alternation (217 against 61 MB/s on web pages)."""
    singles, pairs, gap, longest = shape
    either = [f"(?<={_charset(singles)})"] if singles else []
    if pairs:
        either.append(f"(?<={_charset(pairs)})[\\s\\S]{{0,{gap}}}{_charset(pairs)}")
    trigger = f"{_charset(singles | pairs)}(?:{'|'.join(either)})"
    return re.compile(f"{trigger}(?:[\\s\\S]{{0,{2 * longest}}}{trigger})*")


_SHAPE = _badness_shape()
_CLUSTERS = None if _SHAPE is None else _trigger_clusters(_SHAPE)


def _looks_bad(text: str) -> bool:
    """Whether ftfy's badness regex matches in any line of `text` (a superset: `^` matches after newlines)."""
    if _CLUSTERS is None:
        return bool(_BADNESS_ANY_LINE.search(text))
    w, n = _SHAPE[3], len(text)
    # every match holds a position where a trigger starts and is at most w long: the windows hold them all
    return any(_BADNESS_ANY_LINE.search(text, max(0, m.start() - w), min(n, m.end() + w))
               for m in _CLUSTERS.finditer(text))


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
        if _BAIL.search(cur) or (not cur.isascii() and _looks_bad(cur)):
            return None
        if limit == len(text):  # entities unescaped everywhere, in every pass
            if _HTML_ENTITY.search(cur):
                return None
        elif (_HTML_ENTITY.search(cur, 0, limit) is not None) if i == 0 else amp_before:
            return None
        nxt = cur
        if _LOCAL_CHARS.search(nxt):  # sparse: a regex pass beats str.translate's per-character dict lookups
            nxt = _LOCAL_CHARS.sub(_local_fix, nxt.replace("\r\n", "\n"))
        if not nxt.isascii() and not unicodedata.is_normalized("NFC", nxt):
            nxt = unicodedata.normalize("NFC", nxt)
        if nxt == cur:
            return cur
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


# ------------------------------------------------------------------------------------------------ cleaned view

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


_PREFIX_CHARS = 4096


def is_short(text: str, min_chars: int) -> bool:
    """len(clean_text(text)) < min_chars, without cleaning all of a long document: the cleaned view of a prefix
    is never longer than that of the whole (every step is local; a trailing whitespace run is stripped in the
    prefix but kept as one space inside the whole), so a prefix that is long enough decides."""
    if len(text) > _PREFIX_CHARS and len(clean_text(text[:_PREFIX_CHARS])) >= min_chars:
        return False
    return len(clean_text(text)) < min_chars


def char_shingles(cleaned: str, n: int = 13) -> set[str]:
    """The set of character n-grams of a cleaned view (what MinHash sees)."""
    return {cleaned[i: i + n] for i in range(len(cleaned) - n + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
