"""SlimPajama's first two steps on an Arrow batch: normalize the text (ftfy + NFC) and drop short documents."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from slimpajama.core import defaults
from slimpajama.core.cleaned import is_short
from slimpajama.core.schema import keep_rows
from slimpajama.core.textnorm import normalize_text


def normalize_batch(batch: pa.RecordBatch, min_chars: int = defaults.MIN_CHARS) -> tuple[pa.RecordBatch, np.ndarray]:
    """-> (kept rows with normalized text, boolean mask of the input rows dropped as short)."""
    texts = [normalize_text(t) for t in batch.column("text").to_pylist()]
    short = np.fromiter((is_short(t, min_chars) for t in texts), dtype=bool, count=len(texts))
    idx = batch.schema.get_field_index("text")
    out = batch.set_column(idx, batch.schema.field(idx), pa.array(texts, pa.string()))
    return keep_rows(out, ~short), short
