"""The `slimpajama` command: one module per subcommand, registered from the table below.

Shared options live in `options.py` (defined once, from `slimpajama.core.defaults`), failure handling in
`guard.py`, tables in `render.py`. A command module imports only click and light modules at the top and the
stages' packages inside its function, so `slimpajama train` runs where ray, ftfy or numba are not installed.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

# module (under slimpajama.cli) of each subcommand, in the order of the data flow
COMMANDS = ("sample", "ingest", "normalize", "dedup", "release", "pipeline", "encodings", "tokens", "shards",
            "export", "verify", "stats", "train")


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
    main.add_command(importlib.import_module(f"{__name__}.{_module}").command)


def run() -> None:
    """The `slimpajama` console command (and `python -m slimpajama.cli`): `main`, with two things click and the
    interpreter would get wrong on Ctrl-C. One that lands before a command's own handling (while Python loads)
    ends like every other interrupt, one line and exit 130, not click's "Aborted!" and exit 1. And an interrupted
    command leaves without the interpreter's teardown, where Ray's threads have crashed it (SIGSEGV, exit 139)
    or let it die by the signal (exit -2) after the message was out."""
    try:
        code = main.main(standalone_mode=False)
    except SystemExit as e:
        code = e.code
    except (KeyboardInterrupt, click.Abort):
        click.echo("error: interrupted (SIGINT) before the command started: nothing was written", err=True)
        code = 130
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    if code in (130, 143):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)
