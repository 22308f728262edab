"""Dedup against earlier releases (`dedup --against OLD_DEDUP_DIR`): the index every dedup run writes of what it
kept, and how a later run matches its new documents to it.

Every complete dedup run writes `<out>/index/`: per band and key range, the band keys of the documents it kept
(`b<band>-p<part>.keys.npy`, sorted; `.docs.npy`, each key's document as its ordinal among the kept documents, in
the run's output order, ascending within equal keys), and `index.json` last (the MinHash settings, the kept
documents, the output shards with their rows, so an ordinal names a doc_id). A later run with `--against` reads,
in each of its LSH tasks (band b, key range p), the slice of every old index in that range (sorted keys:
searchsorted on memory-mapped files) and records, for each new document whose key is in it, the old document it
matched (the earliest release, then the smallest ordinal). A new document is removed against the release when
its cluster among the new documents holds any matched document: exactly what one LSH over old + new, with the old
documents inserted first and never removed, decides (a cluster with an old document keeps that old document),
without re-signing or even re-reading an old document.

A match is coded as one int64, release number << 32 | ordinal, so the earliest release's smallest ordinal is the
minimum.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from slimpajama.core.ledger import Ledger
from slimpajama.core.lsh import INDEX_DTYPE
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.writers import save_npy_atomic, write_bytes_atomic

from .bands import collect_partition, key_range
from .stage import Stage, Task, TaskResult

INDEX_DIR = "index"
INDEX_FILE = "index.json"
INDEX_VERSION = 1
NO_MATCH = np.iinfo(np.int64).max
SETTINGS = ("ngram", "num_perm", "bands", "rows", "hash", "seed", "scheme")  # must equal the old run's to compare keys


class IndexStage(Stage):
    """Per band x key range: the band keys of the documents this run kept (valid ones: a document without
    shingles has no keys), sorted, with their kept ordinals."""

    name = "index"
    keeps_ledger = False

    def fingerprint(self) -> dict:
        return {"stage": self.name, "version": INDEX_VERSION}

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        p = task.params
        keys, index = collect_partition(task.side, p["band"], p["part"], p["parts"], p["offsets"])
        removed = np.load(task.side["removed"][0].local())
        pos = np.searchsorted(removed, index)
        gone = pos < len(removed)
        gone[gone] = removed[pos[gone]] == index[gone]
        keys, ordinals = keys[~gone], (index[~gone] - pos[~gone]).astype(INDEX_DTYPE)
        order = np.argsort(keys, kind="stable")  # equal keys stay in ordinal order
        outputs = []
        for suffix, array in ((".keys.npy", keys[order]), (".docs.npy", ordinals[order])):
            rel = task.key + suffix
            save_npy_atomic(storage.join(out_dir, rel), array)
            outputs.append(rel)
        return TaskResult(outputs=outputs, ledger=Ledger(self.name), extra={"keys": int(len(keys))})


def index_tasks(side: dict, offsets: list[int], bands: int, parts: int, run: str) -> list[Task]:
    return [Task(f"b{b:03d}-p{p:04d}", (), {"band": b, "part": p, "parts": parts, "offsets": offsets,
                                                 "run": run}, side=side)
            for b in range(bands) for p in range(parts)]


def write_index_file(out_dir: str, cfg: dict, run: str, parts: int, shards: list[tuple[str, int]]) -> None:
    """index.json, last: its presence makes the folder a release later runs can dedup against."""
    info = {"version": INDEX_VERSION, "config": cfg, "run_key": run, "parts": parts,
            "docs": sum(n for _, n in shards), "shards": [list(s) for s in shards]}
    write_bytes_atomic(storage.join(out_dir, INDEX_DIR, INDEX_FILE), json.dumps(info, indent=1).encode())


def index_complete(out_dir: str, run: str) -> bool:
    try:
        return json.loads(storage.read_bytes(storage.join(out_dir, INDEX_DIR, INDEX_FILE)))["run_key"] == run
    except (FileNotFoundError, ValueError, KeyError):
        return False


class Release:
    """An earlier dedup run's index, opened read-only and checked against this run's settings."""

    def __init__(self, path: str, cfg: dict):
        self.path = str(path)
        where = storage.join(self.path, INDEX_DIR, INDEX_FILE)
        try:
            self.info = json.loads(storage.read_bytes(where))
        except FileNotFoundError:
            raise SlimPajamaError(f"--against {self.path}: not a complete dedup run (no {INDEX_DIR}/{INDEX_FILE}; "
                                  "pass the --out of a finished `slimpajama dedup`, rerun it to finish or to write "
                                  "its index)") from None
        except ValueError as e:
            raise SlimPajamaError(f"--against {where}: not valid JSON ({e}): rerun that dedup") from None
        old = self.info.get("config", {})
        old_scheme = old.get("scheme", 1)  # an index from before schemes were versioned: fast 1, slimpajama 1
        if old.get("hash") == cfg["hash"] and old_scheme != cfg["scheme"]:
            raise SlimPajamaError(f"--against {self.path}: its index was made by the {cfg['hash']} hash's scheme "
                                  f"{old_scheme}, this version's is {cfg['scheme']} (their band keys never match): "
                                  f"rebuild it by running that dedup again with this version")
        wrong = [f"{k} {old.get(k)!r} there, {cfg[k]!r} here" for k in SETTINGS if k != "scheme" and old.get(k) != cfg[k]]
        if wrong:
            raise SlimPajamaError(f"--against {self.path}: other MinHash settings ({'; '.join(wrong)}): band keys "
                                  "compare only under the same settings; dedup with that run's")
        self.docs, self.parts = int(self.info["docs"]), int(self.info["parts"])

    def slice(self, band: int, part: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
        """The old keys of `band` in this run's key range `part` of `parts`, sorted, with their ordinals: from the
        old run's own key ranges that overlap it, each cut by searchsorted (memory: the slice alone)."""
        lo, hi = key_range(part, parts)
        keys, docs = [], []
        for old_part in range(self.parts):
            olo, ohi = key_range(old_part, self.parts)
            if ohi <= lo or olo >= hi:
                continue
            base = storage.join(self.path, INDEX_DIR, f"b{band:03d}-p{old_part:04d}")
            k = np.load(storage.local_copy(base + ".keys.npy"), mmap_mode="r")
            d = np.load(storage.local_copy(base + ".docs.npy"), mmap_mode="r")
            a = int(np.searchsorted(k, np.uint64(lo), side="left"))
            b = int(np.searchsorted(k, np.uint64(hi - 1), side="right"))  # (hi itself may be 2**64)
            keys.append(np.asarray(k[a:b]))
            docs.append(np.asarray(d[a:b]))
        if not keys:
            return np.zeros(0, np.uint64), np.zeros(0, INDEX_DTYPE)
        return np.concatenate(keys), np.concatenate(docs)

    def doc_ids(self, ordinals: np.ndarray) -> list[str]:
        """The doc_id of each kept ordinal, read from the old run's output shards (their doc_id column only)."""
        shards = self.info["shards"]
        starts = np.cumsum([0] + [n for _, n in shards])
        which = np.searchsorted(starts, ordinals, side="right") - 1
        out = [""] * len(ordinals)
        for s in np.unique(which):
            ids = pq.read_table(storage.join(self.path, shards[s][0]), columns=["doc_id"])["doc_id"]
            for i in np.flatnonzero(which == s):
                out[i] = ids[int(ordinals[i] - starts[s])].as_py()
        return out


