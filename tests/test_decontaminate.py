"""decontaminate: exactly the documents that share an evaluation item's n-gram (or hold a short item whole) are
dropped or cut, checked against the brute-force definition (core/contamination.matches_reference) on the sample
corpus, on real text and on the cases that break naive matchers."""

import gzip
import json
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ARXIV_SAMPLE, CC_SAMPLE, SHARED_CORPORA
from hypothesis import given, settings
from hypothesis import strategies as st

from slimpajama.core.contamination import IndexBuilder, find, matches_reference, word_spans, words_of
from slimpajama.errors import SlimPajamaError
from slimpajama.io.discover import discover
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
from slimpajama.pipelines.decontaminate import (
    DecontaminateConfig,
    eval_files,
    load_eval,
    read_items,
    run_decontaminate,
)


def index_of(items, ngram=13, min_words=8):
    b = IndexBuilder(ngram, min_words)
    keep = b.add(items)
    return b.build(), [it for it, k in zip(items, keep, strict=True) if k]


def brute(docs, items, ngram=13, min_words=8):
    """{(doc, kept item): matched positions} by the definition."""
    kept = [it for it in items if len(words_of(it)) >= ngram or len(words_of(it)) >= min_words]
    out = {}
    for d, doc in enumerate(docs):
        for i, it in enumerate(kept):
            n = matches_reference(doc, it, ngram, min_words)
            if n:
                out[d, i] = n
    return out


def fast(docs, items, ngram=13, min_words=8):
    idx, _ = index_of(items, ngram, min_words)
    got = {(m.doc, m.item): len(m.positions) for m in find(pa.array(docs, pa.string()), idx)}
    assert got == {(m.doc, m.item): len(m.positions) for m in find(list(docs), idx)}  # a list reads the same
    return got


LONG = ("the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing matches in the old "
        "town hall")


@pytest.mark.parametrize("doc,contaminated", [
    (f"Intro. {LONG.upper()} Outro.", True),  # other case
    (f"Intro: {LONG.replace(' ', ', ')}!", True),  # punctuation between every word
    (f"Intro {LONG.replace(' ', chr(10) + '  ' + chr(9))} outro", True),  # line breaks, tabs, runs of spaces
    ("Intro " + " ".join(LONG.split()[:12]) + " outro words here", False),  # 12 words only: no 13-gram
    ("the quick brown fox jumps over the lazy dog while seven wizards QUIET judge", False),  # one word differs
    (" ".join(LONG.split()[:10]) + "-" + " ".join(LONG.split()[10:]), False),  # a hyphen joins two words in one
    ("", False),
])
def test_the_rule_on_the_cases_that_break_naive_matchers(doc, contaminated):
    item = f"Q: {LONG}?"
    assert bool(matches_reference(doc, item, 13, 8)) == contaminated
    assert bool(fast([doc], [item])) == contaminated


def test_short_items_unicode_and_repeated_words():
    items = ["Σίσυφος ΚΑΙ η πέτρα του ανεβαίνει πάλι στην κορυφή",  # 9 words (short), Greek final sigma
             "İstanbul İzmir ankara bursa konya adana gaziantep mersin",  # 8 words, İ (Python lowers it alone)
             "naïve café résumé 東京 大阪 😀 smile ok",  # 8 words: accents, CJK, emoji
             "word " * 13,  # one repeated word
             "only five words right here"]  # too short: skipped
    docs = ["in Greek: σίσυφος και η ΠΈΤΡΑ ΤΟΥ ανεβαίνει πάλι στην κορυφή, as told",
            "cities: i̇stanbul i̇zmir ankara bursa konya adana gaziantep mersin.",
            "NAÏVE café résumé 東京 大阪 😀 SMILE ok",
            "word " * 20,  # 8 positions of the 13-word item
            "word " * 12,  # one short of it
            "only five words right here and more"]
    got = fast(docs, items)
    assert got == brute(docs, items)
    assert {d for d, _ in got} == {0, 1, 2, 3}
    assert got[3, 3] == 8


