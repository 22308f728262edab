"""Tokenize (per input file, Ray) into a token cache, which pack.py cuts into 2k/8k shards.

Token cache, `<tokens>/<encoding>/`, mirrors the input paths (a release: train/chunk1/example_train_0, ...):
  <key>.tokens.bin    uint16 (or uint32) tokens, every document followed by EOS
  <key>.docs.parquet  per document: source, tokens (including the EOS, and the BOS with --bos)
  _tokenizer/<file>   a model tokenizer's tokenizer.json / tokenizer.model, as it was tokenized with
so packing at 2k and then at 8k never re-tokenizes.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slimpajama.core import defaults
from slimpajama.core.ledger import Ledger
from slimpajama.core.release import SPLITS
from slimpajama.errors import SlimPajamaError
from slimpajama.io import outputs, storage
from slimpajama.io.reading import ReadOptions
from slimpajama.io.writers import ParquetShardWriter, atomic_path, sha256_file, write_bytes_atomic
from slimpajama.tokenize.batch import Encoded, encode_documents, token_dtype
from slimpajama.tokenize.encodings import R50K_SHA256, encoding_name, get_encoding
from slimpajama.tokenize.engine import ReferenceEngine, engine_for
from slimpajama.tokenize.modelfiles import ModelTokenizer, from_bytes

from . import registry
from .documents import run_documents
from .paths import require
from .runner import Progress, StageReport
from .stage import Stage, Task, TaskResult

MODEL_DIR = "_tokenizer"  # in a token cache: the copy of a model tokenizer's file, which workers load
DOCS_SCHEMA = pa.schema([("source", pa.string()), ("tokens", pa.int32())])
GUARD_RATE = 1e-3  # the share of a task's documents the guard re-encodes with the reference (and its longest)
# "auto" encodes an input of fewer file bytes with the reference library: loading the engine in a process (~0.5 s
# for GPT-2, ~3 s for a 200k tokenizer.json) costs more than it saves on a few MB (a command on 200 documents: 4.5x
# its imports with the engine, the same bytes either way)
ENGINE_MIN_BYTES = 2 << 20
GUARD_LONGEST = 0.001  # the longest document is re-encoded up to this share of the task's text (see Guard)


def split_of_key(key: str) -> str:
    head = key.split("/", 1)[0]
    return head if head in SPLITS else "train"


class TokenizeStage(Stage):
    name = registry.TOKENIZE.name

    def __init__(self, encoding: str = defaults.ENCODING, threads: int = 1, read: ReadOptions | None = None, *,
                 eos: str | None = None, bos: str | None = None, engine: str = "auto"):
        self.encoding, self.threads, self.read = encoding, threads, read or ReadOptions()
        self.eos, self.bos = eos, bos
        self.engine = engine  # "auto" | "fast" | "reference"; `prepare` resolves auto for the workers
        self.model: dict | None = None  # a model tokenizer: how workers load the cache's copy (see `prepare`)
        self._fingerprint: dict | None = None  # computed once (the runner asks for it for every task)

    def prepare(self, cache_dir: str, input_bytes: int | None = None) -> None:
        """Obtain the tokenizer once in the driver (GPT-2's offline bootstrap; a model tokenizer's file, copied
        into the cache, where every worker reads it), and choose the engine: `input_bytes` (the input files' size)
        under ENGINE_MIN_BYTES makes "auto" the reference, whose ids are the same."""
        enc = get_encoding(self.encoding, eos=self.eos, bos=self.bos)
        if isinstance(enc, ModelTokenizer):
            copy = storage.join(cache_dir if storage.is_remote(cache_dir) else os.path.abspath(cache_dir), MODEL_DIR,
                                enc.filename)  # absolute: a worker's directory need not be the driver's
            if storage.stat(copy) is None or sha256_file(copy) != enc.sha256:
                write_bytes_atomic(copy, enc.data)
            self.model = {"kind": enc.kind, "name": enc.name, "filename": enc.filename, "file": copy,
                          "eos": enc.eos, "bos": enc.bos}
        self.fingerprint()
        if self.engine == "auto" and input_bytes is not None and input_bytes < ENGINE_MIN_BYTES:
            self.engine = "reference"  # loading the engine would cost more than it saves
            return
        # the engine chosen once here (a notice when auto falls back); workers load that one, or fail saying why
        chosen = engine_for(self.tokenizer(), self.engine, self.threads,
                            notice=lambda line: print(line, file=sys.stderr))
        self.engine = "reference" if isinstance(chosen, ReferenceEngine) else "fast"

    def tokenizer(self):
        if self.model is None:
            return get_encoding(self.encoding, eos=self.eos, bos=self.bos)
        m = self.model
        return from_bytes(m["kind"], m["name"], m["filename"], storage.read_bytes(m["file"]), m["eos"], m["bos"])

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            enc = self.tokenizer()
            if isinstance(enc, ModelTokenizer):
                self._fingerprint = {"stage": self.name, "encoding": enc.name, **enc.identity(),
                                     "dtype": token_dtype(enc.n_vocab).name}
                return self._fingerprint
            if enc.name == "r50k_base":
                ident = R50K_SHA256
            elif os.path.isfile(self.encoding):
                ident = sha256_file(self.encoding)
            else:  # a named tiktoken encoding: tiktoken checks its file against its own expected hash
                ident = f"tiktoken:{enc.name}"
            self._fingerprint = {"stage": self.name, "encoding": enc.name, "bpe_sha256": ident,
                                 "eos": enc.eot_token, "dtype": token_dtype(enc.n_vocab).name}
        return self._fingerprint

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        enc = self.tokenizer()
        engine = engine_for(enc, self.engine, self.threads)
        guard = Guard(enc, engine, task.key)
        ledger = Ledger(self.name)
        tok_rel, docs_rel = task.key + ".tokens.bin", task.key + ".docs.parquet"
        per_source: dict[str, int] = {}
        with self.error_log(task, out_dir, ledger) as errors:
            with atomic_path(storage.join(out_dir, tok_rel)) as tmp, open(tmp, "wb") as out, \
                    ParquetShardWriter(storage.join(out_dir, docs_rel), schema=DOCS_SCHEMA,
                                       compression="zstd") as docs:  # a file users keep: its bytes are pinned
                for batch, texts in self.documents(task, errors, with_texts=True):
                    ledger.batch_in(batch)
                    ledger.batch_out(batch)
                    encoded = encode_documents(enc, texts, self.threads, self.engine)
                    guard.check(batch, texts, encoded)
                    out.write(memoryview(encoded.tokens))  # the flat buffer as it is: no copy, no lists
                    docs.write(pa.table({"source": batch.column("source"),
                                         "tokens": encoded.lengths.astype(np.int32)}, schema=DOCS_SCHEMA))
                    sources = pc.dictionary_encode(batch.column("source"))  # tokens per source, no loop
                    sums = np.bincount(sources.indices.to_numpy(zero_copy_only=False), encoded.lengths,
                                       len(sources.dictionary))
                    for s, n in zip(sources.dictionary.to_pylist(), sums.tolist(), strict=True):
                        per_source[s] = per_source.get(s, 0) + int(n)
                guard.finish()
        return TaskResult(outputs=[tok_rel, docs_rel], ledger=ledger, errors_file=errors.written,
                          extra={"tokens": sum(per_source.values()), "tokens_per_source": per_source,
                                 "engine": engine.name, "guard_checked": guard.checked})


class Guard:
    """The engine checked in production: a seeded sample of the task's documents (GUARD_RATE) and its longest one
    re-encoded by the reference library; a difference stops the run with one line naming the document and
    `--engine reference`. Nothing to check when the engine is the reference.

    The reference is 10-100x slower than the engine, so the longest document is checked when it is at most
    GUARD_LONGEST of the task's text (or 64 KiB), else the longest one of at most 64 KiB: the guard stays a few
    percent of the task (the exactness tests cover documents of 20 MB)."""

    SMALL = 64 << 10

    def __init__(self, enc, engine, key: str):
        self.enc, self.engine, self.checked, self.text_bytes = enc, engine, 0, 0
        self.reference = None if isinstance(engine, ReferenceEngine) else ReferenceEngine(enc)
        self.rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
        self.head = 0 if getattr(enc, "bos_token", None) is None else 1
        # the longest document, and the longest of at most SMALL bytes: (UTF-8 bytes, doc_id, text, engine's ids)
        self.longest: list[tuple | None] = [None, None]

    def check(self, batch, texts, encoded: Encoded) -> None:
        if self.reference is None or not len(texts):
            return
        for i in np.flatnonzero(self.rng.random(len(texts)) < GUARD_RATE).tolist():
            self._compare(batch.column("doc_id")[i].as_py(), texts[i], encoded.ids_of(i, self.head))
        sizes = pc.binary_length(batch.column("text")).to_numpy()
        self.text_bytes += int(sizes.sum())
        for slot, eligible in enumerate((sizes, np.where(sizes <= self.SMALL, sizes, -1))):
            at = int(np.argmax(eligible))
            held = self.longest[slot]
            if eligible[at] >= 0 and (held is None or eligible[at] > held[0]):  # held until the task's end
                self.longest[slot] = (int(eligible[at]), batch.column("doc_id")[at].as_py(), texts[at],
                                      encoded.ids_of(at, self.head).copy())

    def finish(self) -> None:
        longest, small = self.longest
        pick = longest if longest and longest[0] <= max(self.SMALL, GUARD_LONGEST * self.text_bytes) else small
        if pick is not None:
            self._compare(*pick[1:])
        self.longest = [None, None]

    def _compare(self, doc_id: str, text: str, got: np.ndarray) -> None:
        want = self.reference.encode_list([text])[0]
        if not np.array_equal(got, want):
            raise SlimPajamaError(f"document {doc_id}: the {self.engine.name} engine's ids differ from "
                                  f"{self.reference.name}'s ({len(want)} ids); rerun with --engine reference and "
                                  "report it")
        self.checked += 1


def run_tokenize(inputs, out_root: str, encoding: str = defaults.ENCODING, *, threads: int = 1,
                 read: ReadOptions | None = None, workers: int | None = None, ray_address: str | None = None,
                 progress: Progress | None = None, verify_inputs: bool = False,
                 task_bytes: int | None = defaults.TASK_BYTES, eos: str | None = None,
                 bos: str | None = None, engine: str = "auto") -> StageReport:
    """`encoding`: a tiktoken encoding or a model's tokenizer file/folder; `eos`, `bos`: see get_encoding;
    `engine`: see slimpajama.tokenize.engine (the bytes are the same whichever encodes)."""
    stage = TokenizeStage(encoding, threads, read, eos=eos, bos=bos, engine=engine)
    cache_dir = storage.join(out_root, encoding_name(encoding))
    return run_documents(stage, inputs, cache_dir, verify_inputs=verify_inputs, task_bytes=task_bytes,
                         workers=workers, ray_address=ray_address, progress=progress,
                         prepare=lambda files: stage.prepare(cache_dir, sum(f.size for f in files)))


def cache_tokenizer_file(cache_dir: str, fingerprint: dict) -> bytes:
    """A model-tokenizer cache's copy of its tokenizer file, checked against the fingerprint's SHA-256."""
    copy = storage.join(cache_dir, MODEL_DIR, fingerprint["file"])
    try:
        data = storage.read_bytes(copy)
    except FileNotFoundError:
        raise SlimPajamaError(f"the token cache at {cache_dir} lacks its tokenizer ({MODEL_DIR}/"
                              f"{fingerprint['file']}): rerun slimpajama tokenize") from None
    if hashlib.sha256(data).hexdigest() != fingerprint["sha256"]:
        raise SlimPajamaError(f"{copy} is not the tokenizer the cache was made with (SHA-256 differs): rerun "
                              "slimpajama tokenize")
    return data


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


class CacheFiles(NamedTuple):
    manifest: dict  # `_outputs.json`: exactly the files of its last tokenize run, never leftovers of earlier ones
    records: dict[str, dict]  # its file records by relative path
    keys: list[str]  # the keys of its files in cache order


def cache_files(cache_dir: str, split: str | None = None) -> CacheFiles:
    """The token cache's files (`split`: only that split's keys)."""
    manifest = outputs.read(cache_dir)
    records = {rec["rel"]: rec for rec in manifest["files"]}
    keys = [rel[: -len(".tokens.bin")] for rel in records if rel.endswith(".tokens.bin")]
    return CacheFiles(manifest, records, [k for k in keys if split is None or split_of_key(k) == split])
