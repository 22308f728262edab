"""PackedSampler + PackedDataset under what GPU trainers run: several ranks, persistent DataLoader workers,
epochs and a mid-epoch resume (the order lives in the sampler, in the main process)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from slimpajama.packers import PackedDataset, PackedSampler
from slimpajama.packers.format import same_lens, write_index, write_rows

SEQ, ROWS, BATCH = 16, 101, 4  # an odd number of rows: two ranks cannot share them evenly


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A packed split whose row r starts with token r (so a batch says which rows it holds)."""
    d = tmp_path_factory.mktemp("sampler") / "train"
    d.mkdir()
    tokens = np.arange(ROWS * (SEQ + 1), dtype=np.uint16).reshape(ROWS, SEQ + 1) % 50000
    tokens[:, 0] = np.arange(ROWS)
    files = []
    for k, (lo, hi) in enumerate([(0, 40), (40, ROWS)]):  # two files, several record batches
        path = d / f"part-{k:05d}.arrow"
        write_rows(str(path), tokens[lo:hi], same_lens([SEQ + 1], hi - lo),
                   np.zeros(hi - lo, np.int32), batch_rows=8)
        files.append({"path": path.name, "rows": hi - lo, "bytes": path.stat().st_size})
    write_index(str(d), {"seq_len": SEQ, "batch_rows": 8, "rows": ROWS, "files": files})
    return str(d)


def loader(ds, sampler):
    return DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=2, persistent_workers=True,
                      collate_fn=PackedDataset.collate)


def rows_of(batches) -> list[int]:
    return [int(r) for b in batches for r in b["input_ids"][:, 0]]


def test_two_ranks_two_persistent_workers_two_epochs_every_row_once_new_order_exact_resume(split):
    ds = PackedDataset(split)
    ranks = [PackedSampler(ds, rank=r, world_size=2, seed=7) for r in range(2)]
    loaders = [loader(ds, s) for s in ranks]
    seen = {}
    for epoch in range(2):
        for r, (sampler, dl) in enumerate(zip(ranks, loaders, strict=True)):
            sampler.set_epoch(epoch)
            seen[epoch, r] = rows_of(dl)  # the workers are the same processes in both epochs
            assert seen[epoch, r] == sampler.order().tolist()
    for epoch in range(2):
        a, b = seen[epoch, 0], seen[epoch, 1]
        assert len(a) == len(b) == ROWS // 2  # equal steps on every rank: no collective waits forever
        assert not set(a) & set(b) and len(set(a) | set(b)) == ROWS - 1  # one row left out, none twice
    assert seen[0, 0] != seen[1, 0] and seen[0, 1] != seen[1, 1]  # epoch 1 is reshuffled in the workers too
    assert set(seen[0, 0]) | set(seen[0, 1]) != set(seen[1, 0]) | set(seen[1, 1])  # another row left out

    # resume rank 1 in epoch 1 after 3 batches: a new process (sampler, loader, workers) goes on exactly there
    sampler = PackedSampler(ds, rank=1, world_size=2, seed=7)
    sampler.set_epoch(1)
    it = iter(loader(ds, sampler))
    head = rows_of(next(it) for _ in range(3))  # the loader has prefetched further: only 3 batches were used
    state = sampler.state_dict(samples_seen=3 * BATCH)
    again = PackedSampler(ds, rank=1, world_size=2, seed=7)
    again.load_state_dict(state)
    again.set_epoch(1)  # what a trainer's epoch loop calls on the resumed epoch: keeps the position
    assert len(again) == ROWS // 2 - 3 * BATCH
    assert head + rows_of(loader(ds, again)) == seen[1, 1]
    assert again.state_dict(5)["samples"] == 3 * BATCH + 5
    again.set_epoch(2)  # the next epoch starts from its first row
    assert rows_of(loader(ds, again)) == again.order().tolist() and len(again) == ROWS // 2


def test_without_drop_last_the_ranks_pad_with_the_first_rows(split):
    ds = PackedDataset(split)
    parts = [PackedSampler(ds, rank=r, world_size=3, seed=1, drop_last=False).order().tolist() for r in range(3)]
    assert [len(p) for p in parts] == [34, 34, 34]
    every = sum(parts, [])
    assert set(every) == set(range(ROWS)) and len(every) - len(set(every)) == 1


def test_a_state_of_another_order_is_refused(split):
    ds = PackedDataset(split)
    state = PackedSampler(ds, rank=0, world_size=2, seed=3).state_dict(8)
    PackedSampler(ds, rank=1, world_size=2, seed=3).load_state_dict(state)  # any rank's state: same position
    for other in (dict(world_size=4), dict(seed=4), dict(drop_last=False)):
        with pytest.raises(ValueError, match="another order"):
            PackedSampler(ds, **{"rank": 0, "world_size": 2, "seed": 3, **other}).load_state_dict(state)
    with pytest.raises(ValueError, match="not in"):
        PackedSampler(ds, rank=2, world_size=2)


def test_more_samples_than_the_epoch_holds_is_refused_when_saved(split):
    """Issue 44.9: the docs' snippet saved `step * batch` samples, 936 for a 935-row split, and it was accepted."""
    sampler = PackedSampler(PackedDataset(split), rank=0, world_size=1, seed=0)
    assert sampler.state_dict(ROWS)["samples"] == ROWS
    with pytest.raises(ValueError, match=f"{ROWS + 3} samples seen, but this rank's epoch holds {ROWS}"):
        sampler.state_dict(ROWS + 3)  # 26 steps x 4 for 101 rows


def test_items_are_the_rows(split):
    ds = PackedDataset(split)
    item = ds[17]
    assert item["input_ids"][0] == 17 and item["input_ids"].dtype == torch.int64 and len(ds) == ROWS
    assert torch.equal(item["labels"], item["input_ids"].new_tensor(ds.reader[17][1:].astype(np.int64)))
