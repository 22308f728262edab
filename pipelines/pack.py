"""Pack a token cache into training shards, one Ray task per split: `<shards>/seq<N>[-<a>-<b>]/<split>/`
part-NNNNN.arrow (Arrow IPC stream) and slimpajama-index.json (packers/format.py), rows in a seeded global shuffle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex

import numpy as np
import pyarrow as pa

from slimpajama.core import defaults
from slimpajama.core.ledger import Ledger
from slimpajama.core.release import SPLITS
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.writers import file_digest, write_bytes_atomic
from slimpajama.packers.format import INDEX_FILE, write_index, write_rows
from slimpajama.packers.pack import (
    TokenStream,
    bestfit_plan,
    check_range,
    concat_cut_docs,
    concat_plan,
    in_range,
    row_order,
)
from slimpajama.tokenize.encodings import encoding_name, get_encoding

from .markers import STATE_DIR, output_file
from .runner import Progress, StageReport, run_stage
from .stage import ShardOutcome, ShardTask, Stage
from .tokens import DOCS_SCHEMA, cache_files, split_of_key, token_cache

BATCH_ROWS = 1024  # rows per record batch in packed files; files hold a multiple of it



class PackStage(Stage):
    name = "pack"
    keeps_ledger = False  # rows of tokens, not documents

    def __init__(self, seq: int, packing: str, range_: tuple[float, float], seed: int, file_bytes: int):
        if packing not in ("concat", "bestfit"):
            raise SlimPajamaError(f"--packing must be concat or bestfit, not {packing!r}")
        self.seq, self.packing, self.seed, self.file_bytes = seq, packing, seed, file_bytes
        self.range = check_range(range_)

    def fingerprint(self) -> dict:
        return {"stage": self.name, "seq": self.seq, "packing": self.packing, "range": list(self.range),
                "seed": self.seed, "file_bytes": self.file_bytes}

    def run_shard(self, task: ShardTask, out_dir: str) -> ShardOutcome:
        split = task.key
        cache = task.params["cache"]
        tok_files, doc_files = task.side["tokens"], task.side["docs"]
        dtype = np.dtype(cache["dtype"])
        arrays = [np.memmap(f.local(), dtype=dtype, mode="r") if f.size else np.zeros(0, dtype) for f in tok_files]
        stream = TokenStream(arrays)
        docs = pa.concat_tables([storage.open_parquet(f.path).read() for f in doc_files]) if doc_files else DOCS_SCHEMA.empty_table()
        lens = docs["tokens"].to_numpy().astype(np.int64)
        starts = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)
        # sources as small integer codes: 2 bytes per document instead of a Python string each
        encoded = docs["source"].combine_chunks().dictionary_encode() if docs.num_rows else None
        source_names = encoded.dictionary.to_pylist() if encoded is not None else []
        source_codes = encoded.indices.to_numpy() if encoded is not None else np.zeros(0, np.int32)
        total = int(lens.sum())
        sel = in_range(starts, total, self.range if split == "train" else defaults.PACK_RANGE)
        d0, d1 = (int(np.argmax(sel)), int(len(sel) - np.argmax(sel[::-1]))) if sel.any() else (0, 0)
        t0, t1 = (int(starts[d0]), int(starts[d1 - 1] + lens[d1 - 1])) if d1 > d0 else (0, 0)
        s_starts, s_lens, s_src = starts[d0:d1], lens[d0:d1], source_codes[d0:d1]
        concat_cut = concat_cut_docs(s_starts, s_starts + s_lens, t0, self.seq)
        if self.packing == "concat":
            plan = concat_plan(s_starts, t0, t1, self.seq)
            used_end = t0 + plan.rows * self.seq + 1 if plan.rows else t0
            per_doc = np.clip(np.minimum(s_starts + s_lens, used_end) - s_starts, 0, None)
            cut = concat_cut
        else:
            plan, cut = bestfit_plan(s_starts, s_lens, self.seq, pad_id=cache["eos"])
            per_doc = s_lens
        rows = plan.rows
        width = self.seq + 1
        rows_per_file = max(BATCH_ROWS, self.file_bytes // (width * dtype.itemsize) // BATCH_ROWS * BATCH_ROWS)
        order = row_order(rows, self.seed)
        files, padding_total = [], 0
        for k, lo in enumerate(range(0, rows, rows_per_file)):  # an empty split: its index alone
            ids = order[lo: lo + rows_per_file]
            tokens, doc_lens, padding = plan.materialize(stream, ids)
            rel = f"{split}/part-{k:05d}.arrow"
            path = storage.join(out_dir, rel)
            write_rows(path, tokens, doc_lens, padding, BATCH_ROWS)
            padding_total += int(padding.sum())
            files.append({"path": rel.rsplit("/", 1)[1], "rows": len(ids), "bytes": storage.file_size(path),
                          "sha256": file_digest(path)})
        sums = np.bincount(s_src, weights=per_doc, minlength=len(source_names)) if len(s_src) else []
        per_source = {name: int(n) for name, n in zip(source_names, sums, strict=False) if n}
        n_docs = int(d1 - d0)
        index = {
            "split": split, "encoding": cache["encoding"],
            "vocab_size": cache["vocab_size"], "eos_id": cache["eos"], "dtype": dtype.name, "seq_len": self.seq,
            "packing": self.packing, "range": list(self.range if split == "train" else defaults.PACK_RANGE),
            "seed": self.seed, "batch_rows": BATCH_ROWS, "rows": rows, "tokens": rows * width,
            "padding_tokens": padding_total, "padding_fraction": round(padding_total / max(rows * width, 1), 6),
            "docs": n_docs, "docs_cut": cut, "docs_cut_fraction": round(cut / max(n_docs, 1), 6),
            "concat_comparison": {"padding_fraction": 0.0, "docs_cut_fraction": round(concat_cut / max(n_docs, 1), 6)},
            "cache_tokens": total, "range_tokens": t1 - t0, "tokens_per_source": dict(sorted(per_source.items())),
            "input_fingerprint": task.params["fingerprint"], "files": files,
        }
        write_index(storage.join(out_dir, split), index)
        return ShardOutcome(outputs=[f"{split}/{f['path']}" for f in files] + [f"{split}/{INDEX_FILE}"],
                            ledger=Ledger(self.name), extra={"rows": rows, "padding_fraction": index["padding_fraction"]})


def shards_dir_name(seq: int, range_: tuple[float, float]) -> str:
    return f"seq{seq}" if tuple(range_) == defaults.PACK_RANGE else f"seq{seq}-{range_[0]:g}-{range_[1]:g}"


log = logging.getLogger(__name__)
REBUILD_FILE = "_rebuild.json"  # in <shards>/_state: the command that rebuilds a damaged file (see `verify`)


def rebuild_command(shards_dir: str) -> str | None:
    """The `slimpajama shards` command that rebuilds the damaged files of `shards_dir`: the settings that wrote it,
    with `shards_dir` itself as --out (a copied folder is rebuilt where it is, not where it was packed)."""
    try:
        rebuild = json.loads(storage.read_bytes(storage.join(shards_dir, STATE_DIR, REBUILD_FILE)))
        return (f"slimpajama shards {shlex.quote(rebuild['cache'])} {rebuild['args']} --out "
                f"{shlex.quote(shards_dir)} --verify-outputs")
    except (FileNotFoundError, ValueError, KeyError):
        return None


def run_shards(cache_dir: str, out_root: str, seq: int, *, packing: str = "concat",
               range_: tuple[float, float] = defaults.PACK_RANGE, seed: int = 0,
               file_bytes: int = defaults.SHARD_FILE_BYTES, out_dir: str | None = None, workers: int | None = None,
               ray_address: str | None = None, progress: Progress | None = None, verify_outputs: bool = False,
               encoding: str | None = None) -> StageReport:
    cache_dir = token_cache(cache_dir, encoding)
    manifest, records, keys = cache_files(cache_dir)
    fp = manifest["fingerprint"]
    if not manifest["files"]:
        raise SlimPajamaError(f"the token cache at {cache_dir} is empty")
    enc = get_encoding(fp["encoding"])
    # the encoding as every command names it (gpt2, not tiktoken's r50k_base, which the cache's fingerprint holds)
    cache = {"encoding": encoding_name(fp["encoding"]), "dtype": fp["dtype"], "eos": fp["eos"],
             "vocab_size": enc.n_vocab}
    tasks = []
    for split in SPLITS:
        files = {kind: tuple(output_file(cache_dir, k + suffix, records[k + suffix])
                             for k in keys if split_of_key(k) == split)
                 for kind, suffix in (("tokens", ".tokens.bin"), ("docs", ".docs.parquet"))}
        if not files["tokens"]:
            continue
        # the task's identity: the cache's fingerprint and every file it reads (as side inputs, named)
        fingerprint = hashlib.sha256(json.dumps(
            [fp, [f.identity() for pair in zip(files["tokens"], files["docs"], strict=True) for f in pair]]
        ).encode()).hexdigest()
        tasks.append(ShardTask(split, (), {"cache": cache, "fingerprint": fingerprint}, side=files))
    out = out_dir or storage.join(out_root, shards_dir_name(seq, range_))
    report = run_stage(PackStage(seq, packing, range_, seed, file_bytes), tasks, out, workers=workers,
                       ray_address=ray_address, progress=progress, verify_outputs=verify_outputs)
    report.extra = {"rows": {m["key"]: m["extra"]["rows"] for m in report.markers}}
    for split, rows in report.extra["rows"].items():
        if not rows:
            log.warning(f"{shards_dir_name(seq, range_)}/{split}: 0 rows (its tokens are fewer than one row of "
                        f"{seq + 1:,}): a larger --holdout at release, or a shorter --seq, gives it rows")
    rebuild = {"cache": cache_dir if storage.is_remote(cache_dir) else os.path.abspath(cache_dir),
               "args": f"--seq {seq} --packing {packing} --range {range_[0]:g}:{range_[1]:g} --seed {seed} "
                       f"--file-bytes {file_bytes}"}
    write_bytes_atomic(storage.join(out, STATE_DIR, REBUILD_FILE), json.dumps(rebuild).encode())
    return report
