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

import io
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
from slimpajama.io.spans import part_bytes
from slimpajama.pipelines import registry
from slimpajama.pipelines.markers import totals
from slimpajama.tools.schedule import Tasks, schedule

# the stages a run's markers name (the registry's, and the sub-stages of dedup, release and shards), in order
NORMALIZE, DEDUP, SHUFFLE, TOKENIZE, PACK = (s.name for s in (registry.NORMALIZE, registry.DEDUP, registry.RELEASE,
                                                              registry.TOKENIZE, registry.PACK))
STAGES = (NORMALIZE, "minhash", "lsh", "components", DEDUP, "index", "release-scatter", SHUFFLE, TOKENIZE, "pack-plan",
          PACK)
# rates saved before a stage existed: it takes a stage with the same work's (the index sorts each band x key
# range's keys, as LSH does)
STANDS_IN = {"index": "lsh"}
# components: a parent per document (4 bytes) and member and root (8 + 8) per document in a cluster of 2+; 5.9
# bytes per document measured at 1e8 documents with 5% copies (bench_dedup --lsh-docs)
PARENT_BYTES, CLUSTER_BYTES = 4, 16
# pack-plan: a task streams its documents (50-100 MB over the process at 1e7-3e7) and the split's order task
# shuffles the row order in its file: 8 bytes per row of page cache, rows counted at seq 2048 (the most rows)
PLAN_TASK_BYTES, PLAN_ORDER_BYTES_PER_ROW, PLAN_ROWS_SEQ = 250e6, 8, 2048
MINHASH_BYTES_PER_DOC = 584  # signatures 512 + band keys 72 (deletable after a complete dedup)
# text bytes per byte of a file, where no file of the kind was read whole: RedPajama's plain JSON lines (the text
# and a small meta) and its Common Crawl .jsonl.zst (about 5 GB of text per 1.4 GB file)
TEXT_PER_FILE_BYTE = {"plain": 0.95, "compressed": 3.6, "parquet": 3.5}
# documents per second per core of the per-document stages where no run big enough to time them is at hand
# (README: components 3.3 s at 1e8 documents; the concat plan of 8 GB of tokens, 2.4M documents, in 0.25-0.28 s)
DOCS_PER_S = {"components": 30_000_000, "pack-plan": 9_000_000}
BUILT_IN = "built in (make bench on the 2-core reference machine)"


@dataclass(frozen=True)
class Corpus:
    files: list[tuple[str, int]]  # (relative path, size in bytes)


def is_listing(path: str) -> bool:
    """A file that lists a corpus (not a corpus file, not a folder)."""
    return storage.file_size(path) is not None and not path.lower().endswith(
        (".jsonl", ".json", ".parquet", ".zst", ".zstd", ".gz", ".bz2", ".xz"))


# The listing shapes accepted, each matched whole: a line of any other shape is an error (a size is never guessed
# from digits somewhere in a line). Each gives (size, path); the most specific first.
LISTING_LINE = [re.compile(p) for p in (
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\s+(?P<size>\d+)\s+(?P<path>\S.*?)$",  # aws s3 ls --recursive
    r"^(?P<size>\d+)\s+\d{4}-\d{2}-\d{2}T[\d:.]+Z\s+(?P<path>\S.*?)$",  # gsutil ls -l
    r"^-[-rwxsStT]{9}[.+@]?\s+\d+\s+\S+\s+\S+\s+(?P<size>\d+)\s+\w{3}\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4})\s+"
    r"(?P<path>\S.*?)$",  # ls -l (a plain file)
    # find -printf '%s %p\n', or du -ab (not a human-readable size: `12 KiB a.jsonl` is no path "KiB a.jsonl")
    r"^(?P<size>\d+)\s+(?!(?:[kKMGTPE]i?B|B|bytes?)\s)(?P<path>\S.*?)$",
)]
# lines that list no file: aws's folders and --summarize totals, gsutil's TOTAL, ls -l's total and its folders
LISTING_SKIP = re.compile(r"^(PRE \S.*|Total (Objects|Size): .*|TOTAL: .*|total \d+|[dlcbps][-rwxsStT]{9}.*)$")
LISTING_SHAPES = ("'<size> <path>' (find -printf '%s %p\\n'), `aws s3 ls --recursive`, `gsutil ls -l` or `ls -l`")


