"""ShardReader: random access to packed rows, numpy only (no torch import), zero-copy from memory-mapped files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from slimpajama.io import storage
from slimpajama.io.writers import sha256_file

from .format import damaged, index_digest, read_index


class ShardReader:
    """Rows of one packed split directory (index.json + Arrow IPC stream files). `verify=True` checks every file's
    SHA-256 on open (sizes and rows are always checked); a damaged file is a SlimPajamaError naming it.

    `reader[i]` is a read-only numpy view of row i's seq_len + 1 tokens (no copy); `reader.doc_lens(i)` its
    document segment lengths; `reader.padding(i)` its pad tokens at the end; `reader.manifest` the index.json.
    """

    def __init__(self, directory: str, verify: bool = False):
        self.directory = str(directory)
        self.manifest = read_index(self.directory)
        self._open(verify)

    def _open(self, verify: bool) -> None:
        """Every file checked against the index as it is opened: present, its size (always: a truncated file is
        found here, not as pyarrow's error at some row), its rows; with `verify`, its SHA-256 too (a flipped byte
        reads as data otherwise), at the cost of reading every byte once."""
        self._maps, self._tokens, self._lens_off, self._lens_val, self._padding = [], [], [], [], []
        self._batch_rows = self.manifest["batch_rows"]
        for f in self.manifest["files"]:
            path = storage.join(self.directory, f["path"])
            size = storage.file_size(path)
            if size is None:
                raise damaged(self.directory, path, "missing")
            if size != f["bytes"]:
                raise damaged(self.directory, path, f"{size:,} bytes where the index says {f['bytes']:,}: "
                                                    "truncated or overwritten")
            # an object-store directory is downloaded once per node (storage.local_copy), then memory-mapped
            local = storage.local_copy(path, f["bytes"])
            if verify and sha256_file(local) != f["sha256"]:
                raise damaged(self.directory, path, "its SHA-256 is not the index's: edited or corrupted")
            rows = 0
            try:
                mm = pa.memory_map(local)
                for batch in ipc.open_stream(mm):
                    tok = batch.column(0)
                    self._tokens.append(tok.flatten().to_numpy(zero_copy_only=True).reshape(-1, tok.type.list_size))
                    lens = batch.column(1)
                    self._lens_off.append(lens.offsets.to_numpy())
                    self._lens_val.append(lens.values.to_numpy())
                    self._padding.append(batch.column(2).to_numpy())
                    rows += batch.num_rows
            except (pa.ArrowException, OSError) as e:
                raise damaged(self.directory, path, f"unreadable: {str(e).splitlines()[0]}") from None
            if rows != f["rows"]:
                raise damaged(self.directory, path, f"{rows:,} rows where the index says {f['rows']:,}")
            self._maps.append(mm)
        self._rows = int(sum(len(t) for t in self._tokens))

    def __getstate__(self):  # memory maps do not pickle: reopen in the receiving process (DataLoader workers)
        return {"directory": self.directory}

    def __setstate__(self, state):  # (the sender checked the files; the receiver checks their sizes again)
        self.__init__(state["directory"])

    def __len__(self) -> int:
        return self._rows

    def _locate(self, i: int) -> tuple[int, int]:
        if not -self._rows <= i < self._rows:
            raise IndexError(f"row {i} out of range for {self._rows} rows")
        return divmod(i % self._rows, self._batch_rows)

    def __getitem__(self, i: int) -> np.ndarray:
        b, j = divmod(i, self._batch_rows) if 0 <= i < self._rows else self._locate(i)
        return self._tokens[b][j]

    def doc_lens(self, i: int) -> np.ndarray:
        b, j = self._locate(i)
        off = self._lens_off[b]
        return self._lens_val[b][off[j]: off[j + 1]]

    def padding(self, i: int) -> int:
        b, j = self._locate(i)
        return int(self._padding[b][j])

    def __iter__(self):
        for t in self._tokens:
            yield from t

    def token_blocks(self):
        """The rows as (n, seq_len + 1) read-only arrays, one per record batch (zero-copy): for whole-split scans."""
        yield from self._tokens

    def docs_per_row(self) -> np.ndarray:
        """How many document segments each row holds."""
        return np.concatenate([np.diff(o) for o in self._lens_off]) if self._lens_off else np.zeros(0, np.int64)

    def paddings(self) -> np.ndarray:
        """Every row's pad tokens (bestfit; 0 for concat)."""
        return np.concatenate(self._padding) if self._padding else np.zeros(0, np.int32)

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    @property
    def digest(self) -> str:
        """The split's identity: a SHA-256 of its index (every file's SHA-256, the seed, range and packing), so
        another packing of other data, or of the same data with another seed, has another digest."""
        return index_digest(self.manifest)

    def tokenizer(self):
        """The tokenizer the rows were made with (`.decode(ids)`, `.eot_token`, `.n_vocab`): a model tokenizer
        from the split's own copy (needs the `tokenizers` or `sentencepiece` library), or the tiktoken encoding
        by name (needs tiktoken)."""
        info = self.manifest.get("tokenizer") or {"kind": "tiktoken", "name": self.manifest["encoding"]}
        if info["kind"] == "tiktoken":
            from slimpajama.tokenize.encodings import get_encoding

            return get_encoding(info["name"])
        from slimpajama.tokenize.modelfiles import from_bytes

        data = storage.read_bytes(storage.join(self.directory, info["file"]))
        return from_bytes(info["kind"], info["name"], info["file"], data, info["eos_token"], info["bos_token"])
