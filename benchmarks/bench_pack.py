"""Pack in parallel: `shards` over a token cache of --gb GB of tokens with 1 and with 2 workers on one running Ray
(started once, as a cluster a user reuses: its start-up is not the stage's), wall time each and the ratio; the
files must be the same bytes. The cache is synthetic (random tokens, log-normal document lengths around 1,000
tokens: packing reads lengths and copies tokens, it never looks at their values), made once.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from common import CACHE  # noqa: E402

from slimpajama.io import outputs  # noqa: E402
from slimpajama.io.writers import sha256_file  # noqa: E402
from slimpajama.pipelines.pack import run_shards  # noqa: E402
from slimpajama.pipelines.tokens import DOCS_SCHEMA, TokenizeStage  # noqa: E402

SOURCES = ["RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaGithub", "RedPajamaWikipedia"]


def synthetic_cache(gb: float, files: int = 8) -> str:
    out = os.path.join(CACHE, f"tokens-{gb:g}GB", "gpt2")
    if os.path.exists(os.path.join(out, outputs.OUTPUTS_FILE)):
        return out
    rng = np.random.default_rng(0)
    per_file = int(gb * 1e9 / 2 / files)
    records = []
    for i in range(files):
        lens = rng.lognormal(np.log(1000), 1.0, size=per_file // 500).astype(np.int64).clip(1, 200_000)
        lens = lens[np.cumsum(lens) <= per_file]
        lens[-1] += per_file - lens.sum()
        key = f"train/part-{i:05d}"
        os.makedirs(os.path.join(out, "train"), exist_ok=True)
        rng.integers(0, 50257, size=per_file, dtype=np.uint16).tofile(os.path.join(out, key + ".tokens.bin"))
        pq.write_table(pa.table({"source": [SOURCES[j % 4] for j in range(len(lens))],
                                 "tokens": lens.astype(np.int32)}, schema=DOCS_SCHEMA),
                       os.path.join(out, key + ".docs.parquet"))
        for suffix in (".tokens.bin", ".docs.parquet"):
            path = os.path.join(out, key + suffix)
            records.append({"rel": key + suffix, "size": os.path.getsize(path), "sha256": sha256_file(path)})
    outputs.write(out, "tokenize", TokenizeStage().fingerprint(), records, None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0, help="GB of uint16 tokens in the cache")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--packing", default="concat")
    args = ap.parse_args()
    cache = synthetic_cache(args.gb)
    from slimpajama.pipelines import init_ray

    init_ray(workers=2)
    result, digests = {"gb_tokens": args.gb, "seq": args.seq, "packing": args.packing}, {}
    for workers in (2, 1, 2, 1):  # alternated, the best of two each: the first run warms the workers and the cache
        out = os.path.join(CACHE, f"pack-{workers}")
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        report = run_shards(cache, "", args.seq, packing=args.packing, out_dir=out, workers=workers, progress=False)
        key = f"wall_seconds_{workers}_worker"
        result[key] = round(min(result.get(key, 1e9), time.perf_counter() - t), 2)
        result["pack_tasks"] = len(report.markers)
        result[f"task_seconds_{workers}_worker"] = [m["seconds"] for m in report.markers]
        state = os.path.join(out, "_plan", "_state")  # the split's plan tasks, then its order task
        markers = [json.load(open(os.path.join(state, name))) for name in sorted(os.listdir(state))
                   if name.startswith("train.plan-")]
        order = json.load(open(os.path.join(out, "_plan", "order", "_state", "train.json")))
        result["plan_tasks"] = len(markers)
        result["plan_seconds"] = round(sum(m["seconds"] for m in markers) + order["seconds"], 3)
        result["plan_docs"] = sum(m["extra"]["docs"] for m in markers)
        digests[workers] = {rel: sha256_file(os.path.join(out, "train", rel)) for rel in
                            sorted(os.listdir(os.path.join(out, "train")))}
        shutil.rmtree(out)
    result["ratio_2_vs_1_worker"] = round(result["wall_seconds_2_worker"] / result["wall_seconds_1_worker"], 3)
    result["identical"] = digests[1] == digests[2]
    result["files_sha256"] = hashlib.sha256(json.dumps(digests[2]).encode()).hexdigest()[:16]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
