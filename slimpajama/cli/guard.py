"""Every failure a user can cause ends as one `error:` line and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading

import click

from slimpajama.errors import SlimPajamaError, root_cause


def debug() -> bool:
    return os.environ.get("SLIMPAJAMA_DEBUG", "") not in ("", "0")


MEMORY_HINT = "run with fewer --workers (or smaller --batch-rows/--bucket-bytes/--partition-bytes)"


def fail_cleanly(fn=None, *, kept: str | None = "completed shards are kept", memory: str = MEMORY_HINT):
    """Run a command: interrupts, the user's mistakes, the machine's limits and bugs each give one line; an
    embedded Ray this command started is shut down whatever happens. `kept`: what an interrupt leaves, for the
    interrupt's message (None: a command that writes nothing, so there is nothing to resume); `memory`: what to do
    when the machine runs out of memory, in the command's own options."""
    if fn is None:
        return functools.partial(fail_cleanly, kept=kept, memory=memory)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from slimpajama.pipelines.interrupts import (
            Terminated,
            forget_interrupts,
            install_sigterm_handler,
            ray_running,
            shutdown_ray,
            swallowed_interrupt,
        )

        install_sigterm_handler()
        forget_interrupts()
        ray_was_up = ray_running()  # a caller's Ray (a test session, a notebook) is theirs to stop
        try:
            try:
                result = fn(*args, **kwargs)
                lost = swallowed_interrupt()
                if lost is not None:  # the user asked to stop: the command says so, whatever it completed
                    raise lost
                return result
            except SystemExit as e:
                if e.code == signal.SIGTERM:  # Ray's own handler, while ray.init was starting: the same SIGTERM
                    raise Terminated() from None
                raise
            finally:
                if not ray_was_up:  # an interrupt during this shutdown is handled below, like any other
                    shutdown_ray()
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): Ray, shut down, stops the tasks
            # the signal received decides, not the exception: Ray turns any interrupt met inside ray.get/wait
            # into a plain KeyboardInterrupt (its check_signals), a SIGTERM included
            e = swallowed_interrupt() or e
            with _signals_ignored():  # a second Ctrl-C must not cut this short (click's "Aborted!", exit 1)
                if not ray_was_up:
                    shutdown_ray()
                signame = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
                resume = f"; {kept}: rerun the same command to resume" if kept else ""
                click.echo(f"error: interrupted ({signame}){resume}", err=True)
            sys.exit(143 if isinstance(e, Terminated) else 130)
        except SlimPajamaError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except OSError as e:  # the machine's side (disk full, permissions, missing directory): no traceback
            where = f": {e.filename}" if e.filename else ""
            click.echo(f"error: {e.strerror or e}{where}", err=True)
            sys.exit(1)
        except MemoryError:
            click.echo(f"error: out of memory: {memory}", err=True)
            sys.exit(1)
        except Exception as e:  # a bug, not the user's doing: one line, the traceback on request
            if debug():
                raise
            cause = root_cause(e)
            first = (str(cause).strip().splitlines() or [""])[0]
            click.echo(f"error: {type(cause).__name__}: {first} (unexpected; rerun with --debug or "
                       "SLIMPAJAMA_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)

    return wrapper


@contextlib.contextmanager
def _signals_ignored():
    """SIGINT and SIGTERM ignored for a moment (the handlers come back after it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
