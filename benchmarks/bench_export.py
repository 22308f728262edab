"""Megatron export speed against a plain copy of the same token files, in one run (the limit is the disk).

Tokenizes a generated corpus once (cached), then times `run_export` (whole cache, and --by-source) and
`shutil.copyfile` of every `.tokens.bin`; reports MB/s of tokens written and the ratio, plus peak RSS.
Prints one JSON line (see run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CACHE, peak_rss_mb, sample_corpus  # noqa: E402

from slimpajama.io import outputs  # noqa: E402
from slimpajama.pipelines.export import run_export  # noqa: E402
from slimpajama.pipelines.tokens import run_tokenize  # noqa: E402

MB = 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=60_000)
    args = ap.parse_args()
    raw = sample_corpus(args.docs)
    tokens = os.path.join(CACHE, f"tokens-{args.docs}")
    run_tokenize(raw, tokens, "gpt2", progress=False)
    cache = os.path.join(tokens, "gpt2")
    bins = [os.path.join(cache, r["rel"]) for r in outputs.read(cache)["files"] if r["rel"].endswith(".tokens.bin")]
    nbytes = sum(os.path.getsize(b) for b in bins)
    out = os.path.join(CACHE, "export")
    result = {"token_mb": round(nbytes / MB, 1)}
    for name, fn in (("plain_copy", lambda: [shutil.copyfile(b, os.path.join(out, f"copy-{i}.bin"))
                                             for i, b in enumerate(bins)]),
                     ("megatron", lambda: run_export(cache, os.path.join(out, "train"))),
                     ("megatron_by_source", lambda: run_export(cache, os.path.join(out, "src"), by_source=True))):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        os.sync()
        t = time.perf_counter()
        fn()
        os.sync()  # written to disk, not only to the page cache
        result[f"{name}_mb_per_s"] = round(nbytes / MB / (time.perf_counter() - t), 1)
    shutil.rmtree(out, ignore_errors=True)
    for name in ("megatron", "megatron_by_source"):
        result[f"{name}_ratio_vs_copy"] = round(result[f"{name}_mb_per_s"] / result["plain_copy_mb_per_s"], 3)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
