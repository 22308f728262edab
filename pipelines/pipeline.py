"""The whole pipeline in one driver (one Ray session): raw corpus -> release -> token cache -> packed shards.

The layout under `data` is the Makefile's: work/normalized, work/dedup (signatures in work/dedup/_minhash),
work/decontaminated (with evaluation sets), slimpajama, tokens/<encoding>, shards/seq<N>[-<A>-<B>][-bestfit][-<tokenizer>]. Every stage resumes, so rerunning
after a crash finishes the job with the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from slimpajama.core import defaults
from slimpajama.core.minhash import MinHashConfig
from slimpajama.core.release import ReleaseConfig
from slimpajama.io import storage
from slimpajama.io.reading import ReadOptions
from slimpajama.tokenize.encodings import encoding_name

from . import registry
from .decontaminate import DecontaminateConfig, run_decontaminate
from .dedup import run_dedup
from .documents import run_documents
from .normalize import NormalizeStage
from .pack import run_shards
from .release import run_release
from .runner import Progress, StageReport
from .tokens import run_tokenize


@dataclass(frozen=True)
class PipelineConfig:
    read: ReadOptions = field(default_factory=ReadOptions)
    min_chars: int = defaults.MIN_CHARS
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    verify: bool = False  # dedup --verify
    against: tuple[str, ...] = ()  # dedup --against: earlier dedup outputs
    decontaminate: DecontaminateConfig | None = None  # with evaluation sets: decontaminate before release
    partition_bytes: int = defaults.PARTITION_BYTES
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    encoding: str = defaults.ENCODING
    engine: str = "auto"  # who tokenizes (tokenize/engine.py): never changes the bytes
    threads: int = 1  # tokenizer threads per task
    eos: str | None = None  # a model tokenizer's EOS / BOS (tokenize --eos, --bos)
    bos: str | None = None
    # (sequence length, train range) per packed output; BTLM: ((2048, (0, 0.75)), (8192, (0.75, 1)))
    shards: tuple[tuple[int, tuple[float, float]], ...] = ((defaults.SEQ, defaults.PACK_RANGE),)
    packing: str = "concat"
    file_bytes: int = defaults.SHARD_FILE_BYTES  # a packed shard file
    # parts of big plain .jsonl / parquet inputs, and shard files per pack task (0: one task per file / split)
    task_bytes: int = defaults.TASK_BYTES


def paths(data: str, encoding: str = defaults.ENCODING) -> dict[str, str]:
    j = storage.join
    r = registry
    return {"normalized": j(data, r.NORMALIZE.folder), "dedup": j(data, r.DEDUP.folder),
            "decontaminated": j(data, r.DECONTAMINATE.folder),
            "release": j(data, r.RELEASE.folder), "tokens": j(data, r.TOKENIZE.folder),
            "cache": j(data, r.TOKENIZE.folder, encoding_name(encoding)), "shards": j(data, r.PACK.folder)}


def stage_markers(data: str) -> dict[str, list[dict]]:
    """Every completion marker under `data` (seconds, peak RSS, node, ledger of each task), by stage name."""
    out: dict[str, list[dict]] = {}
    for rel, _ in storage.list_files(data):
        if "/_state/" in f"/{rel}" and rel.endswith(".json") and not rel.rsplit("/", 1)[-1].startswith("_"):
            m = json.loads(storage.read_bytes(storage.join(data, rel)))
            out.setdefault(m["stage"], []).append(m)
    return out


def run_pipeline(raw, data: str, cfg: PipelineConfig | None = None, *, workers: int | None = None,
                 ray_address: str | None = None, progress: Progress | None = None,
                 verify_inputs: bool = False) -> list[StageReport]:
    cfg = cfg or PipelineConfig()
    p = paths(data, cfg.encoding)
    run = dict(workers=workers, ray_address=ray_address, progress=progress)
    reports = [run_documents(NormalizeStage(cfg.read, cfg.min_chars), raw, p["normalized"], command="pipeline",
                             verify_inputs=verify_inputs, task_bytes=cfg.task_bytes, **run)]
    reports.append(run_dedup(p["normalized"], p["dedup"], cfg=cfg.minhash, partition_bytes=cfg.partition_bytes,
                             task_bytes=cfg.task_bytes, verify=cfg.verify, against=list(cfg.against), **run))
    released = p["dedup"]
    if cfg.decontaminate is not None and cfg.decontaminate.eval:
        reports.append(run_decontaminate(p["dedup"], p["decontaminated"], cfg.decontaminate, read=cfg.read,
                                         task_bytes=cfg.task_bytes, command="pipeline", **run))
        released = p["decontaminated"]
    reports.append(run_release(released, p["release"], cfg.release, task_bytes=cfg.task_bytes, **run))
    # the same read options as the first stage: --on-error fail, --batch-rows, --max-doc-bytes hold here too
    reports.append(run_tokenize(p["release"], p["tokens"], cfg.encoding, read=cfg.read, task_bytes=cfg.task_bytes,
                                eos=cfg.eos, bos=cfg.bos, engine=cfg.engine, threads=cfg.threads, **run))
    for seq, range_ in cfg.shards:
        reports.append(run_shards(p["cache"], p["shards"], seq, packing=cfg.packing, range_=range_,
                                  file_bytes=cfg.file_bytes, task_bytes=cfg.task_bytes, **run))
    return reports
