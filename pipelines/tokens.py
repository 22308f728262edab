"""Tokenize (per input file, Ray) into a token cache, which pack.py cuts into 2k/8k shards.

Token cache, `<tokens>/<encoding>/`, mirrors the input paths (a release: train/chunk1/example_train_0, ...):
  <key>.tokens.bin    uint16 (or uint32) tokens, every document followed by EOS
  <key>.docs.parquet  per document: source, tokens (including the EOS)
so packing at 2k and then at 8k never re-tokenizes.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from slimpajama.core import defaults
from slimpajama.core.ledger import Ledger
from slimpajama.core.release import SPLITS
from slimpajama.errors import SlimPajamaError
from slimpajama.io import outputs, storage
from slimpajama.io.documents import read_documents
from slimpajama.io.reading import ReadOptions
from slimpajama.io.writers import ParquetShardWriter, atomic_path, sha256_file
from slimpajama.tokenize.batch import encode_documents, token_dtype
from slimpajama.tokenize.encodings import R50K_SHA256, encoding_name, get_encoding

from .documents import run_documents
from .paths import require
from .runner import Progress, StageReport
from .stage import ShardOutcome, ShardTask, Stage

DOCS_SCHEMA = pa.schema([("source", pa.string()), ("tokens", pa.int32())])


def split_of_key(key: str) -> str:
    head = key.split("/", 1)[0]
    return head if head in SPLITS else "train"


class TokenizeStage(Stage):
    name = "tokenize"

    def __init__(self, encoding: str = defaults.ENCODING, threads: int = 1, read: ReadOptions | None = None):
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
        tok_rel, docs_rel = task.key + ".tokens.bin", task.key + ".docs.parquet"
        per_source: dict[str, int] = {}
        with self.error_log(task, out_dir, ledger) as errors:
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
        return ShardOutcome(outputs=[tok_rel, docs_rel], ledger=ledger, errors_file=errors.written,
                            extra={"tokens": sum(per_source.values()), "tokens_per_source": per_source})


def run_tokenize(inputs, out_root: str, encoding: str = defaults.ENCODING, *, threads: int = 1,
                 read: ReadOptions | None = None, workers: int | None = None, ray_address: str | None = None,
                 progress: Progress | None = None, verify_inputs: bool = False,
                 task_bytes: int | None = defaults.TASK_BYTES) -> StageReport:
    stage = TokenizeStage(encoding, threads, read)
    stage.fingerprint()  # obtain the encoding (offline bootstrap) once, before any task needs it
    return run_documents(stage, inputs, storage.join(out_root, encoding_name(encoding)), verify_inputs=verify_inputs,
                         task_bytes=task_bytes, workers=workers, ray_address=ray_address, progress=progress)


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


def cache_files(cache_dir: str, split: str | None = None) -> tuple[dict, dict[str, dict], list[str]]:
    """The token cache's manifest (`_outputs.json`: exactly the files of its last tokenize run, never leftovers
    of earlier ones), its file records by relative path, and the keys of its files in cache order (`split`: only
    that split's)."""
    manifest = outputs.read(cache_dir)
    records = {rec["rel"]: rec for rec in manifest["files"]}
    keys = [rel[: -len(".tokens.bin")] for rel in records if rel.endswith(".tokens.bin")]
    return manifest, records, [k for k in keys if split is None or split_of_key(k) == split]
