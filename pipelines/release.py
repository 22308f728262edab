"""The release: deduplicated shards -> SlimPajama's layout, shuffled, with a decontaminated holdout.

  scatter (per input shard)     every document gets a split (train / validation / test), a number of copies
                                (sampling weights) and a shuffle bucket per copy; written as one Arrow IPC file per
                                shard whose record batches each hold one (split, bucket), plus the length and SHA-256
                                of the shard's holdout texts. Memory: one input batch.
  shuffle (per split x bucket)  gathers its bucket's batches from every scatter file (random access), drops train
                                documents whose text equals a holdout text (same length, then same SHA-256), shuffles
                                the bucket in memory and writes its range of release files. Memory: one bucket.
Then `<out>/ledger.json` (in = train + validation + test + decontaminated + sampled_out, per source) and
`<out>/manifest.json` (counts, bytes, per-source proportions, config, SHA-256 of every file).
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from slimpajama.core import defaults
from slimpajama.core.ledger import Ledger, sizes_by_source
from slimpajama.core.release import (
    SPLITS,
    ReleaseConfig,
    bucket_of,
    bucket_order,
    copies_of,
    file_path,
    holdout_keys,
    split_of,
)
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.discover import InputFile, discover
from slimpajama.io.writers import (
    ReleaseChunkWriter,
    atomic_path,
    file_digest,
    save_npy_atomic,
    write_bytes_atomic,
)

from . import lock, registry
from .markers import output_file, previous_run, run_key, save_run
from .paths import inputs_text, require_inputs
from .runner import Progress, StageReport, run_stage
from .split import split_tasks
from .stage import Stage, Task, TaskResult

DECONTAMINATED = registry.DECONTAMINATED.reason
SAMPLED_OUT = registry.SAMPLED_OUT.reason
RUN_FILE = "_release_run.json"  # in <out>/_state: the run key and shuffle tasks of the last complete release
_SLICE_ROWS = 512  # rows of the shuffled bucket taken and written at a time
SCATTER_SCHEMA = pa.schema([("doc_id", pa.string()), ("source", pa.string()), ("text", pa.string()),
                            ("copy", pa.int32())])




class ScatterStage(Stage):
    name = "release-scatter"
    keeps_ledger = False

    def __init__(self, cfg: ReleaseConfig, buckets: dict[str, int]):
        self.cfg, self.buckets = cfg, buckets

    def fingerprint(self) -> dict:
        # format 2: holdout keys carry each text's length (release.holdout_keys)
        return {"stage": self.name, **self.cfg.to_dict(), "buckets": self.buckets, "format": 2}

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        ledger = Ledger(registry.RELEASE.ledger_name)
        tags, holdout = [], []
        counts: dict[str, list[int]] = {s: [0] * self.buckets[s] for s in SPLITS}
        rel = task.key + ".arrow"
        with atomic_path(storage.join(out_dir, rel)) as tmp, ipc.new_file(tmp, SCATTER_SCHEMA) as writer:
            for batch in self.documents(task):
                ledger.batch_in(batch)
                rows, copies, groups, held, sampled_out = [], [], [], [], []
                ids, sources = batch.column("doc_id").to_pylist(), batch.column("source").to_pylist()
                for i, (doc_id, source) in enumerate(zip(ids, sources, strict=True)):
                    split = split_of(doc_id, self.cfg)
                    n = 1 if split != "train" else copies_of(doc_id, source, self.cfg)
                    if n == 0:
                        sampled_out.append(i)
                    elif split != "train":
                        held.append(i)
                    for c in range(n):
                        rows.append(i)
                        copies.append(c)
                        groups.append(SPLITS.index(split) * (1 << 32) + bucket_of(doc_id, c, self.buckets[split],
                                                                                 self.cfg))
                if sampled_out:
                    mask = np.zeros(batch.num_rows, dtype=bool)
                    mask[sampled_out] = True
                    ledger.batch_dropped(batch, SAMPLED_OUT, where=mask)
                holdout.append(holdout_keys(batch.column("text").take(pa.array(held, pa.int64()))))
                # one take of the batch in (split, bucket) order (stable: rows keep their order in a group), then
                # one record batch per group
                groups_ = np.asarray(groups, dtype=np.int64)
                order = np.argsort(groups_, kind="stable")
                rows_ = np.asarray(rows, dtype=np.int64)[order]
                taken = batch.select(["doc_id", "source", "text"]).take(pa.array(rows_))
                copy = pa.array(np.asarray(copies, dtype=np.int32)[order])
                keys, starts = np.unique(groups_[order], return_index=True)
                ends = [*starts[1:].tolist(), len(order)] if len(starts) else []
                for g, lo, hi in zip(keys.tolist(), starts.tolist(), ends, strict=True):
                    s_, b_ = divmod(g, 1 << 32)
                    writer.write_batch(pa.record_batch([*taken.slice(lo, hi - lo).columns, copy.slice(lo, hi - lo)],
                                                       schema=SCATTER_SCHEMA))
                    tags.append((s_, b_))
                    counts[SPLITS[s_]][b_] += hi - lo
        save_npy_atomic(storage.join(out_dir, task.key + ".tags.npy"), np.array(tags, dtype=np.int32).reshape(-1, 2))
        save_npy_atomic(storage.join(out_dir, task.key + ".holdout.npy"),
                        np.concatenate(holdout) if holdout else np.zeros((0, 40), dtype=np.uint8))
        return TaskResult(outputs=[rel, task.key + ".tags.npy", task.key + ".holdout.npy"], ledger=ledger,
                          extra={"counts": counts})


class ShuffleStage(Stage):
    name = registry.RELEASE.name
    keeps_ledger = False
    documents_root = ""  # the release files

    def __init__(self, cfg: ReleaseConfig):
        self.cfg = cfg

    def fingerprint(self) -> dict:
        return {"stage": self.name, **self.cfg.to_dict()}

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        split, bucket = task.params["split"], task.params["bucket"]
        s = SPLITS.index(split)
        (holdout_file,) = task.side["holdout"]
        parts = []
        for arrow_file, tags_file in zip(task.side["scatter"], task.side["tags"], strict=True):
            tags = np.load(tags_file.local())
            wanted = np.flatnonzero((tags[:, 0] == s) & (tags[:, 1] == bucket)) if len(tags) else []
            if len(wanted):
                with pa.memory_map(arrow_file.local()) as source:
                    reader = ipc.open_file(source)
                    parts.extend(reader.get_batch(int(i)) for i in wanted)
        # one contiguous copy of the bucket (the batches are memory-mapped): a take over many chunks is 10x slower
        table = pa.Table.from_batches(parts, schema=SCATTER_SCHEMA).combine_chunks()
        del parts
        ledger = Ledger(registry.RELEASE.ledger_name)
        if split == "train" and table.num_rows:
            table = self._decontaminate(table, np.load(holdout_file.local()), ledger)
        for src, (d, b) in sizes_by_source(table, where=table["copy"].to_numpy() == 0).items():
            ledger.count_out(src, d, b)
        # the shuffled order is taken a slice at a time: one take of the whole bucket grows its output buffers
        # by reallocation into fresh memory, 4x the cost of these small takes, whose buffers the pool reuses
        order = bucket_order(table.num_rows, split, bucket, self.cfg)
        outputs, files = [], []
        n_files = task.params["files"]
        bounds = np.linspace(0, table.num_rows, n_files + 1).round().astype(int) if n_files else [0]
        for j in range(n_files):
            if bounds[j + 1] == bounds[j]:
                continue  # every document of this file was decontaminated
            rel = file_path(split, task.params["first_file"] + j, self.cfg)
            text_bytes, sources = 0, {}
            with ReleaseChunkWriter(storage.join(out_dir, rel)) as w:
                for lo in range(bounds[j], bounds[j + 1], _SLICE_ROWS):
                    part = table.take(pa.array(order[lo: min(lo + _SLICE_ROWS, bounds[j + 1])]))
                    w.write_batch(part)
                    for s_, (d, b) in sizes_by_source(part).items():
                        sources[s_] = sources.get(s_, 0) + d
                        text_bytes += b
            outputs.append(rel)
            files.append({"path": rel, "docs": int(bounds[j + 1] - bounds[j]),
                          "sha256": file_digest(storage.join(out_dir, rel)), "text_bytes": text_bytes,
                          "sources": dict(sorted(sources.items()))})
        return TaskResult(outputs=outputs, ledger=ledger, extra={"files": files, "docs": table.num_rows})

    @staticmethod
    def _decontaminate(table: pa.Table, holdout: np.ndarray, ledger: Ledger) -> pa.Table:
        if not len(holdout):
            return table
        held = {bytes(k) for k in holdout}  # the holdout is small (0.17% of documents)
        # only texts as long as a holdout text can equal one: the others are never hashed
        sizes = pc.binary_length(table["text"]).to_numpy(zero_copy_only=False).astype(np.int64)
        candidates = np.flatnonzero(np.isin(sizes, holdout[:, :8].copy().view("<i8").ravel()))
        keys = holdout_keys(table["text"].take(pa.array(candidates, pa.int64())))
        drop = np.zeros(table.num_rows, dtype=bool)
        drop[candidates[[bytes(k) in held for k in keys]]] = True
        if drop.any():
            ledger.batch_dropped(table, DECONTAMINATED, where=drop & (table["copy"].to_numpy() == 0))
            table = table.filter(pa.array(~drop))
        return table


def _check_weights(cfg: ReleaseConfig, files: list[InputFile]) -> None:
    """A weight for a source the input does not hold is a typo: named, with the sources there are."""
    if not cfg.weights:
        return
    present = set()
    for f in files:
        column = storage.open_parquet(f.path).read(columns=["source"]).column("source")
        present.update(pc.unique(column).to_pylist())
    unknown = sorted(set(cfg.weights) - present)
    if unknown:
        raise SlimPajamaError(f"--weights names {', '.join(unknown)}, not a source of this input (its sources: "
                              f"{', '.join(sorted(present))})")


def _text_bytes(files: list[InputFile]) -> int:
    total = 0
    for f in files:
        md = storage.open_parquet(f.path).metadata
        col = md.schema.to_arrow_schema().get_field_index("text")
        total += sum(md.row_group(g).column(col).total_uncompressed_size for g in range(md.num_row_groups))
    return total


def run_release(inputs, out_dir: str, cfg: ReleaseConfig | None = None, *, workers: int | None = None,
                ray_address: str | None = None, progress: Progress | None = None,
                task_bytes: int | None = defaults.TASK_BYTES) -> StageReport:
    """`task_bytes`: shards bigger than this are scattered by several tasks, runs of whole row groups (0: one
    each); the release never changes."""
    cfg = cfg or ReleaseConfig()
    require_inputs(inputs, registry.RELEASE.accepts, "release")
    files = [f for f in discover(inputs, out=out_dir) if f.is_parquet]
    if not files:
        raise SlimPajamaError(f"{inputs_text(inputs)} holds a raw corpus (JSON lines), not deduplicated documents: run "
                              "`slimpajama normalize` and `slimpajama dedup` on it first")
    with lock.hold(out_dir):
        return _release(files, out_dir, cfg, dict(workers=workers, ray_address=ray_address, progress=progress),
                        task_bytes)


def _release(files: list[InputFile], out_dir: str, cfg: ReleaseConfig, run: dict, task_bytes) -> StageReport:
    _check_weights(cfg, files)
    nbytes = _text_bytes(files)
    mean_weight = max([1.0, *cfg.weights.values()])
    buckets = {"train": max(1, math.ceil(nbytes * mean_weight / cfg.bucket_bytes)),
               "validation": max(1, math.ceil(nbytes * cfg.holdout / 2 / cfg.bucket_bytes)),
               "test": max(1, math.ceil(nbytes * cfg.holdout / 2 / cfg.bucket_bytes))}
    tasks = split_tasks(files, scatter_dir_of(out_dir), task_bytes, workers=run["workers"],
                        ray_address=run["ray_address"])
    key = run_key([f.identity() for f in files], cfg.to_dict(), buckets)
    stage = ShuffleStage(cfg)
    previous = previous_run(out_dir, RUN_FILE, key, stage, _shuffle_tasks)
    if previous is not None:
        # nothing upstream changed and every release file is intact: the scatter files are not needed (they
        # may be deleted)
        scatter, scatter_ledger = None, Ledger.from_dict(previous["scatter_ledger"])
        shuffle_tasks = _shuffle_tasks(previous)
    else:
        scatter, scatter_ledger, shuffle_tasks = _scatter(tasks, out_dir, cfg, buckets, key, run)
    shuffle = run_stage(stage, shuffle_tasks, out_dir, **run)
    save_run(out_dir, RUN_FILE, {"run_key": key, "shuffle": [[t.key, t.params] for t in shuffle_tasks],
                                 "scatter_ledger": scatter_ledger.to_dict()})

    ledger = Ledger.merged("release", [scatter_ledger, *(Ledger.from_dict(m["ledger"]) for m in shuffle.markers)])
    ledger.check_balanced()
    write_bytes_atomic(storage.join(out_dir, "ledger.json"), ledger.dumps().encode())
    manifest = _manifest(cfg, buckets, shuffle, ledger)
    write_bytes_atomic(storage.join(out_dir, "manifest.json"), json.dumps(manifest, indent=1, sort_keys=True).encode())
    report = StageReport("release", out_dir, ledger, len(tasks) + len(shuffle_tasks),
                         (scatter.skipped if scatter else len(tasks)) + shuffle.skipped, 0,
                         (scatter.seconds if scatter else 0.0) + shuffle.seconds,
                         removed=(scatter.removed if scatter else []) + shuffle.removed)
    report.extra = {k: manifest[k] for k in ("splits", "decontaminated")}
    return report


def _shuffle_tasks(state: dict) -> list[Task]:
    """The shuffle tasks a saved run state lists (their side inputs, the scatter files, are not needed to check
    that they are complete)."""
    return [Task(k, (), params) for k, params in state.get("shuffle", [])]


def scatter_dir_of(out_dir: str) -> str:
    """Where a release's intermediate scatter files go: `<parent>/work/release-<name>` (data/work/release-slimpajama
    for data/slimpajama), beside the release, so that its folder holds only what SlimPajama publishes (and what
    loads it: manifest.json, the ledger, _outputs.json, _state/), ready to push to the Hugging Face Hub."""
    name = out_dir.rstrip("/").rsplit("/", 1)[-1] if storage.is_remote(out_dir) else \
        os.path.basename(os.path.abspath(out_dir))
    return storage.join(storage.parent(out_dir), "work", f"release-{name}")


def _scatter(tasks, out_dir, cfg, buckets, key, run) -> tuple[StageReport, Ledger, list[Task]]:
    """Pass 1 -> (its report, its ledger, the shuffle tasks). A shuffle task's identity is its bucket and the run
    key (every input's digest, the settings): its scatter files are side inputs."""
    old = storage.join(out_dir, "_scatter")  # where releases before 0.2 kept them: no longer read
    if not storage.is_remote(out_dir) and os.path.isdir(os.path.join(old, "_state")):
        shutil.rmtree(old)
    scatter_dir = scatter_dir_of(out_dir)
    scatter = run_stage(ScatterStage(cfg, buckets), tasks, scatter_dir, **run)
    holdout = np.concatenate([np.load(scatter.output_file(t.key + ".holdout.npy").local()) for t in tasks])
    holdout = np.unique(holdout, axis=0) if len(holdout) else holdout.reshape(0, 40)
    holdout_rel = "holdout.npy"
    save_npy_atomic(storage.join(scatter_dir, holdout_rel), holdout)

    side = {"scatter": tuple(scatter.output_file(t.key + ".arrow") for t in tasks),
            "tags": tuple(scatter.output_file(t.key + ".tags.npy") for t in tasks),
            "holdout": (output_file(scatter_dir, holdout_rel),)}
    shuffle_tasks = []
    for split in SPLITS:
        first = 0
        for b in range(buckets[split]):
            n = sum(m["extra"]["counts"][split][b] for m in scatter.markers)
            n_files = math.ceil(n / cfg.docs_per_file)
            shuffle_tasks.append(Task(f"_shuffle/{split}-{b:05d}", (), {"split": split, "bucket": b,
                                      "first_file": first, "files": n_files, "run": key}, side=side))
            first += n_files
    return scatter, Ledger.merged("release", (Ledger.from_dict(m["ledger"]) for m in scatter.markers)), shuffle_tasks


def _manifest(cfg: ReleaseConfig, buckets: dict, shuffle: StageReport, ledger: Ledger) -> dict:
    files = [f for m in shuffle.markers for f in m["extra"]["files"]]
    splits = {}
    for split in SPLITS:
        fs = [f for f in files if f["path"].startswith(split + "/")]
        per_source: dict[str, int] = {}
        for f in fs:
            for s, d in f["sources"].items():
                per_source[s] = per_source.get(s, 0) + d
        docs = sum(f["docs"] for f in fs)
        splits[split] = {"files": len(fs), "docs": docs, "text_bytes": sum(f["text_bytes"] for f in fs),
                         "docs_per_source": dict(sorted(per_source.items())),
                         "doc_share_per_source": {s: round(d / docs, 6) for s, d in sorted(per_source.items())}}
    out_bytes = {s: c.bytes_out for s, c in ledger.sources.items()}
    total = sum(out_bytes.values()) or 1
    return {
        "format": "SlimPajama release: <split>/chunk<j>/example_{train,holdout}_<i>.jsonl.zst, "
                  'lines {"text", "meta": {"redpajama_set_name"}}',
        "config": cfg.to_dict(), "buckets": buckets, "splits": splits,
        "byte_share_per_source": {s: round(b / total, 6) for s, b in sorted(out_bytes.items())},
        "decontaminated": ledger.totals().dropped.get(DECONTAMINATED, [0, 0])[0],
        "files": sorted(files, key=lambda f: f["path"]),
    }
