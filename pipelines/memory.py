"""Peak resident memory of this process, per piece of work (a shard task, a benchmark step)."""

from __future__ import annotations

import contextlib
import resource


def reset_peak_rss() -> None:
    """Start a new high-water mark (Linux: VmHWM); elsewhere the peak stays the process's lifetime peak."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb() -> float:
    """Peak resident memory in MB since the last reset_peak_rss() (else since the process started)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
