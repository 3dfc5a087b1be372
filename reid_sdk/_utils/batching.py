"""Consecutive items grouped into batches by a size of each (crops of a track, images of a shard)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batches_by_size(items: Iterable[T], limit: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """Lists of consecutive ``items`` closed as soon as their sizes add up to ``limit`` or more (the last may be
    smaller); an item is never split, so a batch exceeds ``limit`` by less than its last item's size.

    >>> list(batches_by_size([3, 1, 2, 5, 1], 4, lambda n: n))
    [[3, 1], [2, 5], [1]]
    """
    if limit < 1:
        raise ValueError(f"a batch limit must be >= 1, got {limit}")
    batch: list[T] = []
    total = 0
    for item in items:
        batch.append(item)
        total += size(item)
        if total >= limit:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch
