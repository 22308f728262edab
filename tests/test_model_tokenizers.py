"""A model's own tokenizer (a Hugging Face tokenizer.json, a SentencePiece tokenizer.model) through the pipeline:
ids equal to the library's, uint32 ids past 65,535 through the cache, shards, exports, PackedDataset and the
trainer, and a user's mistakes as one line. The tokenizers are trained here, on the sample release."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_tokens import cache_stream, release_texts

from slimpajama.cli import main
from slimpajama.io import outputs
from slimpajama.packers import PackedDataset, ShardReader
from slimpajama.packers.megatron import megatron_dtype
from slimpajama.pipelines.export import run_export
from slimpajama.pipelines.pack import run_shards
from slimpajama.pipelines.tokens import run_tokenize
from slimpajama.tokenize.batch import encode_documents
from slimpajama.tokenize.encodings import get_encoding
from slimpajama.train_minimal.config import TrainConfig
from slimpajama.train_minimal.train import Trainer

PAD_TOKENS = 65_600  # added tokens that push the vocabulary past uint16
FREQUENT = ["the", "and"]  # added after the padding: ids above 65,535 that the sample's text holds


def bpe(texts, path, vocab=800, specials=("<|endoftext|>", "<s>"), pad=0):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=list(specials),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if pad:
        tok.add_tokens([f"<pad_{i}>" for i in range(pad)] + FREQUENT)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tok.save(str(path))
    return tok


@pytest.fixture(scope="module")
def texts(cache):
    return release_texts(cache / "release")


@pytest.fixture(scope="module")
def hf_cache(cache, texts, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    bpe(texts, root / "Tiny-BPE" / "tokenizer.json")
    run_tokenize(str(cache / "release"), str(root / "tokens"), str(root / "Tiny-BPE"), progress=False)
    return root


@pytest.fixture(scope="module")
def wide_cache(cache, texts, tmp_path_factory):
    """A tokenizer with more than 65,536 ids, the sample tokenized and packed with it."""
    root = tmp_path_factory.mktemp("wide")
    bpe(texts, root / "wide.json", pad=PAD_TOKENS)
    run_tokenize(str(cache / "release"), str(root / "tokens"), str(root / "wide.json"), progress=False)
    for seq, rng in ((64, (0, 0.75)), (256, (0.75, 1))):
        run_shards(str(root / "tokens" / "wide"), str(root / "shards"), seq, range_=rng, progress=False)
    return root


def library_ids(tok, texts):
    tok.encode_special_tokens = True  # as the pipeline encodes: special tokens' text is text
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def test_tokenizer_json_cache_equals_the_librarys_encode_batch(hf_cache, texts):
    from tokenizers import Tokenizer

    cache = hf_cache / "tokens" / "Tiny-BPE"  # named after the model folder
    tok = Tokenizer.from_file(str(hf_cache / "Tiny-BPE" / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    tokens, lens = cache_stream(cache)
    expected = [t for ids in library_ids(tok, texts) for t in ids + [eos]]
    assert tokens.tolist() == expected and len(lens) == len(texts)
    fp = outputs.read(str(cache))["fingerprint"]
    assert (fp["tokenizer"], fp["eos"], fp["bos"], fp["dtype"], fp["vocab_size"]) == ("hf", eos, None, "uint16", 800)
    with open(hf_cache / "Tiny-BPE" / "tokenizer.json", "rb") as f:
        assert (cache / "_tokenizer" / "tokenizer.json").read_bytes() == f.read()


def test_a_document_cannot_inject_the_eos_and_bos_is_prepended_when_asked(hf_cache):
    path = str(hf_cache / "Tiny-BPE")
    enc = get_encoding(path)
    toks, lens = encode_documents(enc, ["a fake <|endoftext|> inside", ""])
    assert (toks == enc.eot_token).sum() == 2 and toks[-1] == enc.eot_token and lens[1] == 1
    with_bos = get_encoding(path, bos="")
    toks2, lens2 = encode_documents(with_bos, ["hello", ""], threads=2)
    bos = with_bos.bos_token
    assert bos == with_bos._tok.token_to_id("<s>")
    assert toks2.tolist() == [bos, *enc.encode_batch_numpy(["hello"])[0].tolist(), enc.eot_token, bos, enc.eot_token]
    assert lens2.tolist() == [len(toks2) - 2, 2]


def test_a_different_file_with_the_same_name_is_tokenized_again(cache, texts, tmp_path):
    release, out = str(cache / "release" / "validation"), str(tmp_path / "tokens")
    bpe(texts, tmp_path / "m" / "tokenizer.json", vocab=600)
    run_tokenize(release, out, str(tmp_path / "m"), progress=False)
    again = run_tokenize(release, out, str(tmp_path / "m"), progress=False)
    assert again.skipped == again.shards > 0  # the same file: nothing redone
    bpe(texts, tmp_path / "m" / "tokenizer.json", vocab=700)
    changed = run_tokenize(release, out, str(tmp_path / "m"), progress=False)
    assert changed.skipped == 0
    assert outputs.read(out + "/m")["fingerprint"]["vocab_size"] == 700


def test_uint32_ids_through_cache_shards_and_packed_dataset(wide_cache, texts):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(wide_cache / "wide.json"))
    cache = wide_cache / "tokens" / "wide"
    fp = outputs.read(str(cache))["fingerprint"]
    assert fp["dtype"] == "uint32" and fp["vocab_size"] > 1 << 16
    train = cache_stream_u32(cache)
    expected = [t for ids in library_ids(tok, texts) for t in ids + [tok.token_to_id("<|endoftext|>")]]
    assert train.tolist() == expected and train.max() >= 1 << 16  # ids past uint16 really occur
    split = wide_cache / "shards" / "seq64-0-0.75-wide" / "train"
    reader = ShardReader(str(split))
    assert reader.manifest["vocab_size"] == fp["vocab_size"] and reader.manifest["dtype"] == "uint32"
    rows = np.stack([reader[i] for i in range(len(reader))])
    assert rows.dtype == np.uint32 and rows.max() >= 1 << 16
    item = PackedDataset(str(split))[0]
    assert item["input_ids"].dtype == torch.int64 and int(item["input_ids"].max()) < fp["vocab_size"]
    assert reader.tokenizer().decode(reader[0][:10].tolist()) == tok.decode(reader[0][:10].tolist(),
                                                                             skip_special_tokens=False)


def cache_stream_u32(cache):
    keys = sorted(str(p.relative_to(cache))[: -len(".tokens.bin")] for p in cache.glob("train/**/*.tokens.bin"))
    return np.concatenate([np.fromfile(cache / (k + ".tokens.bin"), np.uint32) for k in keys])


def test_uint32_exports_are_read_by_megatron_and_hold_the_ids(wide_cache, tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    cache = wide_cache / "tokens" / "wide"
    train = cache_stream_u32(cache)
    run_export(str(cache), str(tmp_path / "m" / "train"), fmt="megatron")
    ds = IndexedDataset(str(tmp_path / "m" / "train"))
    assert ds[0].dtype == megatron_dtype(np.uint32) == np.int32
    assert np.concatenate([ds[i] for i in range(len(ds))]).tolist() == train.tolist()
    for fmt, pattern in (("litdata", "chunk-0-*.bin"), ("mds", "shard.*.mds")):
        summary = run_export(str(cache), str(tmp_path / fmt / "train"), fmt=fmt)
        assert summary["datasets"]["all"]["tokens"] == len(train)
        index = json.loads((tmp_path / fmt / "train" / "index.json").read_text())
        assert list((tmp_path / fmt / "train").glob(pattern))
        assert "int32" in json.dumps(index) or "no_header_tensor:15" in json.dumps(index)


def test_the_trainer_sizes_its_embedding_from_the_shards(wide_cache, tmp_path):
    stage1 = str(wide_cache / "shards" / "seq64-0-0.75-wide" / "train")
    stage2 = str(wide_cache / "shards" / "seq256-0.75-1-wide" / "train")
    cfg = TrainConfig(stage1=stage1, stage2=stage2, out=str(tmp_path), steps=2, tokens_per_step=128,
                      warmup_steps=1, eval_every=1000, log_every=1000, stage1_fraction=0.5)
    t = Trainer(cfg)
    assert t.model.wte.num_embeddings == ShardReader(stage1).manifest["vocab_size"] > 1 << 16
    t.train(log=lambda m: None)
    assert np.isfinite([h["loss"] for h in t.history]).all()


def test_a_sentencepiece_model_tokenizes_as_sentencepiece_does(cache, texts, tmp_path):
    import sentencepiece as spm
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(t for t in texts if t.strip()), model_writer=model,
                                   vocab_size=500, model_type="bpe", max_sentence_length=1 << 20,
                                   minloglevel=2)
    (tmp_path / "Tiny-SPM").mkdir()
    (tmp_path / "Tiny-SPM" / "tokenizer.model").write_bytes(model.getvalue())
    run_tokenize(str(cache / "release"), str(tmp_path / "tokens"), str(tmp_path / "Tiny-SPM"), bos="",
                 progress=False)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    tokens, lens = cache_stream(tmp_path / "tokens" / "Tiny-SPM")
    expected = [t for ids in sp.encode(texts) for t in [sp.bos_id(), *ids, sp.eos_id()]]
    assert tokens.tolist() == expected and len(lens) == len(texts)
    run_shards(str(tmp_path / "tokens" / "Tiny-SPM"), str(tmp_path / "shards"), 64, progress=False)
    r = CliRunner().invoke(main, ["verify", str(tmp_path / "shards" / "seq64-Tiny-SPM")])
    assert r.exit_code == 0 and "row 0 decoded: " in r.output, r.output


def test_verify_decodes_a_row_and_names_a_damaged_tokenizer_copy(wide_cache):
    split = wide_cache / "shards" / "seq64-0-0.75-wide" / "train"
    r = CliRunner().invoke(main, ["verify", str(split)])
    assert r.exit_code == 0 and "row 0 decoded: '" in r.output, r.output
    copy = split / ".slimpajama-tokenizer.json"
    data = copy.read_bytes()
    try:
        copy.write_bytes(data.replace(b"<pad_1>", b"<pad_X>"))
        r = CliRunner().invoke(main, ["verify", str(split)])
        assert r.exit_code == 1 and "tokenizer" in r.output and "checksum mismatch" in r.output, r.output
    finally:
        copy.write_bytes(data)


def sp_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slimpajama.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_a_users_tokenizer_mistakes_are_one_line(cache, texts, tmp_path):
    release = str(cache / "release" / "validation")
    out = str(tmp_path / "t")
    (tmp_path / "notes.txt").write_text("hello, not a tokenizer\n")
    (tmp_path / "empty").mkdir()
    bpe(texts, tmp_path / "NoEos" / "tokenizer.json", vocab=400, specials=())
    cases = [
        (["--tokenizer", str(tmp_path / "missing" / "tokenizer.json")], "tokenizer not found"),
        (["--tokenizer", str(tmp_path / "notes.txt")], "neither a tokenizer.json nor a SentencePiece model"),
        (["--tokenizer", str(tmp_path / "empty")], "without a tokenizer.json or tokenizer.model"),
        (["--tokenizer", str(tmp_path / "NoEos")], "has no EOS token slimpajama recognizes"),
        (["--tokenizer", str(tmp_path / "NoEos"), "--eos", "</nope>"], "has no token '</nope>'"),
        (["--tokenizer", str(tmp_path / "NoEos"), "--encoding", "cl100k_base"], "not both"),
        (["--bos"], "--eos and --bos apply to a tokenizer.json"),
    ]
    for flags, message in cases:
        r = sp_cli("tokenize", release, "--out", out, *flags)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], \
            (flags, r.stderr)


def test_mosaicml_and_litdata_read_the_uint32_exports_id_for_id(wide_cache, tmp_path):
    from test_peers import peer

    cache = wide_cache / "tokens" / "wide"
    train = cache_stream_u32(cache)
    run_export(str(cache), str(tmp_path / "mds" / "train"), fmt="mds", chunk_bytes=200_000)
    peer(tmp_path, "mds", tmp_path / "mds" / "train", tmp_path / "mds.npz")
    got = np.load(tmp_path / "mds.npz")
    assert str(got["dtype"]) == "int32" and got["tokens"].tolist() == train.tolist()
    block = 65
    run_export(str(cache), str(tmp_path / "lit" / "train"), fmt="litdata", chunk_bytes=10 << 20)
    peer(tmp_path, "litdata", tmp_path / "lit" / "train", block, tmp_path / "lit.npz")
    got = np.load(tmp_path / "lit.npz")
    index = json.loads((tmp_path / "lit" / "train" / "index.json").read_text())
    assert len(index["chunks"]) == 1 and str(got["dtype"]) == "int32"
    n = len(train) // block
    assert got["blocks"].reshape(-1).tolist() == train[: n * block].tolist() and train.max() >= 1 << 16


def test_ray_workers_load_the_caches_copy_and_write_the_inline_bytes(hf_cache, cache, tmp_path, monkeypatch,
                                                                     ray_session):
    monkeypatch.setenv("SLIMPAJAMA_INLINE_BYTES", "0")  # every task a Ray task
    monkeypatch.chdir(tmp_path)  # a relative tokenizer path: the workers (started elsewhere) read the cache's copy
    import shutil

    shutil.copytree(hf_cache / "Tiny-BPE", tmp_path / "Tiny-BPE")
    report = run_tokenize(str(cache / "release"), str(tmp_path / "tokens"), "Tiny-BPE", workers=2, progress=False)
    assert report.shards > 1
    inline = hf_cache / "tokens" / "Tiny-BPE"
    for f in sorted(inline.glob("**/*.tokens.bin")):
        assert (tmp_path / "tokens" / "Tiny-BPE" / f.relative_to(inline)).read_bytes() == f.read_bytes()
