"""Global MinHash-LSH dedup as five resumable Ray stages over the normalized shards:

  minhash     per shard:      <minhash>/<key>.sig.npy (n x num_perm uint32), .bands.npy (bands x n uint64),
                              .valid.npy (has shingles)
  lsh         per band x key range: <out>/_lsh/b<band>-p<part>.npy, candidate edges (E x 2 uint32 global indices);
                              with --against, .against.npy: the new documents an earlier release's index holds
  components  one task:       <out>/_components/members.npy, roots.npy (every document in a cluster of 2+, and
                              its root = the kept document), removed.npy; with --against, against.npy
  remove      per shard:      <out>/shards/<key>.parquet (unique documents), <out>/_audit/<key>.parquet
  index       per band x key range: <out>/index/b<band>-p<part>.keys.npy, .docs.npy: what this run kept, for a
                              later --against (against.py), then index/index.json
then `<out>/duplicates.parquet` (doc_id, source, cluster_id, kept_doc_id, kept [, release, release_doc_id]) and
`<out>/ledger.json`.
<minhash> defaults to `<out>/_minhash` (private to this dedup). Every task's identity is the digests of what it
read, so an edited input recomputes exactly what depends on it. A remove task depends on its own shard and on the
run key (the digests of every shard, and the config), which fixes the clusters: once every remove task is complete
for the current inputs, _minhash/, _lsh/ and _components/ are not needed again and may be deleted.

Memory: a minhash task streams its shard (signatures go to a memory-mapped file); an lsh task holds one band's
keys in one key range (about 48 bytes per document in it: keys, indices and the sort); components holds 5 bytes per
document plus one edge file at a time. Nothing holds per-document Python objects.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace

import numpy as np
import pyarrow as pa

from slimpajama.core import defaults
from slimpajama.core.ledger import Ledger
from slimpajama.core.lsh import (
    INDEX_DTYPE,
    MAX_DOCS,
    clusters,
    estimated_jaccard,
    new_forest,
    partition_edges,
    union_edges,
)
from slimpajama.core.minhash import MinHashConfig, band_keys, has_shingles, signatures
from slimpajama.core.schema import keep_rows
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.discover import discover
from slimpajama.io.outputs import STATE_DIR
from slimpajama.io.reading import ReadOptions
from slimpajama.io.writers import ParquetShardWriter, atomic_path, save_npy_atomic, write_bytes_atomic

from . import lock, registry
from .against import (
    INDEX_DIR,
    INDEX_FILE,
    IndexStage,
    Release,
    index_complete,
    index_tasks,
    match_partition,
    min_per_doc,
    removed_against,
    write_index_file,
)
from .bands import collect_partition
from .docstage import DocumentStage, Transform
from .markers import previous_run, run_key, save_run, totals
from .paths import DEDUP_RUN_FILE, inputs_text, require_inputs
from .runner import Progress, StageReport, run_stage
from .split import split_tasks
from .stage import Stage, Task, TaskResult

DUPLICATE = registry.DUPLICATE.reason
DUPLICATE_OF_RELEASE = registry.DUPLICATE_OF_RELEASE.reason  # in a cluster with what an earlier run kept
LSH_BYTES_PER_ENTRY = 48  # key, index, argsort order, sorted copies and run bookkeeping
RUN_FILE = DEDUP_RUN_FILE  # in <out>/_state: the run key of the clusters the remove tasks applied


# ------------------------------------------------------------------------------------------------ minhash


class MinhashStage(Stage):
    name = "minhash"

    def __init__(self, cfg: MinHashConfig):
        self.cfg = cfg

    def fingerprint(self) -> dict:
        return {"stage": self.name, **self.cfg.to_dict()} | {"threshold": None}  # threshold only affects --verify

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        (shard,) = task.inputs
        n = shard_rows(shard)
        base = storage.join(out_dir, task.key)
        ledger = Ledger(self.name)
        with atomic_path(base + ".sig.npy") as sig_tmp:
            sig = np.lib.format.open_memmap(sig_tmp, mode="w+", dtype=np.uint32, shape=(n, self.cfg.num_perm))
            row = 0
            for batch in self.documents(task):
                sig[row: row + batch.num_rows] = signatures(batch.column("text"), self.cfg)  # Arrow buffers
                row += batch.num_rows
                ledger.batch_in(batch)
                ledger.batch_out(batch)
            if row != n:
                raise SlimPajamaError(f"{shard.rel}: read {row} rows of {n}")
            sig.flush()
            bands = band_keys(sig, self.cfg)
            valid = has_shingles(sig)
            del sig
        save_npy_atomic(base + ".bands.npy", bands)
        save_npy_atomic(base + ".valid.npy", valid)
        outputs = [task.key + s for s in (".sig.npy", ".bands.npy", ".valid.npy")]
        return TaskResult(outputs=outputs, ledger=ledger, extra={"rows": n})


# ------------------------------------------------------------------------------------------------ lsh


class LshStage(Stage):
    name = "lsh"
    keeps_ledger = False

    def __init__(self, cfg: MinHashConfig, verify: bool):
        self.cfg, self.verify = cfg, verify

    def fingerprint(self) -> dict:
        return {"stage": self.name, **self.cfg.to_dict(), "verify": self.verify}

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        p = task.params
        band, part, parts, offsets = p["band"], p["part"], p["parts"], p["offsets"]
        keys, index = collect_partition(task.side, band, part, parts, offsets)
        outputs, extra = [], {}
        if p.get("against"):  # the new documents whose key an earlier release holds, before the keys are freed
            releases = [Release(path, self.cfg.to_dict()) for path in p["against"]]
            matches = match_partition(releases, band, part, parts, keys, index)
            outputs.append(f"b{band:03d}-p{part:04d}.against.npy")
            save_npy_atomic(storage.join(out_dir, outputs[-1]), matches)
            extra["release_matches"] = len(matches)
        a, b = partition_edges(keys, index)
        del keys, index
        candidates = len(a)
        if self.verify and len(a):
            sigs = [np.load(f.local(), mmap_mode="r") for f in task.side["signatures"]]
            est = estimated_jaccard(_gather(sigs, offsets, a), _gather(sigs, offsets, b))
            keep = est >= self.cfg.threshold
            a, b = a[keep], b[keep]
        rel = f"b{band:03d}-p{part:04d}.npy"
        save_npy_atomic(storage.join(out_dir, rel), np.stack([a, b], axis=1).astype(INDEX_DTYPE))
        return TaskResult(outputs=[rel, *outputs], ledger=Ledger(self.name),
                          extra={"candidates": candidates, "edges": len(a), **extra})


def _gather(sigs: list[np.ndarray], offsets: list[int], index: np.ndarray) -> np.ndarray:
    """Signature rows of global document indices, from the per-shard memory-mapped files."""
    out = np.empty((len(index), sigs[0].shape[1] if sigs else 0), dtype=np.uint32)
    shard = np.searchsorted(offsets, index, side="right") - 1
    for s in np.unique(shard):
        sel = np.flatnonzero(shard == s)
        out[sel] = sigs[s][index[sel].astype(np.int64) - offsets[s]]
    return out


# ------------------------------------------------------------------------------------------------ components


class ComponentsStage(Stage):
    name = "components"
    keeps_ledger = False

    def fingerprint(self) -> dict:
        return {"stage": self.name}

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        parent = new_forest(task.params["docs"])
        matches = [f for f in task.inputs if f.rel.endswith(".against.npy")]
        for f in (f for f in task.inputs if not f.rel.endswith(".against.npy")):
            edges = np.load(f.local())
            union_edges(parent, np.ascontiguousarray(edges[:, 0]), np.ascontiguousarray(edges[:, 1]))
            del edges
        members, roots = clusters(parent)
        del parent
        save_npy_atomic(storage.join(out_dir, "members.npy"), members)
        save_npy_atomic(storage.join(out_dir, "roots.npy"), roots)
        outputs = ["members.npy", "roots.npy", "removed.npy"]
        duplicates = members[members != roots].astype(np.int64)
        extra = {}
        if task.params.get("against"):  # each matched document's cluster goes, named by its smallest match
            found = np.concatenate([np.load(f.local()) for f in matches] or [np.zeros((0, 2), np.int64)])
            found = min_per_doc(found[:, 0], found[:, 1])  # a document matched in several bands: its smallest
            against = removed_against(members.astype(np.int64), roots.astype(np.int64), found)
            save_npy_atomic(storage.join(out_dir, "against.npy"), against)
            outputs.append("against.npy")
            extra["duplicates_of_release"] = int(len(against))
            duplicates = np.union1d(duplicates, against[:, 0])
        # every document this run removes, for the index of what it kept
        save_npy_atomic(storage.join(out_dir, "removed.npy"), duplicates.astype(np.int64))
        sizes = np.bincount(np.unique(roots, return_inverse=True)[1]) if len(roots) else np.zeros(0, np.int64)
        summary = {"documents": task.params["docs"], "clusters": int(len(sizes)),
                   "documents_in_clusters": int(len(members)),
                   "duplicates": int(len(duplicates) - extra.get("duplicates_of_release", 0)),
                   "cluster_size_histogram": {str(k): int(v) for k, v in
                                              zip(*np.unique(sizes, return_counts=True), strict=True)}, **extra}
        # the summary travels in the marker; run_dedup writes it into dedup.json
        return TaskResult(outputs=outputs, ledger=Ledger(self.name), extra=summary)


# ------------------------------------------------------------------------------------------------ remove


AUDIT_SCHEMA = pa.schema([("doc_id", pa.string()), ("source", pa.string()), ("cluster_id", pa.int64()),
                          ("kept", pa.bool_())])
# --against: and the earlier release's document each one matched (release << 32 | ordinal; -1: none)
AGAINST_AUDIT_SCHEMA = AUDIT_SCHEMA.append(pa.field("release_match", pa.int64()))


class RemoveDuplicates(Transform):
    """Drops every cluster member but its root; writes the task's cluster members to an audit part."""

    def start(self, task, out_dir):
        (members_file,), (roots_file,) = task.side["members"], task.side["roots"]
        members = np.load(members_file.local(), mmap_mode="r")
        roots = np.load(roots_file.local(), mmap_mode="r")
        self._offset = task.params["offset"]
        lo, hi = np.searchsorted(members, [self._offset, self._offset + task.params["rows"]])
        self._members = np.asarray(members[lo:hi], dtype=np.int64)
        self._roots = np.asarray(roots[lo:hi], dtype=np.int64)
        self._against = None
        if "against" in task.side:  # (index, code) of the documents removed against earlier releases
            against = np.load(task.side["against"][0].local(), mmap_mode="r")
            lo, hi = np.searchsorted(against[:, 0], [self._offset, self._offset + task.params["rows"]])
            self._against = np.asarray(against[lo:hi], dtype=np.int64)
        self._audit = []

    def __call__(self, batch, rows):
        gidx = self._offset + rows
        root = gidx.copy()
        pos = np.searchsorted(self._members, gidx)
        in_cluster = pos < len(self._members)
        in_cluster[in_cluster] = self._members[pos[in_cluster]] == gidx[in_cluster]
        root[in_cluster] = self._roots[pos[in_cluster]]
        if self._against is None:
            duplicate = root != gidx
            if in_cluster.any():
                sel = pa.array(in_cluster)
                self._audit.append(pa.table([batch.column("doc_id").filter(sel), batch.column("source").filter(sel),
                                             pa.array(root[in_cluster]), pa.array(~duplicate[in_cluster])],
                                            schema=AUDIT_SCHEMA))
            return keep_rows(batch, ~duplicate), {DUPLICATE: duplicate}
        at = np.searchsorted(self._against[:, 0], gidx)
        old = at < len(self._against)
        old[old] = self._against[at[old], 0] == gidx[old]
        duplicate = (root != gidx) & ~old
        code = np.full(len(gidx), -1, np.int64)
        code[old] = self._against[at[old], 1]
        listed = in_cluster | old
        if listed.any():
            sel = pa.array(listed)
            self._audit.append(pa.table([batch.column("doc_id").filter(sel), batch.column("source").filter(sel),
                                         pa.array(root[listed]), pa.array(~(duplicate | old)[listed]),
                                         pa.array(code[listed])], schema=AGAINST_AUDIT_SCHEMA))
        gone = duplicate | old
        return keep_rows(batch, ~gone), {DUPLICATE: duplicate, DUPLICATE_OF_RELEASE: old}

    def finish(self, task, out_dir):
        rel = f"_audit/{task.key}.parquet"
        schema = AUDIT_SCHEMA if self._against is None else AGAINST_AUDIT_SCHEMA
        with ParquetShardWriter(storage.join(out_dir, rel), schema=schema) as w:
            for t in self._audit:
                w.write(t)
        self._audit = []
        return [rel]


