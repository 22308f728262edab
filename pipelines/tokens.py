"""Tokenize (per input file, Ray) into a token cache, then pack the cache into 2k/8k shards.

Token cache, `<tokens>/<encoding>/`, mirrors the input paths (a release: train/chunk1/example_train_0, ...):
  <key>.tokens.bin    uint16 (or uint32) tokens, every document followed by EOS
  <key>.docs.parquet  per document: source, tokens (including the EOS)
so packing at 2k and then at 8k never re-tokenizes. Packed shards, `<shards>/seq<N>[-<a>-<b>]/<split>/`:
part-NNNNN.arrow (Arrow IPC stream) and index.json (see packers/format.py).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow as pa

from slimpajama.core.ledger import Ledger
from slimpajama.errors import SlimPajamaError
from slimpajama.io import outputs, storage
from slimpajama.io.discover import discover_all
from slimpajama.io.documents import read_documents
from slimpajama.io.paths import DOCUMENTS, require, require_inputs
from slimpajama.io.reading import ReadOptions
from slimpajama.io.spans import DEFAULT_TASK_BYTES
from slimpajama.io.writers import (
    ParquetShardWriter,
    atomic_path,
    file_digest,
    sha256_file,
    write_bytes_atomic,
)
from slimpajama.packers.format import FORMAT, FORMAT_VERSION, INDEX_FILE, write_rows
from slimpajama.packers.pack import TokenStream, bestfit_plan, concat_cut_docs, concat_plan, row_order
from slimpajama.tokenize.batch import encode_documents, token_dtype
from slimpajama.tokenize.encodings import R50K_SHA256, encoding_name, get_encoding

from .docstage import _ErrorLog
from .runner import STATE_DIR, ShardOutcome, ShardTask, StageReport, output_file, run_stage

SPLITS = ("train", "validation", "test")
DOCS_SCHEMA = pa.schema([("source", pa.string()), ("tokens", pa.int32())])
BATCH_ROWS = 1024  # rows per record batch in packed files; files hold a multiple of it


def split_of_key(key: str) -> str:
    head = key.split("/", 1)[0]
    return head if head in SPLITS else "train"


class TokenizeStage:
    name = "tokenize"

    def __init__(self, encoding: str = "gpt2", threads: int = 1, read: ReadOptions | None = None):
        self.encoding, self.threads, self.read = encoding, threads, read or ReadOptions()
        self._fingerprint: dict | None = None  # computed once (the runner asks for it for every task)

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            enc = get_encoding(self.encoding)
            if enc.name == "r50k_base":
                ident = R50K_SHA256
            elif os.path.isfile(self.encoding):
                ident = sha256_file(self.encoding)
            else:  # a named tiktoken encoding: tiktoken checks its file against its own expected hash
                ident = f"tiktoken:{enc.name}"
            self._fingerprint = {"stage": self.name, "encoding": enc.name, "bpe_sha256": ident,
                                 "eos": enc.eot_token, "dtype": token_dtype(enc.n_vocab).name}
        return self._fingerprint

    def run_shard(self, task: ShardTask, out_dir: str) -> ShardOutcome:
        enc = get_encoding(self.encoding)
        ledger = Ledger(self.name)
        err_rel = f"{STATE_DIR}/{task.key}.errors.jsonl"
        errors = _ErrorLog(storage.join(out_dir, err_rel), ledger, fail=self.read.on_error == "fail")
        tok_rel, docs_rel = task.key + ".tokens.bin", task.key + ".docs.parquet"
        per_source: dict[str, int] = {}
        ok = False
        try:
            with atomic_path(storage.join(out_dir, tok_rel)) as tmp, open(tmp, "wb") as out, \
                    ParquetShardWriter(storage.join(out_dir, docs_rel), schema=DOCS_SCHEMA) as docs:
                for f in task.inputs:
                    for batch in read_documents(f, errors, **self.read.reader_kwargs()):
                        ledger.batch_in(batch)
                        ledger.batch_out(batch)
                        tokens, lengths = encode_documents(enc, batch.column("text").to_pylist(), self.threads)
                        out.write(tokens.tobytes())
                        docs.write(pa.table({"source": batch.column("source"), "tokens": lengths.astype(np.int32)},
                                            schema=DOCS_SCHEMA))
                        for s, n in zip(batch.column("source").to_pylist(), lengths.tolist(), strict=True):
                            per_source[s] = per_source.get(s, 0) + n
            ok = True
        finally:
            errors.close(ok)
        return ShardOutcome(outputs=[tok_rel, docs_rel], ledger=ledger, errors_file=err_rel if errors.count else None,
                            extra={"tokens": sum(per_source.values()), "tokens_per_source": per_source})


def run_tokenize(inputs, out_root: str, encoding: str = "gpt2", *, threads: int = 1, read: ReadOptions | None = None,
                 workers: int | None = None, ray_address: str | None = None, progress: bool = True,
                 verify_inputs: bool = False, task_bytes: int | None = DEFAULT_TASK_BYTES) -> StageReport:
    from .split import split_tasks

    stage = TokenizeStage(encoding, threads, read)
    stage.fingerprint()  # obtain the encoding (offline bootstrap) once, before any task needs it
    out = storage.join(out_root, encoding_name(encoding))
    require_inputs(inputs, DOCUMENTS, "tokenize")
    found = discover_all(inputs, out=out, verify=verify_inputs)
    tasks = split_tasks(found.files, out, task_bytes, workers=workers, ray_address=ray_address)
    return run_stage(stage, tasks, out, workers=workers, ray_address=ray_address, progress=progress,
                     skipped_files=found.skipped)


# ------------------------------------------------------------------------------------------------ pack


class PackStage:
    name = "pack"
    keeps_ledger = False

    def __init__(self, seq: int, packing: str, range_: tuple[float, float], seed: int, file_bytes: int):
        if packing not in ("concat", "bestfit"):
            raise SlimPajamaError(f"--packing must be concat or bestfit, not {packing!r}")
        if not 0 <= range_[0] < range_[1] <= 1:
            raise SlimPajamaError(f"--range must be A:B with 0 <= A < B <= 1, not {range_[0]}:{range_[1]}")
        self.seq, self.packing, self.range, self.seed, self.file_bytes = seq, packing, range_, seed, file_bytes

    def fingerprint(self) -> dict:
        return {"stage": self.name, "seq": self.seq, "packing": self.packing, "range": list(self.range),
                "seed": self.seed, "file_bytes": self.file_bytes}

    def run_shard(self, task: ShardTask, out_dir: str) -> ShardOutcome:
        split = task.key
        cache = task.params["cache"]
        tok_files, doc_files = task.inputs[0::2], task.inputs[1::2]
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
        # doc-aligned range: the documents whose first token lies in [a * T, b * T) (train only)
        a, b = self.range if split == "train" else (0.0, 1.0)
        sel = (starts >= a * total) & (starts < b * total) if total else np.zeros(0, bool)
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
        for k, lo in enumerate(range(0, rows, rows_per_file)):
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
            "format": FORMAT, "version": FORMAT_VERSION, "split": split, "encoding": cache["encoding"],
            "vocab_size": cache["vocab_size"], "eos_id": cache["eos"], "dtype": dtype.name, "seq_len": self.seq,
            "packing": self.packing, "range": list(self.range) if split == "train" else [0.0, 1.0],
            "seed": self.seed, "batch_rows": BATCH_ROWS, "rows": rows, "tokens": rows * width,
            "padding_tokens": padding_total, "padding_fraction": round(padding_total / max(rows * width, 1), 6),
            "docs": n_docs, "docs_cut": cut, "docs_cut_fraction": round(cut / max(n_docs, 1), 6),
            "concat_comparison": {"padding_fraction": 0.0, "docs_cut_fraction": round(concat_cut / max(n_docs, 1), 6)},
            "cache_tokens": total, "range_tokens": t1 - t0, "tokens_per_source": dict(sorted(per_source.items())),
            "input_fingerprint": task.params["fingerprint"], "files": files,
        }
        write_bytes_atomic(storage.join(out_dir, split, INDEX_FILE), json.dumps(index, indent=1).encode())
        return ShardOutcome(outputs=[f"{split}/{f['path']}" for f in files] + [f"{split}/{INDEX_FILE}"],
                            ledger=Ledger(self.name), extra={"rows": rows, "padding_fraction": index["padding_fraction"]})


def shards_dir_name(seq: int, range_: tuple[float, float]) -> str:
    return f"seq{seq}" if tuple(range_) == (0.0, 1.0) else f"seq{seq}-{range_[0]:g}-{range_[1]:g}"


def token_cache(path: str, encoding: str | None = None, command: str = "shards") -> str:
    """The token cache at `path`: the cache itself, or the tokenize `--out` root holding one per encoding (the
    only one there, or `encoding`)."""
    found = require(path, ("token_cache", "token_root"), command)
    if found.kind == "token_cache":
        return path
    if encoding:
        name = encoding_name(encoding)
        if name not in found.children:
            raise SlimPajamaError(f"{path} holds no token cache for --encoding {encoding} (it has: "
                                  f"{', '.join(found.children)})")
        return storage.join(path, name)
    if len(found.children) > 1:
        raise SlimPajamaError(f"{path} holds token caches for {', '.join(found.children)}: pick one with --encoding")
    return storage.join(path, found.children[0])


REBUILD_FILE = "_rebuild.json"  # in <shards>/_state: the command that rebuilds a damaged file (see `verify`)


def rebuild_command(shards_dir: str) -> str | None:
    """The `slimpajama shards` command that wrote `shards_dir` (re-running it rebuilds damaged files)."""
    try:
        return json.loads(storage.read_bytes(storage.join(shards_dir, STATE_DIR, REBUILD_FILE)))["command"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def run_shards(cache_dir: str, out_root: str, seq: int, *, packing: str = "concat",
               range_: tuple[float, float] = (0.0, 1.0), seed: int = 0, file_bytes: int = 256 << 20,
               out_dir: str | None = None, workers: int | None = None, ray_address: str | None = None,
               progress: bool = True, verify_outputs: bool = False, encoding: str | None = None) -> StageReport:
    cache_dir = token_cache(cache_dir, encoding)
    manifest = outputs.read(cache_dir)
    fp = manifest["fingerprint"]
    if not manifest["files"]:
        raise SlimPajamaError(f"the token cache at {cache_dir} is empty")
    enc = get_encoding(fp["encoding"] if fp["encoding"] != "r50k_base" else "gpt2")
    cache = {"encoding": fp["encoding"], "dtype": fp["dtype"], "eos": fp["eos"], "vocab_size": enc.n_vocab}
    # exactly the documents of the last tokenize run (its _outputs.json), never leftovers of earlier ones
    records = {rec["rel"]: rec for rec in manifest["files"]}
    keys = [rel[: -len(".tokens.bin")] for rel in records if rel.endswith(".tokens.bin")]
    tasks = []
    for split in SPLITS:
        inputs = [output_file(cache_dir, k + suffix, records[k + suffix])
                  for k in keys if split_of_key(k) == split for suffix in (".tokens.bin", ".docs.parquet")]
        if not inputs:
            continue
        fingerprint = hashlib.sha256(json.dumps([fp, [f.identity() for f in inputs]]).encode()).hexdigest()
        tasks.append(ShardTask(split, tuple(inputs), {"cache": cache, "fingerprint": fingerprint}))
    out = out_dir or storage.join(out_root, shards_dir_name(seq, range_))
    report = run_stage(PackStage(seq, packing, range_, seed, file_bytes), tasks, out, workers=workers,
                       ray_address=ray_address, progress=progress, verify_outputs=verify_outputs)
    report.extra = {"rows": {m["key"]: m["extra"]["rows"] for m in report.markers}}
    command = (f"slimpajama shards {cache_dir} --seq {seq} --packing {packing} --range {range_[0]:g}:{range_[1]:g} "
               f"--seed {seed} --file-bytes {file_bytes} --out {out} --verify-outputs")
    write_bytes_atomic(storage.join(out, STATE_DIR, REBUILD_FILE), json.dumps({"command": command}).encode())
    return report
