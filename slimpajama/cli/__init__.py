"""The `slimpajama` command: one module per subcommand, registered in `app.py`.

Shared options live in `options.py` (defined once, from `slimpajama.core.defaults`), failure handling in
`guard.py`, tables in `render.py`. A command module imports only click and light modules at the top and the
stages' packages inside its function, so `slimpajama train` runs where ray, ftfy or numba are not installed.
This package's own import is nothing but `run`: a Ctrl-C while the commands load lands inside it.
"""

from __future__ import annotations

import os
import sys


def __getattr__(name):  # `main` (the click group) and `COMMANDS`, for tests and embedding
    if name in ("main", "COMMANDS"):
        from . import app

        return getattr(app, name)
    raise AttributeError(name)


def run() -> None:
    """The `slimpajama` console command (and `python -m slimpajama.cli`): `main`, with two things click and the
    interpreter would get wrong on Ctrl-C. One that lands before a command's own handling (while Python loads)
    ends like every other interrupt, one line and exit 130, not click's "Aborted!" and exit 1. And an interrupted
    command leaves without the interpreter's teardown, where Ray's threads have crashed it (SIGSEGV, exit 139)
    or let it die by the signal (exit -2) after the message was out."""
    try:
        import click

        from .app import main

        code = main.main(standalone_mode=False)
    except SystemExit as e:
        code = e.code
    except KeyboardInterrupt:
        code = _interrupted_early()
    except Exception as e:
        import click

        if isinstance(e, click.Abort):  # click's own turn of a KeyboardInterrupt while it parsed
            code = _interrupted_early()
        elif isinstance(e, click.ClickException):  # a usage mistake: one line too, exit 2 (click's code)
            where = f" (see '{e.ctx.command_path} --help')" if isinstance(e, click.UsageError) and e.ctx else ""
            print(f"error: {e.format_message()}{where}", file=sys.stderr)
            code = e.exit_code
        else:
            raise
    if code in (130, 143):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)


def _interrupted_early() -> int:
    print("error: interrupted (SIGINT) before the command started: nothing was written", file=sys.stderr)
    return 130