def match_partition(releases: list[Release], band: int, part: int, parts: int, keys: np.ndarray,
                    index: np.ndarray) -> np.ndarray:
    """(new global index, match code) of every new document in this partition whose band key an old release holds,
    one row per document (its earliest release's smallest ordinal), sorted by index."""
    found_index, found_code = [], []
    for r, release in enumerate(releases):
        old_keys, old_docs = release.slice(band, part, parts)
        if not len(old_keys):
            continue
        pos = np.searchsorted(old_keys, keys)  # the leftmost equal key: the smallest ordinal
        hit = pos < len(old_keys)
        hit[hit] = old_keys[pos[hit]] == keys[hit]
        found_index.append(index[hit].astype(np.int64))
        found_code.append((np.int64(r) << 32) | old_docs[pos[hit]].astype(np.int64))
    if not found_index:
        return np.zeros((0, 2), np.int64)
    return min_per_doc(np.concatenate(found_index), np.concatenate(found_code))


def min_per_doc(index: np.ndarray, code: np.ndarray) -> np.ndarray:
    """(index, the smallest code of that index) rows, sorted by index."""
    if not len(index):
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((code, index))
    index, code = index[order], code[order]
    first = np.concatenate(([True], index[1:] != index[:-1]))
    return np.stack([index[first], code[first]], axis=1)


def removed_against(members: np.ndarray, roots: np.ndarray, matches: np.ndarray) -> np.ndarray:
    """(new global index, code) of every new document removed against the releases, sorted by index: each one in
    a cluster (among the new documents) that holds a matched document, or matched itself; its code is its own
    match, else its cluster's smallest."""
    if not len(matches):
        return np.zeros((0, 2), np.int64)
    g, code = matches[:, 0], matches[:, 1]
    pos = np.searchsorted(members, g)
    inside = pos < len(members)
    inside[inside] = members[pos[inside]] == g[inside]
    root = g.copy()
    root[inside] = roots[pos[inside]]
    flagged = min_per_doc(root[inside], code[inside])  # (cluster root, its smallest code)
    at = np.searchsorted(flagged[:, 0], roots)
    in_flagged = at < len(flagged)
    in_flagged[in_flagged] = flagged[at[in_flagged], 0] == roots[in_flagged]
    docs = np.union1d(g, members[in_flagged])
    out = np.empty(len(docs), np.int64)
    out[np.searchsorted(docs, members[in_flagged])] = flagged[at[in_flagged], 1]
    out[np.searchsorted(docs, g)] = code  # a document's own match names it, before its cluster's
    return np.stack([docs.astype(np.int64), out], axis=1)
