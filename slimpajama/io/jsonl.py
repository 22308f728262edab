"""The JSON-lines reader: one record per line, orjson with an exact stdlib fallback, true line numbers in a byte
range, records over the size limit skipped without being held."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator

import orjson
import pyarrow as pa

from slimpajama.core import defaults, sources
from slimpajama.errors import BadRecord
from slimpajama.io.discover import InputFile
from slimpajama.io.reading import (
    BatchBuilder,
    OnBad,
    default_source,
)
from slimpajama.io.streams import READ_CHUNK, STREAM_ERRORS, open_binary, stream_error_reason


def _has_huge_float(value) -> bool:
    """orjson turns integers over 64 bits into floats; such a float sends the line to the exact stdlib parser."""
    if isinstance(value, float):
        return abs(value) >= 9.2e18
    if isinstance(value, dict):
        return any(_has_huge_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_huge_float(v) for v in value)
    return False


def _parse_line(line: bytes):
    """-> (object, None) or (None, (reason, message)). orjson first; the stdlib for what orjson refuses or
    would round but JSON allows (integers over 64 bits, lone surrogate escapes)."""
    try:
        obj = orjson.loads(line)
        if not isinstance(obj, dict):
            return obj, None
        for k, v in obj.items():
            if k != "text" and type(v) is not str and _has_huge_float(v):
                break
        else:
            return obj, None
    except orjson.JSONDecodeError:
        pass
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, ("invalid_utf8", f"invalid UTF-8 at byte {e.start}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        # the stdlib's messages for some errors end in "at" ("Invalid control character at"): say it once
        return None, ("malformed_json", f"{e.msg.removesuffix(' at')} at column {e.colno}")
    except RecursionError:
        return None, ("malformed_json", "nesting too deep")
    try:  # only this parser lets lone surrogates (\\ud800 escapes) through; they cannot be written as UTF-8
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, ("invalid_text", "a string holds a lone surrogate (\\ud800-\\udfff escape)")
    return obj, None


def _meta_json(obj: dict):
    meta = obj.get("meta")
    if meta is None:  # other schemas (dolma, HF datasets): every field but text is metadata
        meta = {k: v for k, v in obj.items() if k != "text"}
    if isinstance(meta, str):
        return meta, None
    try:
        return orjson.dumps(meta).decode(), meta
    except TypeError:  # e.g. integers over 64 bits, which the stdlib parser accepted
        return json.dumps(meta, ensure_ascii=False), meta


def read_jsonl(file: InputFile, on_bad: OnBad, *, source: str | None = None,
               batch_rows: int = defaults.BATCH_ROWS, batch_bytes: int = defaults.BATCH_BYTES,
               max_doc_bytes: int | None = defaults.MAX_DOC_BYTES,
               source_map: tuple[tuple[str, str], ...] = (), with_texts: bool = False) -> Iterator[pa.RecordBatch]:
    """`with_texts`: yield (batch, its texts as Python strings) pairs (see BatchBuilder.flush_with_texts)."""
    names = sources.source_map(source_map)
    fallback_source = default_source(file, source, names)
    limit = max_doc_bytes if max_doc_bytes else -1
    builder = BatchBuilder(batch_rows, batch_bytes)
    flush = builder.flush_with_texts if with_texts else builder.flush

    def bad(line_no: int, reason: str, message: str, nbytes: int, src: str = fallback_source) -> None:
        on_bad(BadRecord(file.rel, line_no, reason, message, src, nbytes))

    line_no = file.span[2] - 1 if file.span else 0  # a range starts at the true line number of its first line
    records = 0
    try:
        stream = open_binary(file.path, file.span[:2] if file.span else None)
    except OSError as e:
        bad(0, "unreadable", str(e), 0)
        return
    with stream:
        while True:
            try:
                line = stream.readline(limit)
                if limit > 0 and len(line) == limit and not line.endswith(b"\n"):
                    # Over the size limit: skip the rest of the line without holding it.
                    nbytes = len(line)
                    del line
                    while True:
                        rest = stream.readline(READ_CHUNK)
                        nbytes += len(rest)
                        if not rest or rest.endswith(b"\n"):
                            break
                    line_no += 1
                    records += 1
                    bad(line_no, "too_large", f"record of {nbytes} bytes exceeds --max-doc-bytes {max_doc_bytes}",
                        nbytes)
                    continue
            except STREAM_ERRORS as e:
                records += 1
                bad(line_no + 1, stream_error_reason(e), f"{type(e).__name__}: {e}".rstrip(": "), 0)
                break
            if not line:
                break
            if line_no == 0 and line.startswith(codecs.BOM_UTF8):  # a UTF-8 byte-order mark opens the file
                line = line[len(codecs.BOM_UTF8):]
            line_no += 1
            if not line.strip():
                continue  # a blank line is not a record
            records += 1
            nbytes = len(line)
            obj, err = _parse_line(line)
            if err is not None:
                bad(line_no, err[0], err[1], nbytes)
                continue
            if not isinstance(obj, dict):
                bad(line_no, "not_object", f"expected a JSON object, got {type(obj).__name__}", nbytes)
                continue
            text = obj.get("text")
            meta_json, meta = _meta_json(obj)
            src = meta.get("redpajama_set_name") if isinstance(meta, dict) else None
            if not (isinstance(src, str) and src):
                subset = obj.get("red_pajama_subset")  # RedPajama-Data-1T's rows
                src = names.get(subset, subset) if isinstance(subset, str) and subset else fallback_source
            if text is None:
                bad(line_no, "missing_text", "no 'text' field" if "text" not in obj else "'text' is null", nbytes, src)
                continue
            if not isinstance(text, str):
                bad(line_no, "non_string_text", f"'text' is {type(text).__name__}, not a string", nbytes, src)
                continue
            if builder.add(f"{file.rel}:{line_no}", src, text, meta_json, len(text)):
                yield flush()
    batch = flush()
    if batch is not None:
        yield batch
    if records == 0 and not file.span:  # (a range of a file may hold blank lines only)
        bad(0, "empty_file", "file holds no records", 0)