class RemoveStage(DocumentStage):
    """dedup's last stage: the documents of the normalized shards less the duplicates, into `shards/`."""

    name = registry.DEDUP.name
    documents_root = "shards"

    def __init__(self, read: ReadOptions | None = None):
        super().__init__(read, [RemoveDuplicates()])

    def fingerprint(self) -> dict:
        return {"stage": self.name}


# ------------------------------------------------------------------------------------------------ driver


def shard_rows(f) -> int:
    """Rows of a parquet shard, or of the row groups a part of one reads."""
    md = storage.open_parquet(f.path).metadata
    return sum(md.row_group(g).num_rows for g in range(*f.span[:2])) if f.span else md.num_rows


def lsh_partitions(n_docs: int, partition_bytes: int) -> int:
    """Key ranges per band so that one LSH task's working set fits `partition_bytes` (a power of two)."""
    need = max(1, math.ceil(n_docs * LSH_BYTES_PER_ENTRY / max(partition_bytes, 1)))
    return 1 << (need - 1).bit_length()


def write_audit(out_dir: str, keys: list[str], releases: list[Release] = ()) -> None:
    """duplicates.parquet: every document in a cluster, the cluster's kept document; with releases, also the
    earlier release (its folder) and document each removed one matched."""
    parts = [storage.open_parquet(storage.join(out_dir, f"_audit/{k}.parquet")).read() for k in keys]
    audit = pa.concat_tables(parts) if parts else (AGAINST_AUDIT_SCHEMA if releases else AUDIT_SCHEMA).empty_table()
    kept = audit.filter(audit["kept"]).select(["cluster_id", "doc_id"]).rename_columns(["cluster_id",
                                                                                         "kept_doc_id"])
    table = audit.join(kept, "cluster_id", join_type="left outer")
    table = table.sort_by([("cluster_id", "ascending"), ("kept", "descending"), ("doc_id", "ascending")])
    columns = ["doc_id", "source", "cluster_id", "kept_doc_id", "kept"]
    if releases:
        code = table["release_match"].to_numpy()
        names, ids = [None] * len(code), [None] * len(code)
        for r, release in enumerate(releases):
            rows = np.flatnonzero((code >= 0) & (code >> 32 == r))
            for i, doc in zip(rows, release.doc_ids(code[rows] & 0xFFFFFFFF), strict=True):
                names[i], ids[i] = release.path, doc
        table = table.append_column("release", pa.array(names, pa.string())).append_column(
            "release_doc_id", pa.array(ids, pa.string()))
        columns += ["release", "release_doc_id"]
    table = table.select(columns)
    with ParquetShardWriter(storage.join(out_dir, "duplicates.parquet"), schema=table.schema) as w:
        w.write(table)


