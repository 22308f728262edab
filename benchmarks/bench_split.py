"""Within-file parallelism (`--task-bytes`), in one run on this machine's cores:

  --single-gb G  normalize one plain JSON-lines file of about G GB (RedPajama-1T's wiki.jsonl/book.jsonl shape)
                 with --task-bytes 0 (one task) and with the default (a small input is cut into
                 MIN_PARTS parts: spans.part_bytes): wall times, their ratio, identical output;
  --rp-gb G      the whole pipeline on a RedPajama-1T-shaped corpus (book, wikipedia, stackexchange one plain file
                 each, the others many files) with --task-bytes 0, the default and a small value: wall time, and per
                 stage the longest task against the mean task (what sets the wall time on many cores).
Prints one JSON line (see run.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import orjson  # noqa: E402
from common import CACHE, sample_corpus  # noqa: E402

from slimpajama.core import defaults  # noqa: E402
from slimpajama.errors import raise_on_bad  # noqa: E402
from slimpajama.io.discover import discover  # noqa: E402
from slimpajama.io.documents import read_documents  # noqa: E402
from slimpajama.pipelines import NormalizeStage, ReadOptions, init_ray, run_stage  # noqa: E402
from slimpajama.pipelines.pipeline import PipelineConfig, run_pipeline, stage_markers  # noqa: E402
from slimpajama.pipelines.split import split_tasks  # noqa: E402
from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE, RP1T_SUBSETS, generate_corpus, to_redpajama_1t  # noqa: E402

GB = 1e9


def single_file(gb: float) -> str:
    """One plain .jsonl of about `gb` GB: a generated corpus's documents, repeated (normalize's work per byte does
    not depend on repeats), as RedPajama-1T rows."""
    root = os.path.join(CACHE, f"single-{gb:g}GB")
    path = os.path.join(root, "wikipedia", "wiki.jsonl")
    if os.path.exists(path):
        return root
    src = sample_corpus(60_000)
    lines = [orjson.dumps({"text": t, "meta": {}, "red_pajama_subset": RP1T_SUBSETS[s]}) + b"\n"
             for f in discover(src) for b in read_documents(f, raise_on_bad)
             for t, s in zip(b.column("text").to_pylist(), b.column("source").to_pylist(), strict=True)]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as out:
        written = 0
        while written < gb * GB:
            for line in lines:
                if written + len(line) > gb * GB:
                    break
                out.write(line)
                written += len(line)
            else:
                continue
            break
    os.replace(path + ".tmp", path)
    return root


def output_digest(out: str) -> str:
    """SHA-256 of every normalized row, in the stage's order (whatever files the rows are in)."""
    h = hashlib.sha256()
    for f in discover(out):
        for b in read_documents(f, raise_on_bad):  # row by row: batch boundaries differ between layouts
            for row in zip(*(b.column(c).to_pylist() for c in ("doc_id", "source", "text", "meta")), strict=True):
                h.update("\0".join(row).encode() + b"\1")
    return h.hexdigest()


def normalize_once(raw: str, out: str, task_bytes: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    tasks = split_tasks(discover(raw), out, task_bytes)
    plan = time.perf_counter() - t
    report = run_stage(NormalizeStage(ReadOptions()), tasks, out, progress=False)
    wall = time.perf_counter() - t
    markers = report.markers
    return {"task_bytes": task_bytes, "tasks": len(tasks), "wall_seconds": round(wall, 3),
            "planning_seconds": round(plan, 2), "longest_task_seconds": max(m["seconds"] for m in markers),
            "peak_rss_mb_per_task": max(m["peak_rss_mb"] or 0 for m in markers),
            "docs_out": report.ledger.totals().docs_out, "digest": output_digest(out)}


def bench_single(gb: float) -> dict:
    raw = single_file(gb)
    init_ray()
    normalize_once(sample_corpus(2000), os.path.join(CACHE, "warmup"), 0)  # Ray workers started and imported
    # interleaved, the faster of two runs each: this machine's speed drifts by tens of percent within a minute
    runs = [(normalize_once(raw, os.path.join(CACHE, "split-0"), 0),
             normalize_once(raw, os.path.join(CACHE, "split-default"), defaults.TASK_BYTES)) for _ in range(2)]
    one, split = (min((r[k] for r in runs), key=lambda x: x["wall_seconds"]) for k in (0, 1))
    for d in ("warmup", "split-0", "split-default"):
        shutil.rmtree(os.path.join(CACHE, d), ignore_errors=True)
    return {"file_gb": round(os.path.getsize(os.path.join(raw, "wikipedia", "wiki.jsonl")) / GB, 2),
            "cores": os.cpu_count(), "one_task": one, "default_task_bytes": split,
            "wall_ratio_default_vs_one_task": round(split["wall_seconds"] / one["wall_seconds"], 3),
            "identical_output": one["digest"] == split["digest"]}


def rp_corpus(gb: float) -> str:
    out = os.path.join(CACHE, f"rp1t-{gb:g}GB")
    if not os.path.exists(os.path.join(out, GROUND_TRUTH_FILE)):
        gen = out + ".gen"
        generate_corpus(gen, seed=5, nbytes=int(gb * GB), workers=os.cpu_count() or 1)
        to_redpajama_1t(gen, out)
        shutil.rmtree(gen)
    return out


def bench_rp(gb: float, small: int) -> dict:
    raw = rp_corpus(gb)
    sizes = {f: os.path.getsize(os.path.join(raw, f)) for f in json.load(open(os.path.join(raw, GROUND_TRUTH_FILE)))
             ["files"]}
    out = {"corpus_gb": round(sum(sizes.values()) / GB, 2), "largest_file": max(sizes, key=sizes.get),
           "largest_file_share": round(max(sizes.values()) / sum(sizes.values()), 3), "runs": {}}
    digests = set()
    for task_bytes in (0, defaults.TASK_BYTES, small):
        data = os.path.join(CACHE, "rp-run")
        shutil.rmtree(data, ignore_errors=True)
        t = time.perf_counter()
        run_pipeline(raw, data, replace(PipelineConfig(), task_bytes=task_bytes), progress=False)
        wall = time.perf_counter() - t
        stages = {}
        for stage, ms in stage_markers(data).items():
            secs = [m["seconds"] for m in ms]
            stages[stage] = {"tasks": len(ms), "longest_s": round(max(secs), 2),
                             "mean_s": round(sum(secs) / len(secs), 2),
                             "longest_vs_mean": round(max(secs) / max(sum(secs) / len(secs), 1e-9), 1)}
        h = hashlib.sha256()
        for f in sorted(discover(os.path.join(data, "slimpajama")), key=lambda f: f.rel):
            h.update(open(f.path, "rb").read())
        digests.add(h.hexdigest())
        out["runs"][str(task_bytes)] = {"wall_seconds": round(wall, 1), "stages": stages}
        shutil.rmtree(data, ignore_errors=True)
    out["identical_release"] = len(digests) == 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--single-gb", type=float, default=0)
    ap.add_argument("--rp-gb", type=float, default=0)
    ap.add_argument("--small-task-bytes", type=int, default=16 << 20)
    args = ap.parse_args()
    result = {}
    if args.single_gb:
        result["single_file_normalize"] = bench_single(args.single_gb)
    if args.rp_gb:
        result["redpajama_1t_pipeline"] = bench_rp(args.rp_gb, args.small_task_bytes)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
