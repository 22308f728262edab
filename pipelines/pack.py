"""Pack a token cache into training shards: `<shards>/seq<N>[-<a>-<b>][-bestfit][-<tokenizer>]/<split>/` part-NNNNN.arrow (Arrow IPC
stream) and .slimpajama-index.json (packers/format.py), rows in a seeded global shuffle. First the plan
(pipelines/packplan.py: rows from the documents' lengths, `_plan/`), then pack tasks over ranges of each split's
files (as many as --task-bytes makes), which read the tokens; the driver then writes each split's index from their
files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from slimpajama.core import defaults
from slimpajama.core.ledger import Ledger
from slimpajama.core.release import SPLITS
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.writers import file_digest, write_bytes_atomic
from slimpajama.packers.format import INDEX_FILE, REBUILD_FILE, write_index, write_rows
from slimpajama.packers.pack import BestFitPlan, ChunkedPlan, ConcatPlan, TokenStream
from slimpajama.tokenize.encodings import encoding_name, get_encoding

from . import registry
from .markers import STATE_DIR, output_file
from .packplan import PlanStage, run_plan
from .runner import Progress, StageReport, run_stage
from .stage import Stage, Task, TaskResult
from .tokens import cache_files, cache_tokenizer_file, split_of_key, token_cache

BATCH_ROWS = 1024  # rows per record batch in packed files; files hold a multiple of it
PLAN_DIR = "_plan"  # <shards>/_plan: each split's row plan, what the pack tasks share


class PackStage(Stage):
    """One task per range of a split's shard files: the rows of its files, gathered from the token cache by the
    split's plan, written as Arrow IPC files. A file's rows depend only on its number, so the files are the same
    bytes however they are divided among tasks."""

    name = registry.PACK.name
    keeps_ledger = False  # rows of tokens, not documents

    def __init__(self, seq: int, packing: str, range_: tuple[float, float], seed: int, file_bytes: int):
        self.plan_stage = PlanStage(seq, packing, range_, seed)
        self.seq, self.packing, self.file_bytes = seq, packing, file_bytes

    def fingerprint(self) -> dict:
        return {**self.plan_stage.fingerprint(), "stage": self.name, "file_bytes": self.file_bytes}

    def rows_per_file(self, dtype: np.dtype) -> int:
        return max(BATCH_ROWS, self.file_bytes // ((self.seq + 1) * dtype.itemsize) // BATCH_ROWS * BATCH_ROWS)

    def plan_of(self, files, pad_id: int, t0: int):
        """-> (the split's row order, its plan) from its plan files (run_plan's: the order, then each plan task's)."""
        order, parts = np.load(files[0].local(), mmap_mode="r"), {}
        for f in files[1:]:  # <split>.<part>.<array>.npy
            part, array = f.rel.split(".")[-3:-1]
            parts.setdefault(part, {})[array] = np.load(f.local(), mmap_mode="r")
        parts = [parts[k] for k in sorted(parts)]
        if self.packing == "concat":
            (part,) = parts
            return order, ConcatPlan(t0=t0, seq=self.seq, rows=len(order), doc_starts=part["doc_starts"])
        chunks = [BestFitPlan(self.seq, a["piece_start"], a["piece_len"], a["row_ptr"], pad_id=pad_id) for a in parts]
        return order, ChunkedPlan(chunks)

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        p = task.params
        split, (k0, k1), cache = p["split"], p["files"], p["cache"]
        dtype = np.dtype(cache["dtype"])
        tokens = [np.memmap(f.local(), dtype=dtype, mode="r") if f.size else np.zeros(0, dtype)
                  for f in task.side["tokens"]]
        stream = TokenStream(tokens)
        order, plan = self.plan_of(task.side["plan"], cache["eos"], p["t0"])
        per_file = self.rows_per_file(dtype)
        files, padding_total = [], 0
        for k in range(k0, k1):
            ids = np.asarray(order[k * per_file: (k + 1) * per_file])
            toks, doc_lens, padding = plan.materialize(stream, ids)
            rel = f"{split}/part-{k:05d}.arrow"
            path = storage.join(out_dir, rel)
            write_rows(path, toks, doc_lens, padding, BATCH_ROWS)
            padding_total += int(padding.sum())
            files.append({"path": rel.rsplit("/", 1)[1], "rows": len(ids), "bytes": storage.file_size(path),
                          "sha256": file_digest(path)})
        return TaskResult(outputs=[f"{split}/{f['path']}" for f in files], ledger=Ledger(self.name),
                          extra={"files": files, "padding_tokens": padding_total})


def shards_dir_name(seq: int, range_: tuple[float, float], packing: str = "concat", encoding: str = "gpt2") -> str:
    """seq<N>[-<A>-<B>][-bestfit][-<tokenizer>]: BTLM's GPT-2 concat layouts keep their plain names, another
    packing or tokenizer its own folder (it never overwrites them). Fractions in decimals (0.000001, not 1e-06)."""
    def frac(x: float) -> str:
        return np.format_float_positional(x, trim="-")

    name = f"seq{seq}" if tuple(range_) == defaults.PACK_RANGE else f"seq{seq}-{frac(range_[0])}-{frac(range_[1])}"
    return name + ("" if packing == "concat" else f"-{packing}") + ("" if encoding == "gpt2" else f"-{encoding}")


log = logging.getLogger(__name__)
TOKENIZER_COPY = ".slimpajama-tokenizer"  # + .json / .model, in a split's folder beside its index


def _write_index(out: str, split: str, cache: dict, stage: PackStage, plan: dict, parts: list[dict],
                 fingerprint: str) -> dict:
    """A split's index from its plan and its pack tasks' files (in file order); -> the summary figures."""
    files = [f for part in parts for f in part["files"]]
    rows, width, n_docs = plan["rows"], stage.seq + 1, plan["docs"]
    padding = sum(part["padding_tokens"] for part in parts)
    index = {
        "split": split, "encoding": cache["encoding"], "tokenizer": cache["tokenizer"],
        "vocab_size": cache["vocab_size"], "eos_id": cache["eos"], "dtype": cache["dtype"], "seq_len": stage.seq,
        "packing": stage.packing, "range": plan["range"],
        "seed": stage.plan_stage.seed, "batch_rows": BATCH_ROWS, "rows": rows, "tokens": rows * width,
        "padding_tokens": padding, "padding_fraction": round(padding / max(rows * width, 1), 6),
        "docs": n_docs, "docs_cut": plan["docs_cut"], "docs_cut_fraction": round(plan["docs_cut"] / max(n_docs, 1), 6),
        "concat_comparison": {"padding_fraction": 0.0,
                              "docs_cut_fraction": round(plan["concat_cut"] / max(n_docs, 1), 6)},
        "cache_tokens": plan["cache_tokens"], "range_tokens": plan["range_tokens"],
        "tokens_per_source": plan["tokens_per_source"], "input_fingerprint": fingerprint, "files": files,
    }
    write_index(storage.join(out, split), index)
    return {"rows": rows, "padding_fraction": index["padding_fraction"], "files": len(files)}


def tokenizer_record(fp: dict) -> dict:
    """The index's `tokenizer`: tiktoken's encoding by name, or a model tokenizer's file (a hidden copy in the
    split's folder), SHA-256, EOS and BOS."""
    if "tokenizer" not in fp:
        return {"kind": "tiktoken", "name": encoding_name(fp["encoding"])}
    return {"kind": fp["tokenizer"], "name": fp["encoding"], "file": TOKENIZER_COPY + os.path.splitext(fp["file"])[1],
            "sha256": fp["sha256"], "eos_token": fp["eos_token"], "bos_id": fp["bos"], "bos_token": fp["bos_token"]}


def run_shards(cache_dir: str, out_root: str, seq: int, *, packing: str = "concat",
               range_: tuple[float, float] = defaults.PACK_RANGE, seed: int = 0,
               file_bytes: int = defaults.SHARD_FILE_BYTES, out_dir: str | None = None, workers: int | None = None,
               ray_address: str | None = None, progress: Progress | None = None, verify_outputs: bool = False,
               encoding: str | None = None, task_bytes: int = defaults.TASK_BYTES) -> StageReport:
    """`task_bytes`: rows per pack task, in bytes of shard files (at least one file; 0: one task per split)."""
    cache_dir = token_cache(cache_dir, encoding)
    manifest, records, keys = cache_files(cache_dir)
    fp = manifest["fingerprint"]
    if not manifest["files"]:
        raise SlimPajamaError(f"the token cache at {cache_dir} is empty")
    # a model tokenizer's cache holds its vocabulary size and its file; a tiktoken one names its encoding
    model_file = cache_tokenizer_file(cache_dir, fp) if "tokenizer" in fp else None
    vocab = fp["vocab_size"] if model_file is not None else get_encoding(fp["encoding"]).n_vocab
    # the encoding as every command names it (gpt2, not tiktoken's r50k_base, which the cache's fingerprint holds)
    cache = {"encoding": fp["encoding"] if model_file is not None else encoding_name(fp["encoding"]),
             "dtype": fp["dtype"], "eos": fp["eos"], "vocab_size": vocab, "tokenizer": tokenizer_record(fp)}
    plan_tasks = []
    for split in SPLITS:
        files = {kind: tuple(output_file(cache_dir, k + suffix, records[k + suffix])
                             for k in keys if split_of_key(k) == split)
                 for kind, suffix in (("tokens", ".tokens.bin"), ("docs", ".docs.parquet"))}
        if not files["tokens"]:
            continue
        # the split's identity: the cache's fingerprint and every file it reads (as side inputs, named)
        fingerprint = hashlib.sha256(json.dumps(
            [fp, [f.identity() for pair in zip(files["tokens"], files["docs"], strict=True) for f in pair]]
        ).encode()).hexdigest()
        plan_tasks.append(Task(split, (), {"cache": cache, "fingerprint": fingerprint}, side=files))
    name = shards_dir_name(seq, range_, packing, cache["encoding"])
    out = out_dir or storage.join(out_root, name)
    run = dict(workers=workers, ray_address=ray_address, progress=progress)
    stage = PackStage(seq, packing, range_, seed, file_bytes)
    plans, report_plan = run_plan(stage.plan_stage, plan_tasks, storage.join(out, PLAN_DIR),
                                  verify_outputs=verify_outputs, **run)
    per_file = stage.rows_per_file(np.dtype(cache["dtype"]))
    batch_bytes = BATCH_ROWS * (seq + 1) * np.dtype(cache["dtype"]).itemsize
    if file_bytes < batch_bytes:  # a file holds whole record batches: said once, not silently raised
        log.warning(f"--file-bytes {file_bytes:,} is below one record batch of {BATCH_ROWS:,} rows x {seq + 1:,} "
                    f"tokens ({batch_bytes:,} bytes at {cache['dtype']}): each shard file holds {BATCH_ROWS:,} rows")
    files_per_task = max(1, (task_bytes or 0) // (per_file * (seq + 1) * np.dtype(cache["dtype"]).itemsize))
    tasks = []
    for t in plan_tasks:
        figures, plan = plans[t.key]
        n_files = -(-figures["rows"] // per_file)
        step = files_per_task if task_bytes else max(n_files, 1)
        for k in range(0, n_files, step):
            part = [k, min(n_files, k + step)]
            tasks.append(Task(f"{t.key}/part-{part[0]:05d}", (),
                              {**t.params, "split": t.key, "files": part, "t0": figures["t0"]},
                              side={"tokens": t.side["tokens"], "plan": plan}))
    for t in plan_tasks:  # an index says its split is complete: none while its files are rewritten
        storage.remove(storage.join(out, t.key, INDEX_FILE))
    report = run_stage(stage, tasks, out, verify_outputs=verify_outputs, **run)
    splits = {}
    for t in plan_tasks:
        parts = [pm["extra"] for pt, pm in zip(tasks, report.markers, strict=True) if pt.params["split"] == t.key]
        if model_file is not None:  # the split carries its tokenizer: `verify` and trainers decode without the cache
            write_bytes_atomic(storage.join(out, t.key, cache["tokenizer"]["file"]), model_file)
        splits[t.key] = _write_index(out, t.key, cache, stage, plans[t.key][0], parts, t.params["fingerprint"])
    report.extra = {"splits": splits, "rows": {s: v["rows"] for s, v in splits.items()}}
    report.seconds += report_plan.seconds
    for split, rows in report.extra["rows"].items():
        if not rows:
            log.warning(f"{name}/{split}: 0 rows (its tokens are fewer than one row of "
                        f"{seq + 1:,}): a larger --holdout at release, or a shorter --seq, gives it rows")
    rebuild = {"cache": cache_dir if storage.is_remote(cache_dir) else os.path.abspath(cache_dir),
               "args": f"--seq {seq} --packing {packing} --range {range_[0]:g}:{range_[1]:g} --seed {seed} "
                       f"--file-bytes {file_bytes} --task-bytes {task_bytes}"}
    assert REBUILD_FILE.startswith(STATE_DIR + "/")
    write_bytes_atomic(storage.join(out, REBUILD_FILE), json.dumps(rebuild).encode())
    return report
