"""SIGTERM and Ray's lifetime in the driver: what the CLI needs around every command, with no other import (so
`slimpajama train` runs where the corpus stages' packages are not installed)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid

OWNER_ENV = "SLIMPAJAMA_RAY_OWNER"
_owner: str | None = None  # the tag of the embedded Ray this process started, if it started one


class Terminated(KeyboardInterrupt):
    """SIGTERM to the driver (what a supervisor sends): unwinds like Ctrl-C, so in-flight tasks are cancelled and
    Ray is shut down (see `shutdown_ray`)."""


_received: list[int] = []  # the interrupts this command received, even those a library swallowed


def _on_sigterm(signum, frame):
    _received.append(signum)
    raise Terminated()


def _on_sigint(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def _redeliver_swallowed(unraisable) -> None:
    """An interrupt raised where Python cannot raise it (inside an import's abc machinery, a finalizer) is
    'ignored': printed with a traceback and dropped. Not printed here, and the signal is sent again a moment
    later (from a thread: sent here, its handler would raise inside this hook), so that it lands at a point that
    can raise it and the command stops now, not after its work."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received:
        import threading

        threading.Timer(0.05, os.kill, (os.getpid(), _received[-1])).start()
        return
    sys.__unraisablehook__(unraisable)


def install_sigterm_handler() -> None:
    """SIGTERM unwinds like Ctrl-C (see `Terminated`); both are recorded for `swallowed_interrupt`."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
        sys.unraisablehook = _redeliver_swallowed


def forget_interrupts() -> None:
    _received.clear()


def swallowed_interrupt() -> KeyboardInterrupt | None:
    """The interrupt a command received but never saw, if any: a KeyboardInterrupt raised while Python imported
    a compiled module is printed as 'Exception ignored' and dropped, and the command would go on as if the user
    had not asked it to stop."""
    if not _received:
        return None
    return Terminated() if _received[-1] == signal.SIGTERM else KeyboardInterrupt()


def ray_running() -> bool:
    import sys

    ray = sys.modules.get("ray")  # never imported: never started
    return ray is not None and ray.is_initialized()


def tag_embedded_ray() -> None:
    """Called before this process starts an embedded Ray: every process of it inherits a tag in its environment,
    so `shutdown_ray` finds them all, even those that outlived Ray's own shutdown."""
    global _owner
    _owner = os.environ[OWNER_ENV] = f"{os.getpid()}-{uuid.uuid4().hex}"


def shutdown_ray() -> None:
    """Stop the embedded Ray (or leave a joined cluster) so that no Ray process outlives the command. On Ctrl-C
    Ray may already have stopped itself, killing its raylet and leaving the raylet's agents (dashboard,
    runtime env) under PID 1 for about a minute: every process of this command's embedded Ray is killed."""
    if ray_running():
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
    if _owner is not None:
        _kill_strays(f"{OWNER_ENV}={_owner}".encode())


def _kill_strays(tag: bytes, patience_s: float = 10.0) -> None:
    """SIGKILL this command's Ray processes, sweeping until none is left: a raylet or worker that is still alive
    during one sweep can fork a new process (a worker, an agent) after /proc was listed, and that child would
    outlive the command (seen in CI with Ctrl-C during Ray's start)."""
    import time

    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        pids = _strays(tag)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _strays(tag: bytes) -> list[int]:
    """This command's Ray processes (Linux; none where there is no /proc): those whose environment holds `tag`,
    and, since Ray's processes rewrite the memory /proc shows as their environment (setproctitle) and can lose
    the tag there, the Ray processes of this process group that descend from this process or were orphaned
    (their raylet gone): never another driver's live Ray, which shares a test runner's group."""
    me, group = os.getpid(), os.getpgid(0)
    parent, ray_proc, found = {}, set(), set()
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if fields[0] == b"Z":  # a zombie: already dead
                    continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if tag in f.read().split(b"\0"):
                        found.add(pid)
                if int(fields[2]) != group:
                    continue
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            parent[pid] = int(fields[1])
            if argv[0].startswith(b"ray::") or any(b"/site-packages/ray/" in a for a in argv[:2]):
                ray_proc.add(pid)
    mine = {me} | found
    grew = True
    while grew:  # descendants of this process (or of a tagged one) and orphans, among the group's Ray processes
        more = {p for p in ray_proc - mine if parent[p] in mine or parent[p] == 1}
        grew = bool(more)
        mine |= more
    return sorted(mine - {me})
