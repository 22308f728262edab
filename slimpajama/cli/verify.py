"""`slimpajama verify`: check packed shards against their index."""

from __future__ import annotations

import os

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.errors import SlimPajamaError


@click.command("verify")
@click.argument("directories", nargs=-1, required=True, type=click.Path(file_okay=False))
@fail_cleanly
def verify(directories):
    """Check a packed shard directory (or a seq<N> folder holding split directories): every file's SHA-256,
    row count and width against its index, and decodes row 0 with the split's tokenizer. Fails naming the first
    bad file."""
    from slimpajama.packers.format import rebuild_command
    from slimpajama.packers.format import verify as verify_split
    from slimpajama.pipelines.paths import packed_splits

    for d in directories:
        for t in packed_splits(d, "verify"):
            try:
                index = verify_split(t)
            except SlimPajamaError as e:
                command = rebuild_command(os.path.dirname(os.path.abspath(t)))
                raise SlimPajamaError(f"{e}; rebuild it with: {command}" if command else str(e)) from None
            click.echo(f"ok {t}: {index['rows']:,} rows x {index['seq_len'] + 1} tokens, {len(index['files'])} files")
            if index["rows"]:
                click.echo(f"   row 0 decoded: {_sample(t)}")


def _sample(split_dir: str, chars: int = 72) -> str:
    """Row 0's first document segment, decoded with the split's tokenizer: the tokens mean text."""
    from slimpajama.packers import ShardReader

    reader = ShardReader(split_dir)
    try:
        tok = reader.tokenizer()
    except ImportError as e:
        return f"(not decoded: {e})"
    ids = reader[0][: int(reader.doc_lens(0)[0])]
    text = tok.decode(ids.tolist())
    return repr(text[:chars]) + ("..." if len(text) > chars else "")


command = verify
