"""Run a stage as Ray tasks, one per input shard, resumably.

A stage is an object with `name`, `fingerprint()` (the config its outputs depend on) and
`run_shard(task, out_dir) -> ShardOutcome`, a pure function of the task's inputs that writes its outputs
atomically (`keeps_ledger = False` for stages that do not handle documents). The runner:
  * skips a shard whose completion marker (`_state/<key>.json`) matches the stage fingerprint and the inputs, and
    whose outputs exist with the recorded sizes; any other shard is recomputed;
  * runs the rest as Ray tasks (at most `workers` in flight), the marker written by the task after its outputs,
    so a driver killed at any point leaves only complete shards or temporary files (removed on the next run);
  * merges the per-shard ledgers in key order into `<out>/ledger.json` (checked to balance) and the per-shard
    error files into `<out>/_errors.jsonl`.
Outputs depend only on each task's inputs, never on scheduling, so 1 or N workers give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from slimpajama import storage
from slimpajama.errors import SlimPajamaError
from slimpajama.ledger import Ledger
from slimpajama.memory import peak_rss_mb, reset_peak_rss
from slimpajama.progress import shard_progress
from slimpajama.readers import InputFile
from slimpajama.writers import atomic_path, remove_stale_tmp, write_bytes_atomic

from . import faults

STATE_DIR = "_state"
LEDGER_FILE = "ledger.json"
ERRORS_FILE = "_errors.jsonl"  # "_": never read back as a corpus file
MARKER_VERSION = 1


@dataclass(frozen=True)
class ShardTask:
    key: str  # names the task's outputs, e.g. "RedPajamaC4/c4-0001"
    inputs: tuple[InputFile, ...]
    params: dict = field(default_factory=dict)  # per-task settings (JSON-able), part of the task's identity

    def identity(self) -> list:
        ident = [[f.rel, f.size] for f in self.inputs]
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
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def is_complete(stage, task: ShardTask, out_dir: str) -> bool:
    m = read_marker(out_dir, task.key)
    if m is None or m.get("version") != MARKER_VERSION:
        return False
    if m.get("fingerprint") != stage.fingerprint() or m.get("inputs") != task.identity():
        return False
    return all(storage.file_size(storage.join(out_dir, rel)) == size for rel, size in m["outputs"].items())


def execute_shard(stage, task: ShardTask, out_dir: str, fault: faults.WorkerFault | None = None) -> dict:
    """Run one shard and write its completion marker (runs inside a Ray task, or inline)."""
    t0 = time.perf_counter()
    reset_peak_rss()
    before_marker = fault.arm() if fault else None
    try:
        outcome = stage.run_shard(task, out_dir)
    except OSError as e:  # the machine's side (full disk, permissions, storage): readers count bad input apart
        raise SlimPajamaError(f"stage {stage.name}, shard {task.key} (output {out_dir}): {_os_error(e)}. "
                              "Completed shards are kept: fix it and rerun.") from None
    marker = {
        "version": MARKER_VERSION,
        "stage": stage.name,
        "key": task.key,
        "fingerprint": stage.fingerprint(),
        "inputs": task.identity(),
        "outputs": {rel: storage.file_size(storage.join(out_dir, rel)) for rel in outcome.outputs},
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
    common = dict(logging_level=logging.WARNING, log_to_driver=True, ignore_reinit_error=True)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False,
                 object_store_memory=int(os.environ.get("SLIMPAJAMA_OBJECT_STORE_BYTES", 256 << 20)), **common)


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

    def summary(self) -> dict:
        t = self.ledger.totals()
        return {"stage": self.stage, "out": self.out_dir, "shards": self.shards, "resumed": self.skipped,
                "docs_in": t.docs_in, "docs_out": t.docs_out, "dropped": {r: d for r, (d, _) in
                                                                           sorted(t.dropped.items())},
                "bad_input_records": self.errors, "seconds": round(self.seconds, 2), **self.extra}


def run_stage(stage, tasks: Sequence[ShardTask], out_dir: str, *, workers: int | None = None,
              ray_address: str | None = None, progress: bool = True) -> StageReport:
    t0 = time.perf_counter()
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise SlimPajamaError(f"stage {stage.name}: two shards share an output name")
    try:
        storage.makedirs(storage.join(out_dir, STATE_DIR))
    except OSError as e:
        raise SlimPajamaError(f"cannot create output directory {out_dir}: {e.strerror}") from None
    remove_stale_tmp(out_dir)
    pending = [t for t in tasks if not is_complete(stage, t, out_dir)]
    skipped = len(tasks) - len(pending)
    if pending:
        _run_pending(stage, pending, out_dir, len(tasks), skipped, workers, ray_address, progress)
    return _finish(stage, tasks, out_dir, skipped, time.perf_counter() - t0)


def _run_pending(stage, pending, out_dir, total, skipped, workers, ray_address, progress) -> None:
    import ray

    init_ray(ray_address, workers)
    limit = workers or _cluster_cpus()
    # the driver's object-store settings reach every task, on whichever node it runs
    env = storage.forwarded_env() if _touches_remote(pending, out_dir) else {}
    remote = ray.remote(num_cpus=1, max_retries=3)(execute_shard)
    if env:
        remote = remote.options(runtime_env={"env_vars": env})
    queue = list(pending)
    in_flight: dict = {}
    kill_after, worker_faults = faults.driver_kill_after(stage.name), faults.worker_faults(stage.name)
    dispatched = completed = 0
    with shard_progress(stage.name, total, skipped, enabled=progress) as bar:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < limit:
                    task = queue.pop(0)
                    in_flight[remote.remote(stage, task, out_dir, worker_faults.get(dispatched))] = task
                    dispatched += 1
                if kill_after == completed:
                    faults.kill_self()
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    in_flight.pop(ref)
                    try:
                        marker = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = _unwrap(e)
                        if isinstance(cause, SlimPajamaError):
                            raise cause from None
                        raise
                    bar.advance(marker["ledger"]["totals"]["docs_in"])
                    completed += 1
        finally:
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)


def _touches_remote(tasks, out_dir: str) -> bool:
    return storage.is_remote(out_dir) or any(storage.is_remote(f.path) for t in tasks for f in t.inputs)


def _finish(stage, tasks, out_dir, skipped, seconds) -> StageReport:
    remove_stale_tmp(out_dir)  # a worker killed mid-write (then retried) left its temporary file
    ledger = Ledger(stage.name)
    n_errors = 0
    keeps_ledger = getattr(stage, "keeps_ledger", True)
    markers = [read_marker(out_dir, t.key) for t in tasks]
    for m in markers:
        ledger.merge(Ledger.from_dict(m["ledger"]))
    if keeps_ledger or any(m.get("errors_file") for m in markers):
        with atomic_path(storage.join(out_dir, ERRORS_FILE)) as tmp, open(tmp, "wb") as errors_out:
            for m in markers:
                if m.get("errors_file"):  # one short line per bad record
                    data = storage.read_bytes(storage.join(out_dir, m["errors_file"]))
                    errors_out.write(data)
                    n_errors += data.count(b"\n")
    if keeps_ledger:
        ledger.check_balanced()
        write_bytes_atomic(storage.join(out_dir, LEDGER_FILE), ledger.dumps().encode())
    return StageReport(stage.name, out_dir, ledger, len(tasks), skipped, n_errors, seconds, markers)
