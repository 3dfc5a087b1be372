"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) and average query expansion, without torch.

:func:`re_rank` takes what the field's implementations take (torchreid, fast-reid): query x gallery, query x
query and gallery x gallery distances, and returns re-ranked query x gallery distances,
``(1 - lambda) * Jaccard + lambda * original``. Where the paper leaves details open it follows the authors'
released code, so numbers compare with published ones: distances are squared and each row divided by its
maximum; a probe is part of its own neighbourhood (k1 + 1 nearest); a candidate's round(k1 / 2)-reciprocal set
joins the expansion when MORE than 2/3 of it lies in the probe's k1-reciprocal set; V holds exp(-d) weights
normalised to sum 1, averaged over the k2 nearest neighbours (local query expansion), so the Jaccard distance is
``1 - sum min / (2 - sum min)``.

Apart from the inputs nothing N x N is allocated (N = queries + gallery): neighbour lists are N x (k1 + 1),
V is a sparse matrix (scipy.sparse), and distance rows are normalised block by block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from reid_sdk._utils.optional import require

__all__ = ["RerankConfig", "average_query_expansion", "re_rank", "reranked_distances"]

_BLOCK_ENTRIES = 1 << 22  # distance entries normalised at once (32 MiB of float64)


@dataclass(frozen=True)
class RerankConfig:
    """k-reciprocal re-ranking parameters (the paper's defaults) and, for gallery search, how many FAISS
    neighbours of each query are re-ranked (``candidates``; the k-reciprocal sets live within them)."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    candidates: int = 100

    def __post_init__(self) -> None:
        for name in ("k1", "k2", "candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"re-ranking {name} must be a positive int, got {value!r}")
        if not 0.0 <= self.lambda_value <= 1.0:
            raise ValueError(f"re-ranking lambda_value must be in [0, 1], got {self.lambda_value}")


def _matrix(value: np.ndarray, name: str, shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (array < 0).any():
        raise ValueError(f"{name} contains negative distances")
    return array


class _NormalisedRows:
    """Rows of the full (query + gallery) distance matrix, squared and divided by their maximum."""

    def __init__(self, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> None:
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.num_q = len(q_q)
        self.n = self.num_q + len(g_g)

    def block(self, start: int, stop: int) -> np.ndarray:
        parts = []
        if start < self.num_q:  # query rows: [q_q | q_g]
            rows = slice(start, min(stop, self.num_q))
            parts.append(np.hstack([self.q_q[rows], self.q_g[rows]]))
        if stop > self.num_q:  # gallery rows: [q_g^T | g_g]
            rows = slice(max(start, self.num_q) - self.num_q, stop - self.num_q)
            parts.append(np.hstack([self.q_g[:, rows].T, self.g_g[rows]]))
        squared = np.vstack(parts) ** 2
        return squared / np.maximum(squared.max(axis=1, keepdims=True), 1e-12)

    def blocks(self):
        step = max(1, _BLOCK_ENTRIES // self.n)
        for start in range(0, self.n, step):
            stop = min(start + step, self.n)
            yield start, stop, self.block(start, stop)


def _nearest(rows: _NormalisedRows, depth: int) -> np.ndarray:
    """(N, depth) indices of each row's nearest entries, nearest first (ties by index)."""
    nearest = np.empty((rows.n, depth), dtype=np.int64)
    for start, stop, block in rows.blocks():
        part = np.sort(np.argpartition(block, depth - 1, axis=1)[:, :depth], axis=1)
        order = np.argsort(np.take_along_axis(block, part, axis=1), axis=1, kind="stable")
        nearest[start:stop] = np.take_along_axis(part, order, axis=1)
    return nearest


def _reciprocal(nearest: np.ndarray, k: int) -> np.ndarray:
    """(N, k + 1) mask: entry j of row i's k + 1 nearest also has i among its k + 1 nearest."""
    forward = nearest[:, : k + 1]
    backward = nearest[forward, : k + 1]  # (N, k + 1, k + 1)
    return (backward == np.arange(len(nearest))[:, None, None]).any(axis=2)


def _weights(rows: _NormalisedRows, nearest: np.ndarray, k1: int) -> sparse.csr_matrix:
    """V: for each row, normalised exp(-d) over its expanded k-reciprocal set R*."""
    half = int(np.around(k1 / 2.0))
    full_mask = _reciprocal(nearest, k1)
    half_sets = nearest[:, : half + 1]
    half_mask = _reciprocal(nearest, half)
    half_sizes = half_mask.sum(axis=1)
    row_ids, col_ids, values = [], [], []
    for start, stop, block in rows.blocks():
        for i in range(start, stop):
            reciprocal = nearest[i, : k1 + 1][full_mask[i]]
            candidate_sets = half_sets[reciprocal]
            candidate_masks = half_mask[reciprocal]
            shared = (np.isin(candidate_sets, reciprocal) & candidate_masks).sum(axis=1)
            accepted = shared > 2.0 / 3.0 * half_sizes[reciprocal]
            expansion = np.unique(np.concatenate([reciprocal, candidate_sets[accepted][candidate_masks[accepted]]]))
            weight = np.exp(-block[i - start, expansion])
            row_ids.append(np.full(len(expansion), i))
            col_ids.append(expansion)
            values.append(weight / weight.sum())
    shape = (rows.n, rows.n)
    return sparse.csr_matrix((np.concatenate(values), (np.concatenate(row_ids), np.concatenate(col_ids))), shape)


