"""Cluster Contrast's pseudo-labels: k-reciprocal Jaccard distances (Zhong et al., CVPR 2017), sparse, and DBSCAN.

The distance is the one Cluster Contrast's ``compute_jaccard_distance`` computes, step for step: exact k1 nearest
neighbours (the sample itself included), k-reciprocal sets R(i) = R(i, k1) and H(i) = R(i, round(k1 / 2)) read
from those k1 columns only, the expansion by every H(c), c in R(i), with more than 2/3 of it inside R(i), softmax
weights of -|x_i - x_j|^2 over the expansion, the mean over the k2 nearest rows (skipped when k2 == 1) and
``1 - m / (2 - m)`` with m(i, j) = sum_k min(V[i, k], V[j, k]), clipped at 0.

Nothing N x N is held: FAISS's exact inner-product search gives the neighbours, the sets are sparse boolean
matrices (R(i) is the pattern of A * A^T for the neighbour graph A, |H(c) & R(i)| an entry of R @ H^T), V is
sparse, and the min-sums are a join of each row's nonzeros with the column lists of V, summed as COO -> CSR in
row chunks. Pairs that share no column of V (m = 0, distance 1) are the only ones left out of the result; for
DBSCAN only the pairs within eps are kept, chunk by chunk, which gives the same neighbourhoods in far less memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy import sparse

from reid_sdk._utils.optional import require

__all__ = ["dbscan_jaccard_labels", "jaccard_distance"]

OVERLAP_ROWS = 4096  # rows of R @ H^T formed at once
GATHERED_VALUES = 1 << 23  # feature values gathered at once for the weights' dot products (32 MiB of float32)
JOINED_TRIPLETS = 1 << 21  # (i, j, min) triplets of the min-sum join formed at once (~150 MiB of temporaries)


def jaccard_distance(features: Any, k1: int = 30, k2: int = 6, max_distance: float | None = None) -> sparse.csr_matrix:
    """(N, N) float32 CSR of k-reciprocal Jaccard distances; every pair with distance < 1 is stored.

    ``features``: (N, d) numpy array or torch tensor (any device), rows L2-normalised here. Absent entries mean
    distance 1 (scipy reads them as 0: use the stored pattern, as DBSCAN does); stored ones may be explicit
    zeros (a sample to itself, duplicates). With N <= k1, k1 and k2 are clipped to N (the reference would index
    FAISS's -1 padding). ``max_distance`` keeps only the pairs at most that far (DBSCAN needs no pair beyond
    eps), so the result and the peak memory shrink; the stored values are the same.
    """
    if max_distance is not None and not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0 or None, got {max_distance}")
    unit = _unit_rows(features)
    k1, k2 = _neighbour_counts(k1, k2, len(unit))
    nearest = _nearest_neighbours(unit, k1)
    full = _reciprocal_sets(nearest, k1)
    half = _reciprocal_sets(nearest, min(int(np.around(k1 / 2)) + 1, k1))
    weights = _softmax_weights(unit, _expansion(full, half))
    if k2 != 1:
        weights = _query_expansion(weights, nearest[:, :k2])
    return _distances(weights, max_distance)


def dbscan_jaccard_labels(features: Any, eps: float = 0.6, min_samples: int = 4, k1: int = 30,
                          k2: int = 6) -> np.ndarray:
    """(N,) int64 pseudo-labels: scikit-learn DBSCAN on :func:`jaccard_distance`, -1 for outliers.

    Clusters are numbered 0..C-1 in scikit-learn's order (by their lowest-index core sample). ``eps`` must lie
    in (0, 1): at 1 or above every pair, stored or not, would be within reach. DBSCAN gets only the pairs within
    eps (its neighbourhoods), so the partition is the one it gives on the dense matrix.

    Example:
        ```python
        features = extract(train_images)  # (N, d) numpy array or torch tensor, one row per image
        labels = dbscan_jaccard_labels(features, eps=0.6, min_samples=4, k1=30, k2=6)
        num_clusters = int(labels.max()) + 1  # samples labelled -1 are left out of this epoch's training
        distance = jaccard_distance(features, k1=30, k2=6)  # (N, N) CSR of every pair closer than 1
        ```
    """
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1) for Jaccard distances, got {eps}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
        raise ValueError(f"min_samples must be a positive int, got {min_samples!r}")
    distance = jaccard_distance(features, k1=k1, k2=k2, max_distance=eps)
    cluster = require("sklearn.cluster", "train")
    labels = cluster.DBSCAN(eps=eps, min_samples=int(min_samples), metric="precomputed").fit_predict(distance)
    return labels.astype(np.int64)


def _unit_rows(features: Any) -> np.ndarray:
    """(N, d) float32 rows of unit length; refuses what cannot be normalised or is too small to cluster."""
    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(features, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"features must be (N, d), got shape {array.shape}")
    if len(array) < 2:
        raise ValueError(f"features need at least 2 rows, got {len(array)}")
    norms = np.sqrt(np.einsum("nd,nd->n", array, array, dtype=np.float64))[:, None]  # float64: cannot overflow
    if not np.isfinite(norms).all():
        raise ValueError("features contain NaN or inf (after conversion to float32)")
    zero_rows = np.flatnonzero(norms[:, 0] == 0)
    if len(zero_rows):
        raise ValueError(f"feature row {zero_rows[0]} is all zeros and cannot be L2-normalised")
    return np.ascontiguousarray(array / norms.astype(np.float32))


def _neighbour_counts(k1: int, k2: int, num_samples: int) -> tuple[int, int]:
    """k1 and k2 checked and clipped to the number of samples."""
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return min(int(k1), num_samples), min(int(k2), num_samples)


def _nearest_neighbours(unit: np.ndarray, k1: int) -> np.ndarray:
    """(N, k1) int64: each row's k1 largest inner products by exact search, largest first (normally itself)."""
    faiss = require("faiss", "cpu", "gpu")
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, nearest = index.search(unit, k1)
    return nearest.astype(np.int64)


