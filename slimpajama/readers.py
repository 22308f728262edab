"""Streaming corpus readers: jsonl / json (JSON lines) / parquet, plain or compressed (.zst, .gz, .bz2, .xz; suffixes
in any case), a directory tree of them, a glob, or a stage's output directory (read through its `_outputs.json`).

Every reader yields Arrow record batches with DOC_SCHEMA, holding at most `batch_rows` rows or about
`batch_bytes` bytes of text, so memory is bounded by the batch, never by the file. A record that cannot become a
document is reported to `on_bad` (a BadRecord naming file and line) and skipped; `raise_on_bad` turns that into
the `--on-error fail` policy.
"""

from __future__ import annotations

import bz2
import codecs
import fnmatch
import glob
import gzip
import io
import json
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from . import outputs, sources, storage
from .errors import BadRecord, SlimPajamaError
from .schema import DOC_SCHEMA, UNKNOWN_SOURCE, make_batch

COMPRESSIONS = ("", ".zst", ".zstd", ".gz", ".bz2", ".xz")
JSONL_SUFFIXES = tuple(base + c for base in (".jsonl", ".json") for c in COMPRESSIONS)  # compared lowercased
PARQUET_SUFFIXES = (".parquet",)
DEFAULT_BATCH_ROWS = 1024
DEFAULT_BATCH_BYTES = 8 << 20  # of text; a worker peaks near 150 MB over its baseline with it
# RedPajama's largest documents (whole books) are a few MB; a larger "document" is almost always a broken dump,
# and it is the one thing that would make a worker's memory depend on the input.
DEFAULT_MAX_DOC_BYTES = 32 << 20
_READ_CHUNK = 1 << 20

OnBad = Callable[[BadRecord], None]


@dataclass(frozen=True)
class InputFile:
    path: str  # where to open it
    rel: str  # posix path relative to the input root: the prefix of every doc_id read from it
    size: int
    mtime_ns: int = 0
    digest: str | None = None  # SHA-256 of the content: recorded by the stage that wrote it, or --verify-inputs
    # A part of the file read by one task (see spans.py): (first byte, end byte, line number of the first byte's
    # line) of a plain JSON-lines file, or (first row group, end row group, row number of the first row) of a
    # parquet file. None: the whole file.
    span: tuple[int, int, int] | None = None

    def identity(self) -> list:
        """What a task that reads this file depends on: its content digest when known, else size and modification
        time (an edit, or a re-download of the same size, changes the latter); and the part it reads."""
        ident = [self.rel, self.size, self.digest or self.mtime_ns]
        return ident + [list(self.span)] if self.span else ident

    @property
    def folder_source(self) -> str | None:
        """The first folder under the input root, RedPajama's layout (`<root>/<source>/<file>`)."""
        parts = self.rel.split("/")
        return parts[0] if len(parts) > 1 else None

    @property
    def is_plain_jsonl(self) -> bool:
        """Uncompressed JSON lines: the one text format that can be cut into byte ranges."""
        return self.rel.lower().endswith((".jsonl", ".json"))

    @property
    def is_parquet(self) -> bool:
        return self.rel.lower().endswith(PARQUET_SUFFIXES)

    def local(self) -> str:
        """A local path to its content (downloaded once per node for an object-store file): for memory maps."""
        return storage.local_copy(self.path, self.size)


def is_corpus_file(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith((".", "_")) and base.lower().endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)


def corpus_suffix(rel: str) -> str:
    """The corpus suffix of a file name as written (`.jsonl.GZ`), or '' when it has none."""
    low = rel.lower()
    for suf in sorted(JSONL_SUFFIXES + PARQUET_SUFFIXES, key=len, reverse=True):
        if low.endswith(suf):
            return rel[-len(suf):]
    return ""