def run_dedup(inputs, out_dir: str, *, minhash_dir: str | None = None, cfg: MinHashConfig | None = None,
              verify: bool = False, workers: int | None = None, ray_address: str | None = None,
              progress: Progress | None = None, partition_bytes: int = defaults.PARTITION_BYTES,
              task_bytes: int | None = defaults.TASK_BYTES, against=()) -> StageReport:
    """`task_bytes`: shards bigger than this are read by several tasks, runs of whole row groups (0: one each);
    the documents kept and their order never change. `against`: earlier dedup runs' folders (see against.py):
    a new document in a cluster with one of their kept documents is removed, and none of theirs is."""
    cfg = cfg or MinHashConfig()
    if any(os.path.abspath(str(a)) == os.path.abspath(out_dir) for a in against if not storage.is_remote(str(a))):
        raise SlimPajamaError(f"--against {out_dir} is this run's own --out: pass the earlier run's folder")
    releases = [Release(path, cfg.to_dict()) for path in against]
    if releases and verify:
        raise SlimPajamaError("--verify does not combine with --against: an earlier run's index holds band keys, "
                              "not the signatures --verify compares")
    minhash_dir = minhash_dir or storage.join(out_dir, "_minhash")
    require_inputs(inputs, registry.DEDUP.accepts, "dedup")
    files = [f for f in discover(inputs, out=out_dir) if f.is_parquet]
    if not files:
        raise SlimPajamaError(f"{inputs_text(inputs)} holds a raw corpus (JSON lines), not normalized documents: run "
                              "`slimpajama normalize` on it first")
    run = dict(workers=workers, ray_address=ray_address, progress=progress)
    with lock.hold(out_dir):
        tasks = split_tasks(files, out_dir, task_bytes, workers=workers, ray_address=ray_address)
        rows = [shard_rows(t.inputs[0]) for t in tasks]
        offsets = [0, *np.cumsum(rows).tolist()]
        n_docs = offsets[-1]
        if n_docs > MAX_DOCS:
            raise SlimPajamaError(f"{n_docs} documents exceed one dedup run's {MAX_DOCS}")
        # what the clusters depend on (and, against releases, each release's own run key)
        key = run_key([f.identity() for f in files], cfg.to_dict(), verify,
                      *([[[r.path, r.info["run_key"]] for r in releases]] if releases else []))
        remove = RemoveStage(ReadOptions())
        remove_tasks = [Task(f"shards/{t.key}", t.inputs, {"offset": off, "rows": n, "dedup": key})
                        for t, off, n in zip(tasks, offsets[:-1], rows, strict=True)]
        previous = previous_run(out_dir, RUN_FILE, key, remove, lambda _: remove_tasks)
        indexed = None
        if previous is not None and index_complete(out_dir, key):
            summary = previous["summary"]  # nothing upstream changed: minhash/lsh/components are not needed
        else:
            # a new run: the folder is no complete dedup (release refuses it) and no index (--against refuses it)
            # until this run has written everything; an interrupted or failed run leaves it so
            for done in (storage.join(out_dir, STATE_DIR, RUN_FILE), storage.join(out_dir, INDEX_DIR, INDEX_FILE)):
                storage.remove(done)
            summary, clusters_, index_side, parts = _clusters(tasks, offsets, cfg, verify, minhash_dir, out_dir,
                                                              partition_bytes, run, releases)
            remove_tasks = [replace(t, side=clusters_) for t in remove_tasks]
            indexed = index_tasks(index_side, offsets, cfg.bands, parts, key)
        report = run_stage(remove, remove_tasks, out_dir, **run)
        write_audit(out_dir, [t.key for t in remove_tasks], releases)
        if indexed is not None:  # what this run kept, for a later run's --against
            run_stage(IndexStage(), indexed, storage.join(out_dir, INDEX_DIR), **run)
            shards = [(t.key + ".parquet", totals(m)["docs_out"])
                      for t, m in zip(remove_tasks, report.markers, strict=True)]
            write_index_file(out_dir, cfg.to_dict(), key, parts, shards)
        write_bytes_atomic(storage.join(out_dir, "dedup.json"),
                           json.dumps(summary, indent=1, sort_keys=True).encode())
        save_run(out_dir, RUN_FILE, {"run_key": key, "summary": summary})
    report.extra = summary
    return report


