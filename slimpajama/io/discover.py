"""Discovery: which corpus files an input names (files, directories, globs, object-store prefixes, or a stage's
output directory read through its `_outputs.json`), each as an `InputFile` with a stable relative path."""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slimpajama.errors import SlimPajamaError
from slimpajama.io import outputs, storage

COMPRESSIONS = ("", ".zst", ".zstd", ".gz", ".bz2", ".xz")
JSONL_SUFFIXES = tuple(base + c for base in (".jsonl", ".json") for c in COMPRESSIONS)  # compared lowercased
PARQUET_SUFFIXES = (".parquet",)


def printable(name: str) -> str:
    """A file name as doc ids, outputs and messages spell it: a name whose bytes are not UTF-8 (Python holds them as
    lone surrogates, which no UTF-8 file can store) with those bytes escaped, na\\xefve.jsonl; any other unchanged."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
    """An output directory that is an input, lies inside one or holds one is refused: a rerun would read its own
    output, or the output's files would land among the corpus's (and be read as part of it later)."""
    remote = storage.is_remote(out)
    out_root = out.rstrip("/") if remote else os.path.realpath(out)
    sep = "/" if remote else os.sep
    for s in specs:
        if storage.is_remote(s) != remote:
            continue
        root = s.rstrip("/") if remote else os.path.realpath(_glob_root(s) if glob.has_magic(s) else s)
        if out_root == root or out_root.startswith(root.rstrip(sep) + sep):
            raise SlimPajamaError(f"--out {out} is inside the input {s}: a rerun would read its own output (or "
                                  "overwrite the input); choose an output directory outside the inputs")
        if root.startswith(out_root.rstrip(sep) + sep):
            raise SlimPajamaError(f"--out {out} holds the input {s}: its outputs would be written among the "
                                  "corpus's files; choose an output directory outside the inputs")


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
        rel = printable(Path(os.path.relpath(p, root)).as_posix())
        if not _wanted(rel):
            if _visible(rel):
                skipped[os.path.realpath(p)] = printable(p)
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
    """A stage's document files as its manifest records them, each local one checked against the file on disk: one
    whose size or modification time is not the record's (replaced by hand under the same name) is hashed again, so
    what depends on it (a rerun's run key, a later stage's resume) sees the new content."""
    from slimpajama.io.writers import sha256_file

    if manifest.data.get("documents_root") is None:
        raise SlimPajamaError(f"{manifest.directory} holds the output of stage {manifest.stage}, not documents")
    out = []
    for rel, path, rec in manifest.documents():
        if not _wanted(rel):
            continue
        if storage.is_remote(path):  # an object's time is its upload's, not the record's: the record is trusted
            out.append(InputFile(path=path, rel=rel, size=rec["size"], mtime_ns=rec.get("mtime_ns", 0),
                                 digest=rec["sha256"]))
            continue
        now, recorded = storage.stat(path), (rec["size"], rec.get("mtime_ns", 0))
        if now is None:
            raise SlimPajamaError(f"{path} is missing from {manifest.directory}, whose {outputs.OUTPUTS_FILE} lists "
                                  f"it: rerun the stage that wrote {manifest.directory}")
        digest = rec["sha256"] if now == recorded or not recorded[1] else sha256_file(path)
        out.append(InputFile(path=path, rel=rel, size=now[0], mtime_ns=now[1] if recorded[1] else 0, digest=digest))
    return out


def _with_digests(files: list[InputFile]) -> list[InputFile]:
    """--verify-inputs: each file identified by a SHA-256 of its content (hashlib releases the GIL: threads)."""
    from dataclasses import replace

    from slimpajama.io.writers import sha256_file

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