def _glob_root(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed = []
    for p in parts:
        if glob.has_magic(p):
            break
        fixed.append(p)
    return str(Path(*fixed)) if fixed else "."


@dataclass
class Discovery:
    files: list[InputFile]  # sorted by relative path, each real file once
    skipped: list[str]  # paths of files found that are not corpus files (unknown format): reported, never lost


def discover(inputs: list[str] | str, *, out: str | None = None, verify: bool = False) -> list[InputFile]:
    """The corpus files of `inputs` (see `discover_all`)."""
    return discover_all(inputs, out=out, verify=verify).files


def discover_all(inputs: list[str] | str, *, out: str | None = None, verify: bool = False) -> Discovery:
    """Expand files, directories (recursively, following symlinked folders once) and globs into corpus files,
    sorted by relative path. A stage's output directory is read through its `_outputs.json` (exactly the files
    that stage produced, with their digests), in that stage's order: the corpus order, whatever parts its input
    files were split into (after any raw files, then by directory). A file reached through two inputs is read
    once, under its longest relative path (the one that keeps its source folder). Names starting with "." or "_"
    are skipped (temporary files, `_state/`, ground truth, ...); other files of unknown format are listed in
    `skipped`.

    `out`: the stage's output directory, refused when it is an input or inside one (a rerun would read its own
    output). `verify`: identify each file by a SHA-256 of its content instead of size and modification time.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    specs = list(map(str, inputs))
    if out is not None:
        _check_out(specs, str(out))
    found: dict[str, InputFile] = {}  # by real path (local) or URI (remote)
    order: dict[str, tuple] = {}  # by relative path
    skipped: dict[str, str] = {}
    for spec in specs:
        manifest = outputs.find(spec) if storage.is_remote(spec) or os.path.isdir(spec) else None
        if manifest is not None:
            for i, f in enumerate(_manifest_files(manifest)):
                found[f.path if storage.is_remote(f.path) else os.path.realpath(f.path)] = f
                order[f.rel] = (1, str(manifest.directory), i)
            continue
        for key, f in _expand(spec, skipped):
            prev = found.get(key)
            if prev is None or (len(f.rel), f.rel) > (len(prev.rel), prev.rel):
                found[key] = f
    by_rel: dict[str, InputFile] = {}
    for f in found.values():
        prev = by_rel.get(f.rel)
        if prev is not None:
            raise SlimPajamaError(
                f"two inputs have the same relative path {f.rel!r} ({prev.path} and {f.path}); doc ids would "
                "collide: pass their common parent directory instead")
        by_rel[f.rel] = f
    if not by_rel:
        raise SlimPajamaError(f"no corpus files ({', '.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)}) under: "
                              + " ".join(specs) + (f" (skipped {len(skipped)} of unknown format, e.g. "
                                                   f"{min(skipped.values())})" if skipped else ""))
    files = [by_rel[k] for k in sorted(by_rel, key=lambda rel: order.get(rel, (0, rel)))]
    if verify:
        files = _with_digests(files)
    return Discovery(files, sorted(skipped.values()))


def _check_out(specs: list[str], out: str) -> None:
    if storage.is_remote(out):
        roots = [s.rstrip("/") for s in specs if storage.is_remote(s)]
        inside = [r for r in roots if out.rstrip("/") == r or out.startswith(r + "/")]
    else:
        real_out = os.path.realpath(out)
        inside = []
        for s in specs:
            if storage.is_remote(s):
                continue
            root = os.path.realpath(_glob_root(s) if glob.has_magic(s) else s)
            if real_out == root or real_out.startswith(root.rstrip(os.sep) + os.sep):
                inside.append(s)
    if inside:
        raise SlimPajamaError(f"--out {out} is inside the input {inside[0]}: a rerun would read its own output "
                              "(or overwrite the input); choose an output directory outside the inputs")


def _expand(spec: str, skipped: dict[str, str]) -> Iterator[tuple[str, InputFile]]:
    """(identity key, file) of every corpus file under one raw input spec; unknown files go to `skipped`."""
    if storage.is_remote(spec):
        root, listed = _discover_remote(spec)
        for rel, size, mtime in listed:
            path = storage.join(root, rel)
            if _wanted(rel):
                yield path, InputFile(path=path, rel=rel, size=size, mtime_ns=mtime)
            elif _visible(rel):
                skipped[path] = path
        return
    if glob.has_magic(spec) and not os.path.exists(spec):
        root = _glob_root(spec)
        paths = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
    elif os.path.isdir(spec):
        root = spec
        paths = list(_walk(spec))
    elif os.path.isfile(spec):
        root = os.path.dirname(spec) or "."
        paths = [spec]
    else:
        raise SlimPajamaError(f"input not found: {spec}")
    for p in paths:
        rel = Path(os.path.relpath(p, root)).as_posix()
        if not _wanted(rel):
            if _visible(rel):
                skipped[os.path.realpath(p)] = p
            continue
        st = os.stat(p)
        yield os.path.realpath(p), InputFile(path=p, rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)


def _walk(top: str) -> Iterator[str]:
    """Files under `top`, following symlinked folders, each real folder once (a link loop ends there)."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        yield from (os.path.join(dirpath, f) for f in sorted(filenames) if os.path.isfile(os.path.join(dirpath, f)))


def _manifest_files(manifest: outputs.Manifest) -> list[InputFile]:
    if manifest.data.get("documents_root") is None:
        raise SlimPajamaError(f"{manifest.directory} holds the output of stage {manifest.stage}, not documents")
    return [InputFile(path=path, rel=rel, size=rec["size"], mtime_ns=rec.get("mtime_ns", 0), digest=rec["sha256"])
            for rel, path, rec in manifest.documents() if _wanted(rel)]


def _with_digests(files: list[InputFile]) -> list[InputFile]:
    """--verify-inputs: each file identified by a SHA-256 of its content (hashlib releases the GIL: threads)."""
    from dataclasses import replace

    from .writers import sha256_file

    def digest(f: InputFile) -> InputFile:
        return f if f.digest else replace(f, digest=sha256_file(f.path))

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        return list(pool.map(digest, files))


def _visible(rel: str) -> bool:
    return not any(part.startswith((".", "_")) for part in rel.split("/"))


def _wanted(rel: str) -> bool:
    return is_corpus_file(rel) and not any(part.startswith((".", "_")) for part in rel.split("/")[:-1])


def _discover_remote(spec: str) -> tuple[str, list[tuple[str, int, int]]]:
    """(root, [(rel, size, mtime_ns)]) of an object-store file, prefix or glob."""
    if glob.has_magic(spec) and storage.stat(spec) is None:
        scheme, rest = spec.split("://", 1)
        parts = rest.split("/")
        fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
        root = f"{scheme}://" + "/".join(parts[:fixed])
        pattern = "/".join(parts[fixed:])
        listed = [(rel, n, t) for rel, n, t in storage.list_files(root, mtimes=True)
                  if fnmatch.fnmatchcase(rel, pattern)
                  or (pattern.startswith("**/") and fnmatch.fnmatchcase(rel, pattern[3:]))]
        return root, listed
    st = storage.stat(spec)
    if st is not None:
        return storage.parent(spec), [(spec.rstrip("/").rsplit("/", 1)[1], *st)]
    listed = storage.list_files(spec, mtimes=True)
    if not listed:
        raise SlimPajamaError(f"input not found: {spec}")
    return spec.rstrip("/"), listed


class TruncatedInput(Exception):
    pass


class _ZstdStream(io.RawIOBase):
    """Multi-frame zstd decompression that notices a truncated last frame (zstandard's stream_reader does not).
    Damaged input: what decodes before the damage is returned first, then the error is raised."""

    _PIECE = 1 << 12  # compressed bytes per decompress call: a damaged block loses little decoded text with it

    def __init__(self, fh):
        self._fh = fh
        self._dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
        self._obj = None
        self._buf = memoryview(b"")
        self._done = False
        self._error: Exception | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            if self._error is not None:
                raise self._error
            if self._done:
                return 0
            chunk = self._fh.read(_READ_CHUNK)
            if not chunk:
                self._done = True
                if self._obj is not None and not self._obj.eof:
                    raise TruncatedInput("zstd stream ends inside a frame")
                return 0
            self._buf = memoryview(self._feed(chunk))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def _feed(self, chunk: bytes) -> bytes:
        out = []
        try:
            for i in range(0, len(chunk), self._PIECE):
                data = chunk[i: i + self._PIECE]
                while data:
                    if self._obj is None or self._obj.eof:
                        self._obj = self._dctx.decompressobj()
                    out.append(self._obj.decompress(data))
                    data = self._obj.unused_data if self._obj.eof else b""
        except zstandard.ZstdError as e:  # raised once the text decoded before it has been read
            self._error, self._done = e, True
        return b"".join(out)

    def close(self) -> None:
        self._fh.close()
        super().close()


class _Range(io.RawIOBase):
    """Bytes [start, end) of a seekable file (a ranged read of an object-store file)."""

    def __init__(self, fh, start: int, end: int):
        self._fh, self._left = fh, end - start
        fh.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._left <= 0:
            return 0
        data = self._fh.read(min(len(b), self._left, _READ_CHUNK))
        n = len(data)
        b[:n] = data
        self._left -= n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_binary(path: str, byte_range: tuple[int, int] | None = None):
    """A buffered binary stream of the decompressed content (remote files stream from the object store);
    `byte_range`: only bytes [start, end) of an uncompressed file."""
    if byte_range is not None:
        return io.BufferedReader(_Range(storage.open_input(path), *byte_range), _READ_CHUNK)
    fh = io.BufferedReader(storage.open_input(path), _READ_CHUNK) if storage.is_remote(path) else open(path, "rb")
    low = path.lower()
    if low.endswith((".zst", ".zstd")):
        return io.BufferedReader(_ZstdStream(fh), _READ_CHUNK)
    if low.endswith(".gz"):
        return gzip.GzipFile(fileobj=fh, mode="rb")
    if low.endswith(".bz2"):
        return bz2.BZ2File(fh, mode="rb")
    if low.endswith(".xz"):
        return lzma.LZMAFile(fh, mode="rb")
    return io.BufferedReader(fh, _READ_CHUNK) if not isinstance(fh, io.BufferedReader) else fh


_STREAM_ERRORS = (zstandard.ZstdError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, EOFError, TruncatedInput,
                  OSError)


def _stream_error_reason(exc: BaseException) -> str:
    return "truncated" if isinstance(exc, EOFError | TruncatedInput) else "corrupt"


class _BatchBuilder:
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
        return None, ("malformed_json", f"{e.msg} at column {e.colno}")
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


def _fallback_source(file: InputFile, source: str | None, names: dict[str, str]) -> str:
    folder = file.folder_source
    return names.get(folder, folder) if folder else (source or UNKNOWN_SOURCE)


def read_jsonl(file: InputFile, on_bad: OnBad, *, source: str | None = None,
               batch_rows: int = DEFAULT_BATCH_ROWS, batch_bytes: int = DEFAULT_BATCH_BYTES,
               max_doc_bytes: int | None = DEFAULT_MAX_DOC_BYTES,
               source_map: tuple[tuple[str, str], ...] = ()) -> Iterator[pa.RecordBatch]:
    names = sources.source_map(source_map)
    fallback_source = _fallback_source(file, source, names)
    limit = max_doc_bytes if max_doc_bytes else -1
    builder = _BatchBuilder(batch_rows, batch_bytes)

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
                        rest = stream.readline(_READ_CHUNK)
                        nbytes += len(rest)
                        if not rest or rest.endswith(b"\n"):
                            break
                    line_no += 1
                    records += 1
                    bad(line_no, "too_large", f"record of {nbytes} bytes exceeds --max-doc-bytes {max_doc_bytes}",
                        nbytes)
                    continue
            except _STREAM_ERRORS as e:
                records += 1
                bad(line_no + 1, _stream_error_reason(e), f"{type(e).__name__}: {e}".rstrip(": "), 0)
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
                yield builder.flush()
    batch = builder.flush()
    if batch is not None:
        yield batch
    if records == 0 and not file.span:  # (a range of a file may hold blank lines only)
        bad(0, "empty_file", "file holds no records", 0)


def _invalid_utf8_rows(batch: pa.RecordBatch) -> list[int]:
    """Rows whose strings are not valid UTF-8 (parquet does not check; Python would raise on them)."""
    try:
        batch.validate(full=True)
        return []
    except pa.ArrowInvalid:
        pass
    bad = set()
    for col in batch.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            for i, v in enumerate(col.cast(pa.large_binary()).to_pylist()):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        bad.add(i)
    return sorted(bad)


def _decode_dictionaries(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary-encoded columns (what some writers make of repetitive strings) as plain ones."""
    if not any(pa.types.is_dictionary(f.type) for f in batch.schema):
        return batch
    cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _string_or_none(values: list, fallback) -> list:
    """Nulls (and non-strings) of an optional string column replaced, one by one, by `fallback(i)`."""
    return [v if isinstance(v, str) and v else fallback(i) for i, v in enumerate(values)]


def _cast_doc_batch(batch: pa.RecordBatch, file: InputFile, first_row: int, source: str | None,
                    on_bad: OnBad, source_names: dict[str, str], max_doc_bytes: int | None) -> pa.RecordBatch:
    """A parquet batch -> DOC_SCHEMA. Our own shards pass through; other parquet keeps non-text columns as meta.
    A null doc_id, source or meta gets what a file without that column would give."""
    fallback_source = _fallback_source(file, source, source_names)
    batch = _decode_dictionaries(batch)
    invalid = set(_invalid_utf8_rows(batch))
    for i in sorted(invalid):
        on_bad(BadRecord(file.rel, first_row + i + 1, "invalid_utf8", "a string column holds invalid UTF-8",
                         fallback_source, 0))
    keep = [i for i in range(batch.num_rows) if i not in invalid]
    if invalid:
        batch = batch.take(pa.array(keep, pa.int64()))
    row_no = [first_row + i + 1 for i in keep]  # 1-based row in the file, as doc ids and error reports name it
    names = batch.schema.names
    n = batch.num_rows
    text = batch.column("text")
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        for i in range(n):
            on_bad(BadRecord(file.rel, row_no[i], "non_string_text", f"'text' column is {text.type}",
                             fallback_source, 0))
        return make_batch([], [], [], [])
    if "meta" in names and pa.types.is_string(batch.column("meta").type):
        metas = _string_or_none(batch.column("meta").to_pylist(), lambda i: "{}")
    else:
        if "meta" in names:  # a struct or map column
            rows = batch.column("meta").to_pylist()
        else:  # every other column is metadata
            rest = [c for c in names if c not in ("text", "doc_id", "source", "red_pajama_subset")]
            rows = pa.Table.from_batches([batch.select(rest)]).to_pylist() if rest else [{}] * n
        metas = [json.dumps(m, ensure_ascii=False, default=str) for m in rows]
    if "doc_id" in names and batch.column("doc_id").null_count == 0:
        ids = batch.column("doc_id").cast(pa.string())  # our own shards: passed through as they are
    else:
        ids = [f"{file.rel}:{row_no[i]}" for i in range(n)]
        if "doc_id" in names:
            ids = _string_or_none(batch.column("doc_id").cast(pa.string()).to_pylist(), ids.__getitem__)
    if "source" in names and pa.types.is_string(batch.column("source").type):
        sources = _string_or_none(batch.column("source").to_pylist(), lambda i: fallback_source)
    else:
        sources = []
        subsets = (batch.column("red_pajama_subset").to_pylist() if "red_pajama_subset" in names
                   else [None] * n)
        for m, subset in zip(metas, subsets, strict=True):
            try:
                s = json.loads(m).get("redpajama_set_name")
            except (ValueError, AttributeError):
                s = None
            if not (isinstance(s, str) and s):
                s = source_names.get(subset, subset) if isinstance(subset, str) and subset else fallback_source
            sources.append(s)
    texts = text.to_pylist()
    sizes = pc.binary_length(text.cast(pa.large_binary())).to_pylist()
    keep = []
    for i in range(n):
        if texts[i] is None:
            on_bad(BadRecord(file.rel, row_no[i], "missing_text", "'text' is null", sources[i], 0))
        elif max_doc_bytes and sizes[i] > max_doc_bytes:
            on_bad(BadRecord(file.rel, row_no[i], "too_large", f"text of {sizes[i]} bytes exceeds --max-doc-bytes "
                             f"{max_doc_bytes}", sources[i], sizes[i]))
        else:
            keep.append(i)
    if len(keep) == n:
        return pa.RecordBatch.from_arrays([ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string()),
                                           pa.array(sources, pa.string()), text.cast(pa.string()),
                                           pa.array(metas, pa.string())], schema=DOC_SCHEMA)
    ids = ids.to_pylist() if isinstance(ids, pa.Array) else ids
    return make_batch([ids[i] for i in keep], [sources[i] for i in keep], [texts[i] for i in keep],
                      [metas[i] for i in keep])


# what pyarrow raises on a damaged file (a mangled footer can even give undecodable column names)
_PARQUET_ERRORS = (OSError, pa.ArrowException, ValueError, IndexError, KeyError)


def read_parquet(file: InputFile, on_bad: OnBad, *, source: str | None = None,
                 batch_rows: int = DEFAULT_BATCH_ROWS, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 max_doc_bytes: int | None = DEFAULT_MAX_DOC_BYTES,
                 source_map: tuple[tuple[str, str], ...] = ()) -> Iterator[pa.RecordBatch]:
    del batch_bytes  # parquet batches are bounded by rows and row groups
    names = sources.source_map(source_map)
    fallback_source = _fallback_source(file, source, names)
    try:
        pf = storage.open_parquet(file.path)
        columns = pf.schema_arrow.names
    except _PARQUET_ERRORS as e:
        on_bad(BadRecord(file.rel, 0, "corrupt", f"not a readable parquet file: {e}", fallback_source, file.size))
        return
    if "text" not in columns:
        on_bad(BadRecord(file.rel, 0, "bad_schema", f"no 'text' column (columns: {columns})",
                         fallback_source, file.size))
        return
    if pf.metadata.num_rows == 0:  # complete (it has a footer) and empty: zero documents, e.g. a shard whose
        return  # documents were all short or all duplicates
    # a span is a range of row groups, and the row number of its first row
    groups, row = (list(range(file.span[0], file.span[1])), file.span[2] - 1) if file.span else (None, 0)
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups):
            out = _cast_doc_batch(batch, file, row, source, on_bad, names, max_doc_bytes)
            row += batch.num_rows
            if out.num_rows:
                yield out
    except _PARQUET_ERRORS as e:
        on_bad(BadRecord(file.rel, row + 1, "corrupt", f"{type(e).__name__}: {e}", fallback_source, 0))


def read_documents(file: InputFile, on_bad: OnBad, **kwargs) -> Iterator[pa.RecordBatch]:
    """Stream one corpus file as DOC_SCHEMA batches (see the module docstring)."""
    reader = read_parquet if file.is_parquet else read_jsonl
    return reader(file, on_bad, **kwargs)


def iter_documents(inputs, on_bad: OnBad, **kwargs) -> Iterator[pa.RecordBatch]:
    """All files of `inputs` (paths, directories, globs) in order."""
    for f in discover(inputs):
        yield from read_documents(f, on_bad, **kwargs)


__all__ = ["DOC_SCHEMA", "Discovery", "InputFile", "discover", "discover_all", "read_documents", "iter_documents",
           "open_binary"]
