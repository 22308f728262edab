"""Run a document stage over a corpus: discover its files, cut the big ones into parts, run one task each. What
`ingest`, `normalize`, `tokenize` and the pipeline's first stage share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from slimpajama.io.discover import InputFile, discover_all

from .paths import DOCUMENTS, require_inputs
from .runner import Progress, StageReport, run_stage
from .split import split_tasks
from .stage import Stage


def run_documents(stage: Stage, inputs: str | list[str], out_dir: str, *, verify_inputs: bool = False,
                  task_bytes: int | None = None, workers: int | None = None, ray_address: str | None = None,
                  progress: Progress | None = None, command: str | None = None,
                  prepare: Callable[[list[InputFile]], None] | None = None) -> StageReport:
    """`stage` over every corpus file of `inputs` (files of unknown format are listed in its `_errors.jsonl`);
    `task_bytes`: plain .jsonl and parquet files bigger than this are read by several tasks (0/None: one each).
    `command`: what messages about the inputs name (default: the stage). `prepare(files)`: the stage's one-time
    setup that depends on its inputs, given the files found, before any task runs."""
    kinds = require_inputs(inputs, DOCUMENTS, command or stage.name)
    if stage.read is not None and stage.read.max_doc_bytes and "corpus" not in kinds:
        # a stage's output is read whole: --max-doc-bytes guards a raw corpus, and the stage that wrote these
        # documents already applied its own (a stage accepts what the stage before it wrote)
        stage.read = dataclasses.replace(stage.read, max_doc_bytes=None)
    found = discover_all(inputs, out=out_dir, verify=verify_inputs)
    if prepare is not None:
        prepare(found.files)
    tasks = split_tasks(found.files, out_dir, task_bytes, workers=workers, ray_address=ray_address)
    return run_stage(stage, tasks, out_dir, workers=workers, ray_address=ray_address, progress=progress,
                     skipped_files=found.skipped)
