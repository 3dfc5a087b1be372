"""Public entry points: one merge stage, the dense cluster distance matrix, and per-cluster CPD."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy.cluster.hierarchy import DisjointSet

from . import kernel
from .constraints import CannotLink
from .inputs import check_block_size, check_matmul_precision, check_num_merges, labels_like, prepare_inputs
from .cluster_order import ClusterLayout
from .linkage import Linkage
from .selection import CandidatePool, contiguous_labels, walk_merges

_DEFAULT_BLOCK_SIZE = {"cpu": 1024, "cuda": 4096}
logger = logging.getLogger(__name__)


def merge_stage(
    features: Any,
    labels: Any,
    num_merges: int,
    linkage: str = "imd_cpd",
    lam: float = 0.3,
    lam_buc: float = 0.005,
    device: str | torch.device | None = None,
    block_size: int | None = None,
    matmul_precision: str = "ieee",
    cannot_link: CannotLink | None = None,
    max_distance: float | None = None,
) -> Any:
    """One merge stage: the ``num_merges`` closest cluster pairs under ``linkage``, joined with a union-find.

    ``features`` (N, d) and ``labels`` (N,) in 0..C-1, numpy or torch. Features are L2-normalised here
    (fp32), so d is the Euclidean distance between unit vectors. Pairs are walked in ascending D, ties by
    the smaller (A, B) label pair, skipping pairs already joined, until exactly min(num_merges, C - 1)
    merges; D is computed once, before the walk. Returns labels 0..C'-1 of the same kind (numpy array or
    tensor, dtype and device kept), the groups numbered in the order of their smallest old label.

    ``device`` (default: the features' own) runs the work; ``block_size`` is the samples per panel (default
    1024 on CPU, 4096 on CUDA; only speed and memory depend on it). ``matmul_precision`` "ieee" keeps the
    Gram products true fp32 (TF32 off on CUDA) and the result exact; "tf32" / "bf16" (CPU) are faster
    approximations that can change which pairs merge.

    ``cannot_link`` (sample pairs that must stay apart, e.g. tracks one camera saw at overlapping times): a pair
    is skipped when joining its groups would put such a pair in one cluster; the walk then makes exactly
    min(num_merges, C - 1) merges, or fewer when it has looked at every pair, and then no two clusters left may
    be joined (a constraint between two groups holds for whatever contains them). Without one (or with no pair
    across clusters) the result is the unconstrained walk's, unchanged.
    """
    rule = Linkage(linkage, lam, lam_buc)
    num_merges = check_num_merges(num_merges)
    job = _DistanceJob(features, labels, rule, device, block_size, matmul_precision)
    target = min(num_merges, job.data.num_clusters - 1)
    if target == 0:
        return labels_like(job.data.labels, labels)  # already contiguous; nothing merges
    apart = cannot_link.cluster_pairs(job.data.labels) if cannot_link is not None else None
    cluster_labels = contiguous_labels(job.merge_groups(target, apart, max_distance), job.data.num_clusters)
    merged = job.data.num_clusters - int(cluster_labels.max()) - 1
    if merged < target and max_distance is None:
        logger.info("cannot-link: %d of %d merges made; every other pair of clusters holds two samples that must "
                    "stay apart", merged, target)
    return labels_like(cluster_labels[job.data.labels], labels)


def cluster_distance_matrix(
    features: Any,
    labels: Any,
    linkage: str = "imd_cpd",
    lam: float = 0.3,
    lam_buc: float = 0.005,
    device: str | torch.device | None = None,
    block_size: int | None = None,
    matmul_precision: str = "ieee",
) -> torch.Tensor:
    """Dense (C, C) float32 tensor of D(A, B) with +inf on the diagonal: for small C, tests and inspection.

    The values are the ones :func:`merge_stage` walks (same arithmetic, same ``block_size``).
    """
    job = _DistanceJob(features, labels, Linkage(linkage, lam, lam_buc), device, block_size, matmul_precision)
    size = job.data.num_clusters
    matrix = torch.full((size, size), float("inf"), device=job.device)
    for rows, cols, distances in job.blocks():
        matrix[rows[:, None], cols[None, :]] = distances
    return torch.minimum(matrix, matrix.T)  # each pair was written once, on one side of the diagonal


def cluster_compactness(features: Any, labels: Any, device: str | torch.device | None = None) -> torch.Tensor:
    """CPD of every cluster, (C,) float32: (1/|A|) * sum over ordered pairs i != j in A of d(x_i, x_j)."""
    job = _DistanceJob(features, labels, Linkage("imd_cpd"), device, None, "ieee")
    return job.compactness[torch.as_tensor(job.layout.position, device=job.device)]


class _DistanceJob:
    """Checked inputs in working order plus the linkage settings; yields the D blocks of one stage."""

    def __init__(
        self, features: Any, labels: Any, rule: Linkage, device: Any, block_size: Any, precision: str
    ) -> None:
        block_size = check_block_size(block_size)
        self.data = prepare_inputs(features, labels, device)
        self.device = self.data.features.device
        self.precision = check_matmul_precision(precision, self.device)
        self.block_size = block_size or _DEFAULT_BLOCK_SIZE.get(self.device.type, 1024)
        self.rule = rule
        self.layout = ClusterLayout(self.data.labels, self.data.num_clusters)
        self.features = self.data.features[torch.as_tensor(self.layout.sample_order, device=self.device)]
        self.cluster_ids = torch.as_tensor(self.layout.cluster_ids, device=self.device)
        self.compactness = self._compactness() if rule.uses_compactness else None

    def blocks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(row labels, column labels, D block) covering every unordered cluster pair exactly once."""
        with kernel.matmul_precision(self.precision, self.device):
            panels = kernel.panel_distances(self.features, self.layout, self.rule, self.block_size, self.compactness)
            for panel, distances in panels:
                rows = self.cluster_ids[panel.cluster_start : panel.cluster_stop]
                yield rows, self.cluster_ids[panel.cluster_start :], distances

    def merge_groups(self, target: int, apart: np.ndarray | None = None,
                     max_distance: float | None = None) -> DisjointSet:
        """Walk the closest pairs until ``target`` merges; if skipped pairs use up the candidates, fetch more.

        ``apart``: cluster pairs that must stay apart (each may cost a skipped candidate, so room is made for
        them). ``max_distance``: only pairs with D <= it are walked. Fewer than ``target`` merges only when the
        pool held every pair that may be walked."""
        capacity = _initial_capacity(target) + (0 if apart is None else len(apart))
        while True:
            pool = CandidatePool(capacity, self.data.num_clusters)
            for rows, cols, distances in self.blocks():
                pool.offer(distances, rows, cols)
            distances, first, second = pool.sorted_pairs()
            complete = not pool.truncated  # the pool holds every pair that may be walked
            if max_distance is not None:
                within = int(np.searchsorted(distances, max_distance, side="right"))
                complete = complete or within < len(distances)  # it reaches past the threshold
                first, second = first[:within], second[:within]
            groups, merges = walk_merges(first, second, target, apart)
            if merges == target or complete:
                return groups
            capacity *= 4  # the same D values again, more of the sorted list kept

    def _compactness(self) -> torch.Tensor:
        with kernel.matmul_precision("ieee", self.device):
            return kernel.layout_compactness(self.features, self.layout)


def _initial_capacity(target: int) -> int:
    """Candidates kept at first: room for the merges plus as many pairs skipped as already joined."""
    return 2 * target + 256
