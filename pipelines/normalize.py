"""The normalize stage: raw corpus -> parquet shards of normalized, long-enough documents (one per input file)."""

from __future__ import annotations

import ftfy

from slimpajama.core import defaults
from slimpajama.core.normalize import normalize_batch
from slimpajama.io.reading import ReadOptions

from . import registry
from .docstage import DocumentStage

SHORT = registry.SHORT.reason


class NormalizeStage(DocumentStage):
    name = "normalize"

    def __init__(self, read: ReadOptions | None = None, min_chars: int = defaults.MIN_CHARS):
        super().__init__(read)
        self.min_chars = min_chars

    def config(self) -> dict:
        # ftfy's version is part of the output's identity: another release may fix text differently.
        return {"min_chars": self.min_chars, "ftfy": ftfy.__version__}

    def transform(self, batch, first_row):
        out, short = normalize_batch(batch, self.min_chars)
        return out, {SHORT: short}
