"""Ray: the embedded local instance or a cluster, and stage functions as one-CPU tasks."""

from __future__ import annotations

import logging
import os
import sys

from slimpajama.core import defaults
from slimpajama.errors import SlimPajamaError
from slimpajama.io import storage

from .interrupts import install_sigterm_handler, ray_running, tag_embedded_ray

INLINE_ENV = "SLIMPAJAMA_INLINE_BYTES"


def in_driver(nbytes: int, ray_address: str | None = None) -> bool:
    """Whether work reading `nbytes` runs in the driver: small work, where starting Ray (docs/benchmarks.md,
    start-up) would cost more than the work itself. Never for a cluster (--ray-address, $RAY_ADDRESS) or where Ray
    already runs (its start is paid: the pipeline command, a notebook). $SLIMPAJAMA_INLINE_BYTES sets the size (0: always Ray)."""
    if ray_address or os.environ.get("RAY_ADDRESS") or ray_running():
        return False
    return nbytes <= int(os.environ.get(INLINE_ENV) or defaults.INLINE_BYTES)


def node_id() -> str | None:
    """The Ray node that ran a task (for the audit trail of a cluster run); None outside Ray (where importing
    it, half a second, would only say so)."""
    if "ray" not in sys.modules:
        return None
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def init_ray(ray_address: str | None = None, workers: int | None = None) -> None:
    """Embedded local Ray (all cores, or `workers`; no dashboard; quiet), or join `ray_address` / $RAY_ADDRESS."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = ray_address or os.environ.get("RAY_ADDRESS")
    verbose = os.environ.get("SLIMPAJAMA_VERBOSE", "") not in ("", "0")
    # quiet unless --verbose: Ray's own warnings (token authentication, ...) and the workers' log lines
    logging.getLogger("ray").setLevel(logging.WARNING if verbose else logging.ERROR)
    common = dict(logging_level=logging.WARNING if verbose else logging.ERROR, log_to_driver=verbose,
                  ignore_reinit_error=True)
    if address:
        _check_address(address)
        ray.init(address=address, **common)
    else:  # --workers is a cap: more Ray CPUs than cores would only add idle worker processes
        tag_embedded_ray()
        ray.init(num_cpus=min(workers or os.cpu_count(), os.cpu_count()), include_dashboard=False,
                 object_store_memory=int(os.environ.get("SLIMPAJAMA_OBJECT_STORE_BYTES", 256 << 20)), **common)
    install_sigterm_handler()  # ray.init installed its own (sys.exit), which can leave Ray half shut down


def _check_address(address: str) -> None:
    """A cluster address that cannot work fails in one line within seconds (Ray itself would retry for minutes)."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SlimPajamaError(f"--ray-address {address!r}: expected HOST:PORT of a Ray head node (e.g. "
                              "10.0.0.1:6379), 'auto', or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise SlimPajamaError(f"no Ray cluster at {address} ({e.strerror or e}): start one with `ray start --head` "
                              "or check the address") from None


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def ray_task(fn, paths, max_retries: int = 3):
    """`fn` as a one-CPU Ray task; when it touches an object store, the driver's object-store settings reach it on
    whichever node it runs."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=max_retries)(fn)
    if any(storage.is_remote(p) for p in paths):
        env = storage.forwarded_env()
        if env:
            remote = remote.options(runtime_env={"env_vars": env})
    return remote
