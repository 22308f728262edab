"""Plan a document stage's tasks: one per input file, or one per part of a big file (`--task-bytes`).

The cut points and line counts of a file are cached in `<out>/_state/_spans.json` by the file's identity, so a
rerun does not read the file again to plan it. Tasks of one file are `<key>.part-NNNNN`; later stages read the
parts through the stage's `_outputs.json`, in order, as one input.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging

from slimpajama.io import storage
from slimpajama.io.discover import InputFile
from slimpajama.io.spans import count_newlines, jsonl_cuts, jsonl_parts, parquet_parts, part_bytes, splittable
from slimpajama.io.writers import write_bytes_atomic

from .cluster import in_driver, init_ray, ray_task
from .docstage import file_tasks
from .markers import STATE_DIR
from .stage import Task

SPANS_FILE = "_spans.json"
PARQUET_MAX_RATIO = 8
log = logging.getLogger(__name__)  # the command line prints its records as "notice: ..."


def split_tasks(files: list[InputFile], out_dir: str, task_bytes: int | None, *, workers: int | None = None,
                ray_address: str | None = None) -> list[Task]:
    """Tasks over `files`, the big ones cut into parts of about `task_bytes`, finer for a small input (spans.part_bytes;
    0 or None: one task per file)."""
    task_bytes = part_bytes(sum(f.size for f in files), task_bytes)
    if not task_bytes:
        return file_tasks(files)
    cache_path = storage.join(out_dir, STATE_DIR, SPANS_FILE)
    try:
        cache = json.loads(storage.read_bytes(cache_path))
    except (OSError, ValueError):  # none yet (or no output directory yet: run_stage reports that)
        cache = {}
    def ident(f: InputFile) -> str:
        return json.dumps([f.identity(), task_bytes])

    plans: dict[str, list] = {}
    jsonl_todo = []
    for f in files:
        # a parquet file is cut by its text (row groups' uncompressed bytes), up to ~8x its size on disk
        if f.size * (PARQUET_MAX_RATIO if f.is_parquet else 1) <= task_bytes:
            continue
        if not splittable(f):
            log.warning("%s (%s MiB) is one compressed stream: one task reads it all (store it as plain .jsonl or "
                        "parquet to split it)", f.rel, f"{f.size / 2**20:,.0f}")
        elif ident(f) in cache:
            plans[f.rel] = cache[ident(f)]
        elif f.is_parquet:
            plans[f.rel] = [list(p.span) for p in parquet_parts(f, task_bytes) if p.span]
        else:
            jsonl_todo.append(f)
    if jsonl_todo:
        plans.update(zip([f.rel for f in jsonl_todo], _plan_jsonl(jsonl_todo, task_bytes, workers, ray_address),
                         strict=True))
    new_cache = {ident(f): plans[f.rel] for f in files if f.rel in plans}
    if new_cache != cache:
        write_bytes_atomic(cache_path, json.dumps(new_cache, sort_keys=True).encode())
    expanded = []
    for f in files:
        spans = plans.get(f.rel) or []
        expanded.extend([dataclasses.replace(f, span=tuple(s)) for s in spans] if len(spans) > 1 else [f])
    return file_tasks(expanded)


def _plan_jsonl(files: list[InputFile], task_bytes: int, workers, ray_address) -> list[list]:
    """Cut points (in the driver: a few small reads per file), then the newlines of every range counted by Ray
    tasks in parallel (one read of the file, at disk speed)."""
    bounds = [jsonl_cuts(f.path, f.size, task_bytes) for f in files]
    if all(len(b) <= 2 for b in bounds):
        return [[] for _ in files]
    if in_driver(sum(f.size for f in files), ray_address):  # small files: counted here, no Ray to start
        counts = [[count_newlines(f.path, a, c) for a, c in itertools.pairwise(b[:-1])] for f, b in
                  zip(files, bounds, strict=True)]
    else:
        import ray

        init_ray(ray_address, workers)
        count = ray_task(count_newlines, [f.path for f in files])
        # the newlines of every range but the last: the first line number of each next range
        refs = [[count.remote(f.path, a, c) for a, c in itertools.pairwise(b[:-1])] for f, b in
                zip(files, bounds, strict=True)]
        counts = [ray.get(r) for r in refs]
    return [[list(p.span) for p in jsonl_parts(f, b, n)] if len(b) > 2 else []
            for f, b, n in zip(files, bounds, counts, strict=True)]
