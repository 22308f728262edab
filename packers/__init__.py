"""Packing algorithms, the shard format and shard readers (installed as `slimpajama.packers`).

`ShardReader` needs only numpy; `PackedDataset` imports torch, so it loads on first use.
"""

from .format import verify
from .reader import ShardReader

__all__ = ["PackedDataset", "ShardReader", "verify"]


def __getattr__(name):
    if name == "PackedDataset":
        from .dataset import PackedDataset

        return PackedDataset
    raise AttributeError(name)
