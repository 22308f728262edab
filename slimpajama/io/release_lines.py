"""SlimPajama's release lines for a whole Arrow batch in one compiled pass, byte for byte what `release_line`
(orjson) writes: `{"text":"...","meta":{"redpajama_set_name":"..."}}` and a newline.

orjson escapes by UTF-8 byte, and only ASCII bytes: `"` and `\\`, the five short control escapes (\\b \\t \\n \\f
\\r) and `\\u00xx` for the other bytes below 0x20; everything else (non-ASCII, DEL, `/`) is copied. Arrow strings
are valid UTF-8, so the copy is the encoding orjson would produce. Going through Python strings and orjson per
row cost half the release shuffle on web pages.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

from slimpajama.core.jit import entry_point

_PREFIX = np.frombuffer(b'{"text":"', dtype=np.uint8)


def _escape_table() -> tuple[np.ndarray, np.ndarray]:
    """Per byte: its escape (up to 6 bytes) and the escape's length, 0 where the byte is copied."""
    import orjson

    table, length = np.zeros((256, 6), dtype=np.uint8), np.zeros(256, dtype=np.int64)
    for b in range(128):
        escaped = orjson.dumps(chr(b))[1:-1]  # the installed orjson's own escape, without the quotes
        if escaped != bytes([b]):
            table[b, : len(escaped)] = np.frombuffer(escaped, dtype=np.uint8)
            length[b] = len(escaped)
    return table, length


_TABLE, _LENGTH = _escape_table()


@numba.njit(cache=True, nogil=True)
def _lines_jit(data, offsets, suffix_of, suffixes, suffix_offsets, prefix, table, length):
    rows = len(offsets) - 1
    total = 0
    for r in range(rows):
        s = suffix_of[r]
        total += len(prefix) + suffix_offsets[s + 1] - suffix_offsets[s] + offsets[r + 1] - offsets[r]
    escapes = 0
    for i in range(offsets[0], offsets[rows]):
        e = length[data[i]]
        total += e - (e > 0)
        escapes += e > 0
    out = np.empty(total, dtype=np.uint8)
    o = 0
    for r in range(rows):
        out[o: o + len(prefix)] = prefix
        o += len(prefix)
        i, end = offsets[r], offsets[r + 1]
        if escapes == 0:
            out[o: o + end - i] = data[i:end]
            o += end - i
        else:
            while i < end:
                j = i
                while j < end and length[data[j]] == 0:
                    j += 1
                out[o: o + j - i] = data[i:j]  # a run of bytes copied as they are
                o += j - i
                if j < end:
                    e = length[data[j]]
                    out[o: o + e] = table[data[j], :e]
                    o += e
                    j += 1
                i = j
        s = suffix_of[r]
        n = suffix_offsets[s + 1] - suffix_offsets[s]
        out[o: o + n] = suffixes[suffix_offsets[s]: suffix_offsets[s + 1]]
        o += n
    return out


_LINES = None


def _utf8_parts(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The data bytes and row offsets of a string array (either offset width), without copying the data."""
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    _, offsets_buf, data_buf = column.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=width, count=len(column) + 1, offset=column.offset * width().itemsize)
    data = np.frombuffer(data_buf if data_buf is not None else b"", dtype=np.uint8)  # read-only either way: one type
    return data, offsets.astype(np.int64)


def release_lines(texts: pa.Array | pa.ChunkedArray, sources: pa.Array | pa.ChunkedArray) -> bytes:
    """The release lines of the rows of `texts` with their `sources` (no nulls), concatenated."""
    global _LINES
    texts, sources = _one_chunk(texts), _one_chunk(sources)
    if texts.null_count or sources.null_count:
        raise ValueError("release lines need a text and a source on every row")
    encoded = sources.dictionary_encode()
    suffixes = [release_suffix(s) for s in encoded.dictionary.to_pylist()]
    suffix_offsets = np.cumsum([0] + [len(s) for s in suffixes], dtype=np.int64)
    suffix_bytes = np.frombuffer(b"".join(suffixes), dtype=np.uint8)
    suffix_of = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    data, offsets = _utf8_parts(texts)
    args = (data, offsets, suffix_of, suffix_bytes, suffix_offsets, _PREFIX, _TABLE, _LENGTH)
    if _LINES is None:
        _LINES = entry_point(_lines_jit, *args)
    return _LINES(*args).tobytes()


def _one_chunk(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def release_suffix(source: str) -> bytes:
    """What follows a line's text: the source's meta, exactly as orjson writes it."""
    import orjson

    return b'",' + orjson.dumps({"meta": {"redpajama_set_name": source}})[1:] + b"\n"
