"""Where each cluster's samples live in the engine's working order, and how clusters are cut into panels.

Clusters are ordered by (size, label) and samples grouped by cluster in that order, so every run of
equal-sized clusters is one contiguous slab: a per-cluster reduction over it is a reshape to
(clusters, size, ...) and one tensor reduction, with no Python loop over clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Run:
    """``count`` consecutive clusters of ``size`` samples each."""

    size: int
    count: int


@dataclass(frozen=True)
class Panel:
    """Consecutive clusters [cluster_start, cluster_stop) holding samples [sample_start, sample_stop)."""

    cluster_start: int
    cluster_stop: int
    sample_start: int
    sample_stop: int


class ClusterLayout:
    """Working order of clusters and samples for labels 0..C-1 (``labels`` an int64 array)."""

    def __init__(self, labels: np.ndarray, num_clusters: int) -> None:
        sizes = np.bincount(labels, minlength=num_clusters)
        self.num_clusters = num_clusters
        self.cluster_ids = np.argsort(sizes, kind="stable")  # working position -> original label
        self.sizes = sizes[self.cluster_ids]
        self.position = np.empty(num_clusters, dtype=np.int64)  # original label -> working position
        self.position[self.cluster_ids] = np.arange(num_clusters)
        self.sample_order = np.argsort(self.position[labels], kind="stable")  # working position -> sample
        self.offsets = np.concatenate(([0], np.cumsum(self.sizes)))  # first sample of each cluster

    def runs(self, start: int, stop: int) -> list[Run]:
        """Runs of equal-sized clusters among working positions [start, stop)."""
        sizes = self.sizes[start:stop]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(sizes)) + 1, [len(sizes)]))
        return [Run(int(sizes[lo]), int(hi - lo)) for lo, hi in zip(bounds[:-1], bounds[1:])]

    def panels(self, block_size: int) -> list[Panel]:
        """Cut the clusters into panels of about ``block_size`` samples; a cluster is never split."""
        window = self.offsets[:-1] // block_size
        starts = np.concatenate(([0], np.flatnonzero(np.diff(window)) + 1))
        stops = np.append(starts[1:], self.num_clusters)
        return [
            Panel(int(lo), int(hi), int(self.offsets[lo]), int(self.offsets[hi]))
            for lo, hi in zip(starts, stops)
        ]
