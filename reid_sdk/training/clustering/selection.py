"""Global merge selection: the K smallest cluster pairs in a strict order, and the union-find walk over them.

Pairs are ordered by (D, a, b) with a < b the original labels: ties in D go to the smaller index pair. The
walk over the K smallest pairs is the walk over the fully sorted pair list, cut after K entries, so when it
completes its merges inside them the result is exactly the full walk's; when it does not, the caller asks
again with a larger K.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.hierarchy import DisjointSet


class CandidatePool:
    """The ``capacity`` smallest cluster pairs among all pairs offered, in the order (D, a, b)."""

    def __init__(self, capacity: int, num_clusters: int) -> None:
        self.capacity = capacity
        self.num_clusters = num_clusters
        self.truncated = False  # whether some offered pair was dropped
        self._threshold = float("inf")  # D of the capacity-th pair once the pool is full
        self._values: list[torch.Tensor] = []
        self._keys: list[torch.Tensor] = []
        self._size = 0

    def offer(self, distances: torch.Tensor, row_ids: torch.Tensor, col_ids: torch.Tensor) -> None:
        """Consider every pair (row_ids[i], col_ids[j]) at D = distances[i, j]; +inf entries are not pairs."""
        rows = torch.nonzero(self._admits(distances.amin(dim=1))).flatten()  # rows holding any candidate
        if rows.numel() == 0:
            return
        block = distances if rows.numel() == len(distances) else distances[rows]
        selected = self._admits(block)
        if int(selected.sum()) > self.capacity:  # keep only this block's own K smallest (ties included)
            selected &= block <= _kth_smallest(block[selected], self.capacity)
            self.truncated = True
        block_rows, cols = torch.nonzero(selected, as_tuple=True)
        first, second = row_ids[rows[block_rows]], col_ids[cols]
        self._values.append(block[block_rows, cols])
        self._keys.append(torch.minimum(first, second) * self.num_clusters + torch.maximum(first, second))
        self._size += len(cols)
        if self._size > self.capacity:
            self._trim()

    def _admits(self, distances: torch.Tensor) -> torch.Tensor:
        """Entries that may still rank among the first ``capacity``: D <= threshold, never +inf."""
        if self._threshold == float("inf"):
            return distances < float("inf")
        return distances <= self._threshold

    def sorted_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(D, a, b) of the pool in ascending (D, a, b) order, as numpy arrays."""
        if not self._values:
            empty = np.empty(0, dtype=np.int64)
            return np.empty(0, dtype=np.float32), empty, empty
        values, keys = self._ordered()
        keys_np = keys.cpu().numpy()
        return values.cpu().numpy(), keys_np // self.num_clusters, keys_np % self.num_clusters

    def _ordered(self) -> tuple[torch.Tensor, torch.Tensor]:
        values, keys = torch.cat(self._values), torch.cat(self._keys)
        order = torch.argsort(keys)
        order = order[torch.argsort(values[order], stable=True)]
        return values[order], keys[order]

    def _trim(self) -> None:
        values, keys = torch.cat(self._values), torch.cat(self._keys)
        kth = _kth_smallest(values, self.capacity)
        near = values <= kth  # every pair that can rank among the first `capacity`, ties included
        self._values, self._keys = [values[near]], [keys[near]]
        values, keys = self._ordered()
        self._values, self._keys = [values[: self.capacity]], [keys[: self.capacity]]
        self._size = self.capacity
        self._threshold = float(kth)
        self.truncated = True


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest entry of a 1-D tensor (top-k selection: multi-block on CUDA, unlike kthvalue)."""
    return torch.topk(values, k, largest=False, sorted=False).values.max()


def walk_merges(first: np.ndarray, second: np.ndarray, target: int,
                apart: np.ndarray | None = None) -> tuple[DisjointSet, int]:
    """Union the pairs in order, skipping pairs already joined, until ``target`` merges; returns (sets, merges).

    ``apart``: (Q, 2) cluster pairs that must never share a group (cannot-link); a pair is also skipped when its
    two groups hold such a pair. Without it (or with none) the walk is the plain one.
    """
    groups = DisjointSet()
    merges = 0
    conflicts = _conflicts(apart)  # group root -> roots of the groups it must stay apart from
    for a, b in zip(first.tolist(), second.tolist()):
        if merges == target:
            break
        groups.add(a)
        groups.add(b)
        if not conflicts:
            merges += groups.merge(a, b)
            continue
        root_a, root_b = groups[a], groups[b]
        if root_a == root_b or root_b in conflicts.get(root_a, ()):
            continue
        groups.merge(a, b)
        _join_conflicts(conflicts, root_a, root_b, groups[a])
        merges += 1
    return groups, merges


def _conflicts(apart: np.ndarray | None) -> dict[int, set[int]]:
    conflicts: dict[int, set[int]] = {}
    for a, b in ([] if apart is None else np.asarray(apart).tolist()):
        conflicts.setdefault(a, set()).add(b)
        conflicts.setdefault(b, set()).add(a)
    return conflicts


def _join_conflicts(conflicts: dict[int, set[int]], root_a: int, root_b: int, root: int) -> None:
    """Groups ``root_a`` and ``root_b`` became one, ``root``: it stays apart from every group either had to."""
    joined = conflicts.pop(root_a, set()) | conflicts.pop(root_b, set())
    if not joined:
        return
    for other in joined:
        partners = conflicts[other]
        partners.discard(root_a)
        partners.discard(root_b)
        partners.add(root)
    conflicts[root] = joined


def contiguous_labels(groups: DisjointSet, num_clusters: int) -> np.ndarray:
    """New label of each old cluster: groups numbered 0..C'-1 in the order of their smallest old label."""
    smallest = np.arange(num_clusters)
    for members in groups.subsets():
        indices = np.fromiter(members, dtype=np.int64, count=len(members))
        smallest[indices] = indices.min()
    return np.unique(smallest, return_inverse=True)[1]
