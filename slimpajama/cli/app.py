"""The `slimpajama` click group and its subcommands, registered from the table below (see `__init__.py`)."""

from __future__ import annotations

import importlib
import logging
import os

import click

from slimpajama.pipelines import registry

# module (under slimpajama.cli) of each subcommand: the stages' from their registry, in the order of the data flow
COMMANDS = ("sample", "plan", *(s.cli_module for s in registry.STAGES), "pipeline", "encodings", "export", "verify",
            "stats", "train")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="slimpajama")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error (also SLIMPAJAMA_DEBUG=1).")
@click.option("--verbose", is_flag=True, help="Show Ray's own log lines (hidden by default).")
def main(debug, verbose):
    """SlimPajama data pipeline: normalize, filter, dedup, release, tokenize and pack a RedPajama-style corpus."""
    if debug:
        os.environ["SLIMPAJAMA_DEBUG"] = "1"
    if verbose:
        os.environ["SLIMPAJAMA_VERBOSE"] = "1"
    logger = logging.getLogger("slimpajama")  # library code logs what the user should know; this prints it
    if not any(isinstance(h, _Notices) for h in logger.handlers):
        logger.addHandler(_Notices())
        logger.setLevel(logging.INFO)


class _Notices(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"notice: {record.getMessage()}", err=True)


for _module in COMMANDS:
    main.add_command(importlib.import_module(f"{__package__}.{_module}").command)
