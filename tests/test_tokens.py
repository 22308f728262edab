import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from slimpajama.core.release import SPLITS
from slimpajama.errors import SlimPajamaError, raise_on_bad
from slimpajama.io.discover import discover
from slimpajama.io.documents import read_documents
from slimpajama.packers import PackedDataset, ShardReader, verify
from slimpajama.packers.pack import row_order
from slimpajama.pipelines.pack import run_shards
from slimpajama.pipelines.tokens import run_tokenize
from slimpajama.tokenize import encodings
from slimpajama.tokenize.batch import encode_documents, token_dtype
from slimpajama.tokenize.encodings import get_encoding

SEQ = 64
BF_SEQ = 1024  # most sample documents fit a row: what bestfit is for


def release_texts(release_dir, split="train"):
    """Documents of a split in token-cache order (files sorted by path, lines in order)."""
    return [t for f in discover(os.path.join(release_dir, split)) for b in read_documents(f, raise_on_bad)
            for t in b.column("text").to_pylist()]


def cache_stream(cache_dir, split="train"):
    keys = sorted(p[: -len(".tokens.bin")] for p in (os.path.relpath(os.path.join(d, f), cache_dir)
                                                     for d, _, fs in os.walk(cache_dir) for f in fs)
                  if p.endswith(".tokens.bin") and p.startswith(split + "/"))
    tokens = np.concatenate([np.fromfile(os.path.join(cache_dir, k + ".tokens.bin"), np.uint16) for k in keys])
    lens = np.concatenate([pq.read_table(os.path.join(cache_dir, k + ".docs.parquet"))["tokens"].to_numpy()
                           for k in keys])
    return tokens, lens


def unshuffled_rows(reader: ShardReader) -> list[np.ndarray]:
    order = row_order(len(reader), reader.manifest["seed"])
    rows = [None] * len(reader)
    for pos, r in enumerate(order):
        rows[r] = reader[pos]
    return rows


def test_gpt2_encoding_offline_and_verified(tmp_path, monkeypatch):
    enc = get_encoding("gpt2")
    assert (enc.n_vocab, enc.eot_token) == (50257, 50256)
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    path = encodings.gpt2_bpe_file(fetch=False)
    assert encodings._sha256(path.read_bytes()) == encodings.R50K_SHA256
    monkeypatch.setenv("SLIMPAJAMA_CACHE", str(tmp_path / "empty"))
    with pytest.raises(SlimPajamaError, match="encodings fetch"):
        encodings.gpt2_bpe_file(fetch=False)
    (tmp_path / "empty" / "tiktoken").mkdir(parents=True)
    (tmp_path / "empty" / "tiktoken" / "r50k_base.tiktoken").write_bytes(b"tampered")
    with pytest.raises(SlimPajamaError, match="not cached"):
        encodings.gpt2_bpe_file(fetch=False)  # a file with the wrong hash is never used
    with pytest.raises(SlimPajamaError, match="no_such_encoding"):
        get_encoding("no_such_encoding")


def test_documents_are_encoded_as_ordinary_text():
    enc = get_encoding("gpt2")
    texts = ["plain text", "a fake <|endoftext|> inside", ""]
    toks, lens = encode_documents(enc, texts)
    expected = [t for x in texts for t in enc.encode_ordinary(x) + [enc.eot_token]]
    assert toks.tolist() == expected and lens.tolist() == [len(enc.encode_ordinary(x)) + 1 for x in texts]
    assert (toks == enc.eot_token).sum() == 3


def test_no_source_for_gpt2_is_a_clear_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMPAJAMA_CACHE", str(tmp_path))

    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(encodings, "_from_whisper_sdist", offline)
    monkeypatch.setattr(encodings, "_from_tiktoken_download", lambda: b"not the real file")
    with pytest.raises(SlimPajamaError) as e:
        encodings.gpt2_bpe_file()
    assert "openai-whisper" in str(e.value) and "network unreachable" in str(e.value)
    assert "is not tiktoken's" in str(e.value)  # a download with the wrong hash is refused
    assert not (tmp_path / "tiktoken" / "r50k_base.tiktoken").exists()


def test_encoding_from_a_tiktoken_file():
    enc = get_encoding(str(encodings.gpt2_bpe_file(fetch=False)))
    assert enc.encode_ordinary("Hello world") == [15496, 995] and enc.eot_token == 50256


def test_dtype_switch():
    assert token_dtype(50257) == np.uint16 and token_dtype(100277) == np.uint32

    class Big:
        n_vocab, eot_token = 100277, 100276

        def encode_ordinary_batch(self, texts, num_threads=1):
            return [[70000 + len(t)] for t in texts]

    toks, lens = encode_documents(Big(), ["a", "bb"])  # no encode_to_numpy: the list path
    assert toks.dtype == np.uint32 and toks.tolist() == [70001, 100276, 70002, 100276] and lens.tolist() == [2, 2]


