"""decontaminate against the bare read, per core, with an evaluation set of --items items:

    python benchmarks/bench_decontaminate.py --web-mb 80 [--items 100000]    web pages (common.web_corpus)
    python benchmarks/bench_decontaminate.py --real-mb 80                    real text (common.real_corpus)

The corpus is normalized first (not timed). The items: runs of 5-60 words of the corpus's pages with their words
shuffled (a benchmark's vocabulary in an order no page holds: what the filter must reject), timed twice; then once
more with 1% of them as they are, retyped (case, line breaks): on web pages those runs are often navigation text
that thousands of pages share, so most documents are dropped and every match is confirmed. The stage runs in the
driver (one core: its tasks' seconds from their markers), between two bare reads (zstd + orjson of the same raw
text on one core). Prints one
JSON line: MB/s of text in per core, the ratio to the bare read, the index's build time and size, peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_e2e import baseline_mb_per_s  # noqa: E402
from common import peak_rss_mb, real_corpus, web_corpus  # noqa: E402

MB = 1e6


def items(texts: list[str], n: int, verbatim: float, seed: int = 0) -> list[str]:
    """Runs of 5-60 words of the corpus's own pages, with their words shuffled (a question's vocabulary, in an
    order no page holds: what the filter must reject), but a `verbatim` fraction as they are, retyped (upper case,
    line breaks)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        w = rng.choice(texts).split()
        if len(w) < 70:
            continue
        a = rng.randrange(len(w) - 61)
        run = w[a: a + rng.randrange(5, 61)]
        if rng.random() >= verbatim:
            rng.shuffle(run)
            out.append(" ".join(run))
        else:
            out.append(rng.choice([" ".join(run).upper(), "\n".join(run)]))
    return out


def texts_of(path: str, limit: int) -> list[str]:
    from slimpajama.errors import raise_on_bad
    from slimpajama.io.discover import discover
    from slimpajama.io.documents import read_documents

    out = []
    for f in discover(path):
        for b in read_documents(f, raise_on_bad):
            out += b.column("text").to_pylist()
            if len(out) >= limit:
                return out
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--web-mb", type=float, default=0)
    ap.add_argument("--real-mb", type=float, default=0)
    ap.add_argument("--items", type=int, default=100_000)
    args = ap.parse_args()
    os.environ["SLIMPAJAMA_INLINE_BYTES"] = str(1 << 40)  # in the driver: one core, no Ray start in the figures
    from slimpajama.io.discover import discover
    from slimpajama.pipelines import NormalizeStage, ReadOptions, file_tasks, run_stage
    from slimpajama.pipelines.decontaminate import (
        DecontaminateConfig,
        eval_files,
        load_eval,
        run_decontaminate,
    )
    from slimpajama.pipelines.pipeline import stage_markers

    raw = web_corpus(args.web_mb) if args.web_mb else real_corpus(args.real_mb)
    with tempfile.TemporaryDirectory() as tmp:
        norm = os.path.join(tmp, "n")
        run_stage(NormalizeStage(ReadOptions()), file_tasks(discover(raw)), norm, progress=False)
        corpus_texts = texts_of(norm, 20_000)
        alone = [baseline_mb_per_s(raw)]
        runs, build = [], {}
        for r, verbatim in enumerate((0.0, 0.0, 0.01)):
            ev = os.path.join(tmp, f"eval-{verbatim}.jsonl")
            with open(ev, "w") as fh:
                for i, it in enumerate(items(corpus_texts, args.items, verbatim)):
                    fh.write(json.dumps({"id": i, "question": it}) + "\n")
            cfg = DecontaminateConfig(eval=(ev,))
            t = time.perf_counter()
            evals = load_eval(eval_files((ev,)), cfg)
            build[verbatim] = time.perf_counter() - t
            out = os.path.join(tmp, f"d{r}")
            report = run_decontaminate(norm, out, cfg, progress=False, task_bytes=0)
            ms = stage_markers(out)["decontaminate"]
            secs = sum(m["seconds"] for m in ms)
            text_in = report.ledger.totals().bytes_in / MB
            runs.append({"verbatim_items": verbatim, "text_mb_in": round(text_in, 1), "task_seconds": round(secs, 2),
                         "mb_per_s_per_core": round(text_in / secs, 1),
                         "peak_rss_mb_per_task": max(m.get("peak_rss_mb") or 0 for m in ms),
                         "docs_in": report.ledger.totals().docs_in,
                         "contaminated": report.ledger.totals().docs_in - report.ledger.totals().docs_out})
        alone.append(baseline_mb_per_s(raw))
    bare = sum(alone) / len(alone)
    print(json.dumps({"corpus": "web pages" if args.web_mb else "real text", "items": args.items,
                      "index_build_seconds": round(build[0.0], 2), "index_mb": round(evals.index.nbytes() / MB, 1),
                      "bare_read_mb_per_s": [round(x, 1) for x in alone], "runs": runs,
                      "ratio_vs_bare_read": [round(r["mb_per_s_per_core"] / bare, 3) for r in runs],
                      "driver_peak_rss_mb": round(peak_rss_mb(), 1)}))


if __name__ == "__main__":
    main()