def test_random_corpora_equal_the_definition_at_every_width():
    rng = random.Random(3)
    vocab = ["alpha", "Beta", "gamma,", "delta.", "eps", "Σίγμα", "İstanbul", "zeta!", "eta", "--", "Ωmega", "a"]

    def text(n):
        return " ".join(rng.choice(vocab) for _ in range(n)) + rng.choice(["", "\n", "  "])

    items = [text(rng.randrange(1, 20)) for _ in range(120)]
    docs = []
    for _ in range(150):
        d = text(rng.randrange(0, 60))
        if rng.random() < 0.5:
            d += " " + rng.choice(items).upper().replace(" ", "\n ") + " " + text(rng.randrange(0, 8))
        docs.append(d)
    for ngram, min_words in ((13, 8), (5, 3), (4, 9), (1, 1)):
        assert fast(docs, items, ngram, min_words) == brute(docs, items, ngram, min_words), (ngram, min_words)


WORDS = st.sampled_from(["a", "B", "c.", "Dé", "ΣΑ", "İx", "東", "😀", "x-y", "...", "z\u0301"])
SPACE = st.sampled_from([" ", "\n", "\t ", "\u3000", "\x1c", " ,", "  "])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(WORDS, SPACE), max_size=40), st.lists(st.lists(WORDS, min_size=1, max_size=9),
                                                                  min_size=1, max_size=6),
       st.integers(1, 6), st.integers(1, 6))
def test_any_text_equals_the_definition(doc_words, items, ngram, min_words):
    doc = "".join(w + s for w, s in doc_words)
    items = [" ".join(it) for it in items]
    assert fast([doc, doc.upper()], items, ngram, min_words) == brute([doc, doc.upper()], items, ngram, min_words)


def test_word_spans_are_the_words_of_the_cleaned_view():
    for text in [t for t in CC_SAMPLE.read_text().splitlines()[:40]] + ["a -- b ... c", "İ x\x1cy\u3000z"]:
        text = json.loads(text)["text"] if text.startswith("{") else text
        spans = word_spans(text)
        assert [words_of(text[a:b]) for a, b in spans] == [[w] for w in words_of(text)]


# ------------------------------------------------------------------------------------------------ the stage


def real_corpus(root):
    """CC pages and arXiv papers (real text no one here wrote) as a RedPajama-style corpus."""
    for name, src in ((CC_SAMPLE, "RedPajamaCommonCrawl"), (ARXIV_SAMPLE, "RedPajamaArXiv")):
        (root / src).mkdir(parents=True, exist_ok=True)
        (root / src / "part.jsonl").write_text(name.read_text())
    return root


def planted_items(texts, rng, n):
    """Items an evaluation set would hold: runs of 8-40 words of some documents, retyped (case, punctuation,
    line breaks), short ones whole, and others no document holds."""
    out = []
    for _ in range(n):
        w = rng.choice(texts).split()
        if len(w) < 45:
            continue
        a, k = rng.randrange(len(w) - 41), rng.choice([8, 10, 12, 20, 40])
        item = " ".join(w[a: a + k])
        out.append(rng.choice([item, item.upper(), item.replace(" ", "\n"), f"Question: {item}?"]))
    out += [f"an unseen item number {i} made of words no page holds at all here" for i in range(5)]
    return out


def documents(out_dir):
    return pa.concat_tables(pq.read_table(f.path) for f in discover(str(out_dir)))


@pytest.fixture(scope="module")
def corpora(sample_corpus, tmp_path_factory):
    """The sample corpus and real text, normalized, each with an evaluation set planted from its own documents."""
    root = tmp_path_factory.mktemp("decontam")
    out = {}
    for name, raw in (("sample", sample_corpus[0]), ("real", real_corpus(root / "real-raw"))):
        norm = root / f"{name}-n"
        run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(str(raw))), str(norm), progress=False)
        texts = documents(norm)["text"].to_pylist()
        items = planted_items(texts, random.Random(5), 60)
        if name == "real":  # and lines of the UDHR in every script: Unicode items
            items += [line for line in (SHARED_CORPORA / "multilingual.txt").read_text().splitlines()[:200]
                      if len(words_of(line)) >= 8][:40]
        ev = root / f"{name}-eval.jsonl"
        ev.write_text("".join(json.dumps({"q": it, "choices": ["yes", "no"], "id": i}) + "\n"
                              for i, it in enumerate(items)))
        out[name] = (norm, ev, items)
    return root, out


