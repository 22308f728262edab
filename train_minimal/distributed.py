"""One process per device under torchrun (DDP); a plain single process otherwise.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 the process group is NCCL on CUDA and gloo on
the CPU (the CPU path is what the tests run with two processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, name: str) -> torch.device:
        """The device this process trains on: under torchrun, its LOCAL_RANK GPU; alone, the one named."""
        device = torch.device(name)
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over ranks (the tensor itself in one process)."""
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init(device_kind: str) -> World:
    """The world this process belongs to; joins the process group when torchrun started several."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")),
                  int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))
    if not dist.is_initialized():
        cuda = torch.device(device_kind).type == "cuda"
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return world


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
