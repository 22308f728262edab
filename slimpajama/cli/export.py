"""`slimpajama export`: the token cache for other trainers (Megatron-core, litdata, MosaicML MDS)."""

from __future__ import annotations

import json
import os

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import RANGE, SIZE, at_least, range_text
from slimpajama.core import defaults


@click.command()
@click.argument("path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["megatron", "litdata", "mds"]), default="megatron",
              show_default=True,
              help="megatron: Megatron-core's MMap indexed dataset (PREFIX.bin + PREFIX.idx), read by Megatron-LM, "
                   "NeMo and GPT-NeoX; litdata: the folder PREFIX/ for litdata's StreamingDataset with "
                   "TokensLoader (litgpt); mds: the folder PREFIX/ for MosaicML's StreamingDataset (llm-foundry).")
@click.option("--out", "-o", "prefix", required=True,
              help="Output prefix: writes PREFIX.json and PREFIX.bin + PREFIX.idx (megatron) or PREFIX/.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="train", show_default=True)
@click.option("--range", "range_", type=RANGE, default=range_text(defaults.PACK_RANGE), show_default=True,
              help="The documents whose first token lies in this fraction A:B of the split's tokens (as shards).")
@click.option("--by-source", is_flag=True,
              help="One dataset per source (PREFIX_<source>); PREFIX.json gives the sources' token shares as "
                   "weights (and Megatron's --data-path with them).")
@click.option("--encoding", default=None, help="Which token cache of a tokenize --out root (default: the only one); "
                                                "the encoding to tokenize with when PATH is a release.")
@click.option("--tokens", "tokens_root", default=None,
              help="Where a release given as PATH is tokenized first (default: a 'tokens-<release folder>' folder "
                   "beside it, one per release).")
@click.option("--chunk-bytes", type=SIZE, default="64MB", show_default=True,
              help="litdata and mds: the size of a chunk file (whole documents; a longer one is a chunk alone).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar (of tokenizing a release) and no line per dataset: "
                                            "the last line only.")
@fail_cleanly
def export(path, fmt, prefix, split, range_, by_source, encoding, tokens_root, chunk_bytes, as_json, quiet):
    """Export a token cache (or a release, tokenized first) for other trainers: each document one sequence, EOS
    included; streamed, atomic, with a summary and SHA-256s in PREFIX.json."""
    from slimpajama.pipelines.export import dataset_prefix, run_export
    from slimpajama.pipelines.paths import DOCUMENTS, what_is

    if what_is(path).kind in DOCUMENTS:
        from slimpajama.pipelines.tokens import run_tokenize

        # one cache per release: two releases in one folder must not take turns in one cache, which would leave
        # the first export's summary pointing at the second's tokens
        release = os.path.abspath(path).rstrip(os.sep)
        tokens_root = tokens_root or os.path.join(os.path.dirname(release), f"tokens-{os.path.basename(release)}")
        from slimpajama.cli.progress import shard_progress

        run_tokenize([path], tokens_root, encoding or defaults.ENCODING, progress=None if quiet else shard_progress)
        path = tokens_root
    summary = run_export(path, prefix, fmt=fmt, split=split, range_=range_, by_source=by_source,
                         encoding=encoding, chunk_bytes=at_least("--chunk-bytes", chunk_bytes, 1 << 20,
                                                                     "a chunk file per few documents"))
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        for name, d in ({} if quiet else summary["datasets"]).items():
            where = dataset_prefix(prefix, d["prefix"]) + (".bin/.idx" if fmt == "megatron" else "/")
            click.echo(f"{name}: {d['documents']:,} documents, {d['tokens']:,} tokens -> {where}")
        click.echo(("already complete: " if summary["resumed"] else "wrote ") + f"{prefix}.json")


command = export
