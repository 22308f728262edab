"""PackedDataset and PackedSampler: a packed split for any trainer's torch DataLoader.

The dataset maps a global row number to its tensors and holds no order, no epoch and no position. The order lives
in `PackedSampler`, which the DataLoader iterates in the main process: `set_epoch` and `load_state_dict` reach it
even when the workers are persistent (they keep their own copy of whatever the dataset holds, so an order kept in
the dataset would silently go stale there).

    ds = PackedDataset("data/shards/seq2048/train")
    sampler = PackedSampler(ds, rank=rank, world_size=world, seed=0)      # torch's DistributedSampler API
    loader = DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2, persistent_workers=True,
                        collate_fn=PackedDataset.collate)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        for seen, batch in enumerate(loader, 1): ...      # checkpoint: sampler.state_dict(seen * 8)
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .reader import ShardReader

IGNORE_INDEX = -100


class PackedDataset(Dataset):
    """Row i of a packed split directory as input_ids, labels (-100 on padding), position_ids (restarting at each
    document) and doc_lens. `verify=True`: every file's SHA-256 checked on open (see ShardReader)."""

    def __init__(self, directory: str, verify: bool = False):
        self.reader = ShardReader(directory, verify=verify)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> dict:
        r = int(i)
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


class PackedSampler(Sampler[int]):
    """Which rows a rank reads, in which order: torch's `DistributedSampler` API plus an exact mid-epoch resume.

    Epoch e's order is a permutation of all rows seeded by (seed, e); rank r takes every world_size-th row of it
    from position r. Every rank gets the same number of rows, so no rank takes a step the others never take (a
    collective would hang): with `drop_last` (the default) the last `rows % world_size` rows of the permutation
    are left out of that epoch (another epoch leaves out others); without it the permutation is padded with its own
    first rows, which are then read twice. Rank and world size default to torch.distributed's when it is set up.

    Resume: `state_dict(samples_seen)` with the samples this rank consumed in the current iteration (the
    DataLoader prefetches, so the sampler cannot know), `load_state_dict(state)` in the new run: its next
    iteration starts exactly there, in the saved epoch.
    """

    def __init__(self, dataset, rank: int | None = None, world_size: int | None = None, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True):
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        world_size = world_size if world_size is not None else torch.distributed.get_world_size() if distributed else 1
        rank = rank if rank is not None else torch.distributed.get_rank() if distributed else 0
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.rows = len(dataset)
        self.rank, self.world_size, self.seed, self.shuffle, self.drop_last = rank, world_size, seed, shuffle, drop_last
        self.num_samples = self.rows // world_size if drop_last else -(-self.rows // world_size)
        self.epoch = 0
        self._start = 0  # where the current iteration began, or (loaded) where the next one begins
        self._loaded = False  # the next iteration starts at `_start` (load_state_dict), not at 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:  # a loaded position belongs to its own epoch
            self._start, self._loaded = 0, False
        self.epoch = epoch

    def order(self) -> np.ndarray:
        """This rank's rows of the current epoch, from its first."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.rows) if self.shuffle \
            else np.arange(self.rows)
        total = self.num_samples * self.world_size
        if total > self.rows:  # pad with the permutation's own first rows (as often as it takes)
            order = np.resize(order, total)
        return order[:total][self.rank:: self.world_size]

    def __iter__(self):
        self._start, self._loaded = self._start if self._loaded else 0, False
        return iter(self.order()[self._start:].tolist())

    def __len__(self) -> int:
        return self.num_samples - (self._start if self._loaded else 0)

    def state_dict(self, samples_seen: int = 0) -> dict:
        """The position after `samples_seen` samples of the current iteration (of the next one, if a state was
        loaded and not yet iterated). More samples than the epoch holds is a miscount (the last batch may be
        short: count each batch's rows, not steps x batch size), refused rather than saved."""
        if not 0 <= self._start + samples_seen <= self.num_samples:
            raise ValueError(f"{samples_seen} samples seen, but this rank's epoch holds {self.num_samples} (from "
                             f"{self._start}): count the rows of each batch (the last one may be short)")
        return {"epoch": self.epoch, "samples": self._start + samples_seen, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "shuffle": self.shuffle, "drop_last": self.drop_last,
                "rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        mine = {"seed": self.seed, "world_size": self.world_size, "shuffle": self.shuffle,
                "drop_last": self.drop_last, "rows": self.rows}
        other = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if other:
            raise ValueError("the state belongs to another order (" + ", ".join(
                f"{k} {saved} (now {now})" for k, (saved, now) in other.items()) + ")")
        if not 0 <= state["samples"] <= self.num_samples:
            raise ValueError(f"the state is {state['samples']} samples into an epoch of {self.num_samples}")
        self.epoch, self._start, self._loaded = state["epoch"], state["samples"], True