def _local_expansion(weights: sparse.csr_matrix, nearest: np.ndarray, k2: int) -> sparse.csr_matrix:
    """Each row of V replaced by the mean of the rows of its k2 nearest entries."""
    n = weights.shape[0]
    averaging = sparse.csr_matrix((np.full(n * k2, 1.0 / k2), nearest[:, :k2].ravel(), np.arange(0, n * k2 + 1, k2)),
                                  shape=(n, n))
    return (averaging @ weights).tocsr()


def _jaccard(weights: sparse.csr_matrix, num_q: int) -> np.ndarray:
    """Jaccard distance of every query row of V to every gallery row (rows of V sum to 1)."""
    n = weights.shape[0]
    by_column = weights.tocsc()
    distances = np.empty((num_q, n - num_q))
    for i in range(num_q):
        row = slice(weights.indptr[i], weights.indptr[i + 1])
        columns, values = weights.indices[row], weights.data[row]
        starts, stops = by_column.indptr[columns], by_column.indptr[columns + 1]
        lengths = stops - starts
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        overlap = np.bincount(by_column.indices[positions], minlength=n,
                              weights=np.minimum(np.repeat(values, lengths), by_column.data[positions]))[num_q:]
        distances[i] = 1.0 - overlap / (2.0 - overlap)
    return distances


def re_rank(q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int = 20, k2: int = 6,
            lambda_value: float = 0.3) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from query x gallery, query x query and gallery x gallery distances.

    Distances are any non-negative symmetric distances (Euclidean for L2-normalised features is the paper's).
    ValueError on shape mismatches, negative or non-finite distances or parameters out of range.
    """
    config = RerankConfig(k1=k1, k2=k2, lambda_value=lambda_value)
    q_g = np.asarray(q_g_dist)
    if q_g.ndim != 2 or 0 in q_g.shape:
        raise ValueError(f"q_g_dist must be a non-empty (queries, gallery) matrix, got shape {q_g.shape}")
    num_q, num_g = q_g.shape
    rows = _NormalisedRows(_matrix(q_g, "q_g_dist", (num_q, num_g)), _matrix(q_q_dist, "q_q_dist", (num_q, num_q)),
                           _matrix(g_g_dist, "g_g_dist", (num_g, num_g)))
    k1_used = min(config.k1, rows.n - 1)
    if config.k2 > rows.n:
        raise ValueError(f"k2 = {config.k2} exceeds the {rows.n} queries and gallery entries")
    nearest = _nearest(rows, max(k1_used + 1, config.k2))
    weights = _weights(rows, nearest, k1_used)
    if config.k2 != 1:
        weights = _local_expansion(weights, nearest, config.k2)
    jaccard = _jaccard(weights, num_q)
    original = rows.block(0, num_q)[:, num_q:]
    return ((1.0 - config.lambda_value) * jaccard + config.lambda_value * original).astype(np.float32)


def _unit_rows(features: np.ndarray, name: str) -> np.ndarray:
    array = np.ascontiguousarray(features, dtype=np.float32)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not norms.all():
        raise ValueError(f"{name} contain an all-zero vector")
    return array / norms


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between unit rows: sqrt(2 - 2 cos)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * (a.astype(np.float64) @ b.T.astype(np.float64)), 0.0))


def reranked_distances(query_features: np.ndarray, gallery_features: np.ndarray,
                       config: RerankConfig = RerankConfig()) -> np.ndarray:
    """:func:`re_rank` of the Euclidean distances between L2-normalised query and gallery features (Q, G)."""
    queries = _unit_rows(query_features, "query features")
    gallery = _unit_rows(gallery_features, "gallery features")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"query features are {queries.shape[1]}-d but gallery features {gallery.shape[1]}-d")
    return re_rank(_euclidean(queries, gallery), _euclidean(queries, queries), _euclidean(gallery, gallery),
                   config.k1, config.k2, config.lambda_value)


def average_query_expansion(query_features: np.ndarray, gallery_features: np.ndarray, k: int = 5,
                            alpha: float = 0.0) -> np.ndarray:
    """Each query replaced by the L2-normalised sum of itself and its k nearest gallery features (Chum et al.
    2007); ``alpha > 0`` weights the neighbours by similarity ** alpha (alpha-QE, Radenovic et al. 2018).

    Neighbours come from FAISS's exact inner-product search, so memory stays O((Q + G) D).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"query expansion k must be a positive int, got {k!r}")
    if alpha < 0:
        raise ValueError(f"query expansion alpha must be >= 0, got {alpha}")
    queries = _unit_rows(query_features, "query features")
    gallery = _unit_rows(gallery_features, "gallery features")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"query features are {queries.shape[1]}-d but gallery features {gallery.shape[1]}-d")
    faiss = require("faiss", "cpu", "gpu")
    similarity, neighbours = faiss.knn(queries, gallery, min(k, len(gallery)), metric=faiss.METRIC_INNER_PRODUCT)
    weights = np.maximum(similarity, 0.0) ** alpha if alpha > 0 else np.ones_like(similarity)
    expanded = queries + np.einsum("qk,qkd->qd", weights, gallery[neighbours])
    return _unit_rows(expanded, "expanded queries")
