import io
import json
import os

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import ARXIV_SAMPLE, CC_SAMPLE

from slimpajama.core.schema import DOC_SCHEMA
from slimpajama.errors import raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import iter_documents
from slimpajama.io.writers import TMP_PREFIX, ParquetShardWriter, ReleaseChunkWriter, remove_stale_tmp


def read_all(path, **kw):
    return pa.Table.from_batches(list(iter_documents(str(path), raise_on_bad, **kw)), schema=DOC_SCHEMA)


@pytest.mark.parametrize("sample", [ARXIV_SAMPLE, CC_SAMPLE])
def test_parquet_round_trip_real_data(tmp_path, sample):
    table = read_all(sample, source="RedPajamaArXiv")
    out = tmp_path / "shard.parquet"
    with ParquetShardWriter(str(out)) as w:
        for b in table.to_batches(max_chunksize=3):
            w.write(b)
    back = read_all(out)
    assert back.equals(table)  # doc_id, source, text and meta all survive
    # row groups come from the rows, not from how they were batched: the same bytes written in one piece
    with ParquetShardWriter(str(tmp_path / "one.parquet")) as w:
        w.write(table)
    assert out.read_bytes() == (tmp_path / "one.parquet").read_bytes()


def test_row_groups_are_bounded_by_rows_and_text_bytes(tmp_path, monkeypatch):
    import slimpajama.io.writers as writers

    monkeypatch.setattr(writers, "GROUP_ROWS", 10)
    monkeypatch.setattr(writers, "GROUP_TEXT_BYTES", 100)
    texts = ["x" * 30] * 7 + ["y"] * 25
    table = pa.table({"doc_id": [str(i) for i in range(len(texts))], "source": ["s"] * len(texts), "text": texts,
                      "meta": ["{}"] * len(texts)}, schema=DOC_SCHEMA)
    with ParquetShardWriter(str(tmp_path / "g.parquet")) as w:
        for b in table.to_batches(max_chunksize=4):
            w.write(b)
    md = pq.ParquetFile(tmp_path / "g.parquet").metadata
    # 4 x 30 bytes reach 100; then 3 x 30 + 7 x 1 = 10 rows; then 10 rows; then the last 8
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == [4, 10, 10, 8]


def test_release_chunk_round_trip_and_exact_line_format(tmp_path, sample_corpus):
    raw, _ = sample_corpus
    table = read_all(raw)
    out = tmp_path / "train" / "chunk1" / "example_train_0.jsonl.zst"
    with ReleaseChunkWriter(str(out)) as w:
        w.write_batch(table)
    lines = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.read_bytes())).read().splitlines()
    assert len(lines) == table.num_rows
    first = json.loads(lines[0])
    assert list(first) == ["text", "meta"] and list(first["meta"]) == ["redpajama_set_name"]
    assert lines[0] == orjson.dumps({"text": first["text"], "meta": {"redpajama_set_name": table["source"][0].as_py()}})
    back = read_all(out.parent)
    assert back["text"].to_pylist() == table["text"].to_pylist()
    assert back["source"].to_pylist() == table["source"].to_pylist()
    # zstd level 3, one frame: the same input gives the same bytes
    out2 = tmp_path / "again.jsonl.zst"
    with ReleaseChunkWriter(str(out2)) as w:
        w.write_batch(table)
    assert out2.read_bytes() == out.read_bytes()


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError):
        with ParquetShardWriter(str(target)) as w:
            w.write(pa.table({"doc_id": ["a"], "source": ["s"], "text": ["t"], "meta": ["{}"]},
                             schema=DOC_SCHEMA))
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):
        with ReleaseChunkWriter(str(tmp_path / "y.jsonl.zst")) as w:
            w.write("t", "s")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_stale_temporary_files_are_invisible_and_removed(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / f"{TMP_PREFIX}abc-part.jsonl").write_bytes(b'{"text": "partial"}\n')
    (tmp_path / "s" / "ok.jsonl").write_bytes(b'{"text": "complete"}\n')
    assert [f.rel for f in discover(str(tmp_path))] == ["s/ok.jsonl"]
    assert remove_stale_tmp(str(tmp_path)) == 1
    assert os.listdir(tmp_path / "s") == ["ok.jsonl"]


def big_rows(n=120, size=30_000, seed=0):
    """Documents whose row group (3.6 MB of text) spans several parquet pages (1 MB each)."""
    import random

    rng = random.Random(seed)
    words = ["page", "footer", "menu", "naïve", "über", "—", "¶", "data", "text", "row"]
    texts = [" ".join(rng.choice(words) for _ in range(size // 5))[:size] for _ in range(n)]
    return pa.table([pa.array([f"f.jsonl:{i + 1}" for i in range(n)]), pa.array(["RedPajamaC4"] * n),
                     pa.array(texts), pa.array(["{}"] * n)], schema=DOC_SCHEMA)


def test_shard_bytes_do_not_depend_on_chunks_even_where_pages_are_cut(tmp_path):
    """Pages end where a value crosses the page size, not where a chunk of the column ended: the same rows as one
    piece, as batches of 7, and as the zero-copy slices keep_rows makes write one file. With pyarrow's default
    1 MB pages the three files differed."""
    import numpy as np

    from slimpajama.core.schema import keep_rows

    table = big_rows()
    keep = np.ones(table.num_rows, dtype=bool)
    keep[[5, 6, 40, 77, 119]] = False
    pieces = {"one": [table.filter(pa.array(keep))],
              "sevens": table.filter(pa.array(keep)).to_batches(max_chunksize=7),
              "slices": [keep_rows(b, keep[i * 40:(i + 1) * 40]) for i, b in enumerate(table.to_batches(40))]}
    digests = {}
    for name, parts in pieces.items():
        out = tmp_path / f"{name}.parquet"
        with ParquetShardWriter(str(out)) as w:
            for p in parts:
                w.write(p)
        assert pq.ParquetFile(out).metadata.num_rows == int(keep.sum())
        assert pq.ParquetFile(out).metadata.row_group(0).column(2).total_uncompressed_size > 3 << 20  # > 1 MB
        digests[name] = out.read_bytes()
    assert digests["one"] == digests["sevens"] == digests["slices"]
    assert read_all(tmp_path / "slices.parquet").equals(table.filter(pa.array(keep)))


def test_keep_rows_slices_long_runs_without_copying_and_filters_short_ones():
    import numpy as np

    from slimpajama.core.schema import keep_rows

    batch = big_rows(n=40).to_batches()[0]
    assert keep_rows(batch, np.ones(40, dtype=bool)) is batch
    assert keep_rows(batch, np.zeros(40, dtype=bool)).num_rows == 0
    keep = np.ones(40, dtype=bool)
    keep[[0, 13, 14, 39]] = False  # runs of 30 KB documents: slices of the batch's own text buffer
    out = keep_rows(batch, keep)
    assert out.equals(pa.Table.from_batches([batch.filter(pa.array(keep))]))
    base = batch.column("text").buffers()[2].address
    assert all(c.buffers()[2].address == base for c in out.column("text").chunks)
    tiny = pa.RecordBatch.from_arrays([pa.array(["x"] * 40)] * 4, schema=DOC_SCHEMA)
    alternate = np.arange(40) % 2 == 0  # runs of one 1-byte text: a copy is cheaper than 20 slices
    short = keep_rows(tiny, alternate)
    assert isinstance(short, pa.RecordBatch) and short.num_rows == 20
