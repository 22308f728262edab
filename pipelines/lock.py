"""One driver per output directory: `<out>/_state/_lock` holds the host, pid, process start time and run id of the
driver that owns it. A second driver exits with one line naming the holder (or waits, `--wait`); a lock whose
process is gone (killed driver) is taken over. Object-store outputs are not locked (no atomic create there).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time

from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage
from slimpajama.io.writers import run_id

LOCK_FILE = "_lock"
POLL_SECONDS = 1.0
_held: dict[str, int] = {}  # real path -> nesting depth (a driver re-enters its own locks)
_wait = False


def configure(wait: bool) -> None:
    """--wait: wait for the holder to finish instead of failing."""
    global _wait
    _wait = wait


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of a process (tells a reused pid from the holder); None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: cannot tell, so it is respected
    pid = int(holder.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _proc_start(pid)
    return start is None or holder.get("proc_start") in (None, start)


def lock_path(out_dir: str) -> str:
    return storage.join(out_dir, "_state", LOCK_FILE)


def _read(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command', '?')}")


def _acquire(out_dir: str, path: str) -> None:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "proc_start": _proc_start(os.getpid()),
            "run": run_id(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder is None:  # being written this instant, or a write cut short long ago
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - os.path.getmtime(path) > 10:
                        os.remove(path)
                time.sleep(0.05)
                continue
            if not _alive(holder):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # a killed driver's lock: taken over
                continue
            if _wait:
                time.sleep(POLL_SECONDS)
                continue
            raise SlimPajamaError(f"{out_dir} is in use by another run ({_describe(holder)}); wait for it to "
                                  f"finish or pass --wait (if that run is gone, delete {path})") from None
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        return


@contextlib.contextmanager
def hold(out_dir: str):
    """Own `out_dir` for the duration (re-entrant within one driver)."""
    if storage.is_remote(out_dir):
        yield
        return
    key = os.path.realpath(out_dir)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path = lock_path(out_dir)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as e:
        raise SlimPajamaError(f"cannot create output directory {out_dir}: {e.strerror}") from None
    _acquire(out_dir, path)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        holder = _read(path)
        if holder and holder.get("pid") == os.getpid() and holder.get("run") == run_id():
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def held_by_other(directory: str) -> bool:
    """Whether a live run other than this driver owns `directory` (start-up cleanup leaves its files alone)."""
    if os.path.realpath(directory) in _held:
        return False
    holder = _read(lock_path(directory))
    return holder is not None and _alive(holder)
