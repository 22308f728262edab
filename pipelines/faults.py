"""Scripted fault injection, to prove that every stage survives a SIGKILL anywhere (tests and drills only).

`SLIMPAJAMA_FAULT` (read by the driver) is a comma-separated list of:
  driver:<stage>:<n>            SIGKILL the driver once <n> tasks of <stage> have completed in this run
  interrupt:<stage>:<n>         SIGINT to the driver then (a Ctrl-C at a known point, in Ray or in the driver)
  worker:<stage>:<i>:<point>    the <i>-th task dispatched for <stage> SIGKILLs its own Ray worker, once, at <point>:
                                `marker` (outputs written, completion marker not) or a delay in seconds after the
                                task starts (anywhere inside the work; Ray then retries the task). The
                                token file it leaves in $SLIMPAJAMA_FAULT_DIR shows that it fired.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

from slimpajama.errors import SlimPajamaError

ENV = "SLIMPAJAMA_FAULT"
TOKEN_DIR_ENV = "SLIMPAJAMA_FAULT_DIR"  # where fired faults leave their token (default: the temp dir)


@dataclass(frozen=True)
class WorkerFault:
    token: str  # created by the first attempt that fires; a retried attempt sees it and runs normally
    point: str

    def arm(self) -> Callable[[], None] | None:
        """Called at the start of the task; returns what to call once its outputs are written, before its marker
        (None: already fired by an earlier attempt)."""
        try:
            os.close(os.open(self.token, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return None
        if self.point == "marker":
            return kill_self
        timer = threading.Timer(float(self.point), kill_self)
        timer.daemon = True
        timer.start()
        return timer.cancel  # the task finished before the delay: it ran unharmed


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _parse() -> list[list[str]]:
    spec = os.environ.get(ENV, "").strip()
    items = [s.split(":") for s in spec.split(",") if s.strip()]
    for it in items:
        ok = (it[0] in ("driver", "interrupt") and len(it) == 3) or (it[0] == "worker" and len(it) == 4)
        if not ok:
            raise SlimPajamaError(f"{ENV}: cannot parse {':'.join(it)!r} (see pipelines/faults.py)")
    return items


def interrupt_self() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def driver_fault(stage: str) -> tuple[int, Callable[[], None]] | None:
    """(completed tasks of `stage`, what the driver then does to itself: SIGKILL or SIGINT), or None."""
    return next(((int(it[2]), kill_self if it[0] == "driver" else interrupt_self) for it in _parse()
                 if it[0] in ("driver", "interrupt") and it[1] == stage), None)


def worker_faults(stage: str) -> dict[int, WorkerFault]:
    """{dispatch index: fault} for `stage`."""
    out = {}
    for it in _parse():
        if it[0] == "worker" and it[1] == stage:
            token = os.path.join(os.environ.get(TOKEN_DIR_ENV) or tempfile.gettempdir(),
                                 f"slimpajama-fault-{os.getpid()}-{stage}-{it[2]}")
            if os.path.exists(token):
                os.remove(token)
            out[int(it[2])] = WorkerFault(token, it[3])
    return out