@pytest.mark.parametrize("name", ["sample", "real"])
def test_exactly_the_documents_that_share_an_items_ngram_are_dropped_and_named(corpora, name, tmp_path):
    _, found = corpora
    norm, ev, items = found[name]
    cfg = DecontaminateConfig(eval=(str(ev),), eval_fields=("q",))
    report = run_decontaminate(str(norm), str(tmp_path / "d"), cfg, progress=False)
    before = documents(norm)
    texts, ids = before["text"].to_pylist(), before["doc_id"].to_pylist()
    truth = brute(texts, items)
    assert truth, "the planted items were found nowhere: the test proves nothing"
    dropped = {ids[d] for d, _ in truth}
    kept = set(documents(tmp_path / "d")["doc_id"].to_pylist())
    assert kept == set(ids) - dropped
    ledger = json.loads((tmp_path / "d" / "ledger.json").read_text())
    assert ledger["balanced"] and ledger["totals"]["dropped"]["contaminated"]["docs"] == len(dropped)
    assert report.ledger.totals().docs_out == len(kept)
    matches = pq.read_table(tmp_path / "d" / "contamination.parquet").to_pylist()
    # every row names the item (its line in the file) and the document, with the definition's count of n-grams
    kept_rows = [i + 1 for i, it in enumerate(items) if len(words_of(it)) >= 8]
    assert {(kept_rows[i], ids[d], n) for (d, i), n in truth.items()} == \
        {(m["item_row"], m["doc_id"], m["ngrams"]) for m in matches}
    assert {m["eval_file"] for m in matches} == {str(ev)} and {m["action"] for m in matches} == {"dropped"}
    summary = json.loads((tmp_path / "d" / "contamination.json").read_text())["files"][str(ev)]
    assert summary == {"items": len(items), "too_short": len(items) - len(kept_rows),
                       "items_found": len({i for _, i in truth}), "documents_dropped": len(dropped),
                       "documents_cut": 0}


def test_cut_removes_every_match_and_keeps_the_long_pieces(corpora, tmp_path):
    _, found = corpora
    norm, ev, items = found["real"]
    cfg = DecontaminateConfig(eval=(str(ev),), mode="cut", min_chars=100, eval_fields=("q",))
    run_decontaminate(str(norm), str(tmp_path / "c"), cfg, progress=False)
    before, after = documents(norm), documents(tmp_path / "c")
    assert not brute(after["text"].to_pylist(), items), "a match survived the cut"
    matches = pq.read_table(tmp_path / "c" / "contamination.parquet").to_pylist()
    cut = {m["doc_id"] for m in matches if m["action"] == "cut"}
    gone = {m["doc_id"] for m in matches if m["action"] == "dropped"}
    assert cut and set(after["doc_id"].to_pylist()) == set(before["doc_id"].to_pylist()) - gone
    old = dict(zip(before["doc_id"].to_pylist(), before["text"].to_pylist(), strict=True))
    for doc_id, text in zip(after["doc_id"].to_pylist(), after["text"].to_pylist(), strict=True):
        if doc_id in cut:
            assert len(text) < len(old[doc_id])
            assert all(piece in old[doc_id] for piece in text.split("\n\n"))  # pieces of the page, in order
        else:
            assert text == old[doc_id]
    ledger = json.loads((tmp_path / "c" / "ledger.json").read_text())
    dropped = ledger["totals"].get("dropped", {}).get("contaminated", {}).get("docs", 0)
    assert ledger["balanced"] and dropped == len(gone)


