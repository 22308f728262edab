"""Run a stage as Ray tasks, one per input shard, resumably.

A stage is an object with `name`, `fingerprint()` (the config its outputs depend on) and
`run_shard(task, out_dir) -> ShardOutcome`, a pure function of the task's inputs that writes its outputs
atomically (`keeps_ledger = False` for stages that do not handle documents; `documents_root`: where its outputs
that the next stage reads as documents live, None for none). The runner:
  * owns the output directory for the run (`lock.hold`: one driver per directory);
  * skips a shard whose completion marker (`_state/<key>.json`) matches the stage fingerprint and the identity of
    its inputs (content digests, or size and modification time of raw files), and whose outputs are intact (same
    size and modification time, or else the same SHA-256); any other shard is recomputed;
  * runs the rest as Ray tasks (at most `workers` in flight), the marker written by the task after its outputs,
    with their sizes and SHA-256, so a driver killed at any point leaves only complete shards or temporary files
    (removed on the next run);
  * merges the per-shard ledgers in key order into `<out>/ledger.json` (checked to balance) and the per-shard
    error files into `<out>/_errors.jsonl`;
  * removes what earlier runs produced that this run did not (outputs of other settings or inputs), and writes
    `<out>/_outputs.json`, the exact list of this run's outputs that later stages read.
Outputs depend only on each task's inputs, never on scheduling, so 1 or N workers give the same bytes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from slimpajama.cli.progress import shard_progress
from slimpajama.core.ledger import Ledger
from slimpajama.errors import BadRecord, SlimPajamaError, raise_on_bad
from slimpajama.io import outputs, storage, writers
from slimpajama.io.discover import InputFile
from slimpajama.io.writers import atomic_path, file_digest, remove_stale_tmp, sha256_file, write_bytes_atomic
from slimpajama.pipelines.memory import peak_rss_mb, reset_peak_rss

from . import faults, lock
from .interrupts import Terminated, install_sigterm_handler, ray_running, shutdown_ray  # noqa: F401

STATE_DIR = "_state"
LEDGER_FILE = "ledger.json"
ERRORS_FILE = "_errors.jsonl"  # "_": never read back as a corpus file
PREVIOUS_FILE = "_previous"  # outputs of earlier runs, kept until this run has removed those it did not produce
MARKER_VERSION = 2


@dataclass(frozen=True)
class ShardTask:
    key: str  # names the task's outputs, e.g. "RedPajamaC4/c4-0001"
    inputs: tuple[InputFile, ...]
    params: dict = field(default_factory=dict)  # per-task settings (JSON-able), part of the task's identity

    # inputs whose content is fixed by `inputs` and `params` (a dedup's cluster files, by every shard it read):
    # read by the task, not part of its identity, so deleting them after a complete run costs nothing
    side: tuple[InputFile, ...] = ()

    def identity(self) -> list:
        ident = [f.identity() for f in self.inputs]
        return ident + [self.params] if self.params else ident


@dataclass
class ShardOutcome:
    outputs: list[str]  # paths relative to the stage's output dir
    ledger: Ledger
    errors_file: str | None = None  # relative path of this shard's bad-input records, if any
    extra: dict = field(default_factory=dict)


def state_path(out_dir: str, key: str) -> str:
    return storage.join(out_dir, STATE_DIR, key + ".json")


def read_marker(out_dir: str, key: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(state_path(out_dir, key)))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):  # none, or not one we can read: not complete
        return None


def is_complete(stage, task: ShardTask, out_dir: str, verify_outputs: bool = False) -> bool:
    return complete_marker(stage, task, out_dir, verify_outputs) is not None


def complete_marker(stage, task: ShardTask, out_dir: str, verify_outputs: bool = False,
                    marker: dict | None = None) -> dict | None:
    """The task's marker if the task is complete (see `is_complete`), else None. `marker`: the task's marker as
    already read (None: read it now)."""
    m = marker if marker is not None else read_marker(out_dir, task.key)
    if m is None or m.get("version") != MARKER_VERSION:
        return None
    if m.get("fingerprint") != _as_json(stage.fingerprint()) or m.get("inputs") != _as_json(task.identity()):
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


def _as_json(value):
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


def execute_shard(stage, task: ShardTask, out_dir: str, fault: faults.WorkerFault | None = None,
                  run: str | None = None) -> dict:
    """Run one shard and write its completion marker (runs inside a Ray task, or inline)."""
    t0 = time.perf_counter()
    reset_peak_rss()
    if run:
        writers.set_run_id(run)  # temporary files carry the driver's run id
    writers.forget_digests()
    before_marker = fault.arm() if fault else None
    try:
        outcome = stage.run_shard(task, out_dir)
        marker = {
            "version": MARKER_VERSION,
            "stage": stage.name,
            "key": task.key,
            "fingerprint": stage.fingerprint(),
            "inputs": task.identity(),
            "outputs": {rel: output_record(storage.join(out_dir, rel)) for rel in outcome.outputs},
            "errors_file": outcome.errors_file,
            "ledger": outcome.ledger.to_dict(),
            "extra": outcome.extra,
            "seconds": round(time.perf_counter() - t0, 3),
            "node": _node_id(),
            "peak_rss_mb": peak_rss_mb(),  # of the process while it ran this shard (for sizing a cluster)
        }
        if before_marker is not None:
            before_marker()
        # Written last: its presence means every output above is complete.
        write_bytes_atomic(state_path(out_dir, task.key), json.dumps(marker, sort_keys=True).encode())
    except OSError as e:  # the machine's side (full disk, permissions, storage): readers count bad input apart
        raise SlimPajamaError(f"stage {stage.name}, shard {task.key} (output {out_dir}): {_os_error(e)}. "
                              "Completed shards are kept: fix it and rerun.") from None
    return marker


# ----------------------------------------------------------------------------------------------------------- Ray


def _os_error(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    return f"{e.strerror or e}{where}"


def _node_id() -> str | None:
    """The Ray node that ran a task (for the audit trail of a cluster run); None outside Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def init_ray(ray_address: str | None = None, workers: int | None = None) -> None:
    """Embedded local Ray (all cores, or `workers`; no dashboard; quiet), or join `ray_address` / $RAY_ADDRESS."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = ray_address or os.environ.get("RAY_ADDRESS")
    verbose = os.environ.get("SLIMPAJAMA_VERBOSE", "") not in ("", "0")
    # quiet unless --verbose: Ray's own warnings (token authentication, ...) and the workers' log lines
    logging.getLogger("ray").setLevel(logging.WARNING if verbose else logging.ERROR)
    common = dict(logging_level=logging.WARNING if verbose else logging.ERROR, log_to_driver=verbose,
                  ignore_reinit_error=True)
    if address:
        _check_address(address)
        ray.init(address=address, **common)
    else:  # --workers is a cap: more Ray CPUs than cores would only add idle worker processes
        ray.init(num_cpus=min(workers or os.cpu_count(), os.cpu_count()), include_dashboard=False,
                 object_store_memory=int(os.environ.get("SLIMPAJAMA_OBJECT_STORE_BYTES", 256 << 20)), **common)
    install_sigterm_handler()  # ray.init installed its own (sys.exit), which can leave Ray half shut down


def _check_address(address: str) -> None:
    """A cluster address that cannot work fails in one line within seconds (Ray itself would retry for minutes)."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SlimPajamaError(f"--ray-address {address!r}: expected HOST:PORT of a Ray head node (e.g. "
                              "10.0.0.1:6379), 'auto', or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise SlimPajamaError(f"no Ray cluster at {address} ({e.strerror or e}): start one with `ray start --head` "
                              "or check the address") from None


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _unwrap(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


@dataclass
class StageReport:
    stage: str
    out_dir: str
    ledger: Ledger
    shards: int
    skipped: int
    errors: int
    seconds: float
    markers: list = field(default_factory=list, repr=False)  # per task, in task order (their "extra" is data)
    extra: dict = field(default_factory=dict)  # stage-specific figures for the summary
    skipped_files: list = field(default_factory=list)  # inputs of unknown format, not read
    removed: list = field(default_factory=list)  # outputs of earlier runs this run removed

    def summary(self) -> dict:
        t = self.ledger.totals()
        return {"stage": self.stage, "out": self.out_dir, "shards": self.shards, "resumed": self.skipped,
                "docs_in": t.docs_in, "docs_out": t.docs_out, "dropped": {r: d for r, (d, _) in
                                                                           sorted(t.dropped.items())},
                "bad_input_records": self.errors, "skipped_files": self.skipped_files,
                "removed_stale_outputs": len(self.removed), "seconds": round(self.seconds, 2), **self.extra}

    def output_file(self, rel: str) -> InputFile:
        """One of this run's outputs as a later task's input (identified by its recorded digest)."""
        return output_file(self.out_dir, rel, self._output_records[rel])

    @functools.cached_property
    def _output_records(self) -> dict:  # rel -> record, over every task (built once: callers ask per output)
        return {rel: rec for m in self.markers for rel, rec in m["outputs"].items()}


def run_stage(stage, tasks: Sequence[ShardTask], out_dir: str, *, workers: int | None = None,
              ray_address: str | None = None, progress: bool = True, verify_outputs: bool = False,
              skipped_files: Sequence[str] = ()) -> StageReport:
    """`skipped_files`: input files of unknown format that discovery passed over (listed in the summary and in
    `_errors.jsonl`)."""
    t0 = time.perf_counter()
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise SlimPajamaError(f"stage {stage.name}: two shards share an output name")
    with lock.hold(out_dir):
        try:
            storage.makedirs(storage.join(out_dir, STATE_DIR))
        except OSError as e:
            raise SlimPajamaError(f"cannot create output directory {out_dir}: {e.strerror}") from None
        # other runs' temporary files: they are dead (this driver owns the directory)
        remove_stale_tmp(out_dir, keep_run=writers.run_id(), prune=lock.held_by_other)
        previous, found = _remember_previous(out_dir)
        complete = [complete_marker(stage, t, out_dir, verify_outputs, found.get(t.key)) for t in tasks]
        pending = [t for t, m in zip(tasks, complete, strict=True) if m is None]
        skipped = len(tasks) - len(pending)
        _check_known_bad(stage, [m for m in complete if m is not None], out_dir)
        fresh = _run_pending(stage, pending, out_dir, len(tasks), skipped, workers, ray_address, progress) \
            if pending else {}
        markers = [m if m is not None else fresh[t.key] for t, m in zip(tasks, complete, strict=True)]
        report = _finish(stage, tasks, out_dir, markers, skipped, time.perf_counter() - t0, skipped_files)
        report.removed = _remove_orphans(out_dir, previous, report.markers, set(keys))
    return report


def _marker_keys(out_dir: str) -> list[str]:
    state = storage.join(out_dir, STATE_DIR)
    return [rel[: -len(".json")] for rel, _ in storage.list_files(state)
            if rel.endswith(".json") and not rel.rsplit("/", 1)[-1].startswith("_")]


def _remember_previous(out_dir: str) -> tuple[set[str], dict]:
    """Every file an earlier run of this directory recorded as its output (markers, `_outputs.json`, and what an
    interrupted run had not yet removed), saved before any marker is replaced; and the markers found, by key (read
    once: the completeness checks use them)."""
    prev = set()
    path = storage.join(out_dir, STATE_DIR, PREVIOUS_FILE)
    with contextlib.suppress(FileNotFoundError, ValueError):
        prev.update(json.loads(storage.read_bytes(path)))
    manifest = outputs.read(out_dir)
    if manifest:
        prev.update(rec["rel"] for rec in manifest["files"])
    found = {}
    for key in _marker_keys(out_dir):
        m = read_marker(out_dir, key)
        prev.add(f"{STATE_DIR}/{key}.json")
        if m:
            found[key] = m
            prev.update(m.get("outputs", {}))
            if m.get("errors_file"):
                prev.add(m["errors_file"])
    if prev:
        write_bytes_atomic(path, json.dumps(sorted(prev)).encode())
    return prev, found


def _remove_orphans(out_dir: str, previous: set[str], markers: list[dict], keys: set[str]) -> list[str]:
    """Delete the files of earlier runs that this run did not produce; they are never read again (later stages
    read `_outputs.json`), but a stray file is a trap for anyone who globs the directory."""
    current = {f"{STATE_DIR}/{k}.json" for k in keys}
    for m in markers:
        current.update(m["outputs"])
        if m.get("errors_file"):
            current.add(m["errors_file"])
    removed = []
    for rel in sorted(previous - current):
        if rel.startswith(("/", "..")) or "/../" in rel:
            continue
        path = storage.join(out_dir, rel)
        if storage.stat(path) is not None:
            storage.remove(path)
            removed.append(rel)
    storage.remove_tree_empty_dirs(out_dir, {os.path.dirname(storage.join(out_dir, r)) for r in removed})
    storage.remove(storage.join(out_dir, STATE_DIR, PREVIOUS_FILE))
    return removed


def _check_known_bad(stage, complete: list[dict], out_dir: str) -> None:
    """--on-error fail is part of the run: a shard completed earlier under skip (`complete`: the markers of the
    shards this run skips) fails on its known bad records."""
    read = getattr(stage, "read", None)
    if read is None or read.on_error != "fail":
        return
    for m in complete:
        if m.get("errors_file"):
            with storage.open_input(storage.join(out_dir, m["errors_file"])) as f:
                raise_on_bad(BadRecord(**json.loads(f.readline())))


def _run_pending(stage, pending, out_dir, total, skipped, workers, ray_address, progress) -> dict:
    """Run the pending tasks; their markers by key, as written (JSON)."""
    import ray

    init_ray(ray_address, workers)
    limit = min(workers or _cluster_cpus(), _cluster_cpus())
    remote = ray_task(execute_shard, [out_dir, *(f.path for t in pending for f in (*t.inputs, *t.side))])
    queue = list(pending)
    in_flight: dict = {}
    kill_after, worker_faults = faults.driver_kill_after(stage.name), faults.worker_faults(stage.name)
    dispatched = completed = 0
    markers = {}
    with shard_progress(stage.name, total, skipped, enabled=progress) as bar:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    task = queue.pop(0)
                    in_flight[remote.remote(stage, task, out_dir, worker_faults.get(dispatched),
                                            writers.run_id())] = task
                    dispatched += 1
                if kill_after == completed:
                    faults.kill_self()
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    task = in_flight.pop(ref)
                    try:
                        marker = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = _unwrap(e)
                        if isinstance(cause, SlimPajamaError):
                            raise cause from None
                        raise
                    bar.advance(marker["ledger"]["totals"]["docs_in"])
                    markers[task.key] = _as_json(marker)  # as a later run reads it from the file
                    completed += 1
        except KeyboardInterrupt:
            # SIGINT/SIGTERM: the caller shuts Ray down, which stops these tasks; force-cancelling them here races
            # Ray's own bookkeeping of tasks that complete meanwhile (a core-worker abort)
            raise
        except BaseException:
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    return markers


def ray_task(fn, paths, max_retries: int = 3):
    """`fn` as a one-CPU Ray task; when it touches an object store, the driver's object-store settings reach it on
    whichever node it runs."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=max_retries)(fn)
    if any(storage.is_remote(p) for p in paths):
        env = storage.forwarded_env()
        if env:
            remote = remote.options(runtime_env={"env_vars": env})
    return remote


def _finish(stage, tasks, out_dir, markers, skipped, seconds, skipped_files=()) -> StageReport:
    """`markers`: every task's, in task order."""
    remove_stale_tmp(out_dir, prune=lock.held_by_other)  # a worker killed mid-write (then retried) left its own
    ledger = Ledger(stage.name)
    n_errors = 0
    keeps_ledger = getattr(stage, "keeps_ledger", True)
    for m in markers:
        ledger.merge(Ledger.from_dict(m["ledger"]))
    if keeps_ledger or skipped_files or any(m.get("errors_file") for m in markers):
        with atomic_path(storage.join(out_dir, ERRORS_FILE)) as tmp, open(tmp, "wb") as errors_out:
            for rel in skipped_files:  # not read at all: no documents to count, but never silently passed over
                rec = BadRecord(rel, 0, "unknown_format", "not a corpus file (.jsonl/.json[.zst|.gz|.bz2|.xz], "
                                ".parquet): skipped", "", 0)
                errors_out.write(json.dumps(rec.to_dict()).encode() + b"\n")
            for m in markers:
                if m.get("errors_file"):  # one short line per bad record
                    data = storage.read_bytes(storage.join(out_dir, m["errors_file"]))
                    errors_out.write(data)
                    n_errors += data.count(b"\n")
    if keeps_ledger:
        ledger.check_balanced()
        write_bytes_atomic(storage.join(out_dir, LEDGER_FILE), ledger.dumps().encode())
    # sizes and digests (not times): the same run gives the same bytes here too
    files = [{"rel": rel, "size": rec["size"], "sha256": rec["sha256"]} for m in markers
             for rel, rec in m["outputs"].items()]
    outputs.write(out_dir, stage.name, stage.fingerprint(), files, getattr(stage, "documents_root", None))
    return StageReport(stage.name, out_dir, ledger, len(tasks), skipped, n_errors, seconds, markers,
                       skipped_files=list(skipped_files))
