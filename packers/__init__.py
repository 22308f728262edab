"""Packing algorithms, the shard format and shard readers (installed as `slimpajama.packers`).

`ShardReader` needs numpy and pyarrow; `PackedDataset` and `PackedSampler` import torch, so they load on first use.
"""

from .format import verify
from .reader import ShardReader

__all__ = ["PackedDataset", "PackedSampler", "ShardReader", "verify"]


def __getattr__(name):
    if name in ("PackedDataset", "PackedSampler"):
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(name)