def parse_listing_line(line: str) -> tuple[int, str] | None:
    """(size, path) of one listing line; None for a line that lists no file; SlimPajamaError for any other."""
    text = line.strip()
    if not text or text.startswith("#") or LISTING_SKIP.match(text):
        return None
    for shape in LISTING_LINE:
        m = shape.match(text)
        if m:
            return int(m.group("size")), m.group("path")
    raise SlimPajamaError(f"not a listing line: {text[:80]!r}; each line must be {LISTING_SHAPES}, the size a "
                          "non-negative whole number of bytes")


def list_corpus(path: str) -> Corpus:
    """The corpus files under a folder or prefix, or those a listing file names (`LISTING_LINE`'s shapes)."""
    from slimpajama.io.discover import discover, is_corpus_file

    if is_listing(path):
        files = []
        with storage.open_input(path) as raw_file:
            for no, line in enumerate(io.TextIOWrapper(io.BufferedReader(raw_file), "utf-8", "replace"), 1):
                try:
                    entry = parse_listing_line(line)
                except SlimPajamaError as e:
                    raise SlimPajamaError(f"{path}, line {no}: {e}") from None
                if entry and is_corpus_file(entry[1]):
                    files.append((entry[1], entry[0]))
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
        rates["docs_per_s"] = time_document_stages(rates["bytes_per_doc"] / rates["bytes_per_token"], tmp)
    mb = rates["calibration"]["text_bytes"] / 1e6
    rates["sources"] = {**{s: f"a calibration slice of {mb:.1f} MB" for s in STAGES},
                        **{s: f"timed on {CALIBRATION_DOCS / 1e6:g}M generated documents" for s in rates["docs_per_s"]}}
    return rates


CALIBRATION_DOCS = 10_000_000


