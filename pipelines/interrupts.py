"""SIGTERM and Ray's lifetime in the driver: what the CLI needs around every command, with no other import (so
`slimpajama train` runs where the corpus stages' packages are not installed)."""

from __future__ import annotations

import contextlib
import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM to the driver (what a supervisor sends): unwinds like Ctrl-C, so in-flight tasks are cancelled and
    Ray is shut down (see `shutdown_ray`)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def install_sigterm_handler() -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def ray_running() -> bool:
    import sys

    ray = sys.modules.get("ray")  # never imported: never started
    return ray is not None and ray.is_initialized()


def shutdown_ray() -> None:
    """Stop the embedded Ray (or leave a joined cluster) so that no Ray process outlives the command."""
    if ray_running():
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
