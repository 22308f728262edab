"""Numbers as people read them, for tables (cli/render.py) and plot axes (plots.py): one formatting for both."""

from __future__ import annotations


def count(n) -> str:
    """At most 5 characters: exact below 10,000, then 3 significant digits: 45.7k, 988k, 1.23M, 627B."""
    if n is None:
        return "-"
    if abs(n) < 10_000:
        return f"{int(n):,}" if float(n).is_integer() else f"{n:,.1f}"  # an axis tick is a float
    for unit, scale in (("k", 1e3), ("M", 1e6), ("B", 1e9), ("T", 1e12)):
        if float(f"{n / scale:.3g}") < 1000 or unit == "T":
            return f"{n / scale:.3g}{unit}"
    raise AssertionError


def size(n) -> str:
    """Bytes in decimal units: 512 B, 12.3 kB, 123 MB, 3.4 GB."""
    if n is None:
        return "-"
    for unit, scale in (("B", 1), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("PB", 1e15)):
        if abs(n) < scale * 999.5 or unit == "PB":
            return f"{n:.0f} B" if unit == "B" else f"{n / scale:.{1 if abs(n) < scale * 99.95 else 0}f} {unit}"
    raise AssertionError
