"""k-reciprocal re-ranking and query expansion against slow, direct implementations of the published algorithms."""

from __future__ import annotations

import numpy as np
import pytest

from reid_sdk.evaluation.metrics import rank_metrics
from reid_sdk.search.reranking import average_query_expansion, re_rank
from reid_sdk.search.reranking import RerankConfig, reranked_distances
from reid_sdk.synthetic.vectors import clustered_features


def slow_re_rank(q_g, q_q, g_g, k1, k2, lambda_value):
    """Zhong et al. 2017, section 3, written from the definitions with Python sets and loops.

    The details the paper leaves open follow the authors' code: squared distances over each row's maximum, a
    probe in its own k1 + 1 neighbourhood, a strict "> 2/3" for the expansion, exp(-d) weights normalised to 1.
    """
    full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2
    d = full / full.max(axis=1, keepdims=True)
    n, num_q = len(d), len(q_q)
    ranking = [sorted(range(n), key=lambda j, i=i: (d[i, j], j)) for i in range(n)]

    def neighbours(i, k):  # N(i, k): the k + 1 nearest, i itself first
        return set(ranking[i][: k + 1])

    def reciprocal(i, k):  # R(i, k) = {j in N(i, k) : i in N(j, k)}
        return {j for j in neighbours(i, k) if i in neighbours(j, k)}

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for candidate in r:
            r_half = reciprocal(candidate, int(np.around(k1 / 2)))
            if len(r_half & r) > 2 / 3 * len(r_half):
                expanded |= r_half
        total = sum(np.exp(-d[i, j]) for j in expanded)
        for j in expanded:
            v[i, j] = np.exp(-d[i, j]) / total
    if k2 > 1:  # local query expansion: mean of the k2 nearest rows
        v = np.array([np.mean([v[j] for j in ranking[i][:k2]], axis=0) for i in range(n)])
    final = np.empty((num_q, n - num_q))
    for i in range(num_q):
        for g in range(num_q, n):
            jaccard = 1 - np.minimum(v[i], v[g]).sum() / np.maximum(v[i], v[g]).sum()
            final[i, g - num_q] = (1 - lambda_value) * jaccard + lambda_value * d[i, g]
    return final


def euclidean(a, b):
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))


@pytest.mark.parametrize("num_q, num_g, k1, k2, lambda_value", [
    (5, 30, 6, 3, 0.3), (4, 36, 20, 6, 0.3), (3, 20, 4, 1, 0.0), (6, 14, 20, 6, 1.0), (1, 12, 5, 2, 0.5)])
def test_re_rank_matches_the_direct_algorithm(num_q, num_g, k1, k2, lambda_value):
    rng = np.random.default_rng(num_q * 100 + num_g)
    queries, gallery = rng.normal(size=(num_q, 8)), rng.normal(size=(num_g, 8))
    args = (euclidean(queries, gallery), euclidean(queries, queries), euclidean(gallery, gallery))
    fast = re_rank(*args, k1=k1, k2=k2, lambda_value=lambda_value)
    assert fast.dtype == np.float32 and fast.shape == (num_q, num_g)
    np.testing.assert_allclose(fast, slow_re_rank(*args, k1, k2, lambda_value), atol=2e-6)


def test_re_rank_on_arbitrary_symmetric_distances():
    rng = np.random.default_rng(7)
    full = rng.uniform(0.1, 3.0, (25, 25))
    full = (full + full.T) / 2
    np.fill_diagonal(full, 0.0)
    q_g, q_q, g_g = full[:5, 5:], full[:5, :5], full[5:, 5:]
    np.testing.assert_allclose(re_rank(q_g, q_q, g_g, k1=7, k2=3), slow_re_rank(q_g, q_q, g_g, 7, 3, 0.3), atol=2e-6)


def test_reranked_distances_use_euclidean_distances_of_unit_features():
    rng = np.random.default_rng(3)
    queries, gallery = rng.normal(size=(4, 16)), rng.normal(size=(25, 16))
    unit_q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    unit_g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    expected = slow_re_rank(euclidean(unit_q, unit_g), euclidean(unit_q, unit_q), euclidean(unit_g, unit_g), 8, 3, 0.3)
    np.testing.assert_allclose(reranked_distances(queries, gallery, RerankConfig(k1=8, k2=3)), expected, atol=2e-6)


