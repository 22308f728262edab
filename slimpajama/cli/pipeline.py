"""`slimpajama pipeline`: every stage in one driver."""

from __future__ import annotations

import json

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import (
    RANGE,
    SIZE,
    MinHashFlags,
    PipelineDecontaminateFlags,
    RayFlags,
    ReadFlags,
    TokenizerFlags,
    at_least,
    check_bucket_bytes,
    config_options,
    config_toml,
    seed_option,
    size_text,
)
from slimpajama.core import defaults
from slimpajama.errors import SlimPajamaError


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--data", default="data", show_default=True,
              help="Root of every stage's output (work/, slimpajama/, tokens/, shards/), a path or an s3:// URI.")
@click.option("--min-chars", type=click.IntRange(min=0), default=defaults.MIN_CHARS, show_default=True,
              help="Drop documents whose cleaned view has fewer characters (normalize).")
@MinHashFlags.apply
@click.option("--partition-bytes", type=SIZE, default=size_text(defaults.PARTITION_BYTES), show_default=True,
              help="Working-set budget of one LSH task (dedup).")
@click.option("--verify", is_flag=True,
              help="Drop candidate pairs whose signature-estimated Jaccard is below the threshold (dedup).")
@click.option("--against", multiple=True, type=click.Path(file_okay=False),
              help="An earlier dedup's --out (repeatable): dedup against what it kept (see `dedup --against`).")
@PipelineDecontaminateFlags.apply
@seed_option(defaults.RELEASE_SEED, "Seed of the release's split, weights and shuffle.")
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=defaults.HOLDOUT, show_default=True)
@click.option("--weights", default=None,
              help="Per-source sampling weights of the release, e.g. RedPajamaC4=0.5,RedPajamaBook=2.0.")
@click.option("--chunks", type=click.IntRange(min=1), default=defaults.CHUNKS, show_default=True,
              help="Release files are spread over <split>/chunk1..chunkN.")
@click.option("--docs-per-file", type=click.IntRange(min=1), default=defaults.DOCS_PER_FILE, show_default=True)
@click.option("--bucket-bytes", type=SIZE, default=size_text(defaults.BUCKET_BYTES), show_default=True)
@click.option("--batch-rows", type=click.IntRange(min=1), default=defaults.BATCH_ROWS, show_default=True,
              help="Documents per read batch (memory per task; never changes the output).")
@click.option("--seq", "seqs", type=click.IntRange(min=1), multiple=True, default=(defaults.SEQ,), show_default=True,
              help="Sequence length of a packed output; repeat with --range for BTLM's schedule.")
@click.option("--range", "ranges", type=RANGE, multiple=True, default=None,
              help="Train range A:B per --seq (default 0:1).")
@click.option("--packing", type=click.Choice(["concat", "bestfit"]), default="concat", show_default=True)
@click.option("--file-bytes", type=SIZE, default=size_text(defaults.SHARD_FILE_BYTES), show_default=True,
              help="Target size of a packed shard file.")
@TokenizerFlags.apply
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tokenizer threads per task (tasks already run one per core).")
@ReadFlags.apply
@RayFlags.apply
@config_options
@fail_cleanly
def pipeline(inputs, data, min_chars, minhash: MinHashFlags, partition_bytes, verify, against,
             contamination: PipelineDecontaminateFlags, seed, holdout, weights, chunks, docs_per_file, bucket_bytes,
             batch_rows, seqs, ranges, packing, file_bytes, tok: TokenizerFlags, threads, read: ReadFlags,
             ray: RayFlags, print_config):
    """Every stage in one driver: normalize, dedup, decontaminate (with --eval), release, tokenize, pack (`make dedup`
    + `make shards` in one Ray session). Resumes like each stage: rerun the same command after a crash."""
    if print_config:
        click.echo(config_toml(click.get_current_context()), nl=False)
        return
    from slimpajama.core.release import ReleaseConfig, parse_weights
    from slimpajama.pipelines.pipeline import PipelineConfig, run_pipeline

    if ranges and len(ranges) != len(seqs):
        raise SlimPajamaError("give one --range per --seq")
    cfg = PipelineConfig(read=read.options(batch_rows=batch_rows), min_chars=min_chars, minhash=minhash.config(),
                         verify=verify, against=tuple(against), decontaminate=contamination.config(min_chars),
                         partition_bytes=at_least("--partition-bytes", partition_bytes, 1 << 20,
                                                  "it sets the number of LSH tasks per band"), threads=threads,
                         release=ReleaseConfig(seed=seed, holdout=holdout, weights=parse_weights(weights),
                                               chunks=chunks, docs_per_file=docs_per_file,
                                               bucket_bytes=check_bucket_bytes(bucket_bytes)),
                         encoding=tok.spec(), eos=tok.eos, bos=tok.bos_spec(), engine=tok.engine, packing=packing,
                         task_bytes=read.task_bytes or 0, file_bytes=file_bytes or 1,
                         shards=tuple(zip(seqs, list(ranges) if ranges else
                                          [defaults.PACK_RANGE] * len(seqs), strict=True)))
    reports = run_pipeline(list(inputs), data, cfg, verify_inputs=read.verify_inputs, **ray.run())
    summaries = [r.summary() for r in reports]
    if ray.as_json:
        click.echo(json.dumps(summaries, indent=2, sort_keys=True))
    else:
        for s in summaries:
            what = (", ".join(f"{split} {rows:,} rows" for split, rows in s["rows"].items()) if "rows" in s else
                    f"{s['docs_in']:,} docs in, {s['docs_out']:,} out, dropped {s['dropped']}")
            click.echo(f"{s['stage']}: {what} ({s['resumed']}/{s['shards']} shards resumed) -> {s['out']}")


command = pipeline