def time_document_stages(tokens_per_doc: float, tmp: str, docs: int = CALIBRATION_DOCS) -> dict:
    """Documents per second of the two stages whose work is per document, not per byte: components (the
    union-find) over `docs` documents with 5% copies in every band, and a split's concat pack plan over `docs`
    documents' lengths. A calibration slice holds too few documents to time them (sub-millisecond runs, mostly
    fixed cost), so each runs its real stage on generated input of that size."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from slimpajama.io.discover import InputFile
    from slimpajama.pipelines.dedup import ComponentsStage
    from slimpajama.pipelines.packplan import OrderStage, PlanStage, plan_tasks
    from slimpajama.pipelines.stage import Task

    rng = np.random.default_rng(0)
    copies = np.flatnonzero(rng.random(docs) < 0.05).astype(np.uint32)
    edges = np.stack([rng.integers(0, docs, len(copies)).astype(np.uint32), copies], axis=1)
    edge_files = []
    for band in range(defaults.BANDS):
        path = os.path.join(tmp, f"edges-{band}.npy")
        np.save(path, edges)
        edge_files.append(InputFile(path, os.path.basename(path), os.path.getsize(path)))
    lens = rng.lognormal(np.log(max(tokens_per_doc, 2.0)) - 0.5, 1.0, docs).astype(np.int32).clip(1, None)
    doc_path = os.path.join(tmp, "lengths.docs.parquet")
    pq.write_table(pa.table({"source": pa.array(["c4", "cc", "wiki", "book"] * (docs // 4) + ["c4"] * (docs % 4)),
                             "tokens": lens}), doc_path)
    doc_file = InputFile(doc_path, "train/lengths.docs.parquet", os.path.getsize(doc_path))
    tokens_file = InputFile(doc_path, "train/lengths.tokens.bin", int(lens.sum()) * 2)  # the plan reads its size
    runs = {"components": lambda out: ComponentsStage().run_task(Task("c", tuple(edge_files), {"docs": docs}),
                                                                 out),
            "pack-plan": lambda out: plan_concat(out)}

    def plan_concat(out):  # the split's plan task, then its order's
        stage = PlanStage(2048, "concat", defaults.PACK_RANGE, 0)
        (task,), _ = plan_tasks(Task("train", (), {"cache": {"eos": 0, "dtype": "uint16"}},
                                     side={"docs": (doc_file,), "tokens": (tokens_file,)}), stage)
        rows = stage.run_task(task, out).extra["rows"]
        OrderStage(stage).run_task(Task("train", (), {"rows": rows}), out)

    rates = {}
    for stage, run in runs.items():
        for attempt in range(2):  # the faster of two: the first pays the compiled kernels' loading
            out = os.path.join(tmp, f"timed-{stage}-{attempt}")
            os.makedirs(out)
            t = time.perf_counter()
            run(out)
            rates[stage] = max(rates.get(stage, 0), round(docs / max(time.perf_counter() - t, 1e-6)))
    return rates


def _kind(rel: str) -> str:
    low = rel.lower()
    return "parquet" if low.endswith(".parquet") else "plain" if low.endswith((".jsonl", ".json")) else "compressed"


def stage_text_in(by_stage: dict[str, list[dict]]) -> dict[str, int]:
    """Text bytes each stage of a run read, from its task markers (`stage_markers`): a stage's ledgers, or, for the
    stages without a document ledger, those of the stage whose documents they work on."""
    text_in = {s: sum(totals(m)["bytes_in"] for m in ms) for s, ms in by_stage.items()}
    text_in["lsh"] = text_in["components"] = text_in["index"] = text_in["minhash"]
    text_in[SHUFFLE] = text_in["release-scatter"]
    text_in[PACK] = text_in["pack-plan"] = text_in["pack-order"] = text_in[TOKENIZE]
    return text_in


def rates_from_markers(by_stage: dict[str, list[dict]]) -> dict:
    """MB/s of text per core of each stage (its text in / the summed seconds of its tasks), what the filter and
    dedup keep, document and token sizes, and each stage's peak RSS per task."""
    text_in = stage_text_in(by_stage)
    tokens = sum(m["extra"]["tokens"] for m in by_stage[TOKENIZE])
    kept_docs = sum(totals(m)["docs_out"] for m in by_stage[NORMALIZE])
    out = {"mb_per_s_per_core": {}, "peak_rss_mb": {}}
    for stage in STAGES:
        ms = by_stage.get(stage, [])
        secs = max(sum(m["seconds"] for m in ms), 1e-3)
        out["mb_per_s_per_core"][stage] = round(text_in[stage] / 1e6 / secs, 3)
        out["peak_rss_mb"][stage] = max([m.get("peak_rss_mb") or 0 for m in ms] or [0])
    out["keep_normalize"] = round(text_in["minhash"] / max(text_in[NORMALIZE], 1), 4)
    out["keep_dedup"] = round(text_in["release-scatter"] / max(text_in[DEDUP], 1), 4)
    out["bytes_per_doc"] = round(text_in["minhash"] / max(kept_docs, 1), 1)
    out["bytes_per_token"] = round(text_in[TOKENIZE] / max(tokens, 1), 3)
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
    if isinstance(data.get("rates"), dict):  # an earlier plan's: each rate keeps where that plan took it from
        rates = data["rates"]
        before = rates.get("sources", {})
        rates["sources"] = {s: before.get(s) or (BUILT_IN if s in DOCS_PER_S and s not in rates.get("docs_per_s", {})
                                                 else "an earlier plan") for s in STAGES}
        rates["from"] = path
        return _stand_ins(rates)
    e2e = (data.get("end_to_end") or {}).get("real_text") or data.get("end_to_end")
    if not e2e or "stages" not in e2e:
        raise SlimPajamaError(f"--rates {path}: neither a `plan --json` output nor make bench's results.json")
    st = e2e["stages"]
    rate = {s: st.get(s, {}).get("mb_per_s_per_core", 0) for s in STAGES}
    sources = {s: "make bench's end-to-end run" for s in STAGES}
    docs_per_s = {}
    # the per-document stages from make bench's runs big enough to time, not from the end-to-end's milliseconds
    pack = data.get("pack_parallel") or {}
    if pack.get("plan_seconds") and pack.get("plan_docs"):
        docs_per_s["pack-plan"] = round(pack["plan_docs"] / pack["plan_seconds"])
        sources["pack-plan"] = f"make bench's pack_parallel ({pack['plan_docs'] / 1e6:.3g}M documents)"
    lsh = (data.get(DEDUP) or {}).get("lsh_components_memory") or {}
    if lsh.get("components_seconds") and lsh.get("docs"):
        docs_per_s["components"] = round(lsh["docs"] / lsh["components_seconds"])
        sources["components"] = f"make bench's components run ({lsh['docs'] / 1e6:.3g}M documents)"
    for stage in ("components", "pack-plan"):
        if stage not in docs_per_s:
            docs_per_s[stage] = DOCS_PER_S[stage]
            sources[stage] = BUILT_IN
    return _stand_ins({"mb_per_s_per_core": rate, "docs_per_s": docs_per_s, "sources": sources, "from": path,
            "peak_rss_mb": {s: st.get(s, {}).get("peak_rss_mb_per_task", 0) for s in STAGES},
            "keep_normalize": st["minhash"]["text_mb_in"] / st[NORMALIZE]["text_mb_in"],
            "keep_dedup": st["release-scatter"]["text_mb_in"] / st[DEDUP]["text_mb_in"],
            "bytes_per_doc": st[NORMALIZE]["text_mb_in"] * 1e6 / max(e2e.get("docs", 1), 1),
            "bytes_per_token": e2e["bytes_per_token"], "text_per_file_byte": dict(TEXT_PER_FILE_BYTE)})


