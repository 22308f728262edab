"""normalize_text must equal plain ftfy.fix_text(text, normalization="NFC") on every document."""

import json
import unicodedata

import ftfy
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ARXIV_SAMPLE, CC_SAMPLE, DATA
from ftfy import badness
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import slimpajama.core.textnorm as tn
from slimpajama.core.cleaned import clean_text, clean_text_reference, is_short, short_mask
from slimpajama.core.schema import DOC_SCHEMA
from slimpajama.core.textnorm import normalize_reference, normalize_text
from slimpajama.errors import raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import iter_documents
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage

WEB_PAGES = DATA / "web-pages.jsonl"  # from installed Rust/Cargo documentation pages, tags stripped


def texts_of(path, **kw):
    return [t for b in iter_documents(str(path), raise_on_bad, **kw) for t in b.column("text").to_pylist()]


@pytest.mark.parametrize("sample", [ARXIV_SAMPLE, CC_SAMPLE])
def test_identical_to_ftfy_on_real_samples(sample):
    for text in texts_of(sample):
        assert normalize_text(text) == normalize_reference(text)
        assert clean_text(text) == clean_text_reference(text)


def test_identical_to_ftfy_on_sample_corpus_and_planted_fixes_happen(sample_corpus):
    raw, truth = sample_corpus
    table = pa.Table.from_batches(list(iter_documents(str(raw), raise_on_bad)), schema=DOC_SCHEMA)
    fixed = {}
    for doc_id, text in zip(table["doc_id"].to_pylist(), table["text"].to_pylist(), strict=True):
        fixed[doc_id] = normalize_text(text)
        assert fixed[doc_id] == normalize_reference(text), doc_id
    import hashlib

    for case in truth["mojibake"] + truth["non_nfc"]:
        assert hashlib.sha256(fixed[case["doc_id"]].encode()).hexdigest() == case["expected_sha256"]


# Fragments that exercise every ftfy fixer, glued together by hypothesis.
FRAGMENTS = [
    "plain ascii words", "don’t", "“quoted”", "‘single’", "ʼ", "ﬁne ﬂow", "ＬＯＵＤ　ＮＯＩＳＥＳ", "ｶﾀｶﾅ",
    "a\r\nb", "c\rd", "\u2028", "\u2029", "\x85", "\x00", "\x07", "\x1b[31mred\x1b[0m", "\x7f", "\ufeff", "\ufffc",
    "&amp;", "&lt;b&gt;", "&#39;", "&hellip;", "&nbsp;", "&notanentity;", "AT&T", "<p>", "e\u0301", "A\u030a",
    "\u212b", "n\u0303o", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🙂👍🏽", "\U0001F1EB\U0001F1F7", "café", "naïve", "Ã©", "Ã¨", "â€™", "â€œ",
    "Ã¢â‚¬â„¢", "Ã ", "Â ", "Â£", "\x80", "\x9d", "×²", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "ĂŠ", "∂", "½", "文字", "テスト", "\n",
    " ", "\t", "—", "–", "…", "©", "°", "µ", "Œ1", "\u00a0", "\u00ad",
    # entities around the first line with a "<" (ftfy stops unescaping there), and ones that fixes form
    "<b>\n", "x < y", "＜", "＆ａｍｐ；", "&ａｍｐ;", "&#x2019;", "&amp", "＆",
]


def _mojibake(s: str) -> str:
    raw = s.encode("utf-8")
    for enc in ("windows-1252", "latin-1", "macroman", "cp437"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return s


text_strategy = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    # lines, some of them mojibake: ftfy takes those lines alone, the fast path the rest (textnorm._by_parts)
    st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join), max_size=12).map("\n".join),
    st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join).map(_mojibake),
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_strategy)
@example("Â \nÃ ok")  # `^` in the badness regex: a line start, not only the text start
@example("x" * 20 + "\u2019" + "y" * 20 + "Ã©")
@example("a &amp; b\n<p>x &amp; y")  # unescaped before the first "<" line only
@example("AT&T ﬁ\n<p>&amp;</p>\n&ａｍｐ;")
@example("&ａｍｐ;\n<p>&amp;</p>")  # a fix forms an entity before the "<" line
@example("ｶﾞ ｷﾟ “x”")  # a local fix writes a combining mark: NFC composes it
@example("‘’‚‛“”„‟ﬁﬂ\r\nｘ\u2028")  # more distinct local characters than the scan lists
@example("x Â\u3000y")  # a local fix (width) makes a badness match: the next pass must look again
@example("it â\x00€\x00™s")  # deleting control characters brings mojibake together: the next pass must look
def test_identical_to_ftfy_property(text):
    assert normalize_text(text) == ftfy.fix_text(text, normalization="NFC")


@settings(max_examples=500, deadline=None)
@given(text_strategy)
def test_badness_windows_find_exactly_what_the_full_search_finds(text):
    assert tn._looks_bad(text) == bool(tn._BADNESS_ANY_LINE.search(text))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(badness.BADNESS_RE))
def test_every_badness_match_lies_in_a_trigger_window(text):
    """Strings built from ftfy's badness regex itself, one alternative after another, with any text around them:
    the trigger windows must find every match (a match they miss would skip ftfy's mojibake fixer)."""
    assert badness.BADNESS_RE.search(text)
    assert tn._looks_bad(text)