def test_same_bytes_in_the_driver_and_on_ray_workers_resumes_and_an_edited_set_reruns(corpora, tmp_path,
                                                                                       ray_session):
    _, found = corpora
    norm, ev, _ = found["sample"]
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "decontaminate", str(norm), "--eval", str(ev),
                        "--out", str(tmp_path / "a"), "--quiet"], capture_output=True, text=True)  # no Ray: small
    assert r.returncode == 0, r.stderr
    cfg = DecontaminateConfig(eval=(str(ev),))
    ray_run = run_decontaminate(str(norm), str(tmp_path / "b"), cfg, progress=False)  # Ray's 2 workers
    assert ray_run.shards == 7 and {m["node"] for m in ray_run.markers} != {None}
    for f in ("contamination.parquet", "contamination.json", "ledger.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert documents(tmp_path / "a").equals(documents(tmp_path / "b"))
    assert run_decontaminate(str(norm), str(tmp_path / "b"), cfg, progress=False).skipped == 7
    lines = ev.read_text().splitlines(keepends=True)
    (tmp_path / "eval.jsonl").write_text("".join(lines[: len(lines) // 2]))  # an edited set
    again = run_decontaminate(str(norm), str(tmp_path / "b"), DecontaminateConfig(eval=(str(tmp_path / "eval.jsonl"),)),
                              progress=False)
    assert again.skipped == 0
    assert json.loads((tmp_path / "b" / "contamination.json").read_text())["files"].keys() == {
        str(tmp_path / "eval.jsonl")}


def test_the_index_travels_through_rays_object_store_not_with_each_task(corpora, ray_session):
    from slimpajama.pipelines.decontaminate import Decontaminate
    from slimpajama.pipelines.shared import Shared

    _, found = corpora
    _, ev, _ = found["real"]
    evals = load_eval([str(ev)], DecontaminateConfig(eval=(str(ev),)))
    t = Decontaminate(Shared(evals), [[str(ev), "x"]], DecontaminateConfig(eval=(str(ev),)))
    alone = len(pickle.dumps(evals))
    size = len(pickle.dumps(t))
    assert alone > 30 * size, (alone, size)  # an object reference, put once
    assert len(pickle.dumps(t)) == size
    back = pickle.loads(pickle.dumps(t))
    assert np.array_equal(back.setup().index.keys, evals.index.keys)


# ------------------------------------------------------------------------------------------------ evaluation files


def test_every_evaluation_format_and_field_selection(tmp_path):
    rows = [{"question": "What is the first?", "choices": ["one", "two"], "meta": {"n": 3, "note": "x"}},
            {"question": "Second?", "choices": []}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in rows))
    (tmp_path / "b.json").write_text(json.dumps(rows))
    (tmp_path / "c.json").write_text("".join(json.dumps(r) + "\n" for r in rows))  # JSON lines named .json
    (tmp_path / "c2.json").write_text("\n  " + json.dumps(rows, indent=2))  # pretty-printed, after a blank line
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (tmp_path / "e.txt").write_text("first line\n\n  second line  \n")
    with gzip.open(tmp_path / "f.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "README.md").write_text("not an evaluation set")
    every = ["What is the first? one two x", "Second?"]
    assert list(read_items(str(tmp_path / "a.jsonl"))) == [(1, every[0]), (3, every[1])]
    for name in ("b.json", "c.json", "c2.json", "d.parquet", "f.jsonl.gz"):
        assert [t for _, t in read_items(str(tmp_path / name))] == every, name
        assert [t for _, t in read_items(str(tmp_path / name), ("question",))] == ["What is the first?", "Second?"]
    assert list(read_items(str(tmp_path / "e.txt"))) == [(1, "first line"), (3, "second line")]
    assert [os.path.basename(f) for f in eval_files((str(tmp_path),))] == [
        "a.jsonl", "b.json", "c.json", "c2.json", "d.parquet", "e.txt", "f.jsonl.gz"]


@pytest.mark.parametrize("setup,message", [
    (lambda p: (p / "empty.jsonl").write_text(""), "empty.jsonl: no evaluation items in it"),
    (lambda p: (p / "bad.jsonl").write_text('{"q": "fine"}\n{"q": broken\n'), "bad.jsonl:2: not JSON"),
    (lambda p: (p / "x.jsonl").write_text('{"q": "a b c"}\n'), "no row has --eval-field answer (its fields: q)"),
    (lambda p: (p / "notes.md").write_text("x"), "notes.md: not an evaluation file"),
    (lambda p: (p / "folder").mkdir(), "folder: no evaluation file"),
])
def test_a_wrong_evaluation_file_is_one_error_line(sample_corpus, tmp_path, setup, message):
    setup(tmp_path)
    target = next(p for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "decontaminate", str(sample_corpus[0]), "--eval",
                        str(target), "--out", str(tmp_path / "out"), "--eval-field", "answer" if "x.jsonl" in
                        target.name else "q"], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and message in r.stderr, r.stderr


def test_missing_eval_is_a_usage_error(sample_corpus, tmp_path):
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "decontaminate", str(sample_corpus[0]), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: Missing option '--eval'")
    with pytest.raises(SlimPajamaError, match="needs --eval"):
        eval_files(())


def test_release_takes_the_output_and_stats_shows_each_evaluation_file(corpora, tmp_path):
    _, found = corpora
    norm, ev, _ = found["sample"]
    run = [sys.executable, "-m", "slimpajama.cli"]
    r = subprocess.run(run + ["decontaminate", str(norm), "--eval", str(ev), "--out", str(tmp_path / "d"),
                              "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["release", str(tmp_path / "d"), "--out", str(tmp_path / "rel"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["stats", str(tmp_path / "d"), "--json"], capture_output=True, text=True)
    st = json.loads(r.stdout)
    assert st["contamination"][str(ev)]["items_found"] > 0
    assert st["pipeline"]["sources"]  # its ledger, with the contaminated column
    assert any(r["contaminated"] for r in st["pipeline"]["sources"].values())
    text = subprocess.run(run + ["stats", str(tmp_path / "d")], capture_output=True, text=True).stdout
    assert "evaluation sets (decontaminate)" in text and "sample-eval" in text.replace("\n", "").replace(" ", "")


@pytest.mark.slow
def test_ten_million_items(tmp_path):
    """A set of 10 million items (the index built once, in arrays), found exactly where planted."""
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(100_000)])
    n = 10_000_000
    lens = rng.integers(6, 20, n)
    words = vocab[rng.integers(0, len(vocab), int(lens.sum()))]
    path = tmp_path / "big.txt"
    starts = np.concatenate(([0], np.cumsum(lens)))
    with open(path, "w") as fh:
        for lo in range(0, n, 200_000):
            fh.write("".join(f"item{i} " + " ".join(words[starts[i]: starts[i + 1]]) + "\n"
                             for i in range(lo, min(lo + 200_000, n))))
    evals = load_eval([str(path)], DecontaminateConfig(eval=(str(path),)))
    assert evals.counts[str(path)]["items"] == n
    picks = rng.choice(n, 50, replace=False)
    docs = [f"Intro text. item{i} " + " ".join(words[starts[i]: starts[i + 1]]) + " and more" for i in picks]
    docs += ["nothing to see " * 30, " ".join(words[:12])]
    matches = find(docs, evals.index)
    want = {(d, int(i)) for d, i in enumerate(picks) if lens[i] + 1 >= 8}
    assert {(m.doc, int(evals.item_row[m.item]) - 1) for m in matches} >= want
    for m in matches:  # anything else found is a true match by the definition
        assert matches_reference(docs[m.doc], path_line(path, int(evals.item_row[m.item])), 13, 8)


def path_line(path, row):
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if i == row:
                return line


def test_the_pipeline_with_eval_releases_only_what_decontaminate_kept(sample_corpus, tmp_path):
    """`pipeline --eval`: normalize, dedup, decontaminate, then release reads the decontaminated documents; stats
    of the data/ tree shows the stage in its funnel and the evaluation file."""
    from dataclasses import replace

    import zstandard
    from pipeline_helpers import CONFIG

    from slimpajama.pipelines.pipeline import run_pipeline
    from slimpajama.tools.stats import compute

    raw, _ = sample_corpus
    from slimpajama.errors import raise_on_bad
    from slimpajama.io.documents import read_documents

    pages = [t for f in discover(str(raw)) for b in read_documents(f, raise_on_bad) for t in b["text"].to_pylist()]
    words = max(pages, key=len).split()
    ev = tmp_path / "eval.txt"
    ev.write_text(" ".join(words[10:40]) + "\n" + "a question no page holds at all in any of its many words\n")
    data = tmp_path / "data"
    cfg = replace(CONFIG, decontaminate=DecontaminateConfig(eval=(str(ev),)), task_bytes=0)
    reports = run_pipeline(str(raw), str(data), cfg, progress=False)
    assert [r.stage for r in reports][:4] == ["normalize", "dedup", "decontaminate", "release"]
    matches = pq.read_table(data / "work/decontaminated/contamination.parquet").to_pylist()
    assert matches and {m["item_row"] for m in matches} == {1}
    released = [json.loads(line)["text"] for f in sorted((data / "slimpajama").rglob("*.jsonl.zst"))
                for line in zstandard.ZstdDecompressor().stream_reader(f.open("rb")).read().decode().splitlines()]
    assert released and not brute(released, [" ".join(words[10:40])])
    st = compute(str(data))
    assert [s["stage"] for s in st["pipeline"]["funnel"]][:4] == ["input", "normalize", "dedup", "decontaminate"]
    assert st["contamination"][str(ev)]["items_found"] == 1
