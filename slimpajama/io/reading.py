"""What every corpus reader shares: the read options (batch bounds, size limit, bad-input policy, source naming),
the bad-record callback, the fallback source of a file, and the batch builder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from slimpajama.core import defaults
from slimpajama.core.schema import UNKNOWN_SOURCE, make_batch
from slimpajama.errors import BadRecord, SlimPajamaError

OnBad = Callable[[BadRecord], None]


@dataclass(frozen=True)
class ReadOptions:
    source: str | None = None  # source for files with no meta.redpajama_set_name and no source folder
    batch_rows: int = defaults.BATCH_ROWS
    batch_bytes: int = defaults.BATCH_BYTES
    max_doc_bytes: int | None = defaults.MAX_DOC_BYTES
    on_error: str = "skip"  # skip | fail
    source_map: tuple[tuple[str, str], ...] = ()  # --source-map, over RedPajama-1T's names (core/sources.py)

    def __post_init__(self):
        if self.on_error not in ("skip", "fail"):
            raise SlimPajamaError(f"--on-error must be skip or fail, not {self.on_error!r}")

    def reader_kwargs(self) -> dict:
        return dict(source=self.source, batch_rows=self.batch_rows, batch_bytes=self.batch_bytes,
                    max_doc_bytes=self.max_doc_bytes, source_map=self.source_map)


def default_source(file, source: str | None, names: dict[str, str]) -> str:
    """The source of a record that names none: the file's source folder (mapped), else --source."""
    folder = file.folder_source
    return names.get(folder, folder) if folder else (source or UNKNOWN_SOURCE)


class BatchBuilder:
    def __init__(self, batch_rows: int, batch_bytes: int):
        self.batch_rows, self.batch_bytes = batch_rows, batch_bytes
        self._clear()

    def _clear(self):
        self.ids, self.sources, self.texts, self.metas = [], [], [], []
        self.nchars = 0

    def add(self, doc_id: str, source: str, text: str, meta: str, nchars: int) -> bool:
        self.ids.append(doc_id)
        self.sources.append(source)
        self.texts.append(text)
        self.metas.append(meta)
        self.nchars += nchars
        return len(self.ids) >= self.batch_rows or self.nchars >= self.batch_bytes

    def flush(self) -> pa.RecordBatch | None:
        if not self.ids:
            return None
        batch = make_batch(self.ids, self.sources, self.texts, self.metas)
        self._clear()
        return batch

    def flush_with_texts(self) -> tuple[pa.RecordBatch, list[str]] | None:
        """The batch and its texts as the reader made them: str objects that already hold their UTF-8 form (the
        batch's text column was made from it), so a tokenizer reads them without encoding again."""
        texts = self.texts
        batch = self.flush()
        return None if batch is None else (batch, texts)
