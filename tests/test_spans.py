"""Within-file parallelism: a big plain .jsonl or parquet file read as several parts by separate tasks, with the
output of one task per file; and RedPajama-Data-1T's layout and names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from pipeline_helpers import CONFIG, product

from slimpajama.core import defaults
from slimpajama.core.schema import REDPAJAMA_SOURCES
from slimpajama.errors import BadInputError, raise_on_bad
from slimpajama.io.discover import discover, discover_all
from slimpajama.io.documents import read_documents
from slimpajama.io.spans import count_newlines, jsonl_cuts, jsonl_parts, parquet_parts, part_bytes
from slimpajama.pipelines import NormalizeStage, ReadOptions, run_stage
from slimpajama.pipelines.pipeline import run_pipeline
from slimpajama.pipelines.split import split_tasks
from slimpajama.tools.sample_corpus import RP1T_SUBSETS, generate_corpus


def rows(files, **kw) -> list[tuple]:
    return [r for f in files for b in read_documents(f, raise_on_bad, **kw)
            for r in zip(*(b.column(c).to_pylist() for c in ("doc_id", "source", "text", "meta")), strict=True)]


def test_jsonl_cuts_fall_after_newlines_and_parts_keep_the_true_line_numbers(tmp_path):
    path = tmp_path / "s" / "f.jsonl"
    path.parent.mkdir()
    lines = [orjson.dumps({"text": f"doc {i} " + "x" * (i * 37 % 500)}) for i in range(400)]
    lines[200] = orjson.dumps({"text": "y" * 20_000})  # longer than a part: parts merge around it
    lines.insert(77, b"")  # a blank line still counts as a line
    path.write_bytes(b"\n".join(lines) + b"\n")
    data = path.read_bytes()
    (whole,) = discover(str(tmp_path))
    want = rows([whole])
    for task_bytes in (1, 1000, 7919, 50_000, len(data)):
        bounds = jsonl_cuts(str(path), len(data), task_bytes)
        assert bounds[0] == 0 and bounds[-1] == len(data) and bounds == sorted(set(bounds))
        assert all(data[c - 1:c] == b"\n" for c in bounds[1:-1])
        newlines = [count_newlines(str(path), a, b) for a, b in zip(bounds, bounds[1:-1], strict=False)]
        parts = jsonl_parts(whole, bounds, newlines)
        assert rows(parts) == want  # doc ids name the line in the whole file
    assert want[77][0] == "s/f.jsonl:79"


def test_parquet_parts_are_row_group_runs_with_true_row_numbers(tmp_path):
    path = tmp_path / "s" / "f.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({"text": [f"row {i} " + "z" * (i % 300) for i in range(1000)]}), path,
                   row_group_size=64)
    (whole,) = discover(str(tmp_path))
    parts = parquet_parts(whole, 20_000)
    assert len(parts) > 3 and parts[0].span[2] == 1
    assert rows(parts) == rows([whole])
    assert rows(parts)[999][0] == "s/f.parquet:1000"


def _single_file_corpus(tmp_path, docs=1500):
    """One input of several MB: the sample corpus (planted duplicates, short documents) as one plain JSON-lines
    file of RedPajama-1T rows (each keeps its own red_pajama_subset)."""
    gen = tmp_path / "gen"
    generate_corpus(str(gen), seed=3, docs=docs)
    path = tmp_path / "raw" / "wikipedia" / "wiki.jsonl"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as out:
        for f in discover(str(gen)):
            for b in read_documents(f, raise_on_bad):
                for text, src in zip(b.column("text").to_pylist(), b.column("source").to_pylist(), strict=True):
                    out.write(orjson.dumps({"text": text, "meta": {}, "red_pajama_subset": RP1T_SUBSETS[src]}) + b"\n")
    return tmp_path / "raw", path.stat().st_size


def test_task_bytes_never_changes_the_output(tmp_path, ray_session):
    raw, size = _single_file_corpus(tmp_path)
    assert size > 3 << 20
    results = {}
    for task_bytes in (0, 1 << 20, 300_000):
        data = tmp_path / f"data-{task_bytes}"
        reports = run_pipeline(str(raw), str(data), replace(CONFIG, task_bytes=task_bytes), progress=False)
        normalize = reports[0]
        assert normalize.shards == (1 if not task_bytes else -(-size // task_bytes)), normalize.shards
        got = product(data)
        normalized = rows(discover(str(data / "work" / "normalized")))
        results[task_bytes] = (
            normalized,
            {k: v for k, v in got.items() if k.startswith(("slimpajama/", "shards/", "tokens/gpt2/ledger"))
             and "/_" not in f"/{k}"},
            got["work/dedup/duplicates.parquet"], got["work/normalized/ledger.json"], got["work/dedup/ledger.json"])
    assert len(results[0][0]) > 1000 and results[0][1]
    assert results[0] == results[1 << 20] == results[300_000]


def test_bad_input_in_the_third_part_is_reported_with_its_true_line(tmp_path, ray_session):
    path = tmp_path / "raw" / "book" / "book.jsonl"
    path.parent.mkdir(parents=True)
    lines = [orjson.dumps({"text": f"document {i} " * 30, "red_pajama_subset": "books"}) for i in range(300)]
    lines[250] = b'{"text": broken'
    path.write_bytes(b"\n".join(lines) + b"\n")
    found = discover_all(str(tmp_path / "raw"))
    tasks = split_tasks(found.files, str(tmp_path / "n"), 30_000)
    assert len(tasks) >= 3 and tasks[2].inputs[0].span[2] <= 251 < tasks[-1].inputs[0].span[2] + 300
    stage = NormalizeStage(ReadOptions())
    report = run_stage(stage, tasks, str(tmp_path / "n"), progress=False)
    errors = [json.loads(x) for x in (tmp_path / "n" / "_errors.jsonl").read_text().splitlines()]
    assert [(e["file"], e["line"], e["reason"]) for e in errors] == [("book/book.jsonl", 251, "malformed_json")]
    assert report.ledger.sources["RedPajamaBook"].docs_in == 300
    assert (tmp_path / "n" / "_state" / "_spans.json").exists()  # the plan is kept: a rerun reads no line twice
    with pytest.raises(BadInputError, match="book/book.jsonl:251: malformed_json"):
        run_stage(NormalizeStage(ReadOptions(on_error="fail")), split_tasks(found.files, str(tmp_path / "f"), 30_000),
                  str(tmp_path / "f"), progress=False)


def test_a_small_input_is_cut_finer_the_same_way_at_any_worker_count(tmp_path, monkeypatch):
    """One file of a few parts' worth at the default --task-bytes becomes MIN_PARTS parts (a 120 MB file would be a
    single task, one busy core), whatever the worker count; a big input keeps --task-bytes."""
    assert part_bytes(10 << 40, defaults.TASK_BYTES) == defaults.TASK_BYTES
    assert part_bytes(120_000_000, defaults.TASK_BYTES) == defaults.MIN_PART_BYTES
    assert part_bytes(120_000_000, 1 << 20) == 1 << 20 and part_bytes(120_000_000, 0) == 0
    monkeypatch.setattr(defaults, "MIN_PART_BYTES", 8 << 10)  # the same rule, at a size a test writes quickly
    path = tmp_path / "raw" / "book" / "book.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(orjson.dumps({"text": f"document {i} " * 30}) + b"\n" for i in range(2000)))
    plans = [[t.inputs[0].span for t in split_tasks(discover(str(tmp_path / "raw")), str(tmp_path / f"n{w}"),
                                                     defaults.TASK_BYTES, workers=w)] for w in (1, 2)]
    assert plans[0] == plans[1] and defaults.MIN_PARTS <= len(plans[0]) <= defaults.MIN_PARTS + 1
    report = run_stage(NormalizeStage(ReadOptions()), split_tasks(discover(str(tmp_path / "raw")),
                       str(tmp_path / "n"), defaults.TASK_BYTES), str(tmp_path / "n"), progress=False)
    assert report.shards == len(plans[0]) and report.ledger.sources["RedPajamaBook"].docs_in == 2000


def test_a_compressed_stream_is_one_task_with_a_notice(tmp_path, caplog):
    path = tmp_path / "raw" / "c4" / "c4.jsonl.zst"
    path.parent.mkdir(parents=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(
        orjson.dumps({"text": os.urandom(100).hex()}) + b"\n" for i in range(200))))
    tasks = split_tasks(discover(str(tmp_path / "raw")), str(tmp_path / "n"), 1000)
    assert len(tasks) == 1 and tasks[0].inputs[0].span is None
    assert "c4/c4.jsonl.zst" in caplog.text and "one compressed stream" in caplog.text


# ------------------------------------------------------------------------------------------------ names


def test_redpajama_1t_rows_and_folders_get_slimpajama_names(tmp_path):
    raw = tmp_path / "raw"
    rows_ = {"book/book.jsonl": [{"text": "a", "meta": {}, "red_pajama_subset": "books"}, {"text": "b"}],
             "common_crawl/2019-30/en_head_0000.json.gz.dedup.classifier.jsonl.zst": [{"text": "c", "meta": {}}],
             "wikipedia/wiki.jsonl": [{"text": "d", "meta": {"redpajama_set_name": "Mine"}}],
             "other/x.jsonl": [{"text": "e"}, {"text": "f", "red_pajama_subset": "weird"}]}
    for rel, docs in rows_.items():
        p = raw / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(orjson.dumps(d) + b"\n" for d in docs)
        p.write_bytes(zstandard.ZstdCompressor().compress(data) if rel.endswith(".zst") else data)
    got = {r[2]: r[1] for r in rows(discover(str(raw)))}
    assert got == {"a": "RedPajamaBook", "b": "RedPajamaBook", "c": "RedPajamaCommonCrawl", "d": "Mine",
                   "e": "other", "f": "weird"}
    mapped = {r[2]: r[1] for r in rows(discover(str(raw)), source_map=(("other", "Other"), ("weird", "W")))}
    assert (mapped["e"], mapped["f"], mapped["a"]) == ("Other", "W", "RedPajamaBook")
    # the CLI takes the map as NAME=SOURCE pairs or a JSON file, and stats shows the names of a raw tree
    (tmp_path / "map.json").write_text(json.dumps({"other": "Other"}))
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "normalize", str(raw), "--out", str(tmp_path / "n"),
                        "--min-chars", "0", "--source-map", str(tmp_path / "map.json"), "--json", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ledger = json.loads((tmp_path / "n" / "ledger.json").read_text())
    assert sorted(ledger["sources"]) == ["Mine", "Other", "RedPajamaBook", "RedPajamaCommonCrawl", "weird"]
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "normalize", str(raw), "--out", str(tmp_path / "m"),
                        "--source-map", "nonsense"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: --source-map") and "Traceback" not in r.stderr


def test_the_redpajama_1t_layout_releases_slimpajama_names(clean_pipeline, pipeline_corpus):
    """The pipeline corpus is the sample in RedPajama-Data-1T's layout (its paths and red_pajama_subset rows)."""
    data, _, _ = clean_pipeline
    raw, truth = pipeline_corpus
    assert {"book/book.jsonl", "wikipedia/wiki.jsonl", "stackexchange/stackexchange.jsonl"} <= set(truth["files"])
    assert any(f.startswith("common_crawl/2019-30/en_head_") and f.endswith(".json.gz.dedup.classifier.jsonl.zst")
               for f in truth["files"])
    names = set()
    for f in discover(str(data / "slimpajama")):
        with open(f.path, "rb") as fh:
            for line in zstandard.ZstdDecompressor().stream_reader(fh).read().splitlines():
                assert set(json.loads(line)) == {"text", "meta"}
                names.add(json.loads(line)["meta"]["redpajama_set_name"])
    assert names == set(REDPAJAMA_SOURCES)
    parts = [m for m in os.listdir(data / "work" / "normalized" / "wikipedia") if ".part-" in m]
    assert len(parts) > 1  # the big files were read in parts
    from slimpajama.tools.stats import compute

    assert set(compute(str(raw))["corpus"]["sources"]) == set(REDPAJAMA_SOURCES)