def test_token_cache_holds_every_document_with_eos(cache):
    enc = get_encoding("gpt2")
    tokens, lens = cache_stream(cache / "tokens" / "gpt2")
    texts = release_texts(cache / "release")
    assert len(lens) == len(texts) and lens.sum() == len(tokens)
    ends = np.cumsum(lens)
    assert (tokens[ends - 1] == 50256).all()
    starts = ends - lens
    for i in range(0, len(texts), 37):
        assert enc.decode(tokens[starts[i]: ends[i] - 1].tolist()) == texts[i]


def test_concat_rows_reproduce_the_documents_and_every_token_is_one_label(cache, tmp_path):
    enc = get_encoding("gpt2")
    run_shards(str(cache / "tokens" / "gpt2"), str(tmp_path), SEQ, progress=False)
    reader = ShardReader(str(tmp_path / f"seq{SEQ}" / "train"))
    tokens, _ = cache_stream(cache / "tokens" / "gpt2")
    rows = unshuffled_rows(reader)
    r = len(rows)
    assert r == (len(tokens) - 1) // SEQ and reader.manifest["rows"] == r
    stream = np.concatenate([row[:-1] for row in rows] + [rows[-1][-1:]])
    assert np.array_equal(stream, tokens[: r * SEQ + 1])
    texts = release_texts(cache / "release")
    decoded = enc.decode(stream.tolist()).split("<|endoftext|>")
    assert decoded[:-1] == texts[: len(decoded) - 1]  # in order, EOS between them
    hits = np.zeros(len(tokens), np.int64)  # labels are row[1:]: each stream position once
    for i in range(r):
        hits[i * SEQ + 1: i * SEQ + SEQ + 1] += 1
    assert (hits[1: r * SEQ + 1] == 1).all() and hits[0] == 0
    for i in range(0, r, 7):  # document segments: sum to the row, each but the last ends with EOS
        lens = reader.doc_lens(i)
        assert lens.sum() == SEQ + 1 and reader.padding(i) == 0
        assert (reader[i][np.cumsum(lens)[:-1] - 1] == 50256).all()


def test_bestfit_keeps_documents_whole_and_reports_padding(cache, tmp_path):
    run_shards(str(cache / "tokens" / "gpt2"), str(tmp_path), BF_SEQ, packing="bestfit", progress=False)
    reader = ShardReader(str(tmp_path / f"seq{BF_SEQ}-bestfit" / "train"))
    tokens, lens = cache_stream(cache / "tokens" / "gpt2")
    m = reader.manifest
    assert m["docs_cut"] == int((lens > BF_SEQ + 1).sum()) and m["docs_cut_fraction"] < m["concat_comparison"][
        "docs_cut_fraction"]
    assert 0 < m["padding_fraction"] < 0.5
    ends = np.cumsum(lens)
    short = {tuple(tokens[e - n: e].tolist()) for e, n in zip(ends, lens, strict=True) if n <= BF_SEQ + 1}
    seen = []
    pad_total = 0
    for i in range(len(reader)):
        row, seg, pad = reader[i], reader.doc_lens(i), reader.padding(i)
        assert seg.sum() + pad == BF_SEQ + 1
        pad_total += pad
        pos = 0
        for n in seg:
            piece = tuple(row[pos: pos + n].tolist())
            if piece in short:
                seen.append(piece)
            pos += n
    assert sorted(seen) == sorted(tuple(tokens[e - n: e].tolist()) for e, n in zip(ends, lens, strict=True)
                                  if n <= BF_SEQ + 1)
    assert pad_total == m["padding_tokens"]


def test_bestfit_planned_by_many_tasks_packs_the_same_bytes(cache, tmp_path, monkeypatch):
    """Best fit's plan made by a task per 64 documents (Ray workers, buffers of 16) packs the bytes of the plan made
    by one task, through pack tasks of a file (1,024 rows) each that read the rows of several plan tasks."""
    from slimpajama.io.writers import sha256_file
    from slimpajama.pipelines import packplan

    monkeypatch.setattr(packplan, "BUFFER_DOCS", 16)  # the driver's: the plan tasks take it from their parameters
    digests, plans = {}, {}
    for task_docs in (10**9, 64):
        monkeypatch.setattr(packplan, "TASK_DOCS", task_docs)
        out = tmp_path / str(task_docs)
        run_shards(str(cache / "tokens" / "gpt2"), str(out), SEQ, packing="bestfit", file_bytes=1, task_bytes=1,
                   progress=False)
        d = out / f"seq{SEQ}-bestfit"
        digests[task_docs] = {p.relative_to(d).as_posix(): sha256_file(str(p)) for p in sorted(d.rglob("*"))
                              if p.is_file() and not p.relative_to(d).as_posix().startswith("_")}
        plans[task_docs] = sorted(p.name for p in (d / "_plan").glob("train.*.piece_start.npy"))
    assert len(plans[10**9]) == 1 and len(plans[64]) > 5
    assert len([k for k in digests[64] if k.endswith(".arrow")]) > 3
    assert digests[64] == digests[10**9]


