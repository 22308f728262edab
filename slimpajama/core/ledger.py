"""Per-source accounting of every stage: docs and UTF-8 bytes in = out + dropped (by reason).

Bytes are counted on the stage's *input* text, so a stage that rewrites text (normalize) still balances;
`bytes_written` records the size of the text the stage actually wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LEDGER_VERSION = 1


class LedgerImbalance(AssertionError):
    pass


@dataclass
class SourceCounts:
    docs_in: int = 0
    bytes_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    bytes_written: int = 0
    dropped: dict[str, list[int]] = field(default_factory=dict)  # reason -> [docs, bytes]

    def merge(self, other: SourceCounts) -> None:
        self.docs_in += other.docs_in
        self.bytes_in += other.bytes_in
        self.docs_out += other.docs_out
        self.bytes_out += other.bytes_out
        self.bytes_written += other.bytes_written
        for reason, (docs, nbytes) in other.dropped.items():
            cur = self.dropped.setdefault(reason, [0, 0])
            cur[0] += docs
            cur[1] += nbytes

    def dropped_docs(self) -> int:
        return sum(d for d, _ in self.dropped.values())

    def dropped_bytes(self) -> int:
        return sum(b for _, b in self.dropped.values())

    def balanced(self) -> bool:
        return (self.docs_in == self.docs_out + self.dropped_docs()
                and self.bytes_in == self.bytes_out + self.dropped_bytes())

    def to_dict(self) -> dict:
        return {
            "docs_in": self.docs_in, "bytes_in": self.bytes_in,
            "docs_out": self.docs_out, "bytes_out": self.bytes_out, "bytes_written": self.bytes_written,
            "dropped": {r: {"docs": d, "bytes": b} for r, (d, b) in sorted(self.dropped.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> SourceCounts:
        return cls(d["docs_in"], d["bytes_in"], d["docs_out"], d["bytes_out"], d.get("bytes_written", 0),
                   {r: [v["docs"], v["bytes"]] for r, v in d.get("dropped", {}).items()})


def sizes_by_source(batch: pa.RecordBatch | pa.Table, text_column: str = "text",
                    where: np.ndarray | None = None) -> dict[str, tuple[int, int]]:
    """{source: (docs, utf8 bytes of text)} for a batch with `source` and `text` columns (only the rows `where`
    is true, if given: no filtered copy of the texts). Counted with numpy over the source column's dictionary (a
    group_by plan costs milliseconds per batch, several times per batch)."""
    if batch.num_rows == 0:
        return {}
    source, text = batch.column("source"), batch.column(text_column)
    if isinstance(source, pa.ChunkedArray):  # a table's (many chunks, where kept rows are slices: keep_rows):
        source = source.combine_chunks()  # its names are short, a cheap copy; the texts are never combined
    sizes = pc.binary_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
    enc = source if pa.types.is_dictionary(source.type) else source.dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    if where is not None:
        codes, sizes = codes[where], sizes[where]
    docs = np.bincount(codes, minlength=len(enc.dictionary))
    nbytes = np.zeros(len(enc.dictionary), dtype=np.int64)
    np.add.at(nbytes, codes, sizes)
    out = {}
    for s, d, b in zip(enc.dictionary.to_pylist(), docs, nbytes, strict=True):
        if d:
            prev = out.get(s, (0, 0))  # a foreign dictionary may repeat a value
            out[s] = (prev[0] + int(d), prev[1] + int(b))
    return out


class Ledger:
    def __init__(self, stage: str):
        self.stage = stage
        self.sources: dict[str, SourceCounts] = {}

    def _src(self, source: str) -> SourceCounts:
        return self.sources.setdefault(source, SourceCounts())

    def count_in(self, source: str, docs: int, nbytes: int) -> None:
        c = self._src(source)
        c.docs_in += docs
        c.bytes_in += nbytes

    def count_out(self, source: str, docs: int, nbytes: int, written: int | None = None) -> None:
        c = self._src(source)
        c.docs_out += docs
        c.bytes_out += nbytes
        c.bytes_written += nbytes if written is None else written

    def count_dropped(self, source: str, reason: str, docs: int, nbytes: int) -> None:
        cur = self._src(source).dropped.setdefault(reason, [0, 0])
        cur[0] += docs
        cur[1] += nbytes

    def batch_in(self, batch) -> None:
        for s, (d, b) in sizes_by_source(batch).items():
            self.count_in(s, d, b)

    def batch_out(self, batch) -> None:
        for s, (d, b) in sizes_by_source(batch).items():
            self.count_out(s, d, b)

    def batch_dropped(self, batch, reason: str, where: np.ndarray | None = None) -> None:
        for s, (d, b) in sizes_by_source(batch, where=where).items():
            self.count_dropped(s, reason, d, b)

    def merge(self, other: Ledger) -> Ledger:
        for s, c in other.sources.items():
            self._src(s).merge(c)
        return self

    def totals(self) -> SourceCounts:
        t = SourceCounts()
        for c in self.sources.values():
            t.merge(c)
        return t

    def balanced(self) -> bool:
        return all(c.balanced() for c in self.sources.values())

    def check_balanced(self) -> None:
        for s, c in sorted(self.sources.items()):
            if not c.balanced():
                raise LedgerImbalance(f"ledger of stage {self.stage!r} does not balance for source {s!r}: {c.to_dict()}")

    def to_dict(self) -> dict:
        return {
            "version": LEDGER_VERSION,
            "stage": self.stage,
            "balanced": self.balanced(),
            "totals": self.totals().to_dict(),
            "sources": {s: c.to_dict() for s, c in sorted(self.sources.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Ledger:
        led = cls(d["stage"])
        led.sources = {s: SourceCounts.from_dict(c) for s, c in d["sources"].items()}
        return led

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def merged(cls, stage: str, parts: Iterable[Ledger]) -> Ledger:
        """One ledger of `stage` summing `parts` (the tasks' ledgers, in task order)."""
        out = cls(stage)
        for p in parts:
            out.merge(p)
        return out
