import collections
import hashlib
import json
import zlib

import ftfy
import pyarrow as pa
from conftest import REPO

from slimpajama.core.cleaned import char_shingles, clean_text, jaccard
from slimpajama.core.schema import DOC_SCHEMA, REDPAJAMA_SOURCES
from slimpajama.errors import raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import iter_documents
from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE, NEAR_LEVELS, generate_corpus
from slimpajama.tools.sample_text import dedup_view


def docs_by_id(raw):
    t = pa.Table.from_batches(list(iter_documents(str(raw), raise_on_bad)), schema=DOC_SCHEMA)
    return dict(zip(t["doc_id"].to_pylist(), zip(t["source"].to_pylist(), t["text"].to_pylist(), strict=True),
                    strict=True))


def test_layout_sources_and_ground_truth_file(sample_corpus):
    raw, truth = sample_corpus
    assert json.loads((raw / GROUND_TRUTH_FILE).read_text()) == truth
    files = discover(str(raw))
    assert {f.folder_source for f in files} == set(REDPAJAMA_SOURCES)
    assert all(f.rel.endswith(".jsonl.zst") for f in files)
    docs = docs_by_id(raw)
    assert len(docs) == truth["docs"] == 600
    for doc_id, (source, _) in docs.items():
        assert doc_id.startswith(source + "/")


def test_realistic_lengths_per_source(sample_corpus):
    raw, _ = sample_corpus
    lengths = collections.defaultdict(list)
    for source, text in docs_by_id(raw).values():
        lengths[source].append(len(text))
    median = {s: sorted(v)[len(v) // 2] for s, v in lengths.items()}
    assert median["RedPajamaBook"] > 40_000 and median["RedPajamaArXiv"] > 8_000
    assert median["RedPajamaStackExchange"] < median["RedPajamaCommonCrawl"] < median["RedPajamaBook"]


def test_text_is_language_not_gibberish(sample_corpus):
    raw, _ = sample_corpus
    text = "\n".join(t for s, t in docs_by_id(raw).values() if s == "RedPajamaCommonCrawl").encode()
    ratio = len(zlib.compress(text, 9)) / len(text)
    assert 0.25 < ratio < 0.6  # real English compresses to ~0.3-0.4; repetitive filler far below, noise above
    words = collections.Counter(text.decode().lower().split())
    assert words["the"] > 0.02 * sum(words.values())  # Zipf head of English


def test_planted_pairs_have_their_stated_jaccard(sample_corpus):
    raw, truth = sample_corpus
    docs = docs_by_id(raw)
    by_level = collections.Counter(p["level"] for p in truth["pairs"])
    assert set(by_level) == {1.0, *NEAR_LEVELS}
    assert any(p["cross_source"] for p in truth["pairs"]) and not all(p["cross_source"] for p in truth["pairs"])
    for p in truth["pairs"]:
        (sa, a), (sb, b) = docs[p["a"]], docs[p["b"]]
        assert p["cross_source"] == (sa != sb)
        j = jaccard(char_shingles(dedup_view(a)), char_shingles(dedup_view(b)))
        assert abs(j - p["jaccard"]) < 1e-6
        assert abs(j - p["level"]) < 0.03, p
        if p["kind"] == "exact":
            assert a == b


def test_short_mojibake_non_nfc_and_non_english(sample_corpus):
    raw, truth = sample_corpus
    docs = docs_by_id(raw)
    assert truth["short"] and all(len(clean_text(docs[d][1])) < 200 for d in truth["short"])
    short = set(truth["short"])
    assert all(len(clean_text(t)) >= 200 for d, (_, t) in docs.items() if d not in short)
    for kind in ("mojibake", "non_nfc"):
        assert truth[kind]
        for case in truth[kind]:
            raw_text = docs[case["doc_id"]][1]
            fixed = ftfy.fix_text(raw_text, normalization="NFC")
            assert fixed != raw_text
            assert hashlib.sha256(fixed.encode()).hexdigest() == case["expected_sha256"]
    langs = {c["lang"] for c in truth["non_english"]}
    assert {"de", "ru", "zh"} <= langs
    zh = next(c["doc_id"] for c in truth["non_english"] if c["lang"] == "zh")
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in docs[zh][1]) > 200


def test_deterministic_and_parallel_generation_gives_the_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ta = generate_corpus(str(a), seed=3, docs=300, workers=1)
    tb = generate_corpus(str(b), seed=3, docs=300, workers=2)
    assert ta == tb
    for rel in ta["files"] + [GROUND_TRUTH_FILE]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    generate_corpus(str(tmp_path / "c"), seed=4, docs=300)
    assert (tmp_path / "c" / ta["files"][0]).read_bytes() != (a / ta["files"][0]).read_bytes()


def test_shipped_training_text_is_present():
    data = REPO / "slimpajama" / "data"
    for name in ("cc-en-head-sample.jsonl", "redpajama-arxiv-sample.jsonl", "code_python.txt", "multilingual.txt",
                 "NOTICE"):
        assert (data / name).stat().st_size > 500
