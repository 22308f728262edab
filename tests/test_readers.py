import gzip
import json
import os

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import ARXIV_SAMPLE, CC_SAMPLE

from slimpajama.core.schema import DOC_SCHEMA
from slimpajama.errors import BadInputError, raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import iter_documents, read_documents


def collect(inputs, **kw):
    bad = []
    batches = list(iter_documents(inputs, bad.append, **kw))
    rows = pa.Table.from_batches(batches, schema=DOC_SCHEMA).to_pylist() if batches else []
    return rows, bad


def write_lines(path, lines: list[bytes]):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = b"".join(line + b"\n" for line in lines)
    if str(path).endswith(".zst"):
        data = zstandard.ZstdCompressor(level=3).compress(data)
    elif str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def doc(text, source="RedPajamaC4", **meta):
    return orjson.dumps({"text": text, "meta": {"redpajama_set_name": source, **meta}})


# ------------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst", ".jsonl.gz", ".parquet"])
def test_each_format_reads_the_same_documents(tmp_path, suffix):
    texts = [f"document number {i} " * (i + 1) for i in range(50)] + ["ünïcödé 文字 🙂"]
    path = tmp_path / "RedPajamaWikipedia" / f"wiki{suffix}"
    if suffix == ".parquet":
        os.makedirs(path.parent)
        pq.write_table(pa.table({"text": texts, "meta": [json.dumps({"k": i}) for i in range(len(texts))]}), path)
    else:
        write_lines(path, [orjson.dumps({"text": t, "meta": {"k": i}}) for i, t in enumerate(texts)])
    rows, bad = collect(str(tmp_path))
    assert bad == []
    assert [r["text"] for r in rows] == texts
    assert {r["source"] for r in rows} == {"RedPajamaWikipedia"}  # from the folder under the root
    assert rows[3]["doc_id"] == f"RedPajamaWikipedia/wiki{suffix}:4"
    assert json.loads(rows[3]["meta"]) == {"k": 3}


def test_real_redpajama_arxiv_sample_reads_with_source_flag():
    rows, bad = collect(str(ARXIV_SAMPLE), source="RedPajamaArXiv")
    originals = [json.loads(line) for line in open(ARXIV_SAMPLE)]
    assert bad == [] and len(rows) == len(originals) == 20
    assert [r["text"] for r in rows] == [o["text"] for o in originals]
    assert {r["source"] for r in rows} == {"RedPajamaArXiv"}
    assert json.loads(rows[0]["meta"]) == originals[0]["meta"]
    assert len({r["doc_id"] for r in rows}) == 20


def test_real_dolma_cc_sample_keeps_other_fields_as_meta():
    rows, bad = collect(str(CC_SAMPLE), source="RedPajamaCommonCrawl")
    originals = [json.loads(line) for line in open(CC_SAMPLE)]
    assert bad == [] and len(rows) == 10
    meta = json.loads(rows[0]["meta"])
    assert meta["id"] == originals[0]["id"] and meta["metadata"] == originals[0]["metadata"]
    assert "text" not in meta
    assert rows[0]["source"] == "RedPajamaCommonCrawl"


def test_source_precedence(tmp_path):
    write_lines(tmp_path / "FolderSource" / "a.jsonl", [doc("x", "MetaSource"), orjson.dumps({"text": "y"})])
    write_lines(tmp_path / "top.jsonl", [orjson.dumps({"text": "z"})])
    rows, _ = collect(str(tmp_path), source="FlagSource")
    assert [r["source"] for r in rows] == ["MetaSource", "FolderSource", "FlagSource"]
    rows, _ = collect(str(tmp_path / "top.jsonl"))
    assert rows[0]["source"] == "unknown"


