"""The training samplers: every sample once per epoch (Algorithm 1), or P x K batches (the re-clustering schedule).

Both pair each index with a seed for the sample's random draws and come from the epoch's seed alone, so the order
and the augmentation are the same whatever the number of loader workers, and a resumed run repeats an
uninterrupted one; under ``torchrun`` each rank takes every ``world_size``-th entry of the same global order.
For P x K batches, Cluster Contrast draws P pseudo-identities and K of their crops per batch, so every batch holds
positives for each sample; CAP draws P *proxies* (cluster, camera) and K crops of each, so cameras with few crops of a person
are trained as often as the rest ("proxy-balanced sampling"). Both are this sampler with other groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class SeededSampler(Sampler):
    """What both samplers share: this rank's place in the world and the epoch's seed (:meth:`set_seed`)."""

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.rank = rank
        self.world_size = world_size
        self.seed = 0

    def set_seed(self, seed: int) -> None:
        self.seed = seed


class EpochSampler(SeededSampler):
    """A fresh permutation of the samples every epoch (Algorithm 1), each index paired with a seed for its random
    draws; each rank takes every ``world_size``-th entry of the same (padded) permutation."""

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(rank, world_size)
        self.num_samples = num_samples

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.num_samples, generator=generator)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
        padded = len(self) * self.world_size
        if padded > self.num_samples:  # every rank gets as many batches: repeat the first few samples
            order, seeds = torch.cat([order, order[: padded - self.num_samples]]), torch.cat(
                [seeds, seeds[: padded - self.num_samples]])
        return iter(zip(order[self.rank :: self.world_size].tolist(), seeds[self.rank :: self.world_size].tolist()))


class GroupBatchSampler(SeededSampler):
    """A fixed number of batches of P groups x K members, each index paired with a seed for its random draws.

    ``groups`` holds each sample's group, -1 for samples left out (outliers). A batch draws P distinct groups
    uniformly (all of them when there are fewer) and K members of each, without replacement where the group has
    K, else with. Each rank takes every ``world_size``-th entry of the same global batch of ``groups_per_batch``
    x ``instances``.

    Example:
        ```python
        sampler = GroupBatchSampler(labels, groups_per_batch=8, instances=4, batches=40)
        loader = DataLoader(dataset, batch_sampler=sampler)  # dataset items asked as (index, seed)
        ```
    """

    def __init__(self, groups: np.ndarray, groups_per_batch: int, instances: int, batches: int, rank: int = 0,
                 world_size: int = 1) -> None:
        groups = np.asarray(groups, dtype=np.int64)
        if groups.ndim != 1 or not (groups >= 0).any():
            raise ValueError("need a 1-D array of groups with at least one sample in a group (>= 0)")
        if groups_per_batch < 1 or instances < 1 or batches < 1:
            raise ValueError("groups_per_batch, instances and batches must be >= 1")
        super().__init__(rank, world_size)
        kept = np.flatnonzero(groups >= 0)
        order = kept[np.argsort(groups[kept], kind="stable")]
        self.group_ids, starts = np.unique(groups[order], return_index=True)
        self.members = np.split(order, starts[1:])
        self.groups_per_batch = groups_per_batch
        self.instances = instances
        self.batches = batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng(self.seed)
        count = min(self.groups_per_batch, len(self.members))
        for _ in range(self.batches):
            chosen = rng.choice(len(self.members), size=count, replace=False)
            indices = np.concatenate([
                rng.choice(self.members[group], size=self.instances, replace=len(self.members[group]) < self.instances)
                for group in chosen])
            seeds = rng.integers(0, 2**62, size=len(indices))
            yield list(zip(indices[self.rank :: self.world_size].tolist(), seeds[self.rank :: self.world_size].tolist()))
