"""Normalize + low-length filter: MB/s per core of our path against plain ftfy.fix_text + SlimPajama's clean/filter
on the same documents, and peak RSS of one shard task on a generated input of a given size.

    python benchmarks/bench_normalize.py --method ours|reference --docs N     (one process per method)
    python benchmarks/bench_normalize.py --method ours|reference --web-mb 20  (web-shaped real text instead)
    python benchmarks/bench_normalize.py --memory 1GB                         (one shard task over a 1 GB file)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import orjson  # noqa: E402
import zstandard  # noqa: E402
from common import CACHE, peak_rss_mb, sample_corpus, web_corpus  # noqa: E402

from slimpajama.cli.options import parse_size  # noqa: E402
from slimpajama.core.cleaned import clean_text_reference, short_mask  # noqa: E402
from slimpajama.core.textnorm import normalize_reference, normalize_text  # noqa: E402
from slimpajama.errors import raise_on_bad  # noqa: E402
from slimpajama.io.discover import discover  # noqa: E402
from slimpajama.io.documents import read_documents  # noqa: E402


def load_texts(docs: int, web_mb: float = 0) -> list[str]:
    """The sample corpus's texts, or the first `web_mb` MB of the web-shaped real corpus (common.web_corpus)."""
    if not web_mb:
        return [t for f in discover(sample_corpus(docs)) for b in read_documents(f, raise_on_bad)
                for t in b.column("text").to_pylist()]
    texts, size = [], 0
    for f in discover(web_corpus(160)):
        for b in read_documents(f, raise_on_bad):
            for t in b.column("text").to_pylist():
                if size >= web_mb * 1e6:
                    return texts
                texts.append(t)
                size += len(t.encode())
    return texts


def ours(texts, min_chars=200):
    """What the normalize stage's two transforms do: every text fixed, then the short ones dropped in one pass."""
    fixed = [normalize_text(t) for t in texts]
    short = short_mask(fixed, min_chars)  # over the texts' UTF-8, which the stage's Arrow column holds anyway
    return [n for n, s in zip(fixed, short.tolist(), strict=True) if not s]


def reference(texts, min_chars=200):
    out = []
    for t in texts:
        n = normalize_reference(t)
        if len(clean_text_reference(n)) >= min_chars:
            out.append(n)
    return out


def throughput(method: str, docs: int, web_mb: float = 0) -> dict:
    texts = load_texts(docs, web_mb)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    fn = ours if method == "ours" else reference
    fn(texts[:20])  # compiled kernels loaded, regexes built: a process does it once, not per megabyte
    t0 = time.perf_counter()
    kept = fn(texts)
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256("\x00".join(kept).encode()).hexdigest()
    return {"method": method, "docs": len(texts), "kept": len(kept), "mb": mb, "seconds": seconds,
            "mb_per_s": mb / seconds, "output_sha256": digest, "peak_rss_mb": peak_rss_mb()}


def big_input(nbytes: int) -> str:
    """One jsonl.zst file of about `nbytes` uncompressed, made by cycling the sample corpus (cached)."""
    path = os.path.join(CACHE, f"big-{nbytes}", "RedPajamaCommonCrawl", "big.jsonl.zst")
    if os.path.exists(path):
        return os.path.dirname(os.path.dirname(path))
    texts = load_texts(20_000)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    written = 0
    with open(path + ".tmp", "wb") as fh, zstandard.ZstdCompressor(level=1).stream_writer(fh) as zw:
        i = 0
        while written < nbytes:
            line = orjson.dumps({"text": texts[i % len(texts)], "meta": {"i": i}}) + b"\n"
            zw.write(line)
            written += len(line)
            i += 1
    os.replace(path + ".tmp", path)
    return os.path.dirname(os.path.dirname(path))


def memory(nbytes: int) -> dict:
    from slimpajama.pipelines import NormalizeStage, file_tasks

    root = big_input(nbytes)
    (task,) = file_tasks(discover(root))
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        outcome = NormalizeStage().run_task(task, out)  # what one Ray task runs, inline
        seconds = time.perf_counter() - t0
    t = outcome.ledger.totals()
    return {"input_mb": nbytes / 1e6, "docs": t.docs_in, "seconds": seconds, "mb_per_s": t.bytes_in / 1e6 / seconds,
            "peak_rss_mb": peak_rss_mb()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["ours", "reference"])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--web-mb", type=float, default=0, help="MB of web-shaped real text instead of the sample")
    ap.add_argument("--memory", default=None, help="input size for the memory run, e.g. 1GB")
    args = ap.parse_args()
    result = memory(parse_size(args.memory)) if args.memory else throughput(args.method, args.docs, args.web_mb)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
