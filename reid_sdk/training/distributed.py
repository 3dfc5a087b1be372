"""Data-parallel training with ``torchrun``: the process group, sharding and the collectives the trainer needs.

``torchrun --nproc_per_node=G reid-train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; one process per GPU
(or per CPU process with gloo) joins the group. Every rank trains on its share of each global batch (DDP
all-reduces the gradients); extraction is sharded in contiguous slices and all-gathered in sample order, so
every rank holds the same features; the merge runs on rank 0 and its labels are broadcast; rank 0 alone
writes. A single process (no WORLD_SIZE, or 1) takes none of these paths.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group: ``rank`` of ``world_size`` (1: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def from_environment(cls, use_cuda: bool) -> Distributed:
        """Join the group torchrun describes in the environment (NCCL on CUDA, gloo on CPU), or stay single."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        owns_group = not dist.is_initialized()
        if owns_group:
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns_group)

    def close(self) -> None:
        """Destroy the group this object created (a caller's own group is left alone), after a barrier.

        Call it once nothing (DDP included) holds the group: its worker threads then finish while Python
        is alive. Left to interpreter exit, a gloo worker can release a finished collective's tensors during
        finalisation and abort the process (SIGABRT) after a run that succeeded.
        """
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the rank that logs progress and writes the run directory."""
        return self.rank == 0

    def shard(self, count: int) -> slice:
        """This rank's contiguous slice of ``count`` items (the first ranks take one more when uneven)."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def gather_shards(self, local: torch.Tensor, count: int) -> torch.Tensor:
        """Every rank's :meth:`shard` rows of ``count``, concatenated in sample order, on every rank."""
        if not self.enabled:
            return local
        longest = -(-count // self.world_size)
        padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        sizes = [len(range(count)[Distributed(rank, self.world_size).shard(count)]) for rank in range(self.world_size)]
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    def gather_batch(self, local: torch.Tensor) -> torch.Tensor:
        """The global batch in the sampler's order: rank r's i-th item was the permutation's (i * W + r)-th."""
        if not self.enabled:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local.contiguous())
        return torch.stack(parts, dim=1).flatten(0, 1)

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank, as DDP gives them at each forward:
        after a stage every rank must extract with the very same network."""
        for buffer in module.buffers():
            self.broadcast(buffer)

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every rank (in place; returned for chaining)."""
        if self.enabled:
            dist.broadcast(tensor, src=0)
        return tensor
