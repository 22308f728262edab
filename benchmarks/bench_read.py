"""Read throughput of the jsonl.zst corpus reader against a plain zstandard + json.loads loop, same files, same run.

Run one method per process so each reports its own peak memory:
    python benchmarks/bench_read.py --method reader|baseline --docs N
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zstandard  # noqa: E402
from common import peak_rss_mb, sample_corpus, timed  # noqa: E402

from slimpajama.errors import raise_on_bad  # noqa: E402
from slimpajama.io.discover import discover  # noqa: E402
from slimpajama.io.documents import read_documents  # noqa: E402


def uncompressed_bytes(files) -> int:
    n = 0
    for f in files:
        with open(f.path, "rb") as fh:
            for chunk in zstandard.ZstdDecompressor().read_to_iter(fh):
                n += len(chunk)
    return n


def baseline(files) -> int:
    docs = 0
    for f in files:
        with open(f.path, "rb") as fh:
            text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
            for line in text:
                json.loads(line)
                docs += 1
    return docs


def reader(files) -> int:
    return sum(b.num_rows for f in files for b in read_documents(f, raise_on_bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["reader", "baseline"], required=True)
    ap.add_argument("--docs", type=int, default=20_000)
    args = ap.parse_args()
    files = discover(sample_corpus(args.docs))
    nbytes = uncompressed_bytes(files)
    seconds, docs = timed(lambda: (reader if args.method == "reader" else baseline)(files))
    print(json.dumps({"method": args.method, "docs": docs, "mb": nbytes / 1e6, "seconds": seconds,
                      "mb_per_s": nbytes / 1e6 / seconds, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
