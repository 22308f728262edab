"""Bad input: what a reader reports instead of raising, and the error a `--on-error fail` run stops with."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BadRecord:
    """One input record (or a whole file, line 0) that could not become a document."""

    file: str  # path relative to the input root
    line: int  # 1-based line (jsonl) or row (parquet); 0 when the problem is the file itself
    reason: str  # malformed_json | invalid_utf8 | invalid_text | not_object | missing_text | non_string_text |
    #              too_large | truncated | corrupt | empty_file | unreadable | bad_schema
    message: str
    source: str  # best guess (folder or --source), so the ledger can count it per source
    nbytes: int  # raw bytes of the record that was dropped

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.reason}: {self.message}"


class SlimPajamaError(Exception):
    """A user-facing failure: the CLI prints its message on one line and exits non-zero, no traceback."""


class BadInputError(SlimPajamaError):
    def __init__(self, record: BadRecord):
        super().__init__(f"bad input at {record.describe()}")
        self.record = record

    def __reduce__(self):  # Ray pickles it from the worker to the driver
        return (BadInputError, (self.record,))


def raise_on_bad(record: BadRecord) -> None:
    """The `--on-error fail` policy."""
    raise BadInputError(record)


def root_cause(e: BaseException) -> BaseException:
    """The exception a Ray task raised, rather than Ray's wrapper around it (`RayTaskError.cause`)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e
