"""`slimpajama sample`: the bundled sample corpus."""

from __future__ import annotations

import contextlib
import os
import tempfile

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import SIZE
from slimpajama.core import defaults

MiB = 1 << 20


@click.command()
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--docs", type=click.IntRange(min=defaults.SAMPLE_MIN_DOCS), default=None, help="Number of documents (default 2000).")
@click.option("--bytes", "nbytes", type=SIZE, default=None,
              help="Approximate uncompressed size instead of --docs, e.g. 1GB.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
@click.option("--layout", type=click.Choice(["slimpajama", "redpajama-1t"]), default="slimpajama", show_default=True,
              help="slimpajama: <set name>/part-NNNNN.jsonl.zst with meta.redpajama_set_name; redpajama-1t: the "
                   "RedPajama-Data-1T download's folders, file names (book/book.jsonl, wikipedia/wiki.jsonl, ... one "
                   "plain file each) and red_pajama_subset rows.")
@fail_cleanly
def sample(out, seed, docs, nbytes, workers, layout):
    """Generate a deterministic RedPajama-shaped sample corpus with planted duplicates and ground truth."""
    from slimpajama.cli.progress import counter_progress
    from slimpajama.tools.sample_corpus import GROUND_TRUTH_FILE, generate_corpus, to_redpajama_1t

    os.makedirs(out, exist_ok=True)
    with counter_progress("sample", "files") as tick, contextlib.ExitStack() as stack:
        # redpajama-1t: generated in a hidden folder of `out` (never read), then rewritten into it
        target = stack.enter_context(tempfile.TemporaryDirectory(dir=out, prefix=".gen-")) \
            if layout == "redpajama-1t" else out
        truth = generate_corpus(target, seed=seed, docs=docs, nbytes=nbytes, workers=workers,
                                progress=lambda r: tick(1))
        if layout == "redpajama-1t":
            truth = to_redpajama_1t(target, out)
    on_disk = sum(os.path.getsize(os.path.join(out, f)) for f in truth["files"])
    click.echo(f"wrote {truth['docs']:,} documents in {len(truth['files'])} files "
               f"({on_disk / MiB:.1f} MiB) to {out}; planted cases in "
               f"{out}/{GROUND_TRUTH_FILE}")


command = sample
