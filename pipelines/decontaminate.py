"""The decontaminate stage: documents that hold evaluation data are dropped (or the matched text cut out).

The driver reads the evaluation sets once (local .jsonl/.json/.parquet/.txt files or folders of them), builds the
n-gram index (core/contamination.py) and shares it with the workers through Ray's object store; each task is one
transform over its documents. Outputs: the kept documents (parquet, like normalize's), `_contamination/<key>.parquet`
per task, merged at the end into `contamination.parquet` (a row per evaluation item and document matched) and
`contamination.json` (per evaluation file: items, items too short to match, items found, documents dropped or cut).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from slimpajama.core import defaults
from slimpajama.core.contamination import EvalIndex, IndexBuilder, cut, find
from slimpajama.core.schema import keep_rows
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.discover import COMPRESSIONS
from slimpajama.io.reading import ReadOptions
from slimpajama.io.streams import open_binary
from slimpajama.io.writers import ParquetShardWriter, sha256_file, write_bytes_atomic

from . import registry
from .docstage import DocumentStage, Transform
from .documents import run_documents
from .runner import Progress, StageReport
from .shared import Shared

CONTAMINATED = registry.CONTAMINATED.reason
EVAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
PARTS_DIR = "_contamination"
MATCHES_FILE, SUMMARY_FILE = "contamination.parquet", "contamination.json"
MATCH_SCHEMA = pa.schema([("eval_file", pa.string()), ("item_row", pa.int64()), ("doc_id", pa.string()),
                          ("source", pa.string()), ("ngrams", pa.int64()), ("action", pa.string())])
ITEM_BATCH = 20_000


@dataclass(frozen=True)
class DecontaminateConfig:
    eval: tuple[str, ...] = ()  # evaluation files or folders
    ngram: int = defaults.DECONTAMINATE_NGRAM
    min_words: int = defaults.DECONTAMINATE_MIN_WORDS
    mode: str = "drop"  # drop | cut
    eval_fields: tuple[str, ...] = ()  # the fields an item's text is read from (default: every string)
    min_chars: int = defaults.MIN_CHARS  # cut: the shortest piece kept (cleaned characters)
    window: int = defaults.DECONTAMINATE_WINDOW  # cut: characters removed either side of a match


# ------------------------------------------------------------------------------------------------ evaluation sets


def _eval_suffix(name: str) -> str | None:
    """.jsonl, .json or .txt (each maybe compressed), .parquet, or None."""
    low = name.lower()
    if low.endswith(".parquet"):
        return ".parquet"
    low = next((low[: -len(c)] for c in COMPRESSIONS if c and low.endswith(c)), low)
    return next((s for s in (".jsonl", ".json", ".txt") if low.endswith(s)), None)


def eval_files(specs: tuple[str, ...]) -> list[str]:
    """Every evaluation file of `specs` (files, or folders walked in name order), each once."""
    if not specs:
        raise SlimPajamaError("decontaminate needs --eval PATH: a file or folder of evaluation sets")
    out: list[str] = []
    for spec in specs:
        if storage.is_remote(spec):
            raise SlimPajamaError(f"--eval {spec}: evaluation sets are read from local files; copy it here first")
        if os.path.isdir(spec):
            found = sorted(os.path.join(root, n) for root, dirs, names in os.walk(spec)
                           for n in names if not n.startswith((".", "_")) and _eval_suffix(n)
                           if not any(p.startswith((".", "_")) for p in os.path.relpath(root, spec).split(os.sep)
                                      if p != "."))
            if not found:
                raise SlimPajamaError(f"--eval {spec}: no evaluation file ({', '.join(EVAL_SUFFIXES)}) in that folder")
            out += found
        elif os.path.isfile(spec):
            if not _eval_suffix(os.path.basename(spec)):
                raise SlimPajamaError(f"--eval {spec}: not an evaluation file (expected {', '.join(EVAL_SUFFIXES)}, "
                                      "JSON lines and text may be compressed)")
            out.append(spec)
        else:
            raise SlimPajamaError(f"--eval {spec}: not found")
    seen, unique = set(), []
    for f in out:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append(os.path.normpath(f))
    return unique


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


class _Fields:
    """An item's text from one row: the named fields' strings, or every string of the row, joined by spaces."""

    def __init__(self, path: str, fields: tuple[str, ...]):
        self.path, self.fields, self.seen = path, fields, set()

    def __call__(self, row) -> str:
        if not self.fields or not isinstance(row, dict):
            return " ".join(_strings(row))
        present = [f for f in self.fields if f in row]
        self.seen.update(present)
        return " ".join(s for f in present for s in _strings(row[f]))

    def check(self, first_row) -> None:
        if self.fields and not self.seen:
            has = ", ".join(sorted(first_row)) if isinstance(first_row, dict) else "none"
            raise SlimPajamaError(f"{self.path}: no row has --eval-field {', '.join(self.fields)} (its fields: {has})")


def read_items(path: str, fields: tuple[str, ...] = ()) -> Iterator[tuple[int, str]]:
    """(row, text) of every item of one evaluation file: a row of JSON lines / JSON / parquet (numbered from 1),
    or a non-empty line of text (its line number)."""
    suffix = _eval_suffix(os.path.basename(path))
    text_of = _Fields(path, fields)
    first = None
    if suffix == ".txt":
        with open_binary(path) as fh:
            for n, line in enumerate(fh, 1):
                s = line.decode("utf-8", "replace").strip()
                if s:
                    yield n, s
        return
    if suffix == ".parquet":
        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ITEM_BATCH):
            for r in batch.to_pylist():
                row += 1
                first = first if first is not None else r
                yield row, text_of(r)
        if first is not None:
            text_of.check(first)
        return
    with open_binary(path) as fh:
        if suffix == ".json":  # one JSON value (an array of rows, or one row), or JSON lines named .json
            data = fh.read()
            try:
                rows = orjson.loads(data)
            except orjson.JSONDecodeError:
                rows = None
            if rows is not None:
                rows = rows if isinstance(rows, list) else [rows]
                for n, r in enumerate(rows, 1):
                    first = first if first is not None else r
                    yield n, text_of(r)
                if first is not None:
                    text_of.check(first)
                return
            lines = data.splitlines()
        else:
            lines = fh
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise SlimPajamaError(f"{path}:{n}: not JSON ({e}); an evaluation file of JSON lines holds one "
                                      "object per line") from None
            first = first if first is not None else r
            yield n, text_of(r)
    if first is not None:
        text_of.check(first)


@dataclass
class EvalSet:
    """The index and what names each of its items: its file (an index into `files`) and row."""

    index: EvalIndex
    item_file: np.ndarray  # int32
    item_row: np.ndarray  # int64
    files: list[str]
    counts: dict[str, dict] = field(default_factory=dict)  # per file: items, too_short


def load_eval(files: list[str], cfg: DecontaminateConfig) -> EvalSet:
    """Every file's items into one index, in batches (the items' texts are not all held at once)."""
    builder = IndexBuilder(cfg.ngram, cfg.min_words)
    item_file, item_row, counts = [], [], {}

    def add(fi: int, texts: list[str], rows: list[int]) -> int:
        keep = builder.add(texts)
        item_file.append(np.full(int(keep.sum()), fi, dtype=np.int32))
        item_row.append(np.asarray(rows, dtype=np.int64)[keep])
        return int((~keep).sum())

    for fi, path in enumerate(files):
        total = short = 0
        texts, rows = [], []
        for row, text in read_items(path, cfg.eval_fields):
            texts.append(text)
            rows.append(row)
            total += 1
            if len(texts) == ITEM_BATCH:
                short += add(fi, texts, rows)
                texts, rows = [], []
        if texts:
            short += add(fi, texts, rows)
        if not total:
            raise SlimPajamaError(f"--eval {path}: no evaluation items in it (an empty file?); remove it or pass "
                                  "the right file")
        counts[path] = {"items": total, "too_short": short}
    return EvalSet(builder.build(), np.concatenate(item_file), np.concatenate(item_row), files, counts)


# ------------------------------------------------------------------------------------------------ the transform


class Decontaminate(Transform):
    """Drops each document that matches an evaluation item (reason `contaminated`), or with mode "cut" removes
    each match and `window` characters either side, keeping the pieces of at least `min_chars` (a document with
    none left is dropped); each (item, document) pair becomes a row of the task's contamination part."""

    def __init__(self, evals: Shared, digests: list[tuple[str, str]], cfg: DecontaminateConfig):
        self.evals, self.digests, self.cfg = evals, digests, cfg

    def config(self) -> dict:
        c = self.cfg
        out = {"eval": self.digests, "eval_fields": list(c.eval_fields), "ngram": c.ngram, "min_words": c.min_words,
               "mode": c.mode}
        return out | ({"min_chars": c.min_chars, "window": c.window} if c.mode == "cut" else {})

    def setup(self) -> EvalSet:
        return self.evals.get()

    def start(self, task, out_dir):
        self._parts, self._cut_docs, self._cut_chars, self._dropped = [], 0, 0, 0

    def __call__(self, batch, rows):
        evals: EvalSet = self.state
        texts = batch.column("text")
        matches = find(texts, evals.index)
        if not matches:
            return batch, {}
        by_doc: dict[int, list] = {}
        for m in matches:
            by_doc.setdefault(m.doc, []).append(m)
        gone = np.zeros(batch.num_rows, dtype=bool)
        action = {}
        if self.cfg.mode == "drop":
            gone[list(by_doc)] = True
            action = dict.fromkeys(by_doc, "dropped")
        else:
            new = texts.to_pylist()
            for d, ms in by_doc.items():
                text, chars = new[d], 0
                while ms:  # joining the pieces may make a new match across a join: cut until none is left
                    text, c = cut(text, ms, self.cfg.window, self.cfg.min_chars)
                    chars += c
                    ms = find([text], evals.index) if text is not None else []
                if text is None:
                    gone[d], action[d] = True, "dropped"
                else:
                    new[d], action[d] = text, "cut"
                    self._cut_docs += 1
                    self._cut_chars += chars
            idx = batch.schema.get_field_index("text")
            batch = batch.set_column(idx, batch.schema.field(idx), pa.array(new, pa.string()))
        self._dropped += int(gone.sum())
        docs = [m.doc for m in matches]
        self._parts.append(pa.table([
            pa.array([evals.files[evals.item_file[m.item]] for m in matches], pa.string()),
            pa.array(evals.item_row[[m.item for m in matches]], pa.int64()),
            batch.column("doc_id").take(docs), batch.column("source").take(docs),
            pa.array([len(m.positions) for m in matches], pa.int64()),
            pa.array([action[d] for d in docs], pa.string())], schema=MATCH_SCHEMA))
        return keep_rows(batch, ~gone), {CONTAMINATED: gone}

    def finish(self, task, out_dir):
        rel = f"{PARTS_DIR}/{task.key}.parquet"
        with ParquetShardWriter(storage.join(out_dir, rel), schema=MATCH_SCHEMA) as w:
            for t in self._parts:
                w.write(t)
        self._parts = []
        return [rel]

    def figures(self) -> dict:
        return {"contaminated_docs": self._dropped, "cut_docs": self._cut_docs, "cut_chars": self._cut_chars}


