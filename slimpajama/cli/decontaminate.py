"""`slimpajama decontaminate`: drop (or cut) the documents that hold evaluation data."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import DecontaminateFlags, RayFlags, ReadFlags
from slimpajama.cli.render import print_report
from slimpajama.core import defaults


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/work/decontaminated", show_default=True,
              type=click.Path(file_okay=False),
              help="Output directory: the kept documents (what `release` takes), contamination.parquet (a row per "
                   "item and document matched), contamination.json (per evaluation file), ledger.json.")
@DecontaminateFlags.apply
@click.option("--min-chars", type=click.IntRange(min=0), default=defaults.MIN_CHARS, show_default=True,
              help="--mode cut: the shortest piece kept (characters of its cleaned view).")
@ReadFlags.apply
@RayFlags.apply
@fail_cleanly
def decontaminate(inputs, out, contamination: DecontaminateFlags, min_chars, read: ReadFlags, ray: RayFlags):
    """Drop the documents that share a 13-word run (of SlimPajama's cleaned view) with an item of an evaluation set,
    exactly (every hash hit is confirmed on the words); INPUT is a dedup output or any document stage's output."""
    from slimpajama.pipelines.decontaminate import run_decontaminate

    report = run_decontaminate(list(inputs), out, contamination.config(min_chars), read=read.options(),
                               task_bytes=read.task_bytes, verify_inputs=read.verify_inputs, **ray.run())
    print_report(report, ray.as_json)


command = decontaminate
