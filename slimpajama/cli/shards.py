"""`slimpajama shards`: pack a token cache into training shards."""

from __future__ import annotations

import json

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import (
    RANGE,
    SIZE,
    RayFlags,
    range_text,
    seed_option,
    size_text,
    task_bytes_option,
)
from slimpajama.core import defaults


@click.command()
@click.argument("cache", type=click.Path(file_okay=False))
@click.option("--seq", type=click.IntRange(min=1), required=True, help="Sequence length (2048, 8192, ...).")
@click.option("--packing", type=click.Choice(["concat", "bestfit"]), default="concat", show_default=True)
@click.option("--range", "range_", type=RANGE, default=range_text(defaults.PACK_RANGE), show_default=True,
              help="Contiguous fraction A:B of the train cache (document-aligned): 0:0.75 then 0.75:1 is BTLM's "
                   "75/25 schedule on disjoint tokens.")
@seed_option(0, "Seed of the global row shuffle.")
@click.option("--out-root", default="data/shards", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", "-o", default=None, type=click.Path(file_okay=False),
              help="Exact output directory (default <out-root>/seq<N>[-<A>-<B>][-bestfit][-<tokenizer>]: GPT-2 concat layouts need no suffix).")
@click.option("--file-bytes", type=SIZE, default=size_text(defaults.SHARD_FILE_BYTES), show_default=True,
              help="Target size of a shard file. A file holds whole record batches of 1,024 rows, so at least "
                   "1,024 x (seq + 1) tokens (1 MiB at --seq 511 and uint16); a smaller value is raised to that.")
@task_bytes_option("Shard files per pack task, in bytes, at least one file", zero="one task per split", parts=False)
@click.option("--encoding", default=None,
              help="Which token cache, when CACHE is a tokenize --out root holding several (default: the only one).")
@click.option("--verify-outputs", is_flag=True,
              help="Check existing shard files by SHA-256 (default: size and modification time) and rebuild any "
                   "that changed; `verify` suggests it for a damaged file.")
@RayFlags.apply
@fail_cleanly
def shards(cache, seq, packing, range_, seed, out_root, out, file_bytes, task_bytes, encoding, verify_outputs,
           ray: RayFlags):
    """Pack a token cache into training shards: a folder per split (train, validation, test; a split with fewer
    tokens than a row has none) of Arrow IPC files and an index, .slimpajama-index.json."""
    from slimpajama.pipelines.pack import run_shards

    report = run_shards(cache, out_root, seq, packing=packing, range_=range_, seed=seed,
                        file_bytes=file_bytes or 1, out_dir=out, verify_outputs=verify_outputs, encoding=encoding,
                        task_bytes=task_bytes, **ray.run())
    summary = {"out": report.out_dir, "splits": report.extra["splits"]}
    click.echo(json.dumps(summary, indent=2) if ray.as_json else
               "\n".join(f"{k}: {v['rows']:,} rows, padding {v['padding_fraction']:.2%}"
                         for k, v in summary["splits"].items()) + f"\nwrote {report.out_dir}")


command = shards
