"""The exact distance work: fp32 Gram panels reduced to per-cluster-pair statistics, and CPD.

For unit vectors d(a, b) = sqrt(max(0, 2 - 2 <a, b>)). That map is monotone, so the min / max distance
over a cluster pair is the map of the max / min Gram entry: min and max linkages never take a square root
per sample pair, only per cluster pair. Sums (CPD, average) take it per sample pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from .cluster_order import ClusterLayout, Panel, Run
from .linkage import ClusterSide, Linkage, PairStatistics

Reduction = Callable[..., torch.Tensor]

# Elements of one batched within-cluster Gram in `layout_compactness`; fixed so CPD never depends on block_size.
_COMPACTNESS_BATCH_ELEMENTS = 1 << 22


def gram_to_distance(gram: torch.Tensor) -> torch.Tensor:
    """Euclidean distances of unit vectors from their inner products, as a new tensor."""
    return gram.mul(-2.0).add_(2.0).clamp_(min=0.0).sqrt_()


@contextmanager
def matmul_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Run fp32 matmuls on ``device`` at ``precision``, then restore the caller's setting.

    "ieee" is true fp32 (no TF32 on CUDA, no bf16 inside oneDNN on CPU); the others trade exactness for speed.
    """
    backend = torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
    saved = backend.fp32_precision
    try:
        backend.fp32_precision = precision
        yield
    finally:
        backend.fp32_precision = saved


def reduce_runs(values: torch.Tensor, runs: list[Run], dim: int, reduction: Reduction) -> torch.Tensor:
    """Reduce ``values`` along ``dim`` over each cluster's consecutive entries (one slice per run)."""
    if all(run.size == 1 for run in runs):
        return values
    parts, offset = [], 0
    for run in runs:
        part = values.narrow(dim, offset, run.size * run.count)
        offset += run.size * run.count
        if run.size > 1:
            shape = (*part.shape[:dim], run.count, run.size, *part.shape[dim + 1 :])
            part = reduction(part.reshape(shape), dim=dim + 1)
        parts.append(part)
    return torch.cat(parts, dim=dim)


def reduce_blocks(values: torch.Tensor, rows: list[Run], cols: list[Run], reduction: Reduction) -> torch.Tensor:
    """(row samples, column samples) -> (row clusters, column clusters) with one reduction per cluster pair."""
    return reduce_runs(reduce_runs(values, rows, 0, reduction), cols, 1, reduction)


def pair_statistics(gram: torch.Tensor, rows: list[Run], cols: list[Run], linkage: Linkage) -> PairStatistics:
    """The reductions ``linkage`` needs, from one Gram block."""
    min_distance = max_distance = sum_distance = None
    if linkage.uses_min:
        largest = reduce_blocks(gram, rows, cols, torch.amax)
        min_distance = gram_to_distance(largest)
    if linkage.uses_max:
        smallest = reduce_blocks(gram, rows, cols, torch.amin)
        same = linkage.uses_min and smallest is largest  # all singletons: min = max
        max_distance = min_distance if same else gram_to_distance(smallest)
    if linkage.uses_sum:
        sum_distance = reduce_blocks(gram_to_distance(gram), rows, cols, torch.sum)
    return PairStatistics(min_distance, max_distance, sum_distance)


def layout_compactness(features: torch.Tensor, layout: ClusterLayout) -> torch.Tensor:
    """CPD(A) = (1/|A|) * sum over ordered pairs i != j in A of d(x_i, x_j), per cluster in working order.

    ``features`` are unit rows in working order. Only within-cluster Gram entries are computed: one batched
    product per run of equal-sized clusters (singletons are 0 by definition).
    """
    compactness = torch.zeros(layout.num_clusters, dtype=features.dtype, device=features.device)
    position = 0
    for run in layout.runs(0, layout.num_clusters):
        if run.size > 1:
            start = int(layout.offsets[position])
            members = features[start : start + run.size * run.count].view(run.count, run.size, -1)
            compactness[position : position + run.count] = _within_sums(members) / run.size
        position += run.count
    return compactness


def _within_sums(members: torch.Tensor) -> torch.Tensor:
    """Sum of d over ordered pairs i != j inside each of ``members`` (clusters, size, d), in bounded batches."""
    count, size, _ = members.shape
    clusters_per_batch = max(1, _COMPACTNESS_BATCH_ELEMENTS // (size * size))
    rows_per_batch = size if size * size <= _COMPACTNESS_BATCH_ELEMENTS else max(1, _COMPACTNESS_BATCH_ELEMENTS // size)
    sums = []
    for first in range(0, count, clusters_per_batch):
        batch = members[first : first + clusters_per_batch]
        total = torch.zeros(len(batch), dtype=members.dtype, device=members.device)
        for row in range(0, size, rows_per_batch):
            distances = gram_to_distance(torch.bmm(batch[:, row : row + rows_per_batch], batch.transpose(1, 2)))
            torch.diagonal(distances, offset=row, dim1=1, dim2=2).zero_()  # d(x_i, x_i) = 0 exactly
            total += distances.sum(dim=(1, 2))
        sums.append(total)
    return torch.cat(sums)


def panel_distances(
    features: torch.Tensor,
    layout: ClusterLayout,
    linkage: Linkage,
    block_size: int,
    compactness: torch.Tensor | None,
) -> Iterator[tuple[Panel, torch.Tensor]]:
    """For each panel P, D between P's clusters (rows) and clusters P.. end (columns), in working order.

    Each unordered cluster pair appears exactly once: pairs inside P only above the diagonal, the other
    entries of P's own square are +inf. One Gram product per panel covers its columns to the end (the
    symmetric lower half is never computed).
    """
    sizes = torch.as_tensor(layout.sizes, dtype=features.dtype, device=features.device)
    columns_to_end = layout.num_clusters
    for panel in layout.panels(block_size):
        rows = slice(panel.cluster_start, panel.cluster_stop)
        cols = slice(panel.cluster_start, columns_to_end)
        gram = features[panel.sample_start : panel.sample_stop] @ features[panel.sample_start :].T
        stats = pair_statistics(
            gram, layout.runs(rows.start, rows.stop), layout.runs(cols.start, cols.stop), linkage
        )
        del gram
        distances = linkage.combine(stats, _side(sizes, compactness, rows), _side(sizes, compactness, cols))
        width = panel.cluster_stop - panel.cluster_start
        position = torch.arange(width, device=features.device)
        distances[:, :width].masked_fill_(position[:, None] >= position[None, :], float("inf"))
        yield panel, distances


def _side(sizes: torch.Tensor, compactness: torch.Tensor | None, clusters: slice) -> ClusterSide:
    return ClusterSide(sizes[clusters], None if compactness is None else compactness[clusters])
