"""`slimpajama tokenize`: documents to the token cache (a module not named `tokenize`: see docs/DESIGN.md)."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import RayFlags, ReadFlags, TokenizerFlags
from slimpajama.cli.render import print_report


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/tokens", show_default=True, type=click.Path(file_okay=False),
              help="Token cache root; the cache goes to <out>/<encoding or tokenizer name>/.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tokenizer threads per task (tasks already run one per core).")
@TokenizerFlags.apply
@ReadFlags.apply
@RayFlags.apply
@fail_cleanly
def tokenize(inputs, out, threads, tok: TokenizerFlags, read: ReadFlags, ray: RayFlags):
    """Tokenize documents (a release, or any corpus/parquet shards) once into a token cache, EOS after each."""
    from slimpajama.pipelines.tokens import run_tokenize

    report = run_tokenize(list(inputs), out, tok.spec(), threads=threads, read=read.options(),
                          verify_inputs=read.verify_inputs, task_bytes=read.task_bytes, eos=tok.eos, bos=tok.bos_spec(),
                          engine=tok.engine, **ray.run())
    print_report(report, ray.as_json)


command = tokenize
