"""Re-id metrics without torch: CMC / mAP / mINP under the Market-1501 protocol, and clustering quality.

Market protocol: for each query, gallery entries with the same pid AND the same camera are ignored; a query
without any remaining true match is skipped (and counted). AP averages the precision at each true match;
INP is (number of true matches) / (rank of the hardest true match). Ties in distance count pessimistically:
a true match tied with wrong matches ranks after all of them, so no score depends on the gallery's order (a
collapsed model, all distances equal, scores as badly as it ranks). Everything is vectorised over blocks of
queries, so memory stays bounded for Market-size (3,368 x 19,732) distance matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Entries of the (queries x gallery) block processed at once: bounds memory to about 40 bytes x this.
_BLOCK_ENTRIES = 1 << 21


@dataclass(frozen=True)
class RankResult:
    """Retrieval quality: CMC curve (cmc[k-1] = rank-k accuracy), mAP, mINP and how many queries counted."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_skipped_queries: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy (1-based k)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank {k} outside 1..{len(self.cmc)}")
        return float(self.cmc[k - 1])

    def as_dict(self, ranks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float | int]:
        """JSON-friendly summary: the asked ranks (those within the curve), mAP, mINP and query counts."""
        summary: dict[str, float | int] = {f"rank{k}": self.rank(k) for k in ranks if k <= len(self.cmc)}
        summary.update(mAP=self.mAP, mINP=self.mINP, num_valid_queries=self.num_valid_queries,
                       num_skipped_queries=self.num_skipped_queries)
        return summary


def _labels(values: np.ndarray, name: str, length: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D array of length {length}, got shape {array.shape}")
    return array


def rank_metrics(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = more similar), Market protocol.

    Ties count pessimistically: a true match at the same distance as wrong matches ranks after all of them
    (the order of the gallery never matters). Raises ValueError on shape mismatches, non-finite distances,
    or when no query has a valid match.
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat must have at least one query and one gallery entry, got {distmat.shape}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if not np.isfinite(distmat).all():
        raise ValueError("distmat contains NaN or infinite values")
    q_pids, q_camids = _labels(q_pids, "q_pids", num_q), _labels(q_camids, "q_camids", num_q)
    g_pids, g_camids = _labels(g_pids, "g_pids", num_g), _labels(g_camids, "g_camids", num_g)

    first_hit = np.zeros(num_q, dtype=np.int64)  # 1-based rank of the first true match, 0 = no valid match
    average_precision = np.zeros(num_q)
    inverse_negative = np.zeros(num_q)
    block = max(1, _BLOCK_ENTRIES // num_g)
    for start in range(0, num_q, block):
        rows = slice(start, min(start + block, num_q))
        # Sorted by distance, then true pid last among equals: ties rank the true matches pessimistically.
        order = np.lexsort((g_pids[None, :] == q_pids[rows, None], distmat[rows]), axis=1)
        ranked_pids, ranked_cams = g_pids[order], g_camids[order]
        same_pid = ranked_pids == q_pids[rows, None]
        kept = ~(same_pid & (ranked_cams == q_camids[rows, None]))
        hits = same_pid & kept
        kept_rank = np.cumsum(kept, axis=1)  # 1-based rank among kept entries
        hit_count = np.cumsum(hits, axis=1)
        relevant = hit_count[:, -1]
        valid = relevant > 0
        lines = np.arange(hits.shape[0])
        first = kept_rank[lines, hits.argmax(axis=1)]
        last = kept_rank[lines, num_g - 1 - hits[:, ::-1].argmax(axis=1)]
        precision_sum = np.where(hits, hit_count / np.maximum(kept_rank, 1), 0.0).sum(axis=1)
        safe_relevant = np.maximum(relevant, 1)
        first_hit[rows] = np.where(valid, first, 0)
        average_precision[rows] = np.where(valid, precision_sum / safe_relevant, 0.0)
        inverse_negative[rows] = np.where(valid, relevant / np.maximum(last, 1), 0.0)

    valid = first_hit > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a valid match in the gallery (same pid seen by another camera)")
    found_at = np.bincount(np.minimum(first_hit[valid], max_rank + 1) - 1, minlength=max_rank + 1)
    cmc = np.cumsum(found_at[:max_rank]) / num_valid
    return RankResult(
        cmc=cmc.astype(np.float64),
        mAP=float(average_precision[valid].mean()),
        mINP=float(inverse_negative[valid].mean()),
        num_valid_queries=num_valid,
        num_skipped_queries=num_q - num_valid,
    )


@dataclass(frozen=True)
class ClusteringQuality:
    """How well predicted clusters match the true identities.

    Pairwise scores count sample pairs: precision = pairs put together that share a pid / pairs put together,
    recall = pairs put together that share a pid / pairs that share a pid (1.0 when the denominator is 0).
    NMI uses the arithmetic mean of the two entropies. Purity = fraction of samples in their cluster's
    majority pid.
    """

    pairwise_precision: float
    pairwise_recall: float
    pairwise_f_score: float
    nmi: float
    purity: float
    num_clusters: int
    num_identities: int

    def as_dict(self) -> dict[str, float | int]:
        """JSON-friendly copy."""
        return dict(self.__dict__)


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1.0) / 2.0).sum())


