"""rank_metrics against a slow per-query reference and hand-computed cases; clustering quality."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from reid_sdk.evaluation.metrics import clustering_quality, rank_metrics, same_partition


def slow_market_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Per-query loop of the Market-1501 protocol with pessimistic ties, by counting instead of sorting:
    the k-th nearest true match ranks at k + the number of wrong matches no farther than it."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        kept = [j for j in range(len(g_pids)) if not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        true = sorted(distmat[i, j] for j in kept if g_pids[j] == q_pids[i])
        wrong = [distmat[i, j] for j in kept if g_pids[j] != q_pids[i]]
        if not true:
            continue
        ranks = [k + sum(d <= distance for d in wrong) for k, distance in enumerate(true, start=1)]
        cmcs.append([1.0 if k + 1 >= ranks[0] else 0.0 for k in range(max_rank)])
        aps.append(sum(k / rank for k, rank in enumerate(ranks, start=1)) / len(ranks))
        inps.append(len(ranks) / ranks[-1])
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


@pytest.mark.parametrize("seed, decimals", [(0, 2), (1, 2), (2, 1), (3, 1)])
def test_rank_metrics_match_slow_reference_on_random_data(seed, decimals):
    rng = np.random.default_rng(seed)
    num_q, num_g = 37, 211
    q_pids, g_pids = rng.integers(0, 15, num_q), rng.integers(0, 15, num_g)
    q_cams, g_cams = rng.integers(1, 4, num_q), rng.integers(1, 4, num_g)
    distmat = rng.random((num_q, num_g)).round(decimals)  # rounding creates ties, many at 1 decimal
    cmc, mean_ap, minp, valid = slow_market_reference(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    result = rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    np.testing.assert_allclose(result.cmc, cmc, atol=1e-12)
    assert result.mAP == pytest.approx(mean_ap, abs=1e-12)
    assert result.mINP == pytest.approx(minp, abs=1e-12)
    assert result.num_valid_queries == valid
    assert result.num_valid_queries + result.num_skipped_queries == num_q


def test_gallery_order_never_changes_the_scores():
    rng = np.random.default_rng(7)
    num_q, num_g = 20, 90
    q_pids, g_pids = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
    q_cams, g_cams = rng.integers(1, 3, num_q), rng.integers(1, 3, num_g)
    distmat = rng.integers(0, 4, (num_q, num_g)).astype(float)  # four distinct distances: ties everywhere
    reference = rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    for _ in range(5):
        order = rng.permutation(num_g)
        shuffled = rank_metrics(distmat[:, order], q_pids, g_pids[order], q_cams, g_cams[order], max_rank=10)
        np.testing.assert_allclose(shuffled.cmc, reference.cmc, atol=1e-12)
        assert shuffled.mAP == pytest.approx(reference.mAP, abs=1e-12)
        assert shuffled.mINP == pytest.approx(reference.mINP, abs=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_collapsed_model_scores_pessimistically_whatever_the_gallery_order(reverse):
    # all distances equal; query pid 1 cam 1. The cam-1 pid-1 entry is ignored, which leaves 2 true matches
    # and 3 wrong ones; pessimistic ties put the true matches at ranks 4 and 5:
    # CMC 0, 0, 0, 1, 1; AP = (1/4 + 2/5) / 2 = 0.325; INP = 2/5.
    g_pids, g_cams = np.array([1, 1, 1, 2, 3, 4]), np.array([1, 2, 2, 2, 2, 2])
    if reverse:
        g_pids, g_cams = g_pids[::-1], g_cams[::-1]
    result = rank_metrics(np.zeros((1, 6)), np.array([1]), g_pids, np.array([1]), g_cams, max_rank=5)
    np.testing.assert_allclose(result.cmc, [0.0, 0.0, 0.0, 1.0, 1.0])
    assert result.mAP == pytest.approx(0.325)
    assert result.mINP == pytest.approx(0.4)


def test_blocks_give_the_same_answer(monkeypatch):
    import reid_sdk.evaluation.metrics as evaluation

    rng = np.random.default_rng(5)
    distmat = rng.random((50, 40))
    args = (rng.integers(0, 6, 50), rng.integers(0, 6, 40), rng.integers(1, 3, 50), rng.integers(1, 3, 40))
    whole = rank_metrics(distmat, *args)
    monkeypatch.setattr(evaluation, "_BLOCK_ENTRIES", 64)  # 1 query per block
    blocked = rank_metrics(distmat, *args)
    np.testing.assert_array_equal(whole.cmc, blocked.cmc)
    assert whole.mAP == blocked.mAP and whole.mINP == blocked.mINP


def test_hand_computed_ranking():
    # query 0: pid 1 cam 1. The same-camera pid-1 entry (distance 0) is ignored; remaining order is
    # pid 2, pid 1, pid 3, pid 1 -> true matches at ranks 2 and 4: AP = (1/2 + 2/4) / 2 = 0.5, INP = 2/4.
    # query 1: pid 3 cam 2 -> its only pid-3 entry is at rank 1 among kept (pid-3 cam-2 removed): AP = 1.
    # query 2: pid 9 has no match: skipped.
    g_pids = np.array([1, 2, 1, 3, 1, 3])
    g_cams = np.array([1, 2, 2, 3, 3, 2])
    distmat = np.array([
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        [0.5, 0.4, 0.3, 0.2, 0.6, 0.0],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    ])
    result = rank_metrics(distmat, np.array([1, 3, 9]), g_pids, np.array([1, 2, 1]), g_cams, max_rank=5)
    assert result.num_valid_queries == 2 and result.num_skipped_queries == 1
    assert result.mAP == pytest.approx((0.5 + 1.0) / 2)
    assert result.mINP == pytest.approx((0.5 + 1.0) / 2)
    np.testing.assert_allclose(result.cmc, [0.5, 1.0, 1.0, 1.0, 1.0])
    assert result.as_dict()["rank1"] == 0.5


def test_bad_inputs_raise_value_errors():
    distmat = np.zeros((2, 3))
    pids, cams = np.array([1, 2]), np.array([1, 1])
    g = np.array([1, 2, 3])
    with pytest.raises(ValueError, match="q_pids"):
        rank_metrics(distmat, np.array([1]), g, cams, g)
    with pytest.raises(ValueError, match="g_camids"):
        rank_metrics(distmat, pids, g, cams, np.array([1, 2]))
    with pytest.raises(ValueError, match="2-D"):
        rank_metrics(np.zeros(3), pids, g, cams, g)
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.full((2, 3), np.nan), pids, g, cams, g)
    with pytest.raises(ValueError, match="no query has a valid match"):
        rank_metrics(distmat, np.array([7, 8]), g, cams, g)


def brute_force_pairs(predicted, truth):
    together = same = correct = 0
    for i, j in itertools.combinations(range(len(predicted)), 2):
        in_cluster, in_identity = predicted[i] == predicted[j], truth[i] == truth[j]
        together += in_cluster
        same += in_identity
        correct += in_cluster and in_identity
    return correct / together, correct / same


def dense_nmi(predicted, truth):
    clusters, identities = sorted(set(predicted)), sorted(set(truth))
    n = len(predicted)
    table = [[sum(1 for p, t in zip(predicted, truth) if p == c and t == k) for k in identities] for c in clusters]
    rows = [sum(r) for r in table]
    cols = [sum(r[k] for r in table) for k in range(len(identities))]
    mi = sum(v / n * math.log(v * n / (rows[i] * cols[k])) for i, r in enumerate(table) for k, v in enumerate(r) if v)
    h = lambda counts: -sum(c / n * math.log(c / n) for c in counts)  # noqa: E731
    return mi / ((h(rows) + h(cols)) / 2)


def test_clustering_quality_hand_computed():
    quality = clustering_quality(np.array([0, 0, 0, 1, 1, 2]), np.array([5, 5, 7, 7, 7, 9]))
    assert quality.pairwise_precision == pytest.approx(0.5)
    assert quality.pairwise_recall == pytest.approx(0.5)
    assert quality.pairwise_f_score == pytest.approx(0.5)
    assert quality.purity == pytest.approx(5 / 6)
    assert quality.num_clusters == 3 and quality.num_identities == 3
    perfect = clustering_quality(np.array([3, 3, 8, 8]), np.array([1, 1, 2, 2]))
    assert (perfect.pairwise_f_score, perfect.nmi, perfect.purity) == (1.0, pytest.approx(1.0), 1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_clustering_quality_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 8, 120)
    predicted = np.where(rng.random(120) < 0.7, truth * 10, rng.integers(-1, 12, 120))
    quality = clustering_quality(predicted, truth)
    precision, recall = brute_force_pairs(predicted.tolist(), truth.tolist())
    assert quality.pairwise_precision == pytest.approx(precision)
    assert quality.pairwise_recall == pytest.approx(recall)
    assert quality.nmi == pytest.approx(dense_nmi(predicted.tolist(), truth.tolist()))
    assert quality.num_clusters == len(set(predicted.tolist()))


def test_clustering_quality_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="equal length"):
        clustering_quality(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="empty"):
        clustering_quality(np.array([], dtype=int), np.array([], dtype=int))


def test_same_partition_ignores_numbering_but_not_grouping_or_outliers():
    labels = np.array([0, 0, 1, -1, 2, 2])
    assert same_partition(labels, np.array([5, 5, 3, -1, 0, 0]))  # renumbered
    assert not same_partition(labels, np.array([0, 0, 0, -1, 2, 2]))  # two clusters joined
    assert not same_partition(labels, np.array([0, 1, 1, -1, 2, 2]))  # a sample moved
    assert not same_partition(labels, np.array([0, 0, 1, 3, 2, 2]))  # an outlier placed
    assert not same_partition(labels, labels[:5])
