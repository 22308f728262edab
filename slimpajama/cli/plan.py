"""`slimpajama plan`: what the whole run takes on a corpus, before renting the cluster."""

from __future__ import annotations

import json
import textwrap

import click

from slimpajama.cli.guard import fail_cleanly
from slimpajama.cli.options import SIZE, size_text, task_bytes_option
from slimpajama.core import defaults
from slimpajama.pipelines.packplan import TASK_DOCS


@click.command()
@click.argument("raw")
@click.option("--cores", type=click.IntRange(min=1), required=True, help="Cores of the cluster to plan for.")
@click.option("--calibrate", type=SIZE, default="32MB", show_default=True,
              help="Text of the corpus run through every stage on this node to measure the rates (RAW must be the "
                   "corpus itself, not a listing).")
@click.option("--rates", "rates_file", type=click.Path(dir_okay=False), default=None,
              help="Use these rates instead of calibrating: an earlier `plan --json` output or make bench's "
                   "benchmarks/results.json.")
@task_bytes_option("Parts of big plain files and shards, as the stages would cut them")
@click.option("--bucket-bytes", type=SIZE, default=size_text(defaults.BUCKET_BYTES), show_default=True)
@click.option("--docs-per-file", type=click.IntRange(min=1), default=defaults.DOCS_PER_FILE, show_default=True)
@click.option("--layouts", type=click.IntRange(min=1), default=1, show_default=True,
              help="Packed layouts (--seq runs of shards): BTLM's 2k + 8k is 2.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (per stage and in total: core_hours, "
              "longest_task and wall in seconds; the rates it used).")
@fail_cleanly(kept=None, memory="the plan's memory does not grow with the corpus: report this with the listing")
def plan(raw, cores, calibrate, rates_file, task_bytes, bucket_bytes, docs_per_file, layouts, as_json):
    """Estimate the whole run on RAW (a corpus folder, an object-store prefix, or a listing file: '<size> <path>'
    lines as `find -printf '%s %p\\n'` prints, or what `aws s3 ls --recursive`, `gsutil ls -l` or `ls -l` print) at
    --cores: per stage the text in, the tasks, core-hours, the longest task, the wall time, peak memory per task;
    disk, the components node's memory, and where each rate came from."""
    from slimpajama.errors import SlimPajamaError
    from slimpajama.tools import plan as planner

    corpus = planner.list_corpus(raw)
    if rates_file:
        rates = planner.read_rates(rates_file)
    elif planner.is_listing(raw):
        raise SlimPajamaError(f"{raw} is a listing: there is nothing to calibrate on; give --rates (an earlier "
                              "`plan --json` output, or benchmarks/results.json from make bench)")
    else:
        rates = planner.calibrate(raw, calibrate or 1)
    result = planner.model(corpus, rates, planner.Settings(cores, task_bytes or 0, bucket_bytes or 1,
                                                          docs_per_file, layouts))
    result["rates"] = rates
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        _print(result)


def _print(result: dict) -> None:
    from rich.console import Console

    from slimpajama.cli.render import table
    from slimpajama.tools.units import count, size

    def hours(secs: float) -> str:
        return f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.1f} min" if secs < 7200 else f"{secs / 3600:.1f} h"

    files = result["files"]
    t = table(f"plan: {count(files)} file{'s' if files != 1 else ''}, {size(result['text_bytes'])} of text, "
              f"{result['cores']} cores", ["stage", "text in", "tasks", "core-\nhours", "longest\ntask", "wall",
                                          "peak RSS\nper task"], names=list(result["stages"]))
    for name, s in result["stages"].items():
        rss = s["peak_rss_mb_per_task"]
        t.add_row(name, size(s["text_bytes_in"]), count(s["tasks"]), f"{s['core_hours']:,.1f}",
                  hours(s["longest_task"]), hours(s["wall"]), f"{rss:,.0f} MB" if rss else "-")
    tot = result["total"]
    t.add_row("total", "", "", f"{tot['core_hours']:,.1f}", hours(tot["longest_task"]), hours(tot["wall"]), "")
    console = Console()
    console.print(t)
    d = result["disk"]

    def node(memory: int) -> str:  # below 1 GB any node holds it; a figure in kB would read as a node that small
        return f"a node with ~{size(memory)} of RAM" if memory >= 1e9 else "under 1 GB of RAM, any node"

    click.echo(f"documents ~{count(result['documents'])}, tokens ~{count(result['tokens'])}\n"
               f"components: one task, {node(result['components_node_memory'])}\n"
               f"pack-plan: one task per split (bestfit: one per {count(TASK_DOCS)} documents), then the split's "
               "row order: "
               f"{node(result['pack_plan_node_memory'])} for the train split\n"
               f"disk: signatures {size(d['minhash_signatures'])}, token cache {size(d['token_cache'])}, "
               f"packed shards {size(d['packed_shards'])}")
    rates = result["rates"]
    by_source: dict[str, list[str]] = {}
    for stage in result["stages"]:
        by_source.setdefault(rates.get("sources", {}).get(stage, "unknown"), []).append(stage)
    where = f"from {rates['from']}" if rates.get("from") else "measured on this node"
    lines = [f"rates {where}:"] + [textwrap.fill(f"{', '.join(stages)}: {how}", 80, initial_indent="  ",
                                                 subsequent_indent="    ") for how, stages in by_source.items()]
    click.echo("\n".join(lines))

command = plan
