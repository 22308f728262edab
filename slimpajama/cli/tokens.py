"""`slimpajama tokenize`: documents to the token cache (a module not named `tokenize`: see docs/DESIGN.md)."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import RayFlags, ReadFlags, engine_option
from slimpajama.cli.render import print_report
from slimpajama.core import defaults


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", default="data/tokens", show_default=True, type=click.Path(file_okay=False),
              help="Token cache root; the cache goes to <out>/<encoding or tokenizer name>/.")
@click.option("--encoding", default=defaults.ENCODING, show_default=True,
              help="gpt2 (= r50k_base, BTLM's), another tiktoken encoding name, or the .tiktoken file of one "
                   "(cl100k_base, o200k_base, ...: recognized by its SHA-256).")
@click.option("--tokenizer", default=None, metavar="PATH",
              help="A model's tokenizer instead: a Hugging Face tokenizer.json, a SentencePiece tokenizer.model, or "
                   "the model folder holding one (local; the cache goes to <out>/<folder or file name>/).")
@click.option("--eos", default=None, metavar="TOKEN",
              help="--tokenizer's end-of-document token (default: the eos_token of a tokenizer_config.json beside "
                   "it, else a known one such as <|endoftext|> or </s>).")
@click.option("--bos", is_flag=True, help="Prepend --tokenizer's BOS to every document (as Llama-style models expect).")
@click.option("--bos-token", default=None, metavar="TOKEN", help="The BOS token to prepend (implies --bos).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tokenizer threads per task (tasks already run one per core).")
@engine_option()
@ReadFlags.apply
@RayFlags.apply
@fail_cleanly
def tokenize(inputs, out, encoding, tokenizer, eos, bos, bos_token, threads, engine, read: ReadFlags,
             ray: RayFlags):
    """Tokenize documents (a release, or any corpus/parquet shards) once into a token cache, EOS after each."""
    from slimpajama.errors import SlimPajamaError
    from slimpajama.pipelines.tokens import run_tokenize

    if tokenizer and encoding != defaults.ENCODING:
        raise SlimPajamaError("give either --encoding (tiktoken) or --tokenizer (a model's tokenizer file), not both")
    report = run_tokenize(list(inputs), out, tokenizer or encoding, threads=threads, read=read.options(),
                          verify_inputs=read.verify_inputs, task_bytes=read.task_bytes, eos=eos,
                          bos=bos_token if bos_token else ("" if bos else None), engine=engine, **ray.run())
    print_report(report, ray.as_json)


command = tokenize
