"""`slimpajama normalize`: SlimPajama's text normalization and low-length filter."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import RayFlags, ReadFlags
from slimpajama.cli.render import print_report
from slimpajama.core import defaults


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/work/normalized", show_default=True, type=click.Path(file_okay=False),
              help="Output directory.")
@click.option("--min-chars", type=click.IntRange(min=0), default=defaults.MIN_CHARS, show_default=True,
              help="Drop documents whose cleaned view (lowercase, no punctuation, collapsed whitespace) is shorter.")
@ReadFlags.apply
@RayFlags.apply
@fail_cleanly
def normalize(inputs, out, min_chars, read: ReadFlags, ray: RayFlags):
    """Normalize text exactly as SlimPajama did (ftfy.fix_text, NFC) and drop low-length documents, writing
    parquet shards (one per input file), the ledger (per source: in, kept, short, bad_input) and _errors.jsonl."""
    from slimpajama.pipelines.documents import run_documents
    from slimpajama.pipelines.normalize import NormalizeStage

    report = run_documents(NormalizeStage(read.options(), min_chars), list(inputs), out,
                           verify_inputs=read.verify_inputs, task_bytes=read.task_bytes, **ray.run())
    print_report(report, ray.as_json)


command = normalize
