"""What a stage run produced: `<out>/_outputs.json`, written by the runner when a run completes.

    {"stage": "<Stage.name>", "fingerprint": {...}, "documents_root": "" | "shards" | null,
     "files": [{"rel": "RedPajamaC4/c4-0001.parquet", "size": ..., "sha256": ...}, ...]}

Later stages read a stage directory through it, never through a walk that could pick up strays of earlier runs,
and identify each file by its SHA-256 (so a recomputed but identical upstream file invalidates nothing
downstream). `documents_root` names the folder holding the files the next stage reads as documents (dedup's
`shards/`), or is null for a stage whose outputs are not documents (a token cache, packed shards).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from slimpajama.io import storage

OUTPUTS_FILE = "_outputs.json"
STATE_DIR = "_state"  # beside it: each task's completion marker and error log (pipelines/markers.py)


@dataclass(frozen=True)
class Manifest:
    directory: str  # the stage's output directory
    data: dict

    @property
    def stage(self) -> str:
        return self.data["stage"]

    def documents(self) -> list[tuple[str, str, dict]]:
        """(path relative to the documents root, full path, record) of every document file, in the stage's order."""
        doc_root = self.data.get("documents_root")
        if doc_root is None:
            return []
        prefix = doc_root + "/" if doc_root else ""
        out = []
        for rec in self.data["files"]:
            if rec["rel"].startswith(prefix):
                rel = rec["rel"][len(prefix):]
                out.append((rel, storage.join(self.directory, rec["rel"]), rec))
        return out

    def files(self) -> dict[str, dict]:
        return {rec["rel"]: rec for rec in self.data["files"]}


def read(directory: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(storage.join(directory, OUTPUTS_FILE)))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError, NotADirectoryError):
        return None


def find(path: str) -> Manifest | None:
    """The manifest of the stage directory `path`, or of the stage whose documents root `path` is (e.g.
    `data/work/dedup/shards`), else None (a raw corpus)."""
    data = read(path)
    if data is not None:
        return Manifest(path, data)
    parent = storage.parent(path)
    data = read(parent)
    if data is not None and data.get("documents_root") and \
            data["documents_root"] == posixpath.basename(str(path).rstrip("/").replace("\\", "/")):
        return Manifest(parent, data)
    return None


def write(directory: str, stage: str, fingerprint: dict, files: list[dict], documents_root: str | None) -> None:
    from slimpajama.io.writers import write_bytes_atomic

    data = {"stage": stage, "fingerprint": fingerprint, "documents_root": documents_root, "files": files}
    write_bytes_atomic(storage.join(directory, OUTPUTS_FILE), json.dumps(data, indent=1, sort_keys=True).encode())
