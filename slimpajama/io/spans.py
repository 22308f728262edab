"""Cutting one big input file into parts that separate tasks read (RedPajama-1T keeps wikipedia, book and
stackexchange in one 74-111 GB file each: one task per file would make that file's task the whole wall time).

  * plain JSON lines (`.jsonl`, `.json`): byte ranges of about `task_bytes`, each cut right after a newline; a
    part's first line number is 1 + the newlines before it, counted (`count_newlines`, one read per part, in
    parallel) so doc ids and bad-input line numbers stay those of the whole file;
  * parquet: runs of whole row groups of about `task_bytes` (uncompressed); row numbers from the footer;
  * compressed streams (`.zst`, `.gz`, ...) cannot be entered in the middle: one task reads the whole file.
A part is an `InputFile` with a `span` (see discover.py). Where the cuts fall never changes what is read, only who
reads it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from slimpajama.core import defaults
from slimpajama.io import storage
from slimpajama.io.discover import InputFile

_SCAN = 1 << 16
_COUNT_CHUNK = 8 << 20


def part_bytes(total_bytes: int, task_bytes: int | None) -> int | None:
    """The size parts are cut to: `task_bytes`, or smaller for an input of less than MIN_PARTS parts (one big
    file on its own would be one or two tasks on a machine of many cores: 0.74x of one task's wall at 2 parts on
    2 cores, 0.50x at 4), never below MIN_PART_BYTES. It depends on the input alone, never on the worker count,
    so every worker count cuts the same parts (and a rerun on other machines resumes them)."""
    if not task_bytes:
        return task_bytes
    return min(task_bytes, max(defaults.MIN_PART_BYTES, total_bytes // defaults.MIN_PARTS))


def splittable(f: InputFile) -> bool:
    return f.is_plain_jsonl or f.is_parquet


def jsonl_cuts(path: str, size: int, task_bytes: int) -> list[int]:
    """Boundaries [0, c1, ..., size] of byte ranges of about `task_bytes`; each cut follows a newline (a line
    longer than a range merges ranges; a range never starts mid-line)."""
    n = math.ceil(size / task_bytes) if task_bytes and size else 1
    bounds = [0]
    with storage.open_input(path) as f:
        for i in range(1, n):
            target = round(i * size / n)
            if target <= bounds[-1]:  # a long line already ran past this target
                continue
            if target >= size:
                break
            f.seek(target - 1)  # a newline just before the target cuts at the target itself
            pos = target - 1
            while True:
                chunk = f.read(_SCAN)
                if not chunk:
                    pos = size
                    break
                nl = chunk.find(b"\n")
                if nl >= 0:
                    pos += nl + 1
                    break
                pos += len(chunk)
            if pos >= size:
                break
            if pos > bounds[-1]:
                bounds.append(pos)
    return [*bounds, size]


def count_newlines(path: str, start: int, end: int) -> int:
    """Newlines in bytes [start, end) of a file (ranged reads of an object-store file)."""
    n = 0
    with storage.open_input(path) as f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = f.read(min(_COUNT_CHUNK, left))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def jsonl_parts(f: InputFile, bounds: list[int], newlines: list[int]) -> list[InputFile]:
    """The parts of a file cut at `bounds`, given the newlines of every range but the last."""
    parts, line = [], 1
    for (a, b), nl in zip(itertools.pairwise(bounds), [*newlines, 0], strict=True):
        parts.append(dataclasses.replace(f, span=(a, b, line)))
        line += nl
    return parts


def parquet_parts(f: InputFile, task_bytes: int) -> list[InputFile]:
    """Runs of whole row groups of about `task_bytes` (uncompressed) each, with the number of their first row."""
    md = storage.open_parquet(f.path).metadata
    parts, start, row, first_row, acc = [], 0, 0, 1, 0
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        acc += rg.total_byte_size
        row += rg.num_rows
        if acc >= task_bytes and g + 1 < md.num_row_groups:
            parts.append(dataclasses.replace(f, span=(start, g + 1, first_row)))
            start, first_row, acc = g + 1, row + 1, 0
    if not parts:
        return [f]
    return [*parts, dataclasses.replace(f, span=(start, md.num_row_groups, first_row))]
