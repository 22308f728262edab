"""`slimpajama stats`: figures for any path the pipeline reads or writes."""

from __future__ import annotations

import json

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.render import print_stats


@click.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON document (stable keys).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Write PNG plots (length, duplication, cluster sizes, tokens per source, padding) here.")
@click.option("--write-json", type=click.Path(dir_okay=False), default=None, help="Also save the JSON here.")
@click.option("--sample", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="For a raw corpus: read only this fraction of its files (the output says it is sampled).")
@fail_cleanly
def stats(path, as_json, plot_dir, write_json, sample):
    """Figures for PATH: a raw corpus, a stage output (ledger.json), a release, packed shards, or a data/ tree."""
    from slimpajama.tools.stats import compute

    st = compute(path, sample)
    text = json.dumps(st, indent=2, sort_keys=True)
    if write_json:
        from slimpajama.io.writers import write_bytes_atomic

        write_bytes_atomic(write_json, text.encode())
    if as_json:
        click.echo(text)
    else:
        print_stats(st)
    if plot_dir:
        from slimpajama.pipelines.paths import what_is
        from slimpajama.tools.plots import write_plots

        written = write_plots(st, plot_dir)
        for p in written:
            click.echo(f"wrote {p}", err=as_json)
        if not written:
            click.echo(f"no plots apply to {path} ({what_is(path).describe()})", err=as_json)


command = stats