def test_re_ranking_helps_on_clustered_features():
    features, labels = clustered_features(600, 64, seed=4, images_per_identity=12, spread=0.9, noise=0.4)
    cameras = np.arange(600) % 4
    queries, gallery = np.arange(0, 600, 6), np.setdiff1d(np.arange(600), np.arange(0, 600, 6))
    plain = 1 - features[queries] @ features[gallery].T
    args = (labels[queries], labels[gallery], cameras[queries], cameras[gallery])
    before = rank_metrics(plain, *args).mAP
    after = rank_metrics(reranked_distances(features[queries], features[gallery]), *args).mAP
    assert after > before + 0.02, (before, after)


def test_re_rank_rejects_bad_input():
    q_g, q_q, g_g = np.ones((2, 3)), np.zeros((2, 2)), np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"q_q_dist must have shape \(2, 2\)"):
        re_rank(q_g, np.zeros((3, 3)), g_g)
    with pytest.raises(ValueError, match="g_g_dist contains NaN"):
        re_rank(q_g, q_q, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="negative"):
        re_rank(-q_g, q_q, g_g)
    with pytest.raises(ValueError, match="lambda_value must be in"):
        re_rank(q_g, q_q, g_g, lambda_value=1.5)
    with pytest.raises(ValueError, match="k2 = 6 exceeds the 5"):
        re_rank(q_g, q_q, g_g, k1=2, k2=6)
    with pytest.raises(ValueError, match="k1 must be a positive int"):
        re_rank(q_g, q_q, g_g, k1=0)
    with pytest.raises(ValueError, match="non-empty"):
        re_rank(np.ones((0, 3)), np.zeros((0, 0)), g_g)


def direct_query_expansion(queries, gallery, k, alpha):
    expanded = []
    for query in queries:
        similarity = gallery @ query
        top = np.argsort(-similarity, kind="stable")[:k]
        weights = np.ones(k) if alpha == 0 else np.maximum(similarity[top], 0) ** alpha
        vector = query + (weights[:, None] * gallery[top]).sum(axis=0)
        expanded.append(vector / np.linalg.norm(vector))
    return np.array(expanded)


@pytest.mark.parametrize("k, alpha", [(1, 0.0), (5, 0.0), (4, 3.0)])
def test_average_query_expansion_is_the_mean_of_the_query_and_its_neighbours(k, alpha):
    rng = np.random.default_rng(k)
    queries, gallery = rng.normal(size=(6, 12)), rng.normal(size=(40, 12))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    expanded = average_query_expansion(queries, gallery, k=k, alpha=alpha)
    np.testing.assert_allclose(expanded, direct_query_expansion(queries, gallery, k, alpha), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(expanded, axis=1), 1.0, atol=1e-6)


def test_query_expansion_rejects_bad_input():
    features = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="k must be a positive int"):
        average_query_expansion(features, features, k=0)
    with pytest.raises(ValueError, match="4-d but gallery features 3-d"):
        average_query_expansion(features, np.ones((5, 3)))
    with pytest.raises(ValueError, match="all-zero"):
        average_query_expansion(np.zeros((1, 4)), features)


class NoModel:
    """ReIDIndex needs an extractor; these tests search with features directly."""

    feature_dim = 32

    def extract(self, crops):
        raise AssertionError("not used")


def test_gallery_search_reranks_a_bounded_candidate_set():
    from reid_sdk.gallery import Gallery
    from reid_sdk.search.index import ReIDIndex

    features, labels = clustered_features(150, 32, seed=1, images_per_identity=6)
    index = ReIDIndex(NoModel(), Gallery(32))
    ids = index.gallery.add(features[10:], identities=labels[10:])
    config = RerankConfig(k1=6, k2=3, candidates=25)
    for query in features[:10]:
        candidates = index.gallery.search(query, k=25)
        block = features[10:][np.searchsorted(ids, [m.entry_id for m in candidates])]
        expected = slow_re_rank(euclidean(query[None], block), euclidean(query[None], query[None]),
                                euclidean(block, block), 6, 3, 0.3)[0]
        got = index.search_features(query[None], k=8, rerank=config)[0]
        assert [m.entry_id for m in got] == [candidates[i].entry_id for i in np.argsort(expected, kind="stable")[:8]]
        assert {m.entry_id for m in got} <= {m.entry_id for m in candidates}
    with pytest.raises(ValueError, match="rerank must be True, False or a RerankConfig"):
        index.search_features(features[:1], rerank="yes")
