"""`slimpajama plan`: what the whole run takes on a corpus before renting the cluster.

The corpus's files are listed with their sizes (a folder, an object-store prefix, or a listing such as `aws s3 ls
--recursive` prints), never read whole. Rates come from a calibration slice of the corpus run through every stage
on this node in one process (MB/s of text per core, what each stage keeps, bytes per token, compression), or from
a file (`make bench`'s results.json, or the `rates` of an earlier `plan --json`). The model then cuts every stage
into the tasks the pipeline would run with the given --task-bytes (a compressed stream is one task; a plain file
or a parquet shard is cut into parts; release files hold --docs-per-file documents; a shuffle bucket holds
--bucket-bytes), and schedules them longest first on N cores: a stage's wall time is that schedule's length, never
less than its longest task; the stages run one after another.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass

from slimpajama.core import defaults
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage

STAGES = ("normalize", "minhash", "lsh", "components", "dedup", "release-scatter", "release-shuffle", "tokenize",
          "pack-plan", "pack")
# components: a parent per document (4 bytes) and member and root (8 + 8) per document in a cluster of 2+; 5.9
# bytes per document measured at 1e8 documents with 5% copies (bench_dedup --lsh-docs)
PARENT_BYTES, CLUSTER_BYTES = 4, 16
MINHASH_BYTES_PER_DOC = 584  # signatures 512 + band keys 72 (deletable after a complete dedup)
# text bytes per byte of a file, where no file of the kind was read whole: RedPajama's plain JSON lines (the text
# and a small meta) and its Common Crawl .jsonl.zst (about 5 GB of text per 1.4 GB file)
TEXT_PER_FILE_BYTE = {"plain": 0.95, "compressed": 3.6, "parquet": 3.5}


@dataclass(frozen=True)
class Corpus:
    files: list[tuple[str, int]]  # (relative path, size in bytes)


def is_listing(path: str) -> bool:
    """A file that lists a corpus (not a corpus file, not a folder)."""
    return storage.file_size(path) is not None and not path.lower().endswith(
        (".jsonl", ".json", ".parquet", ".zst", ".zstd", ".gz", ".bz2", ".xz"))


def list_corpus(path: str) -> Corpus:
    """The corpus files under a folder or prefix, or those a listing file names: lines ending in `<size> <path>`
    (`aws s3 ls --recursive`, `du -ab` swapped, or `find -printf '%s %p\\n'`)."""
    from slimpajama.io.discover import discover, is_corpus_file

    if is_listing(path):
        files = []
        with storage.open_input(path) as f:
            for no, line in enumerate(f.read().decode("utf-8", "replace").splitlines(), 1):
                m = re.search(r"(\d+)\s+(\S+)\s*$", line)
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if not m:
                    raise SlimPajamaError(f"{path}, line {no}: not '<size> <path>': {line.strip()[:80]!r}")
                if is_corpus_file(m.group(2)):
                    files.append((m.group(2), int(m.group(1))))
        if not files:
            raise SlimPajamaError(f"{path} lists no corpus file (.jsonl/.json[.zst|.gz|...], .parquet)")
        return Corpus(files)
    found = discover(path)
    if not found:
        raise SlimPajamaError(f"{path} holds no corpus file (.jsonl/.json[.zst|.gz|...], .parquet)")
    return Corpus([(f.rel, f.size) for f in found])


# ------------------------------------------------------------------------------------------------ rates


def calibrate(path: str, slice_bytes: int) -> dict:
    """Run a slice of the corpus (about `slice_bytes` of text, taken evenly from its sources) through every stage
    in this process, one core, and read each stage's rate from its task markers."""
    import orjson

    from slimpajama.core.release import ReleaseConfig
    from slimpajama.io.discover import discover
    from slimpajama.io.documents import read_documents
    from slimpajama.pipelines.pipeline import PipelineConfig, run_pipeline, stage_markers

    files = discover(path)
    if not files:
        raise SlimPajamaError(f"{path} holds no corpus file to calibrate on")
    groups: dict[str, list] = {}
    for f in files:
        groups.setdefault(f.folder_source or "", []).append(f)
    quota = slice_bytes / len(groups)
    with tempfile.TemporaryDirectory(prefix="slimpajama-plan-") as tmp:
        raw = os.path.join(tmp, "raw")
        ratios: dict[str, list[float]] = {}  # text bytes per file byte of the files read to their end
        for folder, fs in sorted(groups.items()):
            os.makedirs(os.path.join(raw, folder or "corpus"), exist_ok=True)
            taken = 0
            with open(os.path.join(raw, folder or "corpus", "slice.jsonl"), "wb") as out:
                for f in fs:
                    in_file, whole = 0, True
                    for batch in read_documents(f, lambda rec: None):
                        for text, source in zip(batch.column("text").to_pylist(),
                                                batch.column("source").to_pylist(), strict=True):
                            out.write(orjson.dumps({"text": text, "meta": {"redpajama_set_name": source}}) + b"\n")
                            in_file += len(text.encode("utf-8"))
                        if taken + in_file >= quota:
                            whole = False
                            break
                    taken += in_file
                    if whole and f.size:
                        ratios.setdefault(_kind(f.rel), []).append(in_file / f.size)
                    if taken >= quota:
                        break
        data = os.path.join(tmp, "data")
        previous = os.environ.get("SLIMPAJAMA_INLINE_BYTES")
        os.environ["SLIMPAJAMA_INLINE_BYTES"] = str(1 << 50)  # every task in this process: one core, no Ray
        notices = logging.getLogger("slimpajama")
        level = notices.level
        notices.setLevel(logging.ERROR)  # the slice's own stages' notices are not the user's
        try:
            cfg = PipelineConfig(release=ReleaseConfig(holdout=0.0))
            # twice, the first run discarded: it pays what a process pays once (compiled kernels loaded from
            # their cache, the BPE read), which a slice this small would count as the stages' work
            run_pipeline(raw, os.path.join(tmp, "warm-up"), cfg, progress=False)
            t = time.perf_counter()
            reports = run_pipeline(raw, data, cfg, progress=False)
            wall = time.perf_counter() - t
        finally:
            notices.setLevel(level)
            if previous is None:
                os.environ.pop("SLIMPAJAMA_INLINE_BYTES")
            else:
                os.environ["SLIMPAJAMA_INLINE_BYTES"] = previous
        rates = rates_from_markers(stage_markers(data))
        rates["calibration"] = {"text_bytes": reports[0].ledger.totals().bytes_in, "seconds": round(wall, 2)}
        # what a stage costs beyond its tasks (planning, markers, indexes, the driver's bookkeeping): felt only by
        # small runs
        task_seconds = sum(m["seconds"] for ms in stage_markers(data).values() for m in ms)
        rates["driver_seconds_per_stage"] = round(max(0.0, wall - task_seconds) / len(STAGES), 3)
        rates["text_per_file_byte"] = {**TEXT_PER_FILE_BYTE, **{k: round(sorted(v)[len(v) // 2], 3)
                                                                for k, v in ratios.items()}}
    return rates


def _kind(rel: str) -> str:
    low = rel.lower()
    return "parquet" if low.endswith(".parquet") else "plain" if low.endswith((".jsonl", ".json")) else "compressed"


def stage_text_in(by_stage: dict[str, list[dict]]) -> dict[str, int]:
    """Text bytes each stage of a run read, from its task markers (`stage_markers`): a stage's ledgers, or, for the
    stages without a document ledger, those of the stage whose documents they work on."""
    text_in = {s: sum(m["ledger"]["totals"]["bytes_in"] for m in ms) for s, ms in by_stage.items()}
    text_in["lsh"] = text_in["components"] = text_in["minhash"]
    text_in["release-shuffle"] = text_in["release-scatter"]
    text_in["pack"] = text_in["pack-plan"] = text_in["tokenize"]
    return text_in


def rates_from_markers(by_stage: dict[str, list[dict]]) -> dict:
    """MB/s of text per core of each stage (its text in / the summed seconds of its tasks), what the filter and
    dedup keep, document and token sizes, and each stage's peak RSS per task."""
    text_in = stage_text_in(by_stage)
    tokens = sum(m["extra"]["tokens"] for m in by_stage["tokenize"])
    kept_docs = sum(m["ledger"]["totals"]["docs_out"] for m in by_stage["normalize"])
    out = {"mb_per_s_per_core": {}, "peak_rss_mb": {}}
    for stage in STAGES:
        ms = by_stage.get(stage, [])
        secs = max(sum(m["seconds"] for m in ms), 1e-3)
        out["mb_per_s_per_core"][stage] = round(text_in[stage] / 1e6 / secs, 3)
        out["peak_rss_mb"][stage] = max([m.get("peak_rss_mb") or 0 for m in ms] or [0])
    out["keep_normalize"] = round(text_in["minhash"] / max(text_in["normalize"], 1), 4)
    out["keep_dedup"] = round(text_in["release-scatter"] / max(text_in["dedup"], 1), 4)
    out["bytes_per_doc"] = round(text_in["minhash"] / max(kept_docs, 1), 1)
    out["bytes_per_token"] = round(text_in["tokenize"] / max(tokens, 1), 3)
    out["text_per_file_byte"] = dict(TEXT_PER_FILE_BYTE)
    return out


def read_rates(path: str) -> dict:
    """Rates saved by `plan --json` (its "rates") or `make bench` (results.json: its end_to_end stages)."""
    try:
        data = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        raise SlimPajamaError(f"--rates {path}: no such file") from None
    except ValueError as e:
        raise SlimPajamaError(f"--rates {path}: not JSON ({e})") from None
    if isinstance(data.get("rates"), dict):
        return data["rates"]
    e2e = (data.get("end_to_end") or {}).get("real_text") or data.get("end_to_end")
    if not e2e or "stages" not in e2e:
        raise SlimPajamaError(f"--rates {path}: neither a `plan --json` output nor make bench's results.json")
    st = e2e["stages"]
    rate = {s: st.get(s, st.get("pack", {})).get("mb_per_s_per_core", 0) for s in STAGES}
    pack = data.get("pack_parallel") or {}
    if pack.get("plan_seconds"):  # the pack plan measured on gigabytes of tokens, not on a slice's milliseconds
        tokens = pack["gb_tokens"] * 1e9 / 2  # uint16
        rate["pack-plan"] = round(tokens * e2e["bytes_per_token"] / 1e6 / pack["plan_seconds"], 1)
    return {"mb_per_s_per_core": rate, "peak_rss_mb": {s: st.get(s, {}).get("peak_rss_mb_per_task", 0)
                                                       for s in STAGES},
            "keep_normalize": st["minhash"]["text_mb_in"] / st["normalize"]["text_mb_in"],
            "keep_dedup": st["release-scatter"]["text_mb_in"] / st["dedup"]["text_mb_in"],
            "bytes_per_doc": st["normalize"]["text_mb_in"] * 1e6 / max(e2e.get("docs", 1), 1),
            "bytes_per_token": e2e["bytes_per_token"], "text_per_file_byte": dict(TEXT_PER_FILE_BYTE)}


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Settings:
    cores: int
    task_bytes: int = defaults.TASK_BYTES
    bucket_bytes: int = defaults.BUCKET_BYTES
    docs_per_file: int = defaults.DOCS_PER_FILE
    layouts: int = 1  # packed layouts (BTLM: 2k and 8k)


def schedule(tasks: list[float], cores: int) -> float:
    """The wall time of `tasks` (seconds each) on `cores`, longest first onto the least loaded core."""
    loads = [0.0] * min(cores, max(len(tasks), 1))
    for t in sorted(tasks, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + t)
    return max(loads)


def _parts(text: float, task_text: float) -> list[float]:
    n = max(1, math.ceil(text / task_text)) if task_text else 1
    return [text / n] * n


def model(corpus: Corpus, rates: dict, s: Settings) -> dict:
    """Per stage: text in, tasks, core-hours, longest task, wall at `s.cores`; totals; disk and memory."""
    ratio = rates.get("text_per_file_byte", TEXT_PER_FILE_BYTE)
    tb = s.task_bytes
    norm_tasks = []
    for rel, size in corpus.files:
        kind = _kind(rel)
        text = size * ratio.get(kind, TEXT_PER_FILE_BYTE[kind])
        splittable = kind != "compressed" and tb and size > tb
        norm_tasks += _parts(text, tb * ratio.get(kind, 1.0)) if splittable else [text]
    keep_n, keep_d = rates["keep_normalize"], rates["keep_dedup"]
    shards = [t * keep_n for t in norm_tasks]  # one normalized shard per normalize task
    dedup_tasks = [p for t in shards for p in _parts(t, tb)] if tb else shards
    text_n, text_d = sum(shards), sum(shards) * keep_d
    scatter_tasks = [t * keep_d for t in dedup_tasks]
    buckets = max(1, math.ceil(text_d / s.bucket_bytes))
    file_text = s.docs_per_file * rates["bytes_per_doc"]
    tokens = text_d / rates["bytes_per_token"]
    token_bytes = tokens * 2
    pack_tasks = _parts(text_d, tb / 2 * rates["bytes_per_token"]) if tb else [text_d]
    docs = text_n / rates["bytes_per_doc"]
    bands = defaults.BANDS
    lsh_parts = bands * max(1, 2 ** math.ceil(math.log2(max(1, docs * 48 / defaults.PARTITION_BYTES))))
    tasks = {"normalize": norm_tasks, "minhash": dedup_tasks, "lsh": [text_n / lsh_parts] * lsh_parts,
             "components": [text_n], "dedup": dedup_tasks, "release-scatter": scatter_tasks,
             "release-shuffle": [text_d / buckets] * buckets, "tokenize": _parts(text_d, file_text),
             "pack-plan": [text_d] * s.layouts, "pack": pack_tasks * s.layouts}
    stages, total = {}, {"core_hours": 0.0, "wall": 0.0}
    for stage in STAGES:
        rate = max(rates["mb_per_s_per_core"].get(stage, 0), 1e-6) * 1e6
        secs = [t / rate for t in tasks[stage]]
        wall = schedule(secs, s.cores) + rates.get("driver_seconds_per_stage", 0.0)
        stages[stage] = {"text_bytes_in": round(sum(tasks[stage]) / (s.layouts if stage.startswith("pack") else 1)),
                         "tasks": len(secs), "core_hours": round(sum(secs) / 3600, 6),
                         "longest_task": round(max(secs), 1), "wall": round(wall, 1),
                         "peak_rss_mb_per_task": rates.get("peak_rss_mb", {}).get(stage)}
        total["core_hours"] += sum(secs) / 3600
        total["wall"] += wall
    total = {"core_hours": round(total["core_hours"], 2), "wall": round(total["wall"], 1),
             "longest_task": max(v["longest_task"] for v in stages.values())}
    return {"cores": s.cores, "files": len(corpus.files), "file_bytes": sum(n for _, n in corpus.files),
            "text_bytes": round(sum(norm_tasks)), "documents": round(docs), "tokens": round(tokens),
            "stages": stages, "total": total,
            "disk": {"minhash_signatures": round(docs * MINHASH_BYTES_PER_DOC), "token_cache": round(token_bytes),
                     "packed_shards": round(token_bytes * s.layouts)},
            # every removed document is in a cluster, and so is each cluster's kept root (at most one per removed)
            "components_node_memory": round(docs * (PARENT_BYTES + CLUSTER_BYTES * min(1.0, 2 * (1 - keep_d)))),
            "settings": {"task_bytes": tb, "bucket_bytes": s.bucket_bytes, "docs_per_file": s.docs_per_file,
                         "layouts": s.layouts}}