def _reciprocal_sets(nearest: np.ndarray, columns: int) -> sparse.csr_matrix:
    """Boolean R with R[i, j] when j is among the first ``columns`` neighbours of i and i among those of j."""
    num_samples = len(nearest)
    graph = sparse.csr_matrix(
        (np.ones(num_samples * columns, dtype=bool), nearest[:, :columns].ravel(),
         np.arange(0, num_samples * columns + 1, columns)), shape=(num_samples, num_samples))
    return graph.multiply(graph.T).tocsr()


def _expansion(full: sparse.csr_matrix, half: sparse.csr_matrix) -> sparse.csr_matrix:
    """Boolean E: R(i) joined by every H(c), c in R(i), of which more than 2/3 lies in R(i)."""
    full_counts, half_counts = full.astype(np.int32), half.astype(np.int32)
    half_transposed = half_counts.T.tocsr()
    half_sizes = np.diff(half.indptr)
    accepted_parts = []
    for rows in _row_ranges(len(half_sizes), OVERLAP_ROWS):
        candidates = full_counts[rows]
        shared = (candidates @ half_transposed).multiply(candidates).tocsr()  # |H(c) & R(i)| for c in R(i)
        shared.data = 3 * shared.data > 2 * half_sizes[shared.indices]  # integer form of shared > 2/3 |H(c)|
        accepted_parts.append(shared)
    accepted = sparse.vstack(accepted_parts, format="csr")
    accepted.eliminate_zeros()
    return (full_counts + accepted.astype(np.int32) @ half_counts).astype(bool).tocsr()


