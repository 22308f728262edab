"""End to end on a generated multi-GB corpus (or, with --real-mb, on real text: common.real_corpus; with --web-mb, on
web-shaped real text: common.web_corpus): every stage's
MB/s per core and peak RSS, read from the shard markers.

Per core: a stage's text MB divided by the summed seconds of its tasks (each task holds one core), so the figure
does not depend on how many cores ran it. The baseline, measured in the same run on the same files, before and
after it, is every core doing nothing but zstd decompression and orjson.loads of the raw corpus (the fastest bare
read in Python), per core: a stage's ratio says how many times more (or less) work per byte it does than that bare
parse under the same load (the lone-core figure is reported too).
Prints one JSON line (see run.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zstandard  # noqa: E402
from common import CACHE, real_corpus, web_corpus  # noqa: E402

from slimpajama.io.discover import discover  # noqa: E402
from slimpajama.pipelines.memory import peak_rss_mb  # noqa: E402
from slimpajama.pipelines.pipeline import PipelineConfig, run_pipeline, stage_markers  # noqa: E402
from slimpajama.tools.plan import stage_text_in  # noqa: E402
from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE, generate_corpus  # noqa: E402

MB = 1e6
# the schedule of BTLM: 2k rows from the first 75% of train tokens, 8k rows from the rest
CONFIG = PipelineConfig(shards=((2048, (0.0, 0.75)), (8192, (0.75, 1.0))))


def corpus(gb: float) -> str:
    out = os.path.join(CACHE, f"e2e-{gb:g}GB")
    if not os.path.exists(os.path.join(out, GROUND_TRUTH_FILE)):
        t = time.perf_counter()
        generate_corpus(out, seed=3, nbytes=int(gb * 1e9), workers=os.cpu_count() or 1)
        print(f"generated {out} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    return out


def baseline_mb_per_s(raw: str, limit_bytes: float = 300e6) -> float:
    """One core: zstd decompression + orjson.loads, over the first `limit_bytes` of text."""
    import orjson

    done, t = 0, time.perf_counter()
    for f in discover(raw):
        with open(f.path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
            for line in io.BufferedReader(r):
                done += len(orjson.loads(line)["text"].encode("utf-8"))
        if done >= limit_bytes:
            break
    return done / MB / (time.perf_counter() - t)


def loaded_baseline_mb_per_s(raw: str, cores: int) -> float:
    """The bare read per core with every core doing it at once: the condition the stages' tasks run in (one per
    core). On this machine two concurrent minhash kernels each run ~25% slower than one alone; the bare read itself
    measured no slower under load, so this baseline is the like-for-like one, not a lower one."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(cores) as pool:
        rates = list(pool.map(baseline_mb_per_s, [raw] * cores))
    return sum(rates) / len(rates)


def stage_figures(by_stage: dict[str, list[dict]], base: float, alone: float) -> dict:
    text_in = {s: n / MB for s, n in stage_text_in(by_stage).items()}
    tokens = sum(m["extra"]["tokens"] for m in by_stage["tokenize"])
    out = {}
    for stage, ms in by_stage.items():
        secs = sum(m["seconds"] for m in ms)
        rate = text_in[stage] / secs if secs else 0.0
        out[stage] = {"tasks": len(ms), "text_mb_in": round(text_in[stage], 1), "task_seconds": round(secs, 1),
                      "mb_per_s_per_core": round(rate, 2), "ratio_vs_bare_parse": round(rate / base, 3),
                      "ratio_vs_bare_parse_one_core_alone": round(rate / alone, 3),
                      "peak_rss_mb_per_task": max(m.get("peak_rss_mb") or 0 for m in ms)}
        if stage in ("tokenize", "pack"):
            out[stage]["tokens_per_s_per_core"] = round(tokens / secs) if secs else 0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0, help="text in the generated corpus")
    ap.add_argument("--real-mb", type=float, default=0, help="run on this much real text instead (common.real_corpus)")
    ap.add_argument("--web-mb", type=float, default=0, help="run on this much web-shaped text (common.web_corpus)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    raw = web_corpus(args.web_mb) if args.web_mb else real_corpus(args.real_mb) if args.real_mb else corpus(args.gb)
    cores = args.workers or os.cpu_count() or 1
    # the baselines before and after the run, averaged: this machine's speed drifts within minutes
    alone, loaded = [baseline_mb_per_s(raw)], [loaded_baseline_mb_per_s(raw, cores)]
    data = os.path.join(CACHE, "e2e-run")
    shutil.rmtree(data, ignore_errors=True)
    t = time.perf_counter()
    reports = run_pipeline(raw, data, CONFIG, workers=args.workers, progress=False)
    wall = time.perf_counter() - t
    alone.append(baseline_mb_per_s(raw))
    loaded.append(loaded_baseline_mb_per_s(raw, cores))
    base = sum(loaded) / len(loaded)
    by_stage = stage_markers(data)
    stages = stage_figures(by_stage, base, sum(alone) / len(alone))
    norm = reports[0].ledger.totals()
    tokens = sum(m["extra"]["tokens"] for m in by_stage["tokenize"])
    result = {"corpus_text_mb": round(norm.bytes_in / MB, 1), "docs": norm.docs_in, "wall_seconds": round(wall, 1),
              "cores": cores, "baseline_bare_parse_mb_per_s": round(base, 2),
              "baseline_bare_parse_one_core_alone_mb_per_s": round(sum(alone) / len(alone), 2),
              "baselines_before_after": {"all_cores_busy": [round(x, 1) for x in loaded],
                                         "one_core_alone": [round(x, 1) for x in alone]},
              "release_text_mb": stages["tokenize"]["text_mb_in"], "tokens": tokens,
              "bytes_per_token": round(stages["tokenize"]["text_mb_in"] * MB / max(tokens, 1), 3),
              "driver_peak_rss_mb": peak_rss_mb(), "stages": stages,
              # every stage's task-seconds per second of a bare read of the raw text on one core: what the five
              # stage commands cost, in bare reads (as the issues count it)
              "bare_reads": round(sum(v["task_seconds"] for v in stages.values())
                                  / (norm.bytes_in / MB / (sum(alone) / len(alone))), 1),
              "bare_reads_by_stage": {k: round(v["task_seconds"] / (norm.bytes_in / MB / (sum(alone) / len(alone))),
                                               2) for k, v in stages.items()}}
    shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
