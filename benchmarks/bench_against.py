"""`dedup --against`: a new batch deduplicated against an earlier release, against one global dedup of both.

    python benchmarks/bench_against.py --old-mb 1000 --new-mb 100

Generated corpora (an old one and a new one of another seed, plus a slice of the old batch's documents in the new
one, as a new crawl refetches pages), normalized once and cached. Times, at 2 workers: the old batch's own dedup
(it writes the index), the new batch `--against` it (per stage: the new text's minhash, the LSH tasks that read
the old index, components, remove, the new index), one plain read of every old index file in this process, and a
global dedup of old + new together. Prints one JSON line (see run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from common import CACHE, sample_corpus  # noqa: E402

from slimpajama.io.discover import discover  # noqa: E402
from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, init_ray, run_stage  # noqa: E402
from slimpajama.pipelines.dedup import run_dedup  # noqa: E402

BYTES_PER_DOC = 3900  # the generator's mean document


def normalized(mb: float, seed: int, root: str) -> str:
    out = os.path.join(root, "batches", f"seed{seed}")
    if not os.path.exists(os.path.join(out, "_outputs.json")):
        raw = sample_corpus(int(mb * 1e6 / BYTES_PER_DOC), seed=seed)
        run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(raw)), out, progress=False)
    return out


def timed_dedup(inputs, out: str, **kw) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    report = run_dedup(inputs, out, workers=2, progress=False, **kw)
    wall = time.perf_counter() - t
    return wall, {"wall_seconds": round(wall, 2), "text_mb_in": round(report.ledger.totals().bytes_in / 1e6, 1),
                  "docs_in": report.ledger.totals().docs_in, "docs_out": report.ledger.totals().docs_out,
                  "dropped": {r: d for r, (d, _) in sorted(report.ledger.totals().dropped.items())}}


def task_seconds(out: str) -> dict:
    """Summed task seconds of each stage of a dedup folder (its own stages and its private _minhash)."""
    dirs = {"minhash": "_minhash", "lsh": "_lsh", "components": "_components", "remove": "", "index": "index"}
    found = {}
    for name, sub in dirs.items():
        state = os.path.join(out, sub, "_state")
        found[name] = round(sum(json.load(open(os.path.join(d, f))).get("seconds", 0)
                                for d, _, fs in os.walk(state) for f in fs
                                if f.endswith(".json") and not f.startswith("_")), 2)
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-mb", type=float, default=1000)
    ap.add_argument("--new-mb", type=float, default=100)
    args = ap.parse_args()
    root = os.path.join(CACHE, f"against-{args.old_mb:g}-{args.new_mb:g}")
    old_batch = normalized(args.old_mb, 1, root)
    new_only = normalized(args.new_mb * 0.9, 2, root)
    # the new batch: its own documents plus a tenth of its size refetched from the old batch (exact copies)
    new_batch = os.path.join(root, "batches", "new")
    if not os.path.exists(new_batch):
        os.makedirs(new_batch + ".tmp")
        shutil.copytree(new_only, os.path.join(new_batch + ".tmp", "fresh"))
        taken = 0
        for f in sorted(discover(old_batch), key=lambda f: f.rel):
            if taken >= args.new_mb * 0.1e6:
                break
            dest = os.path.join(new_batch + ".tmp", "refetched", f.rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(f.path, dest)
            taken += f.size
        os.rename(new_batch + ".tmp", new_batch)
    init_ray(workers=2)
    work = os.path.join(root, "runs")
    result = {"old_mb": args.old_mb, "new_mb": args.new_mb}
    _, result["old_dedup"] = timed_dedup(old_batch, os.path.join(work, "old"))
    result["old_dedup"]["task_seconds"] = task_seconds(os.path.join(work, "old"))
    index = os.path.join(work, "old", "index")
    files = [os.path.join(index, f) for f in sorted(os.listdir(index)) if f.endswith(".npy")]
    t = time.perf_counter()
    total = sum(int(np.load(f).nbytes) for f in files)
    result["old_index"] = {"mb": round(total / 1e6, 1), "files": len(files),
                           "read_seconds": round(time.perf_counter() - t, 3)}
    against_wall, result["against"] = timed_dedup(new_batch, os.path.join(work, "against"),
                                                  against=[os.path.join(work, "old")])
    result["against"]["task_seconds"] = task_seconds(os.path.join(work, "against"))
    # old + new together (the new batch's paths, under fresh/ and refetched/, differ from the old batch's)
    both = [old_batch, new_batch]
    global_wall, result["global"] = timed_dedup(both, os.path.join(work, "global"))
    result["global"]["task_seconds"] = task_seconds(os.path.join(work, "global"))
    result["against_vs_global_wall"] = round(against_wall / global_wall, 3)
    # a dedup's time is about proportional to its text: what the new batch's share of a global run would take
    result["new_share_of_global"] = round(result["against"]["text_mb_in"] /
                                          (result["against"]["text_mb_in"] + result["old_dedup"]["text_mb_in"]), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
