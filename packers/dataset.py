"""PackedDataset: a torch map-style Dataset over a packed split, for any trainer's DataLoader.

Item i of a rank is row `order[rank + i * world_size]` of the epoch's seeded permutation of all rows (ranks take
disjoint strided slices that together cover every row), so a DataLoader with a plain sequential sampler and any
number of workers yields the same batches. Resume: `state_dict(samples_seen)` after the samples a rank consumed,
`load_state_dict(state)` in the new run, and the dataset continues exactly where it stopped.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .reader import ShardReader

IGNORE_INDEX = -100


class PackedDataset(Dataset):
    def __init__(self, directory: str, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, seed: int = 0,
                 epoch: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.reader = ShardReader(directory)
        self.rank, self.world_size, self.shuffle, self.seed = rank, world_size, shuffle, seed
        self.start = 0  # samples of this epoch already consumed (resume)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start = 0
        n = len(self.reader)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        self._rows = order[self.rank:: self.world_size]

    def rows(self) -> np.ndarray:
        """The rows this rank yields, in order, from the current position."""
        return self._rows[self.start:]

    def __len__(self) -> int:
        return len(self._rows) - self.start

    def __getitem__(self, i: int) -> dict:
        r = int(self._rows[self.start + i])
        tokens = torch.from_numpy(self.reader[r].astype(np.int64))
        lens = self.reader.doc_lens(r)
        pad = self.reader.padding(r)
        labels = tokens[1:].clone()
        if pad:
            labels[len(labels) - pad:] = IGNORE_INDEX
        seq = len(tokens) - 1
        starts = np.repeat(np.cumsum(np.concatenate(([0], lens[:-1]))), lens)
        position_ids = (np.arange(len(starts)) - starts)[:seq]
        if len(position_ids) < seq:  # padding positions continue from the last document
            tail = np.arange(seq - len(position_ids)) + (position_ids[-1] + 1 if len(position_ids) else 0)
            position_ids = np.concatenate([position_ids, tail])
        return {"input_ids": tokens[:-1], "labels": labels, "position_ids": torch.from_numpy(position_ids),
                "doc_lens": torch.from_numpy(lens.astype(np.int32))}

    def advance(self, n: int) -> None:
        """Mark the next n samples consumed (a trainer that indexes the dataset itself)."""
        self.start += n

    def state_dict(self, samples_seen: int) -> dict:
        return {"epoch": self.epoch, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "samples": self.start + samples_seen, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        if (state["seed"], state["rank"], state["world_size"]) != (self.seed, self.rank, self.world_size):
            raise ValueError("state was saved with another seed, rank or world size")
        self.set_epoch(state["epoch"])
        self.start = state["samples"]

    @staticmethod
    def collate(items: list[dict]) -> dict:
        """Stack a batch; doc_lens (one length per document segment) are zero-padded to the longest row."""
        out = {k: torch.stack([it[k] for it in items]) for k in ("input_ids", "labels", "position_ids")}
        width = max(len(it["doc_lens"]) for it in items)
        lens = torch.zeros((len(items), width), dtype=torch.int32)
        for j, it in enumerate(items):
            lens[j, : len(it["doc_lens"])] = it["doc_lens"]
        out["doc_lens"] = lens
        return out
