"""Where stage files live: a local path, or a URI of any pyarrow filesystem (`s3://bucket/prefix`, `gs://...`).

Stages keep working on local files; this module is the boundary. For an object-store URI:
  * reads stream through pyarrow (`open_input`), or, where a stage needs a real file (memory maps), `local_copy`
    downloads it once into a node-local cache keyed by URI and size;
  * writes go to a local staging file and are uploaded when complete (`writers.atomic_path` calls `publish`), so
    an object appears whole or not at all: an upload killed midway never completes its multipart upload;
  * the runner's completion marker is uploaded after the outputs, as for local files.
S3 settings come from the usual AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_REGION`, ...), which
the runner forwards to its Ray tasks.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import shutil
import stat as stat_module
import uuid

import pyarrow as pa
import pyarrow.fs as pafs

from slimpajama.errors import SlimPajamaError

CACHE_ENV = "SLIMPAJAMA_CACHE"  # the one cache folder: tokenizer files, downloads and staged uploads (node-local)
# The driver's object-store settings, forwarded to every Ray task (a cluster node may have none of its own).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_EC2_METADATA_DISABLED",
                 CACHE_ENV)
_COPY_CHUNK = 8 << 20


def is_remote(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


@functools.lru_cache(maxsize=32)
def _filesystem(scheme_and_bucket: str) -> pafs.FileSystem:
    try:
        fs, _ = pafs.FileSystem.from_uri(scheme_and_bucket)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise SlimPajamaError(f"cannot open filesystem for {scheme_and_bucket}: {e}") from None
    return fs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a remote URI."""
    scheme, rest = str(uri).split("://", 1)
    bucket = rest.split("/", 1)[0]
    return _filesystem(f"{scheme}://{bucket}"), rest.rstrip("/")


def join(base: str, *parts: str) -> str:
    return posixpath.join(str(base), *parts) if is_remote(base) else os.path.join(base, *parts)


def parent(path: str) -> str:
    if is_remote(path):
        return posixpath.dirname(str(path).rstrip("/"))
    return os.path.dirname(os.path.abspath(path))


def _info(path: str) -> pafs.FileInfo:
    fs, p = resolve(path)
    try:
        return fs.get_file_info(p)
    except (pa.ArrowException, OSError) as e:
        raise SlimPajamaError(f"cannot reach {path}: {e}") from None


def file_size(path: str) -> int | None:
    """Size of a file, or None when there is no file at `path`."""
    st = stat(path)
    return st[0] if st else None


def stat(path: str) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file, or None when there is no file at `path`. An object store's
    modification time is its last write (pyarrow exposes no ETag): a rewritten object gets a new one."""
    if not is_remote(path):
        try:
            st = os.stat(path)
        except OSError:  # missing, or not reachable: no file there (as os.path.isfile says)
            return None
        return (st.st_size, st.st_mtime_ns) if stat_module.S_ISREG(st.st_mode) else None
    info = _info(path)
    return (info.size, info.mtime_ns or 0) if info.type == pafs.FileType.File else None


def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(path)
    return _info(path).type == pafs.FileType.Directory  # pyarrow reports a prefix holding objects as one


def makedirs(path: str) -> None:
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)  # object stores have no directories to create


def list_files(root: str, mtimes: bool = False) -> list[tuple]:
    """(posix path relative to root, size[, mtime_ns]) of every file under root, recursively, sorted."""
    if not is_remote(root):
        out = []
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                st = os.stat(p)
                rel = os.path.relpath(p, root).replace(os.sep, "/")
                out.append((rel, st.st_size, st.st_mtime_ns) if mtimes else (rel, st.st_size))
        return sorted(out)
    fs, p = resolve(root)
    try:
        infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    except (pa.ArrowException, OSError) as e:
        raise SlimPajamaError(f"cannot list {root}: {e}") from None
    return sorted((i.path[len(p) + 1:], i.size, *((i.mtime_ns or 0,) if mtimes else ()))
                  for i in infos if i.type == pafs.FileType.File)


def open_input(path: str):
    """A seekable binary file (local or remote)."""
    if not is_remote(path):
        return open(path, "rb")
    fs, p = resolve(path)
    return fs.open_input_file(p)


def open_parquet(path: str):
    """A pyarrow ParquetFile (remote ones read only the byte ranges they need)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(open_input(path) if is_remote(path) else path)


def read_bytes(path: str) -> bytes:
    with open_input(path) as f:
        return f.read()


def remove_tree_empty_dirs(root: str, dirs) -> None:
    """Remove the folders `dirs` (and their parents, up to `root`) that are empty; object stores have none."""
    if is_remote(root):
        return
    root = os.path.abspath(root)
    for d in sorted({os.path.abspath(x) for x in dirs}, key=len, reverse=True):
        while d.startswith(root + os.sep):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:  # not empty
                break
            d = os.path.dirname(d)


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not is_remote(path):
            os.remove(path)
            return
        fs, p = resolve(path)
        fs.delete_file(p)


def cache_dir() -> str:
    """$SLIMPAJAMA_CACHE, default ~/.cache/slimpajama: tiktoken/ (GPT-2's verified file), engine/ (converted
    tokenizers), objects/ (object-store files memory-mapped on this node), staging/ (uploads being written)."""
    d = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "slimpajama")
    os.makedirs(d, exist_ok=True)
    return d


def staging_path(uri: str) -> str:
    """A local temporary file for an object that will be uploaded to `uri`."""
    d = os.path.join(cache_dir(), "staging")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, f"{uuid.uuid4().hex[:12]}-{posixpath.basename(uri)}")


def publish(local: str, uri: str) -> None:
    """Upload a complete local file to `uri`; on failure nothing stays at `uri`."""
    fs, p = resolve(uri)
    try:
        # compression=None: pyarrow would otherwise compress a .zst/.gz name a second time
        with open(local, "rb") as src, fs.open_output_stream(p, compression=None) as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.delete_file(p)
        raise


def local_copy(path: str, size: int | None = None) -> str:
    """A local file with the content of `path`: the path itself, or a cached download of a remote object."""
    if not is_remote(path):
        return path
    info = _info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(path)
    if size is not None and info.size != size:
        raise SlimPajamaError(f"{path} is {info.size} bytes, expected {size}: it changed since it was listed")
    size = info.size
    # the modification time tells a rewritten object from the one cached (an unchanged object keeps its copy)
    key = hashlib.sha1(f"{path}\0{size}\0{info.mtime_ns}".encode()).hexdigest()[:20]
    local = os.path.join(cache_dir(), "objects", f"{key}-{posixpath.basename(path)}")
    if os.path.isfile(local) and os.path.getsize(local) == size:
        return local
    os.makedirs(os.path.dirname(local), exist_ok=True)
    tmp = f"{local}.{uuid.uuid4().hex[:8]}.part"
    try:
        with open_input(path) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
        if os.path.getsize(tmp) != size:
            raise SlimPajamaError(f"{path} changed while it was downloaded")
        os.replace(tmp, local)  # concurrent downloads of one object on a node race harmlessly
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return local