# ------------------------------------------------------------------------------------------------ driver


def run_decontaminate(inputs, out_dir: str, cfg: DecontaminateConfig, *, read: ReadOptions | None = None,
                      task_bytes: int | None = defaults.TASK_BYTES, workers: int | None = None,
                      ray_address: str | None = None, progress: Progress | None = None,
                      verify_inputs: bool = False, command: str | None = None) -> StageReport:
    if cfg.mode not in ("drop", "cut"):
        raise SlimPajamaError(f"--mode must be drop or cut, not {cfg.mode!r}")
    files = eval_files(tuple(cfg.eval))
    for f in files:
        if os.path.abspath(f).startswith(os.path.abspath(out_dir) + os.sep):
            raise SlimPajamaError(f"--eval {f} is inside --out {out_dir}: a rerun would replace it")
    evals = load_eval(files, cfg)
    digests = [[f, sha256_file(f)] for f in files]
    stage = DocumentStage(read, [Decontaminate(Shared(evals), digests, cfg)], name=registry.DECONTAMINATE.name)
    report = run_documents(stage, inputs, out_dir, verify_inputs=verify_inputs, task_bytes=task_bytes,
                           workers=workers, ray_address=ray_address, progress=progress,
                           command=command or registry.DECONTAMINATE.cli_module)
    write_matches(out_dir, report, evals, cfg.mode)
    return report


