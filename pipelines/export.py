"""Export a token cache for the trainers people already use: Megatron-core indexed datasets (`--format
megatron`, PREFIX.bin + PREFIX.idx), litdata's chunked tokens (`litdata`, litgpt) and MosaicML's MDS (`mds`,
llm-foundry), the last two as a folder PREFIX/ (packers/chunked.py).

Each document of the cache is one sequence, its EOS included as the cache holds it, in the cache's order (the
release's). `--split` picks train/validation/test, `--range A:B` the documents whose first token lies in that
fraction of the split's tokens (as `shards --range` does), `--by-source` one dataset per source, so a Megatron run
can blend them with `--data-path` weights (the manifest gives SlimPajama's token shares as such a list).

The export streams one cache file at a time (a file's tokens, memory-mapped, and its per-document table), so
memory does not depend on the corpus. It is one writer per output, in the driver: the work is a copy, bounded by
the disk, not by cores. Outputs are renamed into place when complete, then `PREFIX.json` (documents, tokens,
bytes, SHA-256 of each file, the run key) is written last; a rerun with the same cache and settings finds it and
does nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re

import numpy as np
import pyarrow.parquet as pq

from slimpajama.core.release import SPLITS
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.writers import file_digest, write_bytes_atomic
from slimpajama.packers.chunked import CHUNK_BYTES
from slimpajama.packers.exports import FORMATS, WRITERS
from slimpajama.packers.megatron import MegatronWriter, megatron_dtype
from slimpajama.packers.pack import check_range, in_range

from .markers import output_file, run_key
from .tokens import cache_files, token_cache

log = logging.getLogger(__name__)
SUMMARY_VERSION = 2  # 2: every file with its size and SHA-256 under "files"; 1: Megatron's .bin/.idx "sizes"
# Megatron's examples split every dataset 969,30,1 and round each part's share of its documents: under this many
# documents the last part is empty and Megatron's sample index never fills (it loops)
MEGATRON_MIN_DOCS = 500


def _docs(cache: str, key: str, records: dict) -> tuple[np.ndarray, list[str]]:
    """(tokens per document, source per document) of one cache file."""
    table = pq.read_table(output_file(cache, key + ".docs.parquet", records[key + ".docs.parquet"]).local())
    return table["tokens"].to_numpy().astype(np.int64), table["source"].to_pylist()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def run_export(path: str, prefix: str, *, fmt: str = "megatron", split: str = "train",
               range_: tuple[float, float] = (0.0, 1.0), by_source: bool = False, encoding: str | None = None,
               chunk_bytes: int = CHUNK_BYTES) -> dict:
    if fmt not in WRITERS:
        raise SlimPajamaError(f"--format must be one of {', '.join(WRITERS)}, not {fmt!r}")
    if split not in SPLITS:
        raise SlimPajamaError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    check_range(range_)
    if not prefix or prefix.endswith(("/", os.sep)) or os.path.basename(prefix) in (".", ".."):
        raise SlimPajamaError(f"--out {prefix!r} is not a file prefix: give one such as data/export/train (the "
                              "export writes PREFIX.json beside PREFIX.bin + PREFIX.idx, or the folder PREFIX/)")
    cache = token_cache(path, encoding, command="export")
    manifest, records, keys = cache_files(cache, split)
    if not keys:
        raise SlimPajamaError(f"the token cache at {cache} has no {split} documents")
    dtype = megatron_dtype(manifest["fingerprint"]["dtype"])
    key = run_key([records[k + s]["sha256"] for k in keys for s in (".tokens.bin", ".docs.parquet")], split,
                  list(range_), by_source, dtype.name, fmt, chunk_bytes if fmt != "megatron" else None)
    previous = _summary(prefix)
    done = _done(previous, key, prefix)
    if done is not None:
        return {**done, "resumed": True}
    if not storage.is_remote(prefix) and os.path.dirname(prefix):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)

    token_dtype = np.dtype(manifest["fingerprint"]["dtype"])
    # the split's tokens, from the sizes of its token files: the document tables are read one file at a time
    total = sum(records[k + ".tokens.bin"]["size"] for k in keys) // token_dtype.itemsize
    writers: dict = {}
    counts: dict[str, list[int]] = {}
    try:
        first = 0
        for k in keys:
            lens, sources = _docs(cache, k, records)
            starts = first + np.concatenate(([0], np.cumsum(lens)[:-1])) if len(lens) else np.zeros(0, np.int64)
            first += int(lens.sum())
            sel = in_range(starts, total, range_)
            if not sel.any():
                continue
            tok_rec = records[k + ".tokens.bin"]
            tokens = np.memmap(output_file(cache, k + ".tokens.bin", tok_rec).local(), dtype=token_dtype, mode="r")
            local = np.concatenate(([0], np.cumsum(lens)))
            groups = {}
            for i in np.flatnonzero(sel):
                groups.setdefault(sources[i] if by_source else "", []).append(i)
            for group, docs in groups.items():
                docs = np.asarray(docs)
                out = writers.get(group)
                if out is None:
                    name = f"{prefix}_{_safe(group)}" if by_source else prefix
                    out = writers[group] = MegatronWriter(name, dtype) if fmt == "megatron" else \
                        WRITERS[fmt](name, dtype, chunk_bytes)
                    counts[group] = [0, 0]
                if np.all(np.diff(docs) == 1):  # one contiguous run of documents: a slice of the file
                    part = tokens[local[docs[0]]: local[docs[-1] + 1]]
                else:
                    part = np.concatenate([tokens[local[i]: local[i + 1]] for i in docs])
                out.add(part, lens[docs])
                counts[group][0] += len(docs)
                counts[group][1] += int(lens[docs].sum())
            del tokens
        for w in writers.values():
            w.close()
    except BaseException as e:
        for w in writers.values():
            w.__exit__(type(e), e, None)
        raise
    if not writers:  # nothing was written: no dataset, and no PREFIX.json that would claim one
        raise SlimPajamaError(f"--range {range_[0]:g}:{range_[1]:g} holds no document of the {split} split (a range "
                              f"holds the documents whose first token lies in it; the split has {total:,} tokens): "
                              "widen it")
    datasets = {}
    for group, w in sorted(writers.items()):
        # files relative to PREFIX.json's folder: the export stays whole when moved or read from elsewhere
        files = {_relative(prefix, f): {"bytes": storage.file_size(f), "sha256": file_digest(f)} for f in w.files}
        datasets[group or "all"] = {"prefix": _relative(prefix, w.prefix), "documents": counts[group][0],
                                    "tokens": counts[group][1], "bytes": sum(f["bytes"] for f in files.values()),
                                    "files": files}
    if fmt == "megatron":
        for name, d in datasets.items():
            if d["documents"] < MEGATRON_MIN_DOCS:
                log.warning(f"{name}: {d['documents']} documents, too few for Megatron's usual --split 969,30,1 (its "
                            "test part gets none and Megatron loops): train with --split 100,0,0 and pass the "
                            "validation and test exports (--split validation/test here) as "
                            "--valid-data-path/--test-data-path")
    tokens_out = sum(d["tokens"] for d in datasets.values())
    summary = {"format": FORMATS[fmt], "version": SUMMARY_VERSION, "dtype": dtype.name, "cache": cache,
               "split": split, "range": list(range_), "by_source": by_source, "run_key": key,
               "documents": sum(d["documents"] for d in datasets.values()), "tokens": tokens_out,
               "bytes": sum(d["bytes"] for d in datasets.values()), "datasets": datasets,
               # the sources' token shares in this release, as weights to blend them (Megatron's --data-path:
               # weight prefix pairs, absolute: Megatron resolves it from wherever training starts)
               "weights": {name: round(d["tokens"] / max(tokens_out, 1), 6) for name, d in datasets.items()}}
    if fmt == "megatron":
        summary["data_path"] = " ".join(f"{summary['weights'][name]:.6f} "
                                        f"{_absolute(dataset_prefix(prefix, d['prefix']))}"
                                        for name, d in datasets.items())
    write_bytes_atomic(prefix + ".json", json.dumps(summary, indent=1, sort_keys=True).encode())
    written = {dataset_prefix(prefix, rel) for d in datasets.values() for rel in d["files"]}
    for stale in sorted(_files(previous, prefix) - written):  # an earlier export here, e.g. --by-source
        if storage.stat(stale) is not None:
            storage.remove(stale)
        if not storage.is_remote(stale):
            with contextlib.suppress(OSError):  # a chunked dataset's folder, once empty
                os.rmdir(os.path.dirname(stale))
    return {**summary, "resumed": False}


def _summary(prefix: str) -> dict | None:
    """The PREFIX.json of the export last written at `prefix`, None if there is none (or not one of ours)."""
    try:
        summary = json.loads(storage.read_bytes(prefix + ".json"))
    except (FileNotFoundError, ValueError):
        return None
    return summary if isinstance(summary, dict) and isinstance(summary.get("datasets"), dict) else None


def _files(summary: dict | None, prefix: str) -> set[str]:
    """The paths of every file an export's PREFIX.json lists (either version)."""
    found = set()
    for d in (summary or {}).get("datasets", {}).values():
        if "files" in d:
            found |= {dataset_prefix(prefix, rel) for rel in d["files"]}
        else:  # version 1: a Megatron dataset's two files, its prefix as given to that export
            found |= {d["prefix"] + s for s in d.get("sizes", ())}
    return found


def _done(summary: dict | None, key: str, prefix: str) -> dict | None:
    """`summary` if it is a complete export with the same run key whose files are intact, else None."""
    if summary is None or summary.get("run_key") != key or summary.get("version") != SUMMARY_VERSION:
        return None
    for d in summary["datasets"].values():  # sizes, not digests: a rerun should not read a 1 TB export back
        if any(storage.file_size(dataset_prefix(prefix, rel)) != f["bytes"] for rel, f in d["files"].items()):
            return None
    return summary


def _relative(prefix: str, path: str) -> str:
    """`path` (a dataset or a file the export wrote, at or below the prefix's folder) relative to PREFIX.json's
    folder."""
    folder = storage.parent(prefix)
    full = path if storage.is_remote(path) else os.path.abspath(path)
    return full[len(folder.rstrip("/")) + 1:]


def dataset_prefix(prefix: str, name: str) -> str:
    """A dataset or a file of PREFIX.json (named relative to its folder) as a path."""
    return storage.join(storage.parent(prefix), name)


def _absolute(path: str) -> str:
    return path if storage.is_remote(path) else os.path.abspath(path)
