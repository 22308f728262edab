"""One training stage's data: its packed split, its order (a PackedSampler, in this process, so persistent
DataLoader workers never hold a stale one) and where the stage stands, for checkpoints."""

from __future__ import annotations

from torch.utils.data import DataLoader

from slimpajama.errors import SlimPajamaError
from slimpajama.packers import PackedDataset, PackedSampler


class StageFeed:
    def __init__(self, directory: str, *, rank: int, world_size: int, seed: int):
        self.dataset = PackedDataset(directory)
        self.sampler = PackedSampler(self.dataset, rank=rank, world_size=world_size, seed=seed)
        self.world_size = world_size
        self.seen = 0  # samples the current iteration has yielded to training
        self._loader: DataLoader | None = None
        self._batches = None

    @property
    def reader(self):
        return self.dataset.reader

    def position(self) -> int:
        """Samples of the current epoch this process has trained on."""
        return self.sampler.state_dict(self.seen)["samples"]

    def state(self) -> dict:
        """Rows of the epoch's permutation consumed by all processes: a prefix, whatever their number."""
        return {"epoch": self.sampler.epoch, "rows": self.position() * self.world_size, "seed": self.sampler.seed}

    def restore(self, state: dict) -> None:
        if state["rows"] % self.world_size:
            raise SlimPajamaError(f"the checkpoint is {state['rows']} rows into its data, which {self.world_size} "
                                  "processes cannot share evenly: resume with the number of processes it ran with")
        self.sampler.load_state_dict({**self.sampler.state_dict(), "epoch": state["epoch"],
                                      "samples": state["rows"] // self.world_size})

    def open(self, micro: int, workers: int, pin_memory: bool, prefetch: int | None) -> None:
        if self._loader is None:
            ahead = {"prefetch_factor": prefetch} if workers else {}
            self._loader = DataLoader(self.dataset, batch_size=micro, sampler=self.sampler, num_workers=workers,
                                      pin_memory=pin_memory, collate_fn=PackedDataset.collate,
                                      persistent_workers=workers > 0, **ahead)

    def close(self) -> None:
        """Its workers exit (the other stage trains now)."""
        self._loader = self._batches = None

    def step(self, per_rank: int, micro: int) -> list[dict]:
        """One step's micro-batches of this process; a new epoch when this one cannot fill the step."""
        if self.sampler.num_samples - self.position() < per_rank:
            self.sampler.set_epoch(self.sampler.epoch + 1)
            self._batches = None
        if self._batches is None:
            self._batches, self.seen = iter(self._loader), 0
        batches = [next(self._batches) for _ in range(per_rank // micro)]
        self.seen += per_rank
        return batches
