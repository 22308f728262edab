"""Completion markers: what a finished shard task records (`<out>/_state/<key>.json`: the stage fingerprint, the
identity of its inputs, each output's size, time and SHA-256, its ledger), how a rerun tells a complete task from
one to redo, and the run state of multi-stage commands (a run key over every input and setting)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypedDict

from slimpajama.io import storage
from slimpajama.io.discover import InputFile
from slimpajama.io.outputs import STATE_DIR
from slimpajama.io.writers import file_digest, sha256_file, write_bytes_atomic

if TYPE_CHECKING:
    from .stage import Stage, Task

MARKER_VERSION = 2


class Marker(TypedDict):
    """A finished task's record, `_state/<key>.json`, written last by `runner.execute_task`."""

    version: int
    stage: str  # Stage.name
    key: str  # the task's key
    fingerprint: dict  # the stage's settings
    inputs: list  # the task's identity: its input files' identities, then its params
    outputs: dict[str, dict]  # each output (relative to the stage's folder): size, SHA-256, mtime
    errors_file: str | None  # its bad-input records, if any
    ledger: dict  # Ledger.to_dict(): per source and "totals": docs_in/out, bytes_in/out, dropped by reason
    extra: dict  # the stage's own figures (TaskResult.extra)
    seconds: float
    node: str | None  # the Ray node that ran it
    peak_rss_mb: float


def totals(marker: Marker) -> dict:
    """The task's ledger totals: docs_in, docs_out, bytes_in, bytes_out, dropped."""
    return marker["ledger"]["totals"]


def state_path(out_dir: str, key: str) -> str:
    return storage.join(out_dir, STATE_DIR, key + ".json")


def read_marker(out_dir: str, key: str) -> Marker | None:
    try:
        return json.loads(storage.read_bytes(state_path(out_dir, key)))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):  # none, or not one we can read: not complete
        return None


def is_complete(stage: Stage, task: Task, out_dir: str, verify_outputs: bool = False) -> bool:
    return complete_marker(stage, task, out_dir, verify_outputs) is not None


def complete_marker(stage: Stage, task: Task, out_dir: str, verify_outputs: bool = False,
                    marker: Marker | None = None) -> Marker | None:
    """The task's marker if the task is complete (see `is_complete`), else None. `marker`: the task's marker as
    already read (None: read it now)."""
    m = marker if marker is not None else read_marker(out_dir, task.key)
    if m is None or m.get("version") != MARKER_VERSION:
        return None
    if m.get("fingerprint") != as_json(stage.fingerprint()) or m.get("inputs") != as_json(task.identity()):
        return None
    retimed = False
    for rel, rec in m["outputs"].items():
        path = storage.join(out_dir, rel)
        st = storage.stat(path)
        if st is None or st[0] != rec["size"]:
            return None
        if st[1] != rec["mtime_ns"] or verify_outputs:  # touched, copied, or edited in place: the digest decides
            if sha256_file(path) != rec["sha256"]:
                return None
            retimed |= st[1] != rec["mtime_ns"]
            rec["mtime_ns"] = st[1]
    if retimed:  # the same bytes under a new time (a copied directory): checked once, not on every rerun
        write_bytes_atomic(state_path(out_dir, task.key), json.dumps(m, sort_keys=True).encode())
    return m


def as_json(value):
    """As a marker file holds it (tuples become lists, keys sorted: later code iterates its outputs in order)."""
    return json.loads(json.dumps(value, sort_keys=True))


def output_record(path: str) -> dict:
    """What a marker and `_outputs.json` record of a file that was just written."""
    size, mtime = storage.stat(path)
    return {"size": size, "mtime_ns": mtime, "sha256": file_digest(path)}


def output_file(out_dir: str, rel: str, rec: dict | None = None) -> InputFile:
    """An output as the next task's input, identified by its digest (`rec`: its record; else read now)."""
    path = storage.join(out_dir, rel)
    rec = rec or output_record(path)
    return InputFile(path=path, rel=rel, size=rec["size"], mtime_ns=rec.get("mtime_ns", 0), digest=rec["sha256"])


def run_key(*parts) -> str:
    """A digest of what a whole multi-stage run depends on (every input's identity, the settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def load_run(out_dir: str, name: str) -> dict:
    """`<out>/_state/<name>`: what the last complete run of a multi-stage command recorded ({} if none), so a
    rerun whose final outputs are complete for the same run key skips the intermediate stages (whose files may
    then be deleted)."""
    try:
        return json.loads(storage.read_bytes(storage.join(out_dir, STATE_DIR, name)))
    except (FileNotFoundError, ValueError):
        return {}


def save_run(out_dir: str, name: str, data: dict) -> None:
    write_bytes_atomic(storage.join(out_dir, STATE_DIR, name), json.dumps(data, sort_keys=True).encode())


def previous_run(out_dir: str, name: str, key: str, stage: Stage,
                 tasks: Callable[[dict], Sequence[Task]]) -> dict | None:
    """The state the last complete run saved under `name` if it was for run key `key` and every one of its final
    tasks (`tasks(state)`) is still complete for `stage`, else None: then the intermediate stages need not run
    (their files may have been deleted)."""
    state = load_run(out_dir, name)
    if state.get("run_key") != key or not all(is_complete(stage, t, out_dir) for t in tasks(state)):
        return None
    return state
