"""Public entry points: one merge stage, the dense cluster distance matrix, and per-cluster CPD."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import kernel
from .inputs import (
    ClusteringInput,
    check_block_size,
    check_matmul_precision,
    check_num_merges,
    labels_like,
    prepare_inputs,
)
from .layout import ClusterLayout
from .linkage import Linkage
from .selection import CandidatePool, contiguous_labels, walk_merges

_DEFAULT_BLOCK_SIZE = {"cpu": 1024, "cuda": 4096}


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
    """
    rule = Linkage(linkage, lam, lam_buc)
    num_merges = check_num_merges(num_merges)
    data, block_size, precision = _prepare(features, labels, device, block_size, matmul_precision)
    target = min(num_merges, data.num_clusters - 1)
    if target == 0:
        return labels_like(data.labels, labels)  # already contiguous; nothing merges
    groups = _merge_groups(data, rule, block_size, precision, target)
    cluster_labels = contiguous_labels(groups, data.num_clusters)
    return labels_like(cluster_labels[data.labels], labels)


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
    rule = Linkage(linkage, lam, lam_buc)
    data, block_size, precision = _prepare(features, labels, device, block_size, matmul_precision)
    size = data.num_clusters
    matrix = torch.full((size, size), float("inf"), device=data.features.device)
    for rows, cols, distances in _cluster_distances(data, rule, block_size, precision):
        matrix[rows[:, None], cols[None, :]] = distances
    return torch.minimum(matrix, matrix.T)  # each pair was written once, on one side of the diagonal


def cluster_compactness(features: Any, labels: Any, device: str | torch.device | None = None) -> torch.Tensor:
    """CPD of every cluster, (C,) float32: (1/|A|) * sum over ordered pairs i != j in A of d(x_i, x_j)."""
    data = prepare_inputs(features, labels, device)
    layout = ClusterLayout(data.labels, data.num_clusters)
    working = data.features[torch.as_tensor(layout.sample_order, device=data.features.device)]
    with kernel.matmul_precision("ieee", data.features.device):
        compactness = kernel.cluster_compactness(working, layout)
    return compactness[torch.as_tensor(_inverse(layout.cluster_ids), device=compactness.device)]


def _prepare(
    features: Any, labels: Any, device: Any, block_size: Any, precision: str
) -> tuple[ClusteringInput, int, str]:
    block_size = check_block_size(block_size)
    data = prepare_inputs(features, labels, device)
    compute = data.features.device
    precision = check_matmul_precision(precision, compute)
    return data, block_size or _DEFAULT_BLOCK_SIZE.get(compute.type, 1024), precision


def _initial_capacity(target: int) -> int:
    """Candidates kept at first: room for the merges plus as many pairs skipped as already joined."""
    return 2 * target + 256


def _merge_groups(data: ClusteringInput, rule: Linkage, block_size: int, precision: str, target: int):
    """Walk the closest pairs until ``target`` merges; if skipped pairs use up the candidates, fetch more."""
    capacity = _initial_capacity(target)
    while True:
        pool = _closest_pairs(data, rule, block_size, precision, capacity)
        _, first, second = pool.sorted_pairs()
        groups, merges = walk_merges(first, second, target)
        if merges == target or not pool.truncated:
            return groups
        capacity *= 4  # same D values, recomputed; more of the sorted list kept


def _closest_pairs(
    data: ClusteringInput, rule: Linkage, block_size: int, precision: str, capacity: int
) -> CandidatePool:
    pool = CandidatePool(capacity, data.num_clusters)
    for rows, cols, distances in _cluster_distances(data, rule, block_size, precision):
        pool.offer(distances, rows, cols)
    return pool


def _cluster_distances(data: ClusteringInput, rule: Linkage, block_size: int, precision: str):
    """Yield (row labels, column labels, D block) covering every unordered cluster pair once."""
    device = data.features.device
    layout = ClusterLayout(data.labels, data.num_clusters)
    working = data.features[torch.as_tensor(layout.sample_order, device=device)]
    cluster_ids = torch.as_tensor(layout.cluster_ids, device=device)
    with kernel.matmul_precision(precision, device):
        compactness = kernel.cluster_compactness(working, layout) if rule.uses_compactness else None
        for panel, distances in kernel.panel_distances(working, layout, rule, block_size, compactness):
            rows = cluster_ids[panel.cluster_start : panel.cluster_stop]
            yield rows, cluster_ids[panel.cluster_start :], distances


def _inverse(permutation: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(len(permutation))
    return inverse