def _entropy(counts: np.ndarray, total: int) -> float:
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def clustering_quality(cluster_labels: np.ndarray, true_pids: np.ndarray) -> ClusteringQuality:
    """Compare predicted cluster labels with true pids (any integer labels; each label value is one cluster).

    Works on the sparse contingency table, so it is O(N log N), not O(N^2).
    """
    predicted, truth = np.asarray(cluster_labels), np.asarray(true_pids)
    if predicted.ndim != 1 or truth.ndim != 1 or predicted.shape != truth.shape:
        raise ValueError(f"cluster_labels and true_pids must be 1-D of equal length, got {predicted.shape}, "
                         f"{truth.shape}")
    total = predicted.shape[0]
    if total == 0:
        raise ValueError("cannot score an empty clustering")
    _, cluster = np.unique(predicted, return_inverse=True)
    _, identity = np.unique(truth, return_inverse=True)
    cluster, identity = cluster.ravel(), identity.ravel()
    num_identities = int(identity.max()) + 1
    cells, cell_counts = np.unique(cluster.astype(np.int64) * num_identities + identity, return_counts=True)
    cell_cluster = cells // num_identities
    cluster_sizes = np.bincount(cluster)
    identity_sizes = np.bincount(identity)

    together = _pairs(cluster_sizes)
    same = _pairs(identity_sizes)
    correct = _pairs(cell_counts)
    precision = correct / together if together else 1.0
    recall = correct / same if same else 1.0
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    joint = cell_counts / total
    marginal = cluster_sizes[cell_cluster] * identity_sizes[cells % num_identities] / float(total) ** 2
    mutual_information = float((joint * np.log(joint / marginal)).sum())
    mean_entropy = (_entropy(cluster_sizes, total) + _entropy(identity_sizes, total)) / 2
    nmi = mutual_information / mean_entropy if mean_entropy > 0 else 1.0

    majority = np.zeros(len(cluster_sizes), dtype=np.int64)
    np.maximum.at(majority, cell_cluster, cell_counts)
    return ClusteringQuality(
        pairwise_precision=precision,
        pairwise_recall=recall,
        pairwise_f_score=f_score,
        nmi=float(np.clip(nmi, 0.0, 1.0)),
        purity=float(majority.sum() / total),
        num_clusters=len(cluster_sizes),
        num_identities=num_identities,
    )


def same_partition(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two labelings group the samples the same way, whatever the cluster numbers: the same outliers (-1)
    and a one-to-one match between the other clusters."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape or not np.array_equal(first == -1, second == -1):
        return False
    clustered = first != -1
    pairs = set(zip(first[clustered].tolist(), second[clustered].tolist()))
    return len(pairs) == len(set(first[clustered].tolist())) == len(set(second[clustered].tolist()))
