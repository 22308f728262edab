"""The whole pipeline in one driver (one Ray session): raw corpus -> release -> token cache -> packed shards.

The layout under `data` is the Makefile's: work/normalized, work/dedup (signatures in work/dedup/_minhash),
slimpajama, tokens/<encoding>, shards/seq<N>[-<A>-<B>]. Every stage resumes, so rerunning after a crash finishes
the job with the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from slimpajama.core.minhash import MinHashConfig
from slimpajama.core.release import ReleaseConfig
from slimpajama.io import storage
from slimpajama.io.discover import discover_all
from slimpajama.io.paths import DOCUMENTS, require_inputs
from slimpajama.io.reading import ReadOptions
from slimpajama.io.spans import DEFAULT_TASK_BYTES
from slimpajama.tokenize.encodings import encoding_name

from .dedup import DEFAULT_PARTITION_BYTES, run_dedup
from .normalize import NormalizeStage
from .release import run_release
from .runner import StageReport, run_stage
from .split import split_tasks
from .tokens import run_shards, run_tokenize


@dataclass(frozen=True)
class PipelineConfig:
    read: ReadOptions = field(default_factory=ReadOptions)
    min_chars: int = 200
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    partition_bytes: int = DEFAULT_PARTITION_BYTES
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    encoding: str = "gpt2"
    # (sequence length, train range) per packed output; BTLM: ((2048, (0, 0.75)), (8192, (0.75, 1)))
    shards: tuple[tuple[int, tuple[float, float]], ...] = ((2048, (0.0, 1.0)),)
    packing: str = "concat"
    task_bytes: int = DEFAULT_TASK_BYTES  # parts of big plain .jsonl / parquet inputs (0: one task per file)


def paths(data: str, encoding: str = "gpt2") -> dict[str, str]:
    j = storage.join
    return {"normalized": j(data, "work", "normalized"), "dedup": j(data, "work", "dedup"),
            "release": j(data, "slimpajama"), "tokens": j(data, "tokens"),
            "cache": j(data, "tokens", encoding_name(encoding)), "shards": j(data, "shards")}


def stage_markers(data: str) -> dict[str, list[dict]]:
    """Every completion marker under `data` (seconds, peak RSS, node, ledger of each task), by stage name."""
    out: dict[str, list[dict]] = {}
    for rel, _ in storage.list_files(data):
        if "/_state/" in f"/{rel}" and rel.endswith(".json") and not rel.rsplit("/", 1)[-1].startswith("_"):
            m = json.loads(storage.read_bytes(storage.join(data, rel)))
            out.setdefault(m["stage"], []).append(m)
    return out


def run_pipeline(raw, data: str, cfg: PipelineConfig | None = None, *, workers: int | None = None,
                 ray_address: str | None = None, progress: bool = True,
                 verify_inputs: bool = False) -> list[StageReport]:
    cfg = cfg or PipelineConfig()
    p = paths(data, cfg.encoding)
    run = dict(workers=workers, ray_address=ray_address, progress=progress)
    require_inputs(raw, DOCUMENTS, "pipeline")
    found = discover_all(raw, out=p["normalized"], verify=verify_inputs)
    tasks = split_tasks(found.files, p["normalized"], cfg.task_bytes, workers=workers, ray_address=ray_address)
    reports = [run_stage(NormalizeStage(cfg.read, cfg.min_chars), tasks, p["normalized"],
                         skipped_files=found.skipped, **run)]
    reports.append(run_dedup(p["normalized"], p["dedup"], cfg=cfg.minhash, partition_bytes=cfg.partition_bytes,
                             **run))
    reports.append(run_release(p["dedup"], p["release"], cfg.release, **run))
    reports.append(run_tokenize(p["release"], p["tokens"], cfg.encoding, task_bytes=cfg.task_bytes, **run))
    for seq, range_ in cfg.shards:
        reports.append(run_shards(p["cache"], p["shards"], seq, packing=cfg.packing, range_=range_, **run))
    return reports