def write_matches(out_dir: str, report: StageReport, evals: EvalSet, mode: str) -> None:
    """contamination.parquet (every task's part, in task order) and contamination.json (per evaluation file)."""
    parts = [rel for m in report.markers for rel in m["outputs"] if rel.startswith(PARTS_DIR + "/")]
    found: dict[str, set] = {f: set() for f in evals.files}
    docs = {f: {"dropped": set(), "cut": set()} for f in evals.files}
    with ParquetShardWriter(storage.join(out_dir, MATCHES_FILE), schema=MATCH_SCHEMA) as w:
        for rel in parts:
            t = storage.open_parquet(storage.join(out_dir, rel)).read()
            w.write(t)
            for f, row, doc, act in zip(*(t[c].to_pylist() for c in ("eval_file", "item_row", "doc_id", "action")),
                                        strict=True):
                found[f].add(row)
                docs[f][act].add(doc)
    summary = {"files": {f: {**evals.counts[f], "items_found": len(found[f]),
                             "documents_dropped": len(docs[f]["dropped"]), "documents_cut": len(docs[f]["cut"])}
                         for f in evals.files},
               "config": {"ngram": evals.index.ngram, "min_words": evals.index.min_words, "mode": mode}}
    write_bytes_atomic(storage.join(out_dir, SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True).encode())
