"""Whole dedup (signatures, LSH, clusters, the deduplicated documents written) against its peers, on the same
normalized real text (common.real_corpus, normalized once), one core each, MB/s of text in:

    python benchmarks/bench_dedup_peers.py --method ours --mb 20 [--web]   (--web: web-shaped pages instead)
    python benchmarks/bench_dedup_peers.py --method reference --mb 20      SlimPajama's algorithm: its clean view,
                                       datasketch MinHash updated shingle by shingle (to_minhash.py), datasketch
                                       MinHashLSH at its threshold for the pairs, union-find over them
    PEER_PYTHON=.../bin/python python benchmarks/bench_dedup_peers.py --method datatrove --mb 20
                                       HF datatrove's four MinHash steps (signature, buckets, cluster, filter) with
                                       one local worker, in a virtualenv of its own (never a project dependency)
    PEER_RENSA=.../bin/python python benchmarks/bench_dedup_peers.py --method rensa --mb 20
                                       rensa (a Rust MinHash, PyPI `rensa`) fed the same cleaned 13-gram shingles,
                                       its MinHashLSH at 9 bands, query-then-insert, union-find; in its own
                                       virtualenv; with its keep/drop agreement with ours on every document
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CACHE, peak_rss_mb, real_corpus, web_corpus  # noqa: E402

DATATROVE = r'''
import sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.hashing import HashConfig

src, work = sys.argv[1], sys.argv[2]
cfg = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=9, hashes_per_bucket=13)
run = dict(tasks=1, workers=1, logging_dir=f"{work}/logs", skip_completed=False)  # None: ./logs in the cwd
t = time.perf_counter()
LocalPipelineExecutor([JsonlReader(src), MinhashDedupSignature(f"{work}/sig", config=cfg)], **run).run()
LocalPipelineExecutor([MinhashDedupBuckets(f"{work}/sig", f"{work}/buckets", config=cfg)],
                      **{**run, "tasks": cfg.num_buckets}).run()
LocalPipelineExecutor([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)], **run).run()
LocalPipelineExecutor([JsonlReader(src), MinhashDedupFilter(f"{work}/remove"), JsonlWriter(f"{work}/out")],
                      **run).run()
print(time.perf_counter() - t)
'''


RENSA = r'''
import json, re, string, sys, time
from rensa import RMinHash, RMinHashLSH

src, out = sys.argv[1], sys.argv[2]
table = str.maketrans("", "", string.punctuation)
t = time.perf_counter()
lsh = RMinHashLSH(threshold=0.8, num_perm=117, num_bands=9)  # our 9 bands x 13 rows (rensa: bands divide perms)
parent = []


def find(x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


with open(src) as f:
    for i, line in enumerate(f):
        s = re.sub(r"\s+", " ", json.loads(line)["text"].lower().translate(table).strip())  # SlimPajama's clean
        m = RMinHash(num_perm=117, seed=1)
        m.update([s[k: k + 13] for k in range(len(s) - 12)])
        parent.append(i)
        for j in lsh.query(m):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the first in corpus order stays the root
        lsh.insert(i, m)
removed = [i for i in range(len(parent)) if find(i) != i]
seconds = time.perf_counter() - t
json.dump({"seconds": seconds, "removed": removed}, open(out, "w"))
'''


def normalized(mb: float, web: bool = False) -> str:
    """The real corpus (or the web-shaped one) normalized (once), and its documents as one JSON lines file for the
    peers."""
    out = os.path.join(CACHE, f"{'web' if web else 'real'}-{mb:g}MB-normalized")
    if not os.path.exists(os.path.join(out, "docs.jsonl")):
        import pyarrow.parquet as pq

        from slimpajama.io.discover import discover
        from slimpajama.io.reading import ReadOptions
        from slimpajama.pipelines.docstage import file_tasks
        from slimpajama.pipelines.normalize import NormalizeStage
        from slimpajama.pipelines.runner import run_stage

        run_stage(NormalizeStage(ReadOptions()), file_tasks(discover((web_corpus if web else real_corpus)(mb))), os.path.join(out, "n"),
                  progress=False)
        with open(os.path.join(out, "docs.jsonl.tmp"), "w") as f:
            for shard in sorted(discover(os.path.join(out, "n")), key=lambda s: s.rel):
                for row in pq.read_table(shard.path, columns=["doc_id", "text"]).to_pylist():
                    f.write(json.dumps({"id": row["doc_id"], "text": row["text"]}) + "\n")
        os.replace(os.path.join(out, "docs.jsonl.tmp"), os.path.join(out, "docs.jsonl"))
    return out


def text_mb(folder: str) -> float:
    with open(os.path.join(folder, "docs.jsonl")) as f:
        return sum(len(json.loads(line)["text"].encode()) for line in f) / 1e6


def ours(folder: str, work: str) -> dict:
    os.environ["SLIMPAJAMA_INLINE_BYTES"] = str(1 << 40)  # in this process, one core, like the peers
    from slimpajama.pipelines.dedup import run_dedup

    t = time.perf_counter()
    report = run_dedup(os.path.join(folder, "n"), os.path.join(work, "d"), progress=False)
    return {"seconds": time.perf_counter() - t, "removed": report.ledger.totals().dropped["duplicate"][0]}


def reference(folder: str, work: str) -> dict:
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    from slimpajama.core import defaults
    from slimpajama.core.cleaned import clean_text_reference
    from slimpajama.core.lsh import clusters, new_forest, union_edges

    t = time.perf_counter()
    lsh = MinHashLSH(threshold=defaults.THRESHOLD, num_perm=defaults.NUM_PERM)
    pairs = []
    with open(os.path.join(folder, "docs.jsonl")) as f:
        for i, line in enumerate(f):
            s = clean_text_reference(json.loads(line)["text"])
            m = MinHash(num_perm=defaults.NUM_PERM)
            for k in range(len(s) - defaults.NGRAM + 1):  # SlimPajama's to_minhash.py: one update per shingle
                m.update(s[k: k + defaults.NGRAM].encode("utf-8"))
            pairs += [(j, i) for j in lsh.query(m)]
            lsh.insert(i, m)
    parent = new_forest(i + 1)
    if pairs:
        a, b = np.array(pairs, dtype=np.uint32).T
        union_edges(parent, np.ascontiguousarray(a), np.ascontiguousarray(b))
    members, roots = clusters(parent)
    return {"seconds": time.perf_counter() - t, "removed": int(len(members) - len(np.unique(roots)))}


def rensa(folder: str, work: str) -> dict:
    """rensa's time, and how often its keep/drop matches ours (our dedup run here too, untimed)."""
    import pyarrow.parquet as pq

    python = os.environ.get("PEER_RENSA")
    if not python:
        sys.exit("set PEER_RENSA to a virtualenv's python with rensa installed")
    out = os.path.join(work, "rensa.json")
    subprocess.run([python, "-c", RENSA, os.path.join(folder, "docs.jsonl"), out], check=True)
    theirs = json.load(open(out))
    ours(folder, work)
    with open(os.path.join(folder, "docs.jsonl")) as f:
        index = {json.loads(line)["id"]: i for i, line in enumerate(f)}
    dup = pq.read_table(os.path.join(work, "d", "duplicates.parquet"), columns=["doc_id", "kept"]).to_pylist()
    ours_removed = {index[r["doc_id"]] for r in dup if not r["kept"]}
    theirs_removed = set(theirs["removed"])
    return {"seconds": theirs["seconds"], "removed": len(theirs_removed), "ours_removed": len(ours_removed),
            "keep_drop_agreement": round(1 - len(ours_removed ^ theirs_removed) / len(index), 5)}


