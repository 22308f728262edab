"""The whole pipeline at test size, and the bytes it produces, for the reliability tests."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq

from slimpajama.core.release import ReleaseConfig
from slimpajama.io import outputs, storage
from slimpajama.pipelines import ReadOptions
from slimpajama.pipelines.pipeline import PipelineConfig, run_pipeline, stage_markers

SEQ = 64
TASK_BYTES = 100_000  # the corpus's big plain .jsonl files (book, wikipedia, c4, ...) are read in several parts
# small files and buckets so that every stage has several tasks to kill
CONFIG = PipelineConfig(release=ReleaseConfig(holdout=0.05, docs_per_file=100, bucket_bytes=400_000),
                        shards=((SEQ, (0.0, 0.75)), (4 * SEQ, (0.75, 1.0))), task_bytes=TASK_BYTES)
CLI_ARGS = ["--holdout", "0.05", "--docs-per-file", "100", "--bucket-bytes", "400000", "--task-bytes", str(TASK_BYTES),
            "--seq", str(SEQ), "--range", "0:0.75", "--seq", str(4 * SEQ), "--range", "0.75:1", "--quiet"]
# the stages, in the order the pipeline runs them
STAGES = ("normalize", "minhash", "lsh", "components", "dedup", "index", "release-scatter", "release-shuffle",
          "tokenize", "pack-plan", "pack-order", "pack")


def pipeline(raw, data, batch_rows: int = 1024, **kw):
    cfg = replace(CONFIG, read=ReadOptions(batch_rows=batch_rows))
    return run_pipeline(str(raw), str(data), cfg, progress=False, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pipeline_cli(raw, data, *extra, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`slimpajama pipeline` in its own process (its own Ray, unless --ray-address)."""
    return subprocess.run([sys.executable, "-m", "slimpajama.cli", "pipeline", str(raw), "--data", str(data),
                           *CLI_ARGS, *extra], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def product(data) -> dict[str, str]:
    """SHA-256 of every file the pipeline leaves under `data`, completion markers aside (they hold timings)."""
    out = {}
    for rel, _ in storage.list_files(str(data)):
        if "/_state/" in f"/{rel}" or rel.startswith("raw/"):
            continue
        out[rel] = hashlib.sha256(storage.read_bytes(storage.join(str(data), rel))).hexdigest()
    return out


def task_counts(data) -> dict[str, int]:
    """Tasks in one run of each stage of a finished pipeline (pack runs once per sequence length: the smallest)."""
    counts = {}
    for stage, markers in stage_markers(str(data)).items():
        runs = collections.Counter(json.dumps(m["fingerprint"], sort_keys=True) for m in markers)
        counts[stage] = min(runs.values())
    return counts


def ledgers_balance(data) -> None:
    for rel in ("work/normalized", "work/dedup", "slimpajama", "tokens/gpt2"):
        led = json.loads(storage.read_bytes(storage.join(str(data), rel, "ledger.json")))
        t = led["totals"]
        assert led["balanced"], rel
        assert t["docs_in"] == t["docs_out"] + sum(v["docs"] for v in t["dropped"].values()), rel


def cache_documents(cache, split="train") -> list[tuple[str, np.ndarray]]:
    """(source, tokens) of every document of a split of the token cache, in its order."""
    manifest = outputs.read(str(cache))
    keys = [r["rel"][: -len(".tokens.bin")] for r in manifest["files"] if r["rel"].endswith(".tokens.bin")]
    docs = []
    for k in keys:
        if (k.split("/", 1)[0] if k.split("/", 1)[0] in ("validation", "test") else "train") != split:
            continue
        table = pq.read_table(cache / f"{k}.docs.parquet")
        tokens = np.fromfile(cache / f"{k}.tokens.bin", dtype=np.uint16)
        bounds = np.concatenate(([0], np.cumsum(table["tokens"].to_numpy())))
        docs += [(s, tokens[bounds[i]: bounds[i + 1]]) for i, s in enumerate(table["source"].to_pylist())]
    return docs