def _clusters(tasks, offsets, cfg, verify, minhash_dir, out_dir, partition_bytes, run, releases) -> tuple:
    """minhash -> lsh -> components: (summary, the side inputs of the remove tasks: members, roots and the
    documents removed against releases; those of the index tasks; key ranges per band)."""
    mh = run_stage(MinhashStage(cfg), tasks, minhash_dir, **run)
    side = {name: tuple(mh.output_file(t.key + suffix) for t in tasks)
            for name, suffix in (("signatures", ".sig.npy"), ("bands", ".bands.npy"), ("valid", ".valid.npy"))}
    parts = lsh_partitions(offsets[-1] + sum(r.docs for r in releases), partition_bytes)  # (with old slices)
    # every LSH task reads every shard's files: they are side inputs, identified by one digest of all of them (a
    # list of thousands of digests in each of thousands of markers would make the markers gigabytes)
    signatures = run_key([f.identity() for shard in zip(*side.values(), strict=True) for f in shard])
    old = {"against": [r.path for r in releases], "releases": [r.info["run_key"] for r in releases]} \
        if releases else {}
    lsh_tasks = [Task(f"b{b:03d}-p{p:04d}", (), {"band": b, "part": p, "parts": parts, "offsets": offsets,
                                                       "signatures": signatures, **old}, side=side)
                 for b in range(cfg.bands) for p in range(parts)]
    lsh = run_stage(LshStage(cfg, verify), lsh_tasks, storage.join(out_dir, "_lsh"), **run)
    edges = tuple(lsh.output_file(f"{t.key}{suffix}") for t in lsh_tasks
                  for suffix in ((".npy", ".against.npy") if releases else (".npy",)))
    comp = run_stage(ComponentsStage(), [Task("clusters", edges, {"docs": offsets[-1],
                                                                       **({"against": True} if releases else {})})],
                     storage.join(out_dir, "_components"), **run)
    summary = {"config": cfg.to_dict(), "verify": verify, "lsh_partitions_per_band": parts,
               "candidate_edges": sum(m["extra"]["candidates"] for m in lsh.markers),
               "edges": sum(m["extra"]["edges"] for m in lsh.markers), **comp.markers[0]["extra"]}
    if releases:
        summary["against"] = [r.path for r in releases]
    removal = {name: (comp.output_file(f"{name}.npy"),) for name in ("members", "roots")}
    if releases:
        removal["against"] = (comp.output_file("against.npy"),)
    index_side = {"bands": side["bands"], "valid": side["valid"], "removed": (comp.output_file("removed.npy"),)}
    return summary, removal, index_side, parts