def test_discover_dirs_globs_and_skips(tmp_path):
    for rel in ["a/1.jsonl", "a/2.jsonl.zst", "b/c/3.parquet", "a/.hidden.jsonl", "_state/x.jsonl", "a/notes.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    assert [f.rel for f in discover(str(tmp_path))] == ["a/1.jsonl", "a/2.jsonl.zst", "b/c/3.parquet"]
    assert [f.rel for f in discover(str(tmp_path / "a" / "*.jsonl*"))] == ["1.jsonl", "2.jsonl.zst"]
    assert [f.rel for f in discover(str(tmp_path) + "/**/*.parquet")] == ["b/c/3.parquet"]
    with pytest.raises(Exception, match="input not found"):
        discover(str(tmp_path / "missing"))


def test_batches_are_bounded(tmp_path):
    write_lines(tmp_path / "s" / "a.jsonl.zst", [doc("w" * 1000) for _ in range(500)])
    (f,) = discover(str(tmp_path))
    sizes = [b.num_rows for b in read_documents(f, raise_on_bad, batch_rows=64)]
    assert sum(sizes) == 500 and max(sizes) == 64
    nbytes = [pc.sum(pc.binary_length(b.column("text"))).as_py()
              for b in read_documents(f, raise_on_bad, batch_bytes=10_000)]
    assert max(nbytes) <= 10_000 + 1000


def test_multi_frame_zstd(tmp_path):
    c = zstandard.ZstdCompressor(level=3)
    p = tmp_path / "s" / "m.jsonl.zst"
    p.parent.mkdir()
    p.write_bytes(c.compress(doc("first") + b"\n") + c.compress(doc("second") + b"\n"))
    rows, bad = collect(str(p))
    assert [r["text"] for r in rows] == ["first", "second"] and bad == []


# ------------------------------------------------------------------------------------------------ bad input


BAD_CASES = {
    "malformed_json": b'{"text": "unterminated',
    "invalid_utf8": b'{"text": "caf\xe9"}',
    "missing_text": b'{"meta": {"redpajama_set_name": "RedPajamaC4"}}',
    "non_string_text": b'{"text": 42}',
    "not_object": b'["text"]',
    "invalid_text": b'{"text": "lone \\ud800 surrogate"}',
}


@pytest.mark.parametrize("reason", sorted(BAD_CASES))
def test_bad_line_is_skipped_and_reported_with_file_and_line(tmp_path, reason):
    p = tmp_path / "RedPajamaC4" / "c4.jsonl"
    write_lines(p, [doc("good one"), BAD_CASES[reason], doc("good two")])
    rows, bad = collect(str(tmp_path))
    assert [r["text"] for r in rows] == ["good one", "good two"]
    assert [r["doc_id"] for r in rows] == ["RedPajamaC4/c4.jsonl:1", "RedPajamaC4/c4.jsonl:3"]
    assert len(bad) == 1
    assert (bad[0].file, bad[0].line, bad[0].reason) == ("RedPajamaC4/c4.jsonl", 2, reason)
    assert bad[0].source == "RedPajamaC4" and bad[0].nbytes == len(BAD_CASES[reason]) + 1
    with pytest.raises(BadInputError, match=r"RedPajamaC4/c4.jsonl:2: " + reason):
        list(iter_documents(str(tmp_path), raise_on_bad))


def test_big_integers_in_meta_are_valid_json(tmp_path):
    write_lines(tmp_path / "s" / "a.jsonl", [b'{"text": "t", "meta": {"id": 123456789012345678901234567890}}'])
    rows, bad = collect(str(tmp_path))
    assert bad == [] and json.loads(rows[0]["meta"]) == {"id": 123456789012345678901234567890}


@pytest.mark.parametrize("suffix", [".jsonl.zst", ".jsonl.gz"])
def test_truncated_compressed_file(tmp_path, suffix):
    p = tmp_path / "s" / f"t{suffix}"
    write_lines(p, [doc(f"document {i} " * 20) for i in range(2000)])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    rows, bad = collect(str(tmp_path))
    assert 0 < len(rows) < 2000
    assert [b.reason for b in bad] == ["truncated"]
    assert bad[0].line == len(rows) + 1 or bad[0].line == len(rows) + 2  # the record being read when it ended
    with pytest.raises(BadInputError, match=f"t{suffix}:[0-9]+: truncated"):
        list(iter_documents(str(tmp_path), raise_on_bad))


def test_corrupt_compressed_file(tmp_path):
    p = tmp_path / "s" / "c.jsonl.zst"
    p.parent.mkdir()
    p.write_bytes(b"this is not zstd at all" * 10)
    rows, bad = collect(str(tmp_path))
    assert rows == [] and [b.reason for b in bad] == ["corrupt"]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.zst"])
def test_empty_file(tmp_path, suffix):
    p = tmp_path / "s" / f"e{suffix}"
    p.parent.mkdir()
    p.write_bytes(zstandard.ZstdCompressor().compress(b"") if suffix.endswith("zst") else b"")
    rows, bad = collect(str(tmp_path))
    assert rows == [] and [(b.reason, b.line) for b in bad] == [("empty_file", 0)]


def test_empty_parquet_is_zero_documents_not_bad_input(tmp_path):
    """A parquet file has a footer, so zero rows is a complete, empty table (a shard whose documents were all
    short or all duplicates), unlike an empty jsonl (a failed download)."""
    p = tmp_path / "s" / "e.parquet"
    p.parent.mkdir()
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), p)
    assert collect(str(tmp_path)) == ([], [])


def test_50mb_document_is_bad_input_by_default_and_reads_with_a_higher_limit(tmp_path):
    big = "x" * (50 << 20)
    p = tmp_path / "s" / "big.jsonl"
    write_lines(p, [doc("before"), orjson.dumps({"text": big}), doc("after")])
    rows, bad = collect(str(tmp_path))
    assert [r["text"] for r in rows] == ["before", "after"]
    assert [(b.reason, b.line) for b in bad] == [("too_large", 2)]
    assert bad[0].nbytes == len(orjson.dumps({"text": big})) + 1
    rows, bad = collect(str(tmp_path), max_doc_bytes=64 << 20)
    assert bad == [] and len(rows[1]["text"]) == 50 << 20


