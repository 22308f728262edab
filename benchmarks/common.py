"""Helpers shared by the benchmarks: cached generated corpora and peak memory."""

from __future__ import annotations

import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("SLIMPAJAMA_BENCH_CACHE", os.path.join(HERE, ".cache"))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sample_corpus(docs: int, seed: int = 1) -> str:
    """A generated sample corpus of `docs` documents, made once and reused across bench runs."""
    from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE, generate_corpus

    out = os.path.join(CACHE, f"sample-{docs}-{seed}")
    if not os.path.exists(os.path.join(out, GROUND_TRUTH_FILE)):
        t = time.perf_counter()
        generate_corpus(out, seed=seed, docs=docs, workers=os.cpu_count() or 1)
        print(f"generated {out} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return out


def timed(fn, repeat: int = 3):
    """Best wall time of `repeat` runs (the least disturbed by the machine) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result
