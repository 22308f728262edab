"""Run a stage (pipelines/stage.py) as Ray tasks, one per shard task, resumably. The runner:
  * owns the output directory for the run (`lock.hold`: one driver per directory);
  * skips a shard whose completion marker (`_state/<key>.json`, markers.py) matches the stage fingerprint and the
    identity of its inputs (content digests, or size and modification time of raw files), and whose outputs are
    intact (same size and modification time, or else the same SHA-256); any other shard is recomputed;
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
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slimpajama.core.ledger import Ledger
from slimpajama.errors import BadRecord, SlimPajamaError, raise_on_bad, root_cause
from slimpajama.io import outputs, storage, writers
from slimpajama.io.discover import InputFile
from slimpajama.io.writers import atomic_path, remove_stale_tmp, write_bytes_atomic

from . import faults, lock
from .cluster import cluster_cpus, in_driver, init_ray, node_id, ray_task
from .markers import (
    MARKER_VERSION,
    STATE_DIR,
    Marker,
    as_json,
    complete_marker,
    output_file,
    output_record,
    read_marker,
    state_path,
    totals,
)
from .memory import peak_rss_mb, reset_peak_rss
from .stage import Stage, Task

LEDGER_FILE = "ledger.json"
ERRORS_FILE = "_errors.jsonl"  # "_": never read back as a corpus file
PREVIOUS_FILE = "_previous"  # outputs of earlier runs, kept until this run has removed those it did not produce

# A progress display: (stage name, shards in all, shards already complete) -> a context manager whose value has
# `advance(docs)`, called once per shard that completes. The command line passes its rich bar.
Progress = Callable[[str, int, int], contextlib.AbstractContextManager]


class _NoBar:
    def advance(self, docs: int) -> None:
        pass


@contextlib.contextmanager
def no_progress(stage: str, total: int, done: int):
    yield _NoBar()

def execute_task(stage: Stage, task: Task, out_dir: str, fault: faults.WorkerFault | None = None,
                 run: str | None = None) -> Marker:
    """Run one task and write its completion marker (runs inside a Ray task, or inline)."""
    t0 = time.perf_counter()
    reset_peak_rss()
    if run:
        writers.set_run_id(run)  # temporary files carry the driver's run id
    writers.forget_digests()
    before_marker = fault.arm() if fault else None
    try:
        outcome = stage.run_task(task, out_dir)
        marker: Marker = {
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
            "node": node_id(),
            "peak_rss_mb": peak_rss_mb(),  # of the process while it ran this shard (for sizing a cluster)
        }
        if before_marker is not None:
            before_marker()
        # Written last: its presence means every output above is complete.
        write_bytes_atomic(state_path(out_dir, task.key), json.dumps(marker, sort_keys=True).encode())
    except OSError as e:  # the machine's side (full disk, permissions, storage): readers count bad input apart
        raise SlimPajamaError(f"stage {stage.name}, task {task.key} (output {out_dir}): {_os_error(e)}. "
                              "Completed tasks are kept: fix it and rerun.") from None
    return marker



def _os_error(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    return f"{e.strerror or e}{where}"


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


def run_stage(stage: Stage, tasks: Sequence[Task], out_dir: str, *, workers: int | None = None,
              ray_address: str | None = None, progress: Progress | None = None, verify_outputs: bool = False,
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
    if stage.read is None or stage.read.on_error != "fail":
        return
    for m in complete:
        if m.get("errors_file"):
            with storage.open_input(storage.join(out_dir, m["errors_file"])) as f:
                raise_on_bad(BadRecord(**json.loads(f.readline())))


def runs_inline(pending: Sequence[Task], stage_name: str, ray_address: str | None) -> bool:
    """A small run executes in the driver (cluster.in_driver), the same tasks with the same bytes and interrupt
    handling; never with injected worker faults (they kill a Ray worker)."""
    if faults.worker_faults(stage_name):
        return False
    sizes = {}  # every file read once, a part of a JSON-lines file by its span
    for t in pending:
        for f in t.files():
            sizes[(f.path, f.span)] = f.span[1] - f.span[0] if f.span and f.path.endswith((".jsonl", ".json")) \
                else f.size
    return in_driver(sum(sizes.values()), ray_address)


def _run_inline(stage, pending, out_dir, total, skipped, progress) -> dict:
    markers = {}
    fault = faults.driver_fault(stage.name)
    with (progress or no_progress)(stage.name, total, skipped) as bar:
        for completed, task in enumerate(pending):
            if fault and fault[0] == completed:
                fault[1]()
            marker = as_json(execute_task(stage, task, out_dir, run=writers.run_id()))
            bar.advance(totals(marker)["docs_in"])
            markers[task.key] = marker
    return markers


def _run_pending(stage, pending, out_dir, total, skipped, workers, ray_address, progress) -> dict:
    """Run the pending tasks; their markers by key, as written (JSON)."""
    if runs_inline(pending, stage.name, ray_address):
        return _run_inline(stage, pending, out_dir, total, skipped, progress)
    import ray

    init_ray(ray_address, workers)
    limit = min(workers or cluster_cpus(), cluster_cpus())
    remote = ray_task(execute_task, [out_dir, *(f.path for t in pending for f in t.files())])
    queue = list(pending)
    in_flight: dict = {}
    driver_fault, worker_faults = faults.driver_fault(stage.name), faults.worker_faults(stage.name)
    dispatched = completed = 0
    markers = {}
    with (progress or no_progress)(stage.name, total, skipped) as bar:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    task = queue.pop(0)
                    in_flight[remote.remote(stage, task, out_dir, worker_faults.get(dispatched),
                                            writers.run_id())] = task
                    dispatched += 1
                if driver_fault and driver_fault[0] == completed:
                    driver_fault[1]()
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    task = in_flight.pop(ref)
                    try:
                        marker = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = root_cause(e)
                        if isinstance(cause, SlimPajamaError):
                            raise cause from None
                        raise
                    bar.advance(totals(marker)["docs_in"])
                    markers[task.key] = as_json(marker)  # as a later run reads it from the file
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



def _finish(stage: Stage, tasks, out_dir, markers, skipped, seconds, skipped_files=()) -> StageReport:
    """`markers`: every task's, in task order."""
    remove_stale_tmp(out_dir, prune=lock.held_by_other)  # a worker killed mid-write (then retried) left its own
    ledger = Ledger.merged(stage.name, (Ledger.from_dict(m["ledger"]) for m in markers))
    n_errors = 0
    if stage.keeps_ledger or skipped_files or any(m.get("errors_file") for m in markers):
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
    if stage.keeps_ledger:
        ledger.check_balanced()
        write_bytes_atomic(storage.join(out_dir, LEDGER_FILE), ledger.dumps().encode())
    # sizes and digests (not times): the same run gives the same bytes here too
    files = [{"rel": rel, "size": rec["size"], "sha256": rec["sha256"]} for m in markers
             for rel, rec in m["outputs"].items()]
    outputs.write(out_dir, stage.name, stage.fingerprint(), files, stage.documents_root)
    return StageReport(stage.name, out_dir, ledger, len(tasks), skipped, n_errors, seconds, markers,
                       skipped_files=list(skipped_files))
