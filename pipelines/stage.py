"""What a stage is to the runner: a `Stage` (name, fingerprint, `run_task`), the `Task`s it runs and the
`TaskResult` each returns. See docs/DESIGN.md, "The runner's contract"."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import orjson

from slimpajama.core.ledger import Ledger
from slimpajama.errors import BadRecord, raise_on_bad
from slimpajama.io import storage
from slimpajama.io.discover import InputFile
from slimpajama.io.documents import read_documents
from slimpajama.io.outputs import STATE_DIR
from slimpajama.io.reading import ReadOptions
from slimpajama.io.writers import AtomicFile

from . import registry

BAD_INPUT = registry.BAD_INPUT.reason


@dataclass(frozen=True)
class Task:
    key: str  # names the task's outputs, e.g. "RedPajamaC4/c4-0001"
    inputs: tuple[InputFile, ...]
    params: dict = field(default_factory=dict)  # per-task settings (JSON-able), part of the task's identity

    # named groups of inputs whose content is fixed by `inputs` and `params` (a dedup's cluster files, by every
    # shard it read; a run key in `params` says so): read by the task, not part of its identity, so deleting them
    # after a complete run costs nothing
    side: Mapping[str, tuple[InputFile, ...]] = field(default_factory=dict)

    def identity(self) -> list:
        ident = [f.identity() for f in self.inputs]
        return ident + [self.params] if self.params else ident

    def files(self) -> Iterator[InputFile]:
        """Every file the task reads."""
        yield from self.inputs
        for group in self.side.values():
            yield from group


@dataclass
class TaskResult:
    outputs: list[str]  # paths relative to the stage's output dir
    ledger: Ledger
    errors_file: str | None = None  # relative path of this task's bad-input records, if any
    extra: dict = field(default_factory=dict)


class Stage:
    """One stage as the runner runs it: `run_task` is a pure function of the task's inputs that writes its
    outputs atomically under the output directory; `fingerprint` is every setting its outputs depend on."""

    name: ClassVar[str]
    # its outputs are documents, counted per source in a ledger.json that must balance (in = out + dropped)
    keeps_ledger: ClassVar[bool] = True
    # where its outputs that a later stage reads as documents live ("" = the output directory; None: none)
    documents_root: ClassVar[str | None] = None
    # how it reads documents; with on_error "fail", a resumed task with logged bad records fails too
    read: ReadOptions | None = None

    def fingerprint(self) -> dict:
        raise NotImplementedError

    def run_task(self, task: Task, out_dir: str) -> TaskResult:
        raise NotImplementedError

    def documents(self, task: Task, errors: Callable[[BadRecord], None] = raise_on_bad, **kw) -> Iterator:
        """The task's documents as read batches, file after file (the one read loop of every stage that reads
        documents; `kw`: e.g. with_texts). With ReadOptions it reads as they say (a raw corpus: a bad record goes
        to `errors`); without, it reads a stage's own output, where a bad record means a damaged file."""
        options = self.read.reader_kwargs() if self.read is not None else {}
        for f in task.inputs:
            yield from read_documents(f, errors, **options, **kw)

    @contextlib.contextmanager
    def error_log(self, task: Task, out_dir: str, ledger: Ledger) -> Iterator[ErrorLog]:
        """The task's bad-input log (`_state/<key>.errors.jsonl`), kept only if it holds a record and the task
        completes; each record is counted in `ledger` under bad_input (or, on_error fail, raised)."""
        log = ErrorLog(out_dir, f"{STATE_DIR}/{task.key}.errors.jsonl", ledger,
                       fail=self.read is not None and self.read.on_error == "fail")
        ok = False
        try:
            yield log
            ok = True
        finally:
            log.close(ok)


class ErrorLog:
    """Bad-input records of one task as JSON lines, counted in the ledger; written atomically, only if any."""

    def __init__(self, out_dir: str, rel: str, ledger: Ledger, fail: bool):
        self.path, self.rel, self.ledger, self.fail = storage.join(out_dir, rel), rel, ledger, fail
        self._file = self._fh = None
        self.count = 0

    @property
    def written(self) -> str | None:
        """Its path relative to the output directory, if it holds any record (for `TaskResult.errors_file`)."""
        return self.rel if self.count else None

    def __call__(self, rec: BadRecord) -> None:
        if self.fail:
            raise_on_bad(rec)
        if self._fh is None:
            self._file = AtomicFile(self.path)
            self._fh = open(self._file.tmp, "wb")
        self._fh.write(orjson.dumps(rec.to_dict()) + b"\n")
        self.ledger.count_in(rec.source, 1, rec.nbytes)
        self.ledger.count_dropped(rec.source, BAD_INPUT, 1, rec.nbytes)
        self.count += 1

    def close(self, ok: bool) -> None:
        if self._fh is None:
            return
        self._fh.close()
        if ok:
            self._file.commit()
        else:
            self._file.abort()