def _web_pages() -> list[str]:
    with open(WEB_PAGES, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def test_web_pages_take_the_fast_path_and_equal_ftfy(monkeypatch):
    """English documentation pages (pilcrows, §, ·, curly quotes, dashes, arrows, ©), the shape of crawled web text:
    ftfy's result without running ftfy, and with some lines turned to mojibake, ftfy's result again."""
    pages = _web_pages()
    expected = [ftfy.fix_text(p, normalization="NFC") for p in pages]
    damaged = ["\n".join(_mojibake(line) if i % 4 == 1 else line for i, line in enumerate(p.split("\n")))
               for p in pages]
    damaged_expected = [ftfy.fix_text(p, normalization="NFC") for p in damaged]
    assert damaged != pages and damaged_expected != damaged
    assert [normalize_text(p) for p in damaged] == damaged_expected
    monkeypatch.setattr(tn.ftfy, "fix_text", lambda *a, **k: pytest.fail("fell back to ftfy"))
    assert [normalize_text(p) for p in pages] == expected


def test_fast_path_is_active_on_installed_ftfy(monkeypatch):
    assert tn._SHAPE is not None  # the trigger-windowed badness search applies to this ftfy
    monkeypatch.setattr(tn.ftfy, "fix_text", lambda *a, **k: pytest.fail("fell back to ftfy"))
    assert normalize_text("It’s a “fine” ﬁle — café, e\u0301, ＡＢＣ\r\nend\x00") == 'It\'s a "fine" file — café, é, ABC\nend'
    assert normalize_text("plain ASCII, AT&T") == "plain ASCII, AT&T"


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
       | st.text(alphabet=" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\u00a0\u3000\u2028\ud800aZ.,!İΣ", max_size=100))
def test_clean_text_matches_reference(text):
    assert clean_text(text) == clean_text_reference(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 6000), st.integers(0, 400),
       st.sampled_from(["a ", "!! ", "a.b ", "  \n", "é,", "İ", "Σ", "\x1c\u3000x", "\ud800 ", "🙂"]))
def test_is_short_counts_exactly(n, min_chars, unit):
    """The compiled count stops at the minimum; İ and Σ go to clean_text."""
    text = (unit * (n // len(unit) + 1))[:n] + " tail"
    assert is_short(text, min_chars) == (len(clean_text_reference(text)) < min_chars)


def test_a_text_without_flagged_characters_is_nfc():
    """normalize skips unicodedata's NFC check where the scan flags no character that could need it: every other
    character, next to a starter, itself, a Hangul syllable or a combining mark's base, is NFC as it stands."""
    flagged = tn._KINDS & tn._NFC_K
    safe = [chr(c) for c in range(len(flagged)) if not flagged[c] and not 0xD800 <= c < 0xE000]
    assert len(safe) > 100_000
    for ch in safe:
        for text in ("e" + ch, ch + ch, "\uac00" + ch, ch + "x", "\u1100" + ch):
            assert unicodedata.is_normalized("NFC", text), (hex(ord(ch)), text)


def test_length_filter_boundary():
    at = "word " * 40  # cleaned: 40 * 5 - 1 = 199 characters
    assert len(clean_text(at)) == 199 and is_short(at, 200)
    exact = "word " * 39 + "wordx"
    assert len(clean_text(exact)) == 200 and not is_short(exact, 200)
    batch = pa.RecordBatch.from_pylist(
        [{"doc_id": "a", "source": "s", "text": at, "meta": "{}"},
         {"doc_id": "b", "source": "s", "text": "don’t " + at, "meta": "{}"}], schema=DOC_SCHEMA)
    stage = NormalizeStage(ReadOptions(), 200)  # its two transforms: fix the text, then drop the short
    out, drops = stage.transform(batch, 0)
    assert drops["short"].tolist() == [True, False]
    assert out["doc_id"].to_pylist() == ["b"] and out["text"][0].as_py().startswith("don't ")
    assert short_mask(batch.column("text"), 200).tolist() == [True, False]
    odd = [at, exact, "ΣΣ " * 66, "ΣΣ " * 67, "İ" * 99, "İ" * 100, "\x1c".join(["ab"] * 70)]  # Python's own lower()
    assert short_mask(pa.array(odd), 200).tolist() == [is_short(t, 200) for t in odd] == \
        [True, False, True, False, True, False, False]


def test_normalize_stage_ledger_and_planted_short_docs(sample_corpus, tmp_path, ray_session):
    raw, truth = sample_corpus
    report = run_stage(NormalizeStage(ReadOptions(), 200), file_tasks(discover(str(raw))), str(tmp_path / "n"),
                       progress=False)
    ledger = json.loads((tmp_path / "n" / "ledger.json").read_text())
    assert ledger["balanced"]
    t = ledger["totals"]
    assert t["docs_in"] == truth["docs"] == t["docs_out"] + t["dropped"]["short"]["docs"]
    assert t["dropped"]["short"]["docs"] == len(truth["short"])
    for s, c in ledger["sources"].items():
        assert c["docs_in"] == c["docs_out"] + sum(d["docs"] for d in c["dropped"].values()), s
    kept = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "n").rglob("*.parquet")))
    assert set(truth["short"]).isdisjoint(kept["doc_id"].to_pylist())
    assert kept.num_rows == truth["docs"] - len(truth["short"])
    fixed = {c["doc_id"] for c in truth["mojibake"]}
    for doc_id, text in zip(kept["doc_id"].to_pylist(), kept["text"].to_pylist(), strict=True):
        if doc_id in fixed:
            assert "â€" not in text
    assert report.ledger.totals().bytes_written < report.ledger.totals().bytes_out  # mojibake got shorter
