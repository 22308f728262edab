"""Tasks on N cores, as the planner models a stage: how long they take, longest first onto the least loaded core.

Tasks are counted, not listed (a 100 PB file cut into 512 MB parts is one entry, not 2e8), so planning takes the
same time and memory whatever the corpus's size.
"""

from __future__ import annotations

import heapq
import math


class Tasks:
    """Tasks as (seconds or text bytes each, how many): a 100 PB file cut into 512 MB parts is one entry, not 2e8,
    so the plan's time and memory do not grow with the corpus."""

    def __init__(self, groups=()):
        self.groups: dict[float, int] = {}
        for size, n in groups:
            self.add(size, n)

    def add(self, size: float, n: int = 1) -> None:
        if n > 0:
            self.groups[size] = self.groups.get(size, 0) + n

    def extend(self, other: Tasks) -> None:
        for size, n in other.groups.items():
            self.add(size, n)

    @classmethod
    def parts(cls, text: float, task_text: float) -> Tasks:
        """`text` cut into equal parts of at most `task_text` (one part where `task_text` is 0)."""
        n = max(1, math.ceil(text / task_text)) if task_text else 1
        return cls([(text / n, n)])

    def map(self, fn) -> Tasks:
        """Each task replaced by the Tasks `fn(size)` gives."""
        out = Tasks()
        for size, n in self.groups.items():
            for part, m in fn(size).groups.items():
                out.add(part, m * n)
        return out

    def scaled(self, factor: float) -> Tasks:
        return Tasks((size * factor, n) for size, n in self.groups.items())

    def __len__(self) -> int:
        return sum(self.groups.values())

    def total(self) -> float:
        return sum(size * n for size, n in self.groups.items())

    def longest(self) -> float:
        return max(self.groups, default=0.0)


def schedule(tasks, cores: int) -> float:
    """The wall time of `tasks` (Tasks of seconds, or a list of seconds) on `cores`, longest first onto the least
    loaded core. A run of equal tasks longer than the cores is placed in bulk, exactly as one at a time would."""
    if not isinstance(tasks, Tasks):
        tasks = Tasks((t, 1) for t in tasks)
    loads = [0.0] * min(cores, max(len(tasks), 1))
    for t, n in sorted(tasks.groups.items(), reverse=True):
        if n <= len(loads):
            for _ in range(n):
                heapq.heappush(loads, heapq.heappop(loads) + t)
        else:
            loads = _fill(loads, t, n)
    return max(loads)


def _fill(loads: list[float], t: float, n: int) -> list[float]:
    """`n` tasks of `t` seconds each onto the least loaded core one at a time, at once: every task starts before
    any core's next free moment that none took, so the level below which exactly the starts lie is found by
    bisection, and what the level's ties leave over goes to the cores free soonest."""
    import numpy as np

    load = np.asarray(loads, dtype=np.float64)
    if t <= 0:
        return loads

    def starts(level: float) -> np.ndarray:  # tasks each core starts before `level`
        return np.clip(np.ceil((level - load) / t), 0, None)

    lo, hi = float(load.min()), float(load.min()) + t * (n / len(load) + 1) + float(load.max() - load.min())
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if starts(mid).sum() <= n:
            lo = mid
        else:
            hi = mid
    taken = starts(lo)
    left = min(max(n - int(taken.sum()), 0), len(load))  # (clipped: past 2**53 tasks a float count is not exact)
    ends = load + taken * t
    if left > 0:
        ends[np.argsort(ends, kind="stable")[:left]] += t
    result = ends.tolist()
    heapq.heapify(result)
    return result