def datatrove(folder: str, work: str) -> dict:
    python = os.environ.get("PEER_PYTHON")
    if not python:
        sys.exit("set PEER_PYTHON to a virtualenv's python with datatrove installed")
    src = os.path.join(work, "src")
    os.makedirs(src)
    os.symlink(os.path.join(folder, "docs.jsonl"), os.path.join(src, "docs.jsonl"))
    out = subprocess.run([python, "-c", DATATROVE, src, work], check=True, capture_output=True, text=True)
    return {"seconds": float(out.stdout.strip().splitlines()[-1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=("ours", "reference", "datatrove", "rensa"), required=True)
    ap.add_argument("--mb", type=float, default=20)
    ap.add_argument("--web", action="store_true", help="web-shaped real text (common.web_corpus)")
    args = ap.parse_args()
    folder = normalized(args.mb, args.web)
    with tempfile.TemporaryDirectory() as work:
        result = {"ours": ours, "reference": reference, "datatrove": datatrove, "rensa": rensa}[args.method](folder,
                                                                                                         work)
    mb = text_mb(folder)
    print(json.dumps({"method": args.method, "text_mb": round(mb, 1), **result,
                      "mb_per_s": round(mb / result["seconds"], 3), "peak_rss_mb": round(peak_rss_mb(), 1)}))


if __name__ == "__main__":
    main()
