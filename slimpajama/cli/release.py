"""`slimpajama release`: SlimPajama's layout, shuffled, with a decontaminated holdout."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import (
    SIZE,
    RayFlags,
    check_bucket_bytes,
    seed_option,
    size_text,
    task_bytes_option,
)
from slimpajama.cli.render import print_report
from slimpajama.core import defaults
from slimpajama.errors import SlimPajamaError


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/slimpajama", show_default=True, type=click.Path(file_okay=False),
              help="Release directory: train/, validation/, test/, manifest.json, ledger.json.")
@seed_option(defaults.RELEASE_SEED, "Seed of the split, weights and shuffle.")
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=defaults.HOLDOUT, show_default=True,
              help="Fraction of documents held out, split evenly into validation and test.")
@click.option("--weights", default=None,
              help="Per-source sampling weights, e.g. RedPajamaC4=0.5,RedPajamaBook=2.0 (below 1 subsamples; above 1 "
                   "repeats whole copies plus a subsample).")
@click.option("--chunks", type=click.IntRange(min=1), default=defaults.CHUNKS, show_default=True,
              help="Files are spread over <split>/chunk1..chunkN.")
@click.option("--docs-per-file", type=click.IntRange(min=1), default=defaults.DOCS_PER_FILE, show_default=True)
@click.option("--bucket-bytes", type=SIZE, default=size_text(defaults.BUCKET_BYTES), show_default=True,
              help="Text per shuffle bucket (what one pass-2 task holds in memory).")
@task_bytes_option("Shards bigger than this are scattered by several tasks, runs of whole row groups")
@RayFlags.apply
@fail_cleanly
def release(inputs, out, seed, holdout, weights, chunks, docs_per_file, bucket_bytes, task_bytes, ray: RayFlags):
    """Shuffle the deduplicated shards into SlimPajama's layout with a decontaminated holdout: train documents
    whose text equals a validation or test document's (SHA-256) are dropped."""
    from slimpajama.core.release import ReleaseConfig, parse_weights
    from slimpajama.pipelines.release import run_release

    try:
        cfg = ReleaseConfig(seed=seed, holdout=holdout, weights=parse_weights(weights), chunks=chunks,
                            docs_per_file=docs_per_file, bucket_bytes=check_bucket_bytes(bucket_bytes))
    except ValueError as e:
        raise SlimPajamaError(str(e)) from None
    report = run_release(list(inputs), out, cfg, task_bytes=task_bytes, **ray.run())
    print_report(report, ray.as_json)


command = release
