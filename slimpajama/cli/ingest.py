"""`slimpajama ingest`: any corpus to parquet shards of documents, bad input counted."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import RayFlags, ReadFlags
from slimpajama.cli.render import print_report


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output directory.")
@ReadFlags.apply
@RayFlags.apply
@fail_cleanly
def ingest(inputs, out, read: ReadFlags, ray: RayFlags):
    """Read a corpus (jsonl, jsonl.zst, jsonl.gz, parquet; files, directories or globs) into parquet shards of
    (doc_id, source, text, meta), counting and logging bad input."""
    from slimpajama.pipelines.docstage import DocumentStage
    from slimpajama.pipelines.documents import run_documents

    report = run_documents(DocumentStage(read.options()), list(inputs), out, verify_inputs=read.verify_inputs,
                           task_bytes=read.task_bytes, **ray.run())
    print_report(report, ray.as_json)


command = ingest