def _softmax_weights(unit: np.ndarray, pattern: sparse.csr_matrix) -> sparse.csr_matrix:
    """V on E's pattern: per row, softmax over E(i) of -(2 - 2 x_i . x_j), in float64."""
    rows = np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))
    similarity = np.empty(pattern.nnz, dtype=np.float64)
    step = max(1, GATHERED_VALUES // unit.shape[1])
    for start in range(0, pattern.nnz, step):
        part = slice(start, start + step)
        similarity[part] = np.einsum("nd,nd->n", unit[rows[part]], unit[pattern.indices[part]])
    exponentials = np.exp(2.0 * similarity - 2.0)  # in [e^-4, 1]: no shift needed
    row_sums = np.bincount(rows, weights=exponentials, minlength=pattern.shape[0])
    return sparse.csr_matrix((exponentials / row_sums[rows], pattern.indices, pattern.indptr), shape=pattern.shape)


def _query_expansion(weights: sparse.csr_matrix, nearest: np.ndarray) -> sparse.csr_matrix:
    """Each row of V replaced by the mean of the rows of its given nearest neighbours."""
    num_samples, count = nearest.shape
    averaging = sparse.csr_matrix(
        (np.full(num_samples * count, 1.0 / count), nearest.ravel(), np.arange(0, num_samples * count + 1, count)),
        shape=(num_samples, num_samples))
    return (averaging @ weights).tocsr()


def _distances(weights: sparse.csr_matrix, max_distance: float | None) -> sparse.csr_matrix:
    """float32 CSR of 1 - m / (2 - m), clipped at 0, for the pairs with m(i, j) = sum_k min(V[i, k], V[j, k]) > 0
    (those sharing a column of V) and, with ``max_distance``, a distance at most that."""
    by_column = weights.tocsc()
    column_sizes = np.diff(by_column.indptr)
    row_sizes = np.diff(weights.indptr)
    row_work = np.bincount(np.repeat(np.arange(len(row_sizes)), row_sizes), weights=column_sizes[weights.indices],
                           minlength=len(row_sizes))
    index_dtype = np.int32 if min(row_work.sum(), len(row_work) * weights.shape[1]) < 2**31 else np.int64
    result = _GrowingRows(weights.shape[1], index_dtype)
    for rows in _work_ranges(row_work, JOINED_TRIPLETS):
        entries = slice(weights.indptr[rows.start], weights.indptr[rows.stop])
        columns, values = weights.indices[entries], weights.data[entries]
        starts, lengths = by_column.indptr[columns], column_sizes[columns]
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        pairs = (np.repeat(np.repeat(np.arange(rows.stop - rows.start), row_sizes[rows]), lengths),
                 by_column.indices[positions])
        minima = np.minimum(np.repeat(values, lengths), by_column.data[positions])
        block = sparse.coo_matrix((minima, pairs), shape=(rows.stop - rows.start, weights.shape[1])).tocsr()
        block.data = np.maximum(1.0 - block.data / (2.0 - block.data), 0.0)  # m > 0 here: zeros stay stored
        block = block.astype(np.float32)
        result.append(block if max_distance is None else _kept(block, block.data <= max_distance))
    return result.matrix()


def _kept(matrix: sparse.csr_matrix, keep: np.ndarray) -> sparse.csr_matrix:
    """The stored entries of ``matrix`` where ``keep`` holds (explicit zeros included, unlike eliminate_zeros)."""
    indptr = np.concatenate(([0], np.cumsum(keep)))[matrix.indptr]
    return sparse.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


class _GrowingRows:
    """CSR rows appended block by block into arrays grown in place (numpy's resize reallocates, and large blocks of
    memory are remapped rather than copied), so the blocks are never held beside the result: ``sparse.vstack``
    of a list would hold both, and freed blocks do not always return their memory to the system."""

    def __init__(self, num_columns: int, index_dtype: type) -> None:
        self.num_columns, self.size = num_columns, 0
        self.data = np.empty(0, dtype=np.float32)
        self.indices = np.empty(0, dtype=index_dtype)
        self.indptr = [np.zeros(1, dtype=index_dtype)]

    def append(self, block: sparse.csr_matrix) -> None:
        end = self.size + block.nnz
        if end > len(self.data):
            capacity = max(end, int(1.5 * len(self.data)))  # untouched capacity is never resident
            self.data.resize(capacity, refcheck=False)
            self.indices.resize(capacity, refcheck=False)
        self.data[self.size : end], self.indices[self.size : end] = block.data, block.indices
        self.indptr.append(block.indptr[1:].astype(self.indices.dtype) + self.size)
        self.size = end

    def matrix(self) -> sparse.csr_matrix:
        self.data.resize(self.size, refcheck=False)
        self.indices.resize(self.size, refcheck=False)
        indptr = np.concatenate(self.indptr)
        return sparse.csr_matrix((self.data, self.indices, indptr), shape=(len(indptr) - 1, self.num_columns))


def _row_ranges(num_rows: int, size: int) -> Iterator[slice]:
    """Consecutive ranges of ``size`` rows (the last one shorter)."""
    for start in range(0, num_rows, size):
        yield slice(start, min(start + size, num_rows))


def _work_ranges(row_work: np.ndarray, budget: int) -> Iterator[slice]:
    """Consecutive row ranges whose summed work stays within ``budget`` (at least one row each)."""
    ends = np.cumsum(row_work)
    start = 0
    while start < len(row_work):
        done = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, done + budget, side="right")), start + 1)
        yield slice(start, stop)
        start = stop
