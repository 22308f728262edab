"""Decompressed byte streams of corpus files: .zst (multi-frame, truncation noticed), .gz, .bz2, .xz, plain, local
or object store, whole or a byte range; and what their errors mean for the bad-input log."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib

import zstandard

from slimpajama.io import storage

READ_CHUNK = 1 << 20


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
            chunk = self._fh.read(READ_CHUNK)
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
        data = self._fh.read(min(len(b), self._left, READ_CHUNK))
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
        return io.BufferedReader(_Range(storage.open_input(path), *byte_range), READ_CHUNK)
    fh = io.BufferedReader(storage.open_input(path), READ_CHUNK) if storage.is_remote(path) else open(path, "rb")
    low = path.lower()
    if low.endswith((".zst", ".zstd")):
        return io.BufferedReader(_ZstdStream(fh), READ_CHUNK)
    if low.endswith(".gz"):
        return gzip.GzipFile(fileobj=fh, mode="rb")
    if low.endswith(".bz2"):
        return bz2.BZ2File(fh, mode="rb")
    if low.endswith(".xz"):
        return lzma.LZMAFile(fh, mode="rb")
    return io.BufferedReader(fh, READ_CHUNK) if not isinstance(fh, io.BufferedReader) else fh


STREAM_ERRORS = (zstandard.ZstdError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, EOFError, TruncatedInput,
                  OSError)


def stream_error_reason(exc: BaseException) -> str:
    return "truncated" if isinstance(exc, EOFError | TruncatedInput) else "corrupt"
