"""`slimpajama dedup`: global near-duplicate removal with MinHash LSH."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import SIZE, MinHashFlags, RayFlags, at_least, size_text, task_bytes_option
from slimpajama.cli.render import print_report
from slimpajama.core import defaults


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/work/dedup", show_default=True, type=click.Path(file_okay=False),
              help="Output directory: shards/ (unique documents), duplicates.parquet, ledger.json, dedup.json.")
@click.option("--minhash-dir", default=None, type=click.Path(file_okay=False),
              help="Where signatures go (default: <out>/_minhash, private to this dedup; deletable once it is "
                   "complete).")
@MinHashFlags.apply
@click.option("--verify", is_flag=True,
              help="Drop candidate pairs whose signature-estimated Jaccard is below the threshold.")
@click.option("--partition-bytes", type=SIZE, default=size_text(defaults.PARTITION_BYTES), show_default=True,
              help="Working-set budget of one LSH task: sets how many key ranges each band is split into.")
@task_bytes_option("Shards bigger than this are read by several tasks, runs of whole row groups")
@click.option("--against", multiple=True, type=click.Path(file_okay=False),
              help="An earlier dedup's --out (repeatable): a new document in a cluster with a document it kept is "
                   "removed (duplicate_of_release); none of its documents is removed or re-signed. Same MinHash "
                   "settings required.")
@RayFlags.apply
@fail_cleanly
def dedup(inputs, out, minhash_dir, minhash: MinHashFlags, verify, partition_bytes, task_bytes, against,
          ray: RayFlags):
    """Global near-duplicate removal with MinHash LSH over normalized parquet shards (within and across sources);
    one document per duplicate cluster is kept: the first in corpus order (shards by path, then row)."""
    from slimpajama.pipelines.dedup import run_dedup

    report = run_dedup(list(inputs), out, minhash_dir=minhash_dir, cfg=minhash.config(), verify=verify,
                       partition_bytes=at_least("--partition-bytes", partition_bytes, 1 << 20,
                                                "it sets the number of LSH tasks per band"),
                       task_bytes=task_bytes, against=list(against), **ray.run())
    print_report(report, ray.as_json)


command = dedup
