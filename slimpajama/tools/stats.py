"""`slimpajama stats`: figures for whatever a path holds (a raw corpus, a stage output with its ledger, a release,
packed shards, or the whole `data/` tree), as one JSON-able dict with stable keys (see STATS_KEYS).

Everything streams: a corpus is read batch by batch (length quantiles from a bounded reservoir per source, exact
below RESERVOIR documents), and `sample` reads only a deterministic fraction of the files, saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import random

import numpy as np
import pyarrow.compute as pc

from slimpajama.errors import BadRecord, SlimPajamaError
from slimpajama.io.discover import discover
from slimpajama.io.documents import read_documents
from slimpajama.pipelines import registry
from slimpajama.pipelines.paths import export_summaries, packed_splits, what_is

STATS_VERSION = 1
STATS_KEYS = ("version", "path", "kind", "corpus", "pipeline", "clusters", "contamination", "release", "tokens", "shards",
              "export")
RESERVOIR = 100_000
HIST_EDGES = [0] + [int(round(10 ** (k / 4))) for k in range(0, 33)]  # 1 .. 1e8 characters, 4 bins a decade


def _load_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------------------------------ corpus


class _LengthStats:
    def __init__(self, seed: str):
        self.docs = self.bytes = self.chars = self.max = 0
        self.hist = np.zeros(len(HIST_EDGES), dtype=np.int64)
        self.reservoir: list[int] = []
        self._rng = random.Random(seed)

    def add(self, chars: np.ndarray, nbytes: int) -> None:
        self.bytes += nbytes
        self.chars += int(chars.sum())
        self.max = max(self.max, int(chars.max()))
        self.hist += np.bincount(np.searchsorted(HIST_EDGES, chars, side="right") - 1, minlength=len(HIST_EDGES))
        for c in chars.tolist():  # reservoir sampling (Algorithm R)
            self.docs += 1
            if len(self.reservoir) < RESERVOIR:
                self.reservoir.append(c)
            else:
                j = self._rng.randrange(self.docs)
                if j < RESERVOIR:
                    self.reservoir[j] = c

    def to_dict(self) -> dict:
        q = np.percentile(self.reservoir, [10, 50, 90, 99]) if self.reservoir else [0, 0, 0, 0]
        return {"documents": self.docs, "bytes": self.bytes,
                "chars": {"mean": round(self.chars / max(self.docs, 1), 2), "p10": float(q[0]), "p50": float(q[1]),
                          "p90": float(q[2]), "p99": float(q[3]), "max": self.max,
                          "quantiles_exact": self.docs <= RESERVOIR,
                          "histogram": {"edges": HIST_EDGES, "counts": self.hist.tolist()}}}


def corpus_stats(inputs, sample: float | None = None) -> dict:
    files = discover(inputs)
    chosen = files
    if sample is not None and sample < 1:
        # deterministic: a file is read when the hash of its path falls under the fraction (at least one file)
        def u(f):
            return int(hashlib.sha256(f.rel.encode()).hexdigest()[:15], 16) / 16**15

        chosen = [f for f in files if u(f) < sample] or [min(files, key=u)]
    per_source: dict[str, _LengthStats] = {}
    bad = 0

    def on_bad(rec: BadRecord) -> None:
        nonlocal bad
        bad += 1

    for f in chosen:
        for batch in read_documents(f, on_bad):
            chars = pc.utf8_length(batch.column("text")).to_numpy()
            nbytes = pc.binary_length(batch.column("text")).to_numpy()
            sources = batch.column("source").to_numpy(zero_copy_only=False)
            for s in np.unique(sources):
                m = sources == s
                per_source.setdefault(str(s), _LengthStats(str(s))).add(chars[m], int(nbytes[m].sum()))
    read_bytes = sum(f.size for f in chosen)
    total_bytes = sum(f.size for f in files)
    out = {"files": len(files), "files_read": len(chosen), "sampled": len(chosen) < len(files),
           "documents": sum(s.docs for s in per_source.values()),
           "bytes": sum(s.bytes for s in per_source.values()), "bad_input_records": bad,
           "sources": {s: v.to_dict() for s, v in sorted(per_source.items())}}
    if out["sampled"]:
        scale = total_bytes / max(read_bytes, 1)
        out["sample_fraction_of_file_bytes"] = round(read_bytes / max(total_bytes, 1), 6)
        out["estimated_documents"] = int(round(out["documents"] * scale))
        out["estimated_bytes"] = int(round(out["bytes"] * scale))
    return out


# ------------------------------------------------------------------------------------------------ pipeline


def pipeline_stats(ledgers: dict[str, dict], tokens_per_source: dict[str, int] | None = None) -> dict:
    """Per source, from the stage ledgers (normalize/ingest, dedup, release): in, dropped by reason, kept; the byte
    duplication rate as SlimPajama tabulated it (bytes removed as duplicates / bytes entering dedup); final shares."""
    order = [s.ledger_name for s in registry.LEDGER_STAGES if s.ledger_name in ledgers]  # the data flow's
    if not order:
        return {}
    first, last = ledgers[order[0]], ledgers[order[-1]]
    sources = sorted({s for led in ledgers.values() for s in led["sources"]})
    rows = {}
    def dropped(s, reason, what="docs"):
        return sum(led["sources"].get(s, {}).get("dropped", {}).get(reason, {}).get(what, 0)
                   for led in ledgers.values())

    for s in sources:
        src_in = first["sources"].get(s, {})
        dd = ledgers.get(registry.DEDUP.ledger_name, {}).get("sources", {}).get(s)
        out = last["sources"].get(s, {})
        rows[s] = {"docs_in": src_in.get("docs_in", 0), "bytes_in": src_in.get("bytes_in", 0),
                   **{d.reason: dropped(s, d.reason) for d in registry.DROPS},  # every stage's drop reasons
                   "kept_docs": out.get("docs_out", 0), "kept_bytes": out.get("bytes_written", out.get("bytes_out", 0)),
                   # duplicates within the run and of an earlier release (--against) alike
                   "byte_duplication_rate": (round(sum(dropped(s, d.reason, "bytes") for d in registry.DEDUP.drops)
                                                   / dd["bytes_in"], 6) if dd and dd["bytes_in"] else None)}
    kept = sum(r["kept_bytes"] for r in rows.values()) or 1
    for r in rows.values():
        r["byte_share"] = round(r["kept_bytes"] / kept, 6)
    if tokens_per_source:
        total = sum(tokens_per_source.values()) or 1
        for s, r in rows.items():
            r["tokens"] = tokens_per_source.get(s, 0)
            r["token_share"] = round(tokens_per_source.get(s, 0) / total, 6)
    bytes_in = sum(r["bytes_in"] for r in rows.values())
    # what each stage kept, per source, in data-flow order (a list: JSON keeps it): the input first, the tokens
    # last (the funnel plot)
    funnel = [{"stage": "input", "sources": {s: {"docs": r["docs_in"], "bytes": r["bytes_in"]}
                                             for s, r in rows.items()}}]
    for stage in order:
        funnel.append({"stage": stage, "sources": {
            s: {"docs": v.get("docs_out", 0), "bytes": v.get("bytes_written", v.get("bytes_out", 0))}
            for s, v in sorted(ledgers[stage]["sources"].items())}})
    if tokens_per_source:
        funnel.append({"stage": registry.TOKENIZE.name,
                       "sources": {s: {"tokens": n} for s, n in sorted(tokens_per_source.items())}})
    return {"stages": sorted(ledgers), "sources": rows, "funnel": funnel,
            "totals": {"docs_in": sum(r["docs_in"] for r in rows.values()), "bytes_in": bytes_in,
                       "kept_docs": sum(r["kept_docs"] for r in rows.values()),
                       "kept_bytes": sum(r["kept_bytes"] for r in rows.values()),
                       "bytes_removed_fraction": round(1 - sum(r["kept_bytes"] for r in rows.values()) /
                                                       max(bytes_in, 1), 6)}}


def contamination_stats(stage_dir: str) -> dict | None:
    """Per evaluation file of a decontaminate output: items, items too short to match, items found, documents
    dropped and cut (its contamination.json)."""
    summary = _load_json(os.path.join(stage_dir, "contamination.json"))
    return summary["files"] if summary else None


def cluster_stats(dedup_dir: str, top: int = 10) -> dict:
    import pyarrow.parquet as pq

    path = os.path.join(dedup_dir, "duplicates.parquet")
    if not os.path.exists(path):
        return {}
    t = pq.read_table(path, columns=["source", "cluster_id", "kept_doc_id", "kept"])
    if t.num_rows == 0:
        return {"clusters": 0, "duplicates": 0, "size_histogram": {}, "largest": []}
    # the documents dropped: every one not kept (a cluster matching an earlier release, --against, keeps none)
    duplicates = t.num_rows - int(pc.sum(t["kept"]).as_py() or 0)
    agg = t.group_by("cluster_id").aggregate([("source", "count"), ("kept_doc_id", "min"),
                                              ("source", "distinct")])
    sizes = agg["source_count"].to_numpy()
    values, counts = np.unique(sizes, return_counts=True)
    order = np.lexsort((agg["cluster_id"].to_numpy(), -sizes))[:top]
    largest = [{"cluster_id": int(agg["cluster_id"][i].as_py()), "size": int(sizes[i]),
                "kept_doc_id": agg["kept_doc_id_min"][i].as_py(),
                "sources": sorted(agg["source_distinct"][i].as_py())} for i in order]
    return {"clusters": int(len(sizes)), "duplicates": duplicates,
            "size_histogram": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
            "largest": largest}


# ------------------------------------------------------------------------------------------------ shards


def shard_stats(split_dir: str) -> dict:
    from slimpajama.packers.format import read_index, verify

    index = read_index(split_dir)
    try:
        verify(split_dir)
        ok, error = True, None
    except SlimPajamaError as e:
        ok, error = False, str(e)
    docs_per_row = padding_hist = None
    if ok and index["rows"]:
        from slimpajama.packers.reader import ShardReader

        r = ShardReader(split_dir)
        segs = r.docs_per_row()
        pads = r.paddings()
        docs_per_row = round(float(segs.mean()), 3)
        edges = np.linspace(0, index["seq_len"] + 1, 11).astype(int).tolist()
        padding_hist = {"edges": edges, "counts": np.histogram(pads, bins=edges)[0].tolist()}
    return {"rows": index["rows"], "tokens": index["tokens"], "seq_len": index["seq_len"],
            "packing": index["packing"], "range": index["range"], "padding_fraction": index["padding_fraction"],
            "docs": index["docs"], "docs_per_row": docs_per_row, "docs_cut": index["docs_cut"],
            "docs_cut_fraction": index["docs_cut_fraction"], "tokens_per_source": index["tokens_per_source"],
            "padding_per_row": padding_hist, "checksums_ok": ok, "error": error,
            "tokenizer": {"name": index.get("encoding"), "kind": (index.get("tokenizer") or {}).get("kind", "tiktoken"),
                          "vocab_size": index.get("vocab_size"), "dtype": index.get("dtype")}}


# ------------------------------------------------------------------------------------------------ dispatch


def _token_markers(token_dir: str) -> list[dict]:
    """The tokenize markers of a token cache (one per task)."""
    state = os.path.join(token_dir, "_state")
    found = []
    for dirpath, _, files in os.walk(state):
        for f in sorted(files):
            m = _load_json(os.path.join(dirpath, f)) if f.endswith(".json") and not f.startswith("_") else None
            if m:
                found.append(m)
    return found


def _token_sources(token_dir: str) -> dict[str, int] | None:
    """Tokens per source of a token cache, from its tokenize markers."""
    total: dict[str, int] = {}
    for m in _token_markers(token_dir):
        for s, n in (m.get("extra", {}).get("tokens_per_source") or {}).items():
            total[s] = total.get(s, 0) + n
    return total or None


# what each kind of path (paths.what_is) is reported as
REPORT_KIND = {"corpus": "corpus", **{s.output: "stage" for s in registry.LEDGER_STAGES},
               registry.RELEASE.output: "release", "unfinished_dedup": "intermediate",
               "token_root": "tokens", "token_cache": "tokens", "packed": "shards", "packed_split": "shards",
               "shards_root": "shards", "intermediate": "intermediate", "data_root": "data_root", "export": "export",
               "foreign": "intermediate"}


def detect(path: str) -> str:
    return REPORT_KIND[what_is(path).kind]


def _shard_stats_under(path: str) -> dict:
    """Every packed split under `path`, by its path relative to `path` (a split itself: by its name)."""
    return {os.path.relpath(d, path) if d != path else os.path.basename(path.rstrip("/")): shard_stats(d)
            for d in packed_splits(path, "stats")}


def token_stats(path: str) -> dict:
    """Tokens per source of every token cache at `path` (a cache, or a tokenize --out root)."""
    found = what_is(path)
    caches = [path] if found.kind == "token_cache" else [os.path.join(path, c) for c in found.children]
    out = {}
    for c in caches:
        per_source = _token_sources(c) or {}
        extras = [m.get("extra", {}) for m in _token_markers(c)]
        out[os.path.basename(c.rstrip("/"))] = {
            "tokens": sum(per_source.values()), "tokens_per_source": dict(sorted(per_source.items())),
            # which engine encoded the tasks, and how many documents the guard re-encoded with the reference
            "engines": sorted({e["engine"] for e in extras if "engine" in e}),
            "guard_checked": sum(e.get("guard_checked", 0) for e in extras)}
    return out


def _stage_name(stage_dir: str) -> str | None:
    led = _load_json(os.path.join(stage_dir, "ledger.json"))
    return led["stage"] if led else None


def compute(path: str, sample: float | None = None) -> dict:
    found = what_is(path)
    kind = REPORT_KIND[found.kind]
    out: dict = {k: None for k in STATS_KEYS}
    out.update(version=STATS_VERSION, path=path, kind=kind)
    ledgers: dict[str, dict] = {}
    tokens = None
    if kind == "corpus":
        out["corpus"] = corpus_stats(path, sample)
    elif kind == "shards":
        out["shards"] = _shard_stats_under(path)
    elif kind == "tokens":
        out["tokens"] = token_stats(path)
    elif kind == "export":
        out["export"] = {name: {k: summary[k] for k in ("format", "split", "range", "documents", "tokens", "bytes",
                                                        "cache")}
                         | {"datasets": {d: {k: v[k] for k in ("prefix", "documents", "tokens")}
                                         for d, v in summary["datasets"].items()}}
                         for name, summary in export_summaries(found.path).items()
                         if not found.children or name in found.children}  # (one dataset folder: its export)
    elif kind in ("stage", "release"):
        name = _stage_name(path)
        ledgers[name] = _load_json(os.path.join(path, "ledger.json"))
        out["corpus"] = corpus_stats(path, sample)  # the documents the stage kept (lengths per source)
        if name == registry.DEDUP.ledger_name:
            out["clusters"] = cluster_stats(path)
        out["contamination"] = contamination_stats(path)
        if kind == "release":
            m = _load_json(os.path.join(path, "manifest.json"))
            out["release"] = {"splits": m["splits"], "byte_share_per_source": m["byte_share_per_source"],
                              "decontaminated": m["decontaminated"], "config": m["config"]}
    else:  # data_root: every stage found under the conventional layout
        raw = os.path.join(path, "raw")
        if os.path.isdir(raw):
            out["corpus"] = corpus_stats(raw, sample)
        for s in registry.LEDGER_STAGES:
            d = os.path.join(path, s.folder)
            if s.folder and os.path.exists(os.path.join(d, "ledger.json")):
                ledgers[_stage_name(d)] = _load_json(os.path.join(d, "ledger.json"))
        if registry.DEDUP.ledger_name in ledgers:
            out["clusters"] = cluster_stats(os.path.join(path, registry.DEDUP.folder))
        out["contamination"] = contamination_stats(os.path.join(path, registry.DECONTAMINATE.folder))
        m = _load_json(os.path.join(path, registry.RELEASE.folder, "manifest.json"))
        if m:
            out["release"] = {"splits": m["splits"], "byte_share_per_source": m["byte_share_per_source"],
                              "decontaminated": m["decontaminated"], "config": m["config"]}
        tok_root = os.path.join(path, registry.TOKENIZE.folder)
        if os.path.isdir(tok_root) and what_is(tok_root).kind == "token_root":
            out["tokens"] = token_stats(tok_root)
            # the pipeline's token shares: the first encoding's (one tokenization of the same release)
            tokens = next((v["tokens_per_source"] for v in out["tokens"].values() if v["tokens"]), None)
        shards_root = os.path.join(path, registry.PACK.folder)
        if os.path.isdir(shards_root) and what_is(shards_root).kind in ("shards_root", "packed"):
            out["shards"] = _shard_stats_under(shards_root)
    if ledgers:
        out["pipeline"] = pipeline_stats(ledgers, tokens)
    return out
