"""`slimpajama dedup`: global near-duplicate removal with MinHash LSH."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import SIZE, RayFlags, at_least, size_text, task_bytes_option
from slimpajama.cli.render import print_report
from slimpajama.core import defaults
from slimpajama.errors import SlimPajamaError


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/work/dedup", show_default=True, type=click.Path(file_okay=False),
              help="Output directory: shards/ (unique documents), duplicates.parquet, ledger.json, dedup.json.")
@click.option("--minhash-dir", default=None, type=click.Path(file_okay=False),
              help="Where signatures go (default: <out>/_minhash, private to this dedup; deletable once it is "
                   "complete).")
@click.option("--ngram", type=click.IntRange(min=1), default=defaults.NGRAM, show_default=True,
              help="Character n-gram width.")
@click.option("--num-perm", type=click.IntRange(min=1), default=defaults.NUM_PERM, show_default=True)
@click.option("--bands", type=click.IntRange(min=1), default=None,
              help=f"LSH bands (default {defaults.BANDS}, or from --threshold).")
@click.option("--rows", type=click.IntRange(min=1), default=None, help=f"Rows per band (default {defaults.ROWS}).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help=f"Jaccard threshold: picks bands x rows like datasketch's MinHashLSH (default {defaults.THRESHOLD} "
                   f"-> {defaults.BANDS} x {defaults.ROWS}).")
@click.option("--hash", "hash_mode", type=click.Choice(["fast", "slimpajama"]), default="fast", show_default=True,
              help="slimpajama: datasketch MinHash signatures, bit-identical to SlimPajama's; fast: compiled 64-bit.")
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
def dedup(inputs, out, minhash_dir, ngram, num_perm, bands, rows, threshold, hash_mode, verify, partition_bytes,
          task_bytes, against, ray: RayFlags):
    """Global near-duplicate removal with MinHash LSH over normalized parquet shards (within and across sources);
    one document per duplicate cluster is kept: the first in corpus order (shards by path, then row)."""
    from slimpajama.core.minhash import MinHashConfig
    from slimpajama.pipelines.dedup import run_dedup

    common = dict(ngram=ngram, hash=hash_mode)
    threshold = defaults.THRESHOLD if threshold is None else threshold
    try:
        if bands is None and rows is None:
            cfg = MinHashConfig.for_threshold(threshold, num_perm, **common)
        else:
            cfg = MinHashConfig(num_perm=num_perm, bands=bands or defaults.BANDS, rows=rows or defaults.ROWS,
                                threshold=threshold, **common)
    except ValueError as e:
        raise SlimPajamaError(str(e)) from None
    report = run_dedup(list(inputs), out, minhash_dir=minhash_dir, cfg=cfg, verify=verify,
                       partition_bytes=at_least("--partition-bytes", partition_bytes, 1 << 20,
                                                "it sets the number of LSH tasks per band"),
                       task_bytes=task_bytes, against=list(against), **ray.run())
    print_report(report, ray.as_json)


command = dedup
