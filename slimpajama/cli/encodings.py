"""`slimpajama encodings`: tiktoken encodings, GPT-2 obtained offline."""

from __future__ import annotations

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.core import defaults


@click.group()
def encodings():
    """tiktoken encodings (GPT-2 obtained and verified offline)."""


@encodings.command("fetch")
@click.option("--encoding", default=defaults.ENCODING, show_default=True)
@fail_cleanly
def encodings_fetch(encoding):
    """Obtain, verify and cache an encoding (GPT-2 from PyPI's openai-whisper sdist, else tiktoken's download)."""
    from slimpajama.tokenize.encodings import get_encoding

    enc = get_encoding(encoding)
    click.echo(f"{enc.name}: vocab {enc.n_vocab}, EOS {enc.eot_token}")


command = encodings