def test_ranges_are_disjoint_and_cover_the_cache(cache, tmp_path):
    cdir = str(cache / "tokens" / "gpt2")
    a = run_shards(cdir, str(tmp_path), SEQ, range_=(0.0, 0.75), progress=False)
    b = run_shards(cdir, str(tmp_path), SEQ, range_=(0.75, 1.0), progress=False)
    ma = ShardReader(os.path.join(a.out_dir, "train")).manifest
    mb = ShardReader(os.path.join(b.out_dir, "train")).manifest
    _, lens = cache_stream(cache / "tokens" / "gpt2")
    assert ma["docs"] + mb["docs"] == len(lens)
    assert ma["range_tokens"] + mb["range_tokens"] == lens.sum()
    assert 0.6 < ma["range_tokens"] / lens.sum() < 0.85
    assert a.out_dir.endswith("seq64-0-0.75") and b.out_dir.endswith("seq64-0.75-1")


def test_reader_zero_copy_and_verify_catches_damage(cache, tmp_path):
    run_shards(str(cache / "tokens" / "gpt2"), str(tmp_path), SEQ, progress=False)
    d = tmp_path / f"seq{SEQ}" / "train"
    reader = ShardReader(str(d))
    row = reader[3]
    assert row.shape == (SEQ + 1,) and row.dtype == np.uint16 and not row.flags.owndata and not row.flags.writeable
    assert sum(1 for _ in reader) == len(reader)
    assert verify(str(d))["rows"] == len(reader)
    code = "import sys; from slimpajama.packers import ShardReader; ShardReader(sys.argv[1]); " \
           "assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code, str(d)]).returncode == 0
    part = d / "part-00000.arrow"
    data = part.read_bytes()
    part.write_bytes(data[:-100])
    with pytest.raises(SlimPajamaError, match="part-00000.arrow"):
        verify(str(d))
    r = subprocess.run([sys.executable, "-m", "slimpajama.cli", "verify", str(d)], capture_output=True, text=True)
    assert r.returncode == 1 and "part-00000.arrow" in r.stderr
    part.write_bytes(data[:5000] + bytes([data[5000] ^ 1]) + data[5001:])
    with pytest.raises(SlimPajamaError, match="checksum"):
        verify(str(d))


@pytest.fixture(scope="module")
def packed(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed")
    run_shards(str(cache / "tokens" / "gpt2"), str(out), BF_SEQ, packing="bestfit", progress=False)
    return str(out / f"seq{BF_SEQ}-bestfit" / "train")


def test_dataset_items(packed):
    ds = PackedDataset(packed)
    reader = ds.reader
    for i in range(len(ds)):
        pad = reader.padding(i)
        if pad:
            break
    item = ds[i]
    assert item["input_ids"].shape == (BF_SEQ,) and item["labels"].dtype == torch.int64
    assert (item["labels"][BF_SEQ - pad:] == -100).all() and (item["labels"][: BF_SEQ - pad] >= 0).all()
    lens = item["doc_lens"].numpy()
    starts = np.cumsum(lens) - lens
    assert (item["position_ids"].numpy()[starts[starts < BF_SEQ]] == 0).all()
    assert item["position_ids"][1] == 1 or lens[0] == 1


def test_a_range_of_fewer_tokens_than_a_row_packs_no_rows_whatever_the_packing(cache, tmp_path):
    """Issue 44.9: best fit wrote one row of 99.92% padding at --seq 1000000 where concat writes none."""
    for packing in ("concat", "bestfit"):
        report = run_shards(str(cache / "tokens" / "gpt2"), str(tmp_path), 1_000_000, packing=packing,
                            progress=False)
        assert {s: v["rows"] for s, v in report.extra["splits"].items()} == {"train": 0, "validation": 0, "test": 0}


def test_a_stage_reads_what_the_stage_before_it_wrote_whatever_its_size(cache, tmp_path):
    """Issue 44.5: a document over --max-doc-bytes in a stage's output (normalize --max-doc-bytes 0 let it through)
    stopped dedup, and tokenize dropped it from a release: the limit guards a raw corpus only."""
    from slimpajama.errors import raise_on_bad
    from slimpajama.io.discover import discover
    from slimpajama.io.documents import read_documents
    from slimpajama.pipelines import ReadOptions

    small = ReadOptions(max_doc_bytes=100)
    report = run_tokenize(str(cache / "release"), str(tmp_path / "t"), read=small, progress=False)
    totals = report.ledger.totals()
    assert totals.docs_in == totals.docs_out == sum(len(release_texts(cache / "release", s)) for s in SPLITS)
    normalized = [f for f in discover(str(cache / "n")) if f.is_parquet]
    rows = sum(b.num_rows for f in normalized for b in read_documents(f, raise_on_bad, max_doc_bytes=100))
    assert rows == sum(b.num_rows for f in normalized for b in read_documents(f, raise_on_bad))
