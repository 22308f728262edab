"""Tokenize + pack throughput against bare tiktoken, and ShardReader random access against a bare np.memmap.

    python benchmarks/bench_tokens.py --method bare|ours --docs N   tokens/s on the same documents and cores
    python benchmarks/bench_tokens.py --reader                      random rows/s: ShardReader vs np.memmap
    python benchmarks/bench_tokens.py --hf --docs N                 a tokenizer.json (a 32k BPE trained on the
        corpus): our tokenize stage vs the tokenizers library's own encode_batch, tokens/s per core
    python benchmarks/bench_tokens.py --engines --web-mb M | --real-mb M
        per core, on the same real text: the bare read (zstd + orjson), tiktoken, the tokenizers library, the
        engine alone and the tokenize stage (its task seconds), for GPT-2 and for o200k_base as a tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from common import peak_rss_mb, sample_corpus  # noqa: E402

from slimpajama.errors import raise_on_bad  # noqa: E402
from slimpajama.io.discover import discover  # noqa: E402
from slimpajama.io.documents import read_documents  # noqa: E402
from slimpajama.tokenize.encodings import get_encoding  # noqa: E402

CORES = os.cpu_count() or 1
HERE = os.path.dirname(os.path.abspath(__file__))
MB = 1e6


def bare(docs: int) -> dict:
    enc = get_encoding("gpt2")
    texts = [t for f in discover(sample_corpus(docs)) for b in read_documents(f, raise_on_bad)
             for t in b.column("text").to_pylist()]
    seconds = float("inf")
    for _ in range(3):  # best of 3: this machine's cores are noisy
        t0 = time.perf_counter()
        ids = enc.encode_ordinary_batch(texts, num_threads=CORES)
        seconds = min(seconds, time.perf_counter() - t0)
    tokens = sum(map(len, ids)) + len(ids)  # + one EOS per document, as the pipeline counts them
    return {"method": "bare", "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def ours(docs: int) -> dict:
    from slimpajama.pipelines import init_ray
    from slimpajama.pipelines.pack import run_shards
    from slimpajama.pipelines.tokens import run_tokenize

    corpus = sample_corpus(docs)
    get_encoding("gpt2")
    init_ray(workers=CORES)
    with tempfile.TemporaryDirectory() as tmp:
        # warm up: Ray starts its workers and each loads the encoding once per process (a fixed cost a long run
        # never sees again); the timing below is the steady state
        run_tokenize(sample_corpus(400), os.path.join(tmp, "warmup"), workers=CORES, progress=False)
        best = None
        for rep in range(2):  # best of 2, each into a fresh cache
            t0 = time.perf_counter()
            tok = run_tokenize(corpus, os.path.join(tmp, f"tokens{rep}"), workers=CORES, progress=False)
            t1 = time.perf_counter()
            run_shards(os.path.join(tmp, f"tokens{rep}", "gpt2"), os.path.join(tmp, f"shards{rep}"), 2048,
                       workers=CORES, progress=False)
            t2 = time.perf_counter()
            if best is None or t2 - t0 < best[2] - best[0]:
                best = (t0, t1, t2)
    t0, t1, t2 = best
    tokens = sum(m["extra"]["tokens"] for m in tok.markers)
    return {"method": "ours", "tokens": tokens, "seconds": t2 - t0, "tokenize_seconds": t1 - t0,
            "pack_seconds": t2 - t1, "tokens_per_s": tokens / (t2 - t0), "peak_rss_mb": peak_rss_mb()}


def hf(docs: int) -> dict:
    """Tokens/s per core with a tokenizer.json: the library's `encode_batch` on every core (its own pool, the
    documents in memory) against our tokenize stage (one task per core, read + encode + write), same documents."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from slimpajama.pipelines import init_ray
    from slimpajama.pipelines.tokens import run_tokenize

    corpus = sample_corpus(docs)
    texts = [t for f in discover(corpus) for b in read_documents(f, raise_on_bad) for t in b.column("text").to_pylist()]
    with tempfile.TemporaryDirectory() as tmp:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(texts[:5000], trainers.BpeTrainer(
            vocab_size=32_000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        path = os.path.join(tmp, "bench-bpe", "tokenizer.json")
        os.makedirs(os.path.dirname(path))
        tok.save(path)
        tok = Tokenizer.from_file(path)
        bare_s = float("inf")
        for _ in range(3):  # before ours: loading ours turns the library's pool off in this process
            t0 = time.perf_counter()
            ids = tok.encode_batch(texts, add_special_tokens=False)
            bare_s = min(bare_s, time.perf_counter() - t0)
        tokens = sum(len(e.ids) for e in ids) + len(ids)
        del ids
        init_ray(workers=CORES)
        run_tokenize(sample_corpus(400), os.path.join(tmp, "warmup"), path, workers=CORES, progress=False)
        ours_s = float("inf")
        for rep in range(2):
            t0 = time.perf_counter()
            rep_ = run_tokenize(corpus, os.path.join(tmp, f"tokens{rep}"), path, workers=CORES, progress=False)
            ours_s = min(ours_s, time.perf_counter() - t0)
        ours_tokens = sum(m["extra"]["tokens"] for m in rep_.markers)
    assert ours_tokens == tokens, (ours_tokens, tokens)
    return {"tokens": tokens, "cores": CORES, "bare_encode_batch_tokens_per_s_per_core": round(tokens / bare_s / CORES),
            "tokenize_tokens_per_s_per_core": round(tokens / ours_s / CORES),
            "ratio_vs_encode_batch": round(bare_s / ours_s, 3), "peak_rss_mb": peak_rss_mb()}


def _engine_rates(raw: str, texts: list[str], mb: float, encoding: str, tokenizer_json: str, bare: float,
                  work: str) -> dict:
    """MB/s per core of tiktoken, the tokenizers library, the engine alone (process CPU seconds, one thread) and
    the tokenize stage (text MB over its tasks' summed seconds, a task per core), on the same documents."""
    from slimpajama.pipelines import init_ray
    from slimpajama.pipelines.tokens import run_tokenize
    from slimpajama.tokenize.engine import ReferenceEngine, engine_for

    enc = get_encoding(encoding)
    hf = get_encoding(tokenizer_json)

    def cpu_rate(fn, sample):
        t = time.process_time()
        fn(sample)
        return sum(len(x.encode()) for x in sample) / MB / (time.process_time() - t)

    head = texts[: max(1, len(texts) // 8)]  # the tokenizers library is slow: an eighth of the documents
    rates = {"tiktoken": cpu_rate(ReferenceEngine(enc).encode_list, texts),
             "tokenizers": cpu_rate(ReferenceEngine(hf).encode_list, head),
             "engine_alone": cpu_rate(engine_for(enc, "fast").encode_flat, texts),
             "engine_alone_tokenizer_json": cpu_rate(engine_for(hf, "fast").encode_flat, texts)}
    init_ray(workers=CORES)
    stage = {}
    for name, spec, engine in (("stage", encoding, "auto"), ("stage_tokenizer_json", tokenizer_json, "auto"),
                               ("stage_reference_engine", encoding, "reference")):
        best = 0.0
        for rep in range(2):
            report = run_tokenize(raw, os.path.join(work, f"{name}{rep}"), spec, workers=CORES, progress=False,
                                  engine=engine)
            best = max(best, mb / sum(m["seconds"] for m in report.markers))
        stage[name] = best
    rates.update(stage)
    out = {k: round(v, 2) for k, v in rates.items()}
    out.update({f"{k}_vs_bare_read": round(v / bare, 3) for k, v in rates.items()})
    out["stage_vs_tiktoken"] = round(rates["stage"] / rates["tiktoken"], 2)
    out["stage_vs_stage_reference_engine"] = round(rates["stage"] / rates["stage_reference_engine"], 2)
    out["stage_tokenizer_json_vs_tiktoken"] = round(rates["stage_tokenizer_json"] / rates["tiktoken"], 2)
    out["stage_tokenizer_json_vs_tokenizers"] = round(rates["stage_tokenizer_json"] / rates["tokenizers"], 2)
    return out


def engines_bench(web_mb: float, real_mb: float) -> dict:
    """GPT-2, and o200k_base (200k ids, uint32) as a tokenizer.json, per core against the bare read in the same
    process: zstd decompression + orjson.loads of the same files (bench_e2e's baseline)."""
    import lzma

    from bench_e2e import baseline_mb_per_s
    from common import CACHE, real_corpus, web_corpus

    from slimpajama.tokenize.encodings import get_encoding as load
    from slimpajama.tokenize.engine import tiktoken_json

    raw = web_corpus(web_mb) if web_mb else real_corpus(real_mb)
    texts = [t for f in discover(raw) for b in read_documents(f, raise_on_bad) for t in b.column("text").to_pylist()]
    mb = sum(len(t.encode()) for t in texts) / MB
    o200k_dir = os.path.join(CACHE, "o200k_base")
    os.makedirs(o200k_dir, exist_ok=True)
    ranks_file = os.path.join(o200k_dir, "o200k_base.tiktoken")
    json_file = os.path.join(o200k_dir, "o200k", "tokenizer.json")
    if not os.path.exists(json_file):
        with open(ranks_file, "wb") as f:
            f.write(lzma.decompress(open(os.path.join(HERE, "..", "tests", "data", "tokenizers",
                                                      "o200k_base.tiktoken.xz"), "rb").read()))
        o200k = load(ranks_file)
        os.makedirs(os.path.dirname(json_file), exist_ok=True)
        with open(json_file, "w", encoding="utf-8") as f:
            f.write(tiktoken_json(o200k._mergeable_ranks, o200k._special_tokens, o200k._pat_str))
    gpt2_json = os.path.join(CACHE, "gpt2-json", "gpt2", "tokenizer.json")
    if not os.path.exists(gpt2_json):
        gpt2 = load("gpt2")
        os.makedirs(os.path.dirname(gpt2_json), exist_ok=True)
        with open(gpt2_json, "w", encoding="utf-8") as f:
            f.write(tiktoken_json(gpt2._mergeable_ranks, gpt2._special_tokens))
    bare = [baseline_mb_per_s(raw)]
    with tempfile.TemporaryDirectory() as work:
        gpt2 = _engine_rates(raw, texts, mb, "gpt2", gpt2_json, bare[0], work)
        bare.append(baseline_mb_per_s(raw))
        o200k = _engine_rates(raw, texts, mb, ranks_file, json_file, bare[-1], work)
    return {"corpus": "web pages" if web_mb else "real text (code, docs, LaTeX, web)", "text_mb": round(mb, 1),
            "docs": len(texts), "bare_read_mb_per_s": [round(b, 1) for b in bare], "gpt2": gpt2, "o200k_base": o200k,
            "peak_rss_mb": peak_rss_mb()}


def reader_bench(seq: int = 2048, rows: int = 20_000, reads: int = 200_000) -> dict:
    """The same rows behind both; random row reads touching every token (a sum), best of 3."""
    from slimpajama.io.writers import sha256_file
    from slimpajama.packers import ShardReader
    from slimpajama.packers.format import same_lens, write_index, write_rows

    rng = np.random.default_rng(0)
    data = rng.integers(0, 50257, size=(rows, seq + 1), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as d:
        raw = os.path.join(d, "raw.bin")
        data.tofile(raw)
        per_file = 8192
        files = []
        for k, lo in enumerate(range(0, rows, per_file)):
            part = data[lo: lo + per_file]
            path = os.path.join(d, f"part-{k:05d}.arrow")
            write_rows(path, part, same_lens([seq + 1], len(part)), np.zeros(len(part), np.int32))
            files.append({"path": os.path.basename(path), "rows": len(part), "bytes": os.path.getsize(path),
                          "sha256": sha256_file(path)})
        write_index(d, {"seq_len": seq, "batch_rows": 1024, "rows": rows, "files": files})
        del data
        idx = rng.integers(0, rows, size=reads).tolist()
        mm = np.memmap(raw, dtype=np.uint16, mode="r").reshape(rows, seq + 1)
        reader = ShardReader(d)
        assert all(np.array_equal(reader[i], mm[i]) for i in idx[:100])

        def run(get):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                acc = 0
                for i in idx:
                    acc += int(get(i).sum())
                best = min(best, time.perf_counter() - t0)
            return reads / best

        memmap_rate = run(mm.__getitem__)
        reader_rate = run(reader.__getitem__)
    return {"rows": rows, "seq_len": seq, "reads": reads, "shard_reader_rows_per_s": round(reader_rate),
            "memmap_rows_per_s": round(memmap_rate), "ratio_vs_memmap": round(reader_rate / memmap_rate, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["bare", "ours"])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--reader", action="store_true")
    ap.add_argument("--hf", action="store_true")
    ap.add_argument("--engines", action="store_true")
    ap.add_argument("--web-mb", type=float, default=0)
    ap.add_argument("--real-mb", type=float, default=0)
    args = ap.parse_args()
    if args.engines:
        print(json.dumps(engines_bench(args.web_mb, args.real_mb or (0 if args.web_mb else 40))))
        return
    if args.hf:
        print(json.dumps(hf(args.docs)))
        return
    print(json.dumps(reader_bench() if args.reader else (bare if args.method == "bare" else ours)(args.docs)))


if __name__ == "__main__":
    main()