def _stand_ins(rates: dict) -> dict:
    """A stage the saved rates lack (they predate it) says whose rate the model gives it (`STANDS_IN`)."""
    for stage, other in STANDS_IN.items():
        if not rates["mb_per_s_per_core"].get(stage):
            rates["mb_per_s_per_core"][stage] = rates["mb_per_s_per_core"].get(other, 0)
            rates.setdefault("peak_rss_mb", {})[stage] = rates.get("peak_rss_mb", {}).get(other, 0)
            rates["sources"][stage] = f"{other}'s rate (these rates predate the {stage} stage)"
    return rates


# ------------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Settings:
    cores: int
    task_bytes: int = defaults.TASK_BYTES
    bucket_bytes: int = defaults.BUCKET_BYTES
    docs_per_file: int = defaults.DOCS_PER_FILE
    layouts: int = 1  # packed layouts (BTLM: 2k and 8k)


def model(corpus: Corpus, rates: dict, s: Settings) -> dict:
    """Per stage: text in, tasks, core-hours, longest task, wall at `s.cores`; totals; disk and memory."""
    ratio = rates.get("text_per_file_byte", TEXT_PER_FILE_BYTE)
    tb = part_bytes(sum(size for _, size in corpus.files), s.task_bytes)
    norm_tasks = Tasks()  # text bytes each
    for rel, size in corpus.files:
        kind = _kind(rel)
        text = size * ratio.get(kind, TEXT_PER_FILE_BYTE[kind])
        splittable = kind != "compressed" and tb and size > tb
        norm_tasks.extend(Tasks.parts(text, tb * ratio.get(kind, 1.0)) if splittable else Tasks([(text, 1)]))
    keep_n, keep_d = rates["keep_normalize"], rates["keep_dedup"]
    shards = norm_tasks.scaled(keep_n)  # one normalized shard per normalize task
    dedup_tasks = shards.map(lambda t: Tasks.parts(t, tb)) if tb else shards
    text_n = shards.total()
    text_d = text_n * keep_d
    buckets = max(1, math.ceil(text_d / s.bucket_bytes))
    file_text = s.docs_per_file * rates["bytes_per_doc"]
    tokens = text_d / rates["bytes_per_token"]
    token_bytes = tokens * 2
    pack_tasks = Tasks.parts(text_d, tb / 2 * rates["bytes_per_token"]) if tb else Tasks([(text_d, 1)])
    docs = text_n / rates["bytes_per_doc"]
    lsh_parts = defaults.BANDS * max(1, 2 ** math.ceil(math.log2(max(1, docs * 48 / defaults.PARTITION_BYTES))))
    tasks = {NORMALIZE: norm_tasks, "minhash": dedup_tasks, "lsh": Tasks([(text_n / lsh_parts, lsh_parts)]),
             "components": Tasks([(text_n, 1)]), DEDUP: dedup_tasks,
             "index": Tasks([(text_n / lsh_parts, lsh_parts)]), "release-scatter": dedup_tasks.scaled(keep_d),
             SHUFFLE: Tasks([(text_d / buckets, buckets)]), TOKENIZE: Tasks.parts(text_d, file_text),
             "pack-plan": Tasks([(text_d, s.layouts)]), PACK: pack_tasks.map(lambda t: Tasks([(t, s.layouts)]))}
    # components and the pack plan work per document (a union-find over all of them; every length read and the
    # row order drawn): their rates are documents per second, from work big enough to time
    docs_of = {"components": docs, "pack-plan": docs * keep_d}
    stages, total = {}, {"core_hours": 0.0, "wall": 0.0}
    for stage in STAGES:
        if stage in docs_of:
            rate = max(rates.get("docs_per_s", {}).get(stage, DOCS_PER_S[stage]), 1e-6)
            secs = Tasks([(docs_of[stage] / rate, len(tasks[stage]))])
        else:
            secs = tasks[stage].scaled(1 / (max(rates["mb_per_s_per_core"].get(stage, 0), 1e-6) * 1e6))
        wall = schedule(secs, s.cores) + rates.get("driver_seconds_per_stage", 0.0)
        stages[stage] = {"text_bytes_in": round(tasks[stage].total() / (s.layouts if stage.startswith("pack") else 1)),
                         "tasks": len(secs), "core_hours": round(secs.total() / 3600, 6),
                         "longest_task": round(secs.longest(), 1), "wall": round(wall, 1),
                         "peak_rss_mb_per_task": rates.get("peak_rss_mb", {}).get(stage)}
        total["core_hours"] += secs.total() / 3600
        total["wall"] += wall
    total = {"core_hours": round(total["core_hours"], 2), "wall": round(total["wall"], 1),
             "longest_task": max(v["longest_task"] for v in stages.values())}
    return {"cores": s.cores, "files": len(corpus.files), "file_bytes": sum(n for _, n in corpus.files),
            "text_bytes": round(norm_tasks.total()), "documents": round(docs), "tokens": round(tokens),
            "stages": stages, "total": total,
            "disk": {"minhash_signatures": round(docs * MINHASH_BYTES_PER_DOC), "token_cache": round(token_bytes),
                     "packed_shards": round(token_bytes * s.layouts)},
            # every removed document is in a cluster, and so is each cluster's kept root (at most one per removed)
            "components_node_memory": round(docs * (PARENT_BYTES + CLUSTER_BYTES * min(1.0, 2 * (1 - keep_d)))),
            "pack_plan_node_memory": round(PLAN_TASK_BYTES + tokens / PLAN_ROWS_SEQ * PLAN_ORDER_BYTES_PER_ROW),
            "settings": {"task_bytes": tb, "bucket_bytes": s.bucket_bytes, "docs_per_file": s.docs_per_file,
                         "layouts": s.layouts}}