def test_parquet_without_text_column_and_null_text(tmp_path):
    (tmp_path / "s").mkdir()
    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "s" / "a.parquet")
    pq.write_table(pa.table({"text": ["x", None, "z"]}), tmp_path / "s" / "b.parquet")
    rows, bad = collect(str(tmp_path))
    assert [r["text"] for r in rows] == ["x", "z"]
    assert [r["doc_id"] for r in rows] == ["s/b.parquet:1", "s/b.parquet:3"]
    assert [(b.file, b.line, b.reason) for b in bad] == [("s/a.parquet", 0, "bad_schema"),
                                                         ("s/b.parquet", 2, "missing_text")]


def test_blank_lines_are_not_records(tmp_path):
    write_lines(tmp_path / "s" / "a.jsonl", [doc("one"), b"", b"   ", doc("two")])
    rows, bad = collect(str(tmp_path))
    assert [r["doc_id"] for r in rows] == ["s/a.jsonl:1", "s/a.jsonl:4"] and bad == []


def test_own_shards_pass_through_and_rows_needing_repair_are_still_repaired(tmp_path):
    """Our own shards are read without a text becoming a Python object; a DOC_SCHEMA file whose rows need the
    repairs (empty source or meta, invalid UTF-8, a text over the limit) gets them, batch by batch."""
    (tmp_path / "s").mkdir()
    clean = pa.table({"doc_id": ["a:1", "a:2"], "source": ["RedPajamaBook", "RedPajamaC4"], "text": ["one", "twö"],
                      "meta": ["{}", '{"k": 1}']}, schema=DOC_SCHEMA)
    pq.write_table(clean, tmp_path / "s" / "clean.parquet")
    text = pa.array([b"fine", b"bad \xff", b"x" * 40], pa.binary()).view(pa.string())
    odd = pa.table({"doc_id": ["b:1", "b:2", "b:3"], "source": ["", "RedPajamaC4", "RedPajamaC4"], "text": text,
                    "meta": ["", "{}", "{}"]}, schema=DOC_SCHEMA)
    pq.write_table(odd, tmp_path / "s" / "odd.parquet")
    rows, bad = collect(str(tmp_path / "s" / "clean.parquet"))
    assert rows == clean.to_pylist() and bad == []
    rows, bad = collect(str(tmp_path / "s" / "odd.parquet"), max_doc_bytes=32, source="RedPajamaWikipedia")
    assert rows == [{"doc_id": "b:1", "source": "RedPajamaWikipedia", "text": "fine", "meta": "{}"}]
    assert sorted((b.line, b.reason) for b in bad) == [(2, "invalid_utf8"), (3, "too_large")]


def test_a_json_error_message_says_at_once(tmp_path):
    """Issue 44.9: the stdlib's "Invalid control character at" came out as "... at at column 12"."""
    write_lines(tmp_path / "s" / "a.jsonl", [b'{"text": "a\x01b"}'])
    _, bad = collect(str(tmp_path))
    assert bad[0].reason == "malformed_json" and bad[0].message == "Invalid control character at column 12"


def test_the_default_shards_folder_names_the_packing_and_the_tokenizer():
    """Issue 44.9: every layout had one default folder (the README's Qwen example overwrote GPT-2's seq2048, best
    fit overwrote concat), and --range 0:0.000001 was named seq256-0-1e-06."""
    from slimpajama.pipelines.pack import shards_dir_name

    assert shards_dir_name(2048, (0.0, 1.0)) == "seq2048"
    assert shards_dir_name(2048, (0.0, 0.75)) == "seq2048-0-0.75"
    assert shards_dir_name(256, (0.0, 0.000001)) == "seq256-0-0.000001"
    assert shards_dir_name(8192, (0.75, 1.0), "bestfit") == "seq8192-0.75-1-bestfit"
    assert shards_dir_name(2048, (0.0, 1.0), "concat", "Qwen2.5-0.5B") == "seq2048-Qwen2.5-0.5B"


def test_a_file_name_that_is_not_utf8_is_read_with_its_bytes_escaped(tmp_path):
    """Issue 44.4: `na\\xefve\\xff.jsonl` stopped normalize, ingest and stats with a UnicodeEncodeError naming no
    file. Its doc ids, outputs and messages spell the name with the bytes escaped."""
    import json as _json

    from click.testing import CliRunner

    from slimpajama.cli import main

    raw = tmp_path / "raw" / "src"
    raw.mkdir(parents=True)
    with open(os.path.join(os.fsencode(raw), b"na\xefve\xff.jsonl"), "w") as f:
        f.writelines(_json.dumps({"text": f"document {i} " + "word " * 60}) + "\n" for i in range(3))
    rows, bad = collect(str(tmp_path / "raw"))
    assert not bad and [r["doc_id"] for r in rows] == [f"src/na\\xefve\\xff.jsonl:{i}" for i in (1, 2, 3)]
    for args in (["normalize", str(tmp_path / "raw"), "--out", str(tmp_path / "n"), "--quiet"],
                 ["ingest", str(tmp_path / "raw"), "--out", str(tmp_path / "i"), "--quiet"],
                 ["stats", str(tmp_path / "raw")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
    assert (tmp_path / "n" / "src" / "na\\xefve\\xff.parquet").is_file()
