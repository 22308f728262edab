"""The normalize stage, two transforms: SlimPajama's text fix (ftfy + NFC) and its low-length filter."""

from __future__ import annotations

import ftfy
import pyarrow as pa

from slimpajama.core import defaults
from slimpajama.core.cleaned import short_mask
from slimpajama.core.schema import keep_rows
from slimpajama.core.textnorm import normalize_text
from slimpajama.io.reading import ReadOptions

from . import registry
from .docstage import DocumentStage, Transform


class FixText(Transform):
    """Every text as `ftfy.fix_text(text, normalization="NFC")` (core/textnorm.py)."""

    def config(self) -> dict:
        return {"ftfy": ftfy.__version__}  # another ftfy release may fix text differently

    def __call__(self, batch, rows):
        idx = batch.schema.get_field_index("text")
        texts = pa.array([normalize_text(t) for t in batch.column(idx).to_pylist()], pa.string())
        return batch.set_column(idx, batch.schema.field(idx), texts), {}


class MinChars(Transform):
    """Drops a document whose cleaned view (lowercase, no punctuation, collapsed whitespace) is shorter than
    `min_chars` characters (reason `short`)."""

    def __init__(self, min_chars: int = defaults.MIN_CHARS):
        self.min_chars = min_chars

    def config(self) -> dict:
        return {"min_chars": self.min_chars}

    def __call__(self, batch, rows):
        short = short_mask(batch.column("text"), self.min_chars)
        return keep_rows(batch, ~short), {registry.SHORT.reason: short}


def NormalizeStage(read: ReadOptions | None = None, min_chars: int = defaults.MIN_CHARS) -> DocumentStage:  # noqa: N802
    return DocumentStage(read, [FixText(), MinChars(min_chars)], name=registry.NORMALIZE.name)
