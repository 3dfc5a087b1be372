"""Cluster Contrast's pseudo-labels: the sparse Jaccard distance equals a direct dense implementation of its
definition, and the DBSCAN labels give exactly the partition of scikit-learn's DBSCAN on that dense matrix."""

import numpy as np
import pytest
import torch

from reid_sdk.evaluation import same_partition
from reid_sdk.training.clustering import dbscan_jaccard_labels, jaccard_distance

EPS, MIN_SAMPLES = 0.6, 4
SETTINGS = [(30, 6), (6, 3)]  # (k1, k2): Cluster Contrast's and a small one


def direct_jaccard(features: np.ndarray, k1: int, k2: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense float64 Jaccard distances straight from the definition, and the similarities the neighbours came from."""
    unit = features.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    n = len(unit)
    k1, k2 = min(k1, n), min(k2, n)
    similarity = unit @ unit.T
    initial_rank = np.argsort(-similarity, axis=1, kind="stable")[:, :k1]

    def reciprocal(i: int, k: int) -> set[int]:
        return {int(j) for j in initial_rank[i, : k + 1] if i in initial_rank[j, : k + 1]}

    full = [reciprocal(i, k1) for i in range(n)]
    half = [reciprocal(i, int(np.around(k1 / 2))) for i in range(n)]
    weights = np.zeros((n, n))
    for i in range(n):
        expansion = set(full[i])
        for candidate in full[i]:
            if len(half[candidate] & full[i]) > 2 / 3 * len(half[candidate]):
                expansion |= half[candidate]
        columns = sorted(expansion)
        exponentials = np.exp(-(2 - 2 * similarity[i, columns]))
        weights[i, columns] = exponentials / exponentials.sum()
    if k2 != 1:
        weights = np.stack([weights[initial_rank[i, :k2]].mean(axis=0) for i in range(n)])
    shared = np.stack([np.minimum(weights[i], weights).sum(axis=1) for i in range(n)])
    return np.maximum(1 - shared / (2 - shared), 0), similarity


def dense_view(distance) -> np.ndarray:
    """The sparse result with its absent entries read as distance 1."""
    dense = np.ones(distance.shape)
    stored = distance.tocoo()
    dense[stored.row, stored.col] = stored.data
    return dense


def identities(seed: int, num_ids: int = 25, sizes: tuple[int, int] = (3, 12), noise: float = 0.35,
               num_isolated: int = 8, dim: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """float32 features and labels (-1 for isolated samples): identity centres plus noise in the first half of
    the dimensions (shifted by a common offset, so identities are closer to each other than to any isolated
    sample), then isolated samples near axes of the second half."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(sizes[0], sizes[1] + 1, size=num_ids)
    centres = np.zeros((num_ids, dim))
    centres[:, : dim // 2] = 1.0 + rng.normal(size=(num_ids, dim // 2))
    isolated = np.eye(num_isolated, dim, k=dim // 2)
    grouped = np.repeat(centres, counts, axis=0) + noise * rng.normal(size=(counts.sum(), dim))
    features = np.concatenate([grouped, isolated + 0.01 * rng.normal(size=isolated.shape)]).astype(np.float32)
    return features, np.concatenate([np.repeat(np.arange(num_ids), counts), np.full(num_isolated, -1)])


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return identities(seed=17)[0]  # a seed whose neighbour lists have no near-ties and no distance near EPS


@pytest.fixture(scope="module", params=SETTINGS, ids=lambda setting: f"k1={setting[0]},k2={setting[1]}")
def direct(request, features) -> tuple[int, int, np.ndarray]:
    k1, k2 = request.param
    distance, similarity = direct_jaccard(features, k1, k2)
    nearest_first = -np.sort(-similarity, axis=1)[:, : k1 + 1]
    assert np.diff(-nearest_first, axis=1).min() > 1e-6, "a neighbour list has a (near) tie: choose another seed"
    assert np.abs(distance - EPS).min() > 1e-4, "a distance is within 1e-4 of eps: choose another seed"
    return k1, k2, distance


def test_distances_equal_the_direct_definition(features, direct):
    k1, k2, expected = direct
    distance = jaccard_distance(features, k1=k1, k2=k2)
    assert distance.shape == expected.shape and distance.dtype == np.float32
    np.testing.assert_allclose(dense_view(distance), expected, rtol=0, atol=1e-5)
    stored = np.zeros(expected.shape, dtype=bool)
    stored[distance.tocoo().row, distance.tocoo().col] = True  # explicit zeros included
    np.testing.assert_array_equal(stored, expected < 1)


def test_labels_are_dbscan_on_the_direct_dense_matrix(features, direct):
    cluster = pytest.importorskip("sklearn.cluster")
    k1, k2, expected = direct
    reference = cluster.DBSCAN(eps=EPS, min_samples=MIN_SAMPLES, metric="precomputed").fit_predict(expected)
    labels = dbscan_jaccard_labels(features, eps=EPS, min_samples=MIN_SAMPLES, k1=k1, k2=k2)
    assert labels.dtype == np.int64 and labels.shape == (len(features),)
    assert same_partition(labels, reference)
    assert (labels == -1).any() and labels.max() >= 10  # a comparison with outliers and many clusters
    assert set(labels[labels >= 0].tolist()) == set(range(labels.max() + 1))


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_separated_identities_give_one_cluster_each_and_isolated_outliers(seed):
    pytest.importorskip("sklearn")
    features, truth = identities(seed, num_ids=10, sizes=(5, 12), noise=0.1, num_isolated=6)
    labels = dbscan_jaccard_labels(features, eps=EPS, min_samples=MIN_SAMPLES, k1=10, k2=2)
    assert (labels[truth == -1] == -1).all()
    assert same_partition(labels[: len(truth)][truth >= 0], truth[truth >= 0])


def test_exact_duplicates_are_neighbours_at_distance_zero():
    pytest.importorskip("sklearn")
    features, truth = identities(seed=3, num_ids=10, sizes=(5, 12), noise=0.1, num_isolated=3)
    copies = np.repeat(features[-1:], 3, axis=0)  # an isolated sample and 3 copies: a cluster only with distance 0 kept
    features = np.concatenate([features, copies])
    group = np.arange(len(features) - 4, len(features))
    distance = jaccard_distance(features, k1=10, k2=2)
    between = distance[group][:, group]
    assert between.nnz == 16 and between.data.max() <= 1e-6
    labels = dbscan_jaccard_labels(features, eps=EPS, min_samples=4, k1=10, k2=2)
    assert labels[group[0]] >= 0 and (labels[group] == labels[group[0]]).all()
    assert same_partition(labels[: len(truth)][truth >= 0], truth[truth >= 0])


def test_fewer_samples_than_k1_clips_k1_and_k2():
    features = identities(seed=4, num_ids=2, sizes=(4, 4), num_isolated=1)[0]
    expected, _ = direct_jaccard(features, k1=len(features), k2=len(features))
    np.testing.assert_allclose(dense_view(jaccard_distance(features, k1=30, k2=20)), expected, rtol=0, atol=1e-5)
    cluster = pytest.importorskip("sklearn.cluster")
    reference = cluster.DBSCAN(eps=EPS, min_samples=MIN_SAMPLES, metric="precomputed").fit_predict(expected)
    assert same_partition(dbscan_jaccard_labels(features, k1=30, k2=20), reference)


def test_torch_and_unnormalised_input_give_the_same_distances():
    features = identities(seed=5, num_ids=6, sizes=(4, 8))[0]
    expected = jaccard_distance(features, k1=10, k2=3).toarray()
    tensor = torch.from_numpy(features).double().mul(3.0).requires_grad_()
    np.testing.assert_allclose(jaccard_distance(tensor, k1=10, k2=3).toarray(), expected, rtol=0, atol=1e-6)


@pytest.mark.cuda
def test_cuda_tensor_input_gives_the_same_distances():
    features = identities(seed=5, num_ids=6, sizes=(4, 8))[0]
    expected = jaccard_distance(features, k1=10, k2=3).toarray()
    on_gpu = jaccard_distance(torch.from_numpy(features).cuda(), k1=10, k2=3).toarray()
    np.testing.assert_allclose(on_gpu, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("features", "options", "message"), [
    (np.ones(5), {}, "must be \\(N, d\\)"),
    (np.ones((1, 4)), {}, "at least 2 rows"),
    (np.array([[1.0, 0.0], [np.nan, 1.0]]), {}, "NaN or inf"),
    (np.array([[1.0, 0.0], [np.inf, 1.0]]), {}, "NaN or inf"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), {}, "row 1 is all zeros"),
    (np.eye(3), {"k1": 0}, "k1 must be a positive int"),
    (np.eye(3), {"k2": 0}, "k2 must be a positive int"),
    (np.eye(3), {"eps": 0.0}, "eps must be in \\(0, 1\\)"),
    (np.eye(3), {"eps": 1.0}, "eps must be in \\(0, 1\\)"),
    (np.eye(3), {"min_samples": 0}, "min_samples must be a positive int"),
])
def test_invalid_input_is_refused(features, options, message):
    with pytest.raises(ValueError, match=message):
        dbscan_jaccard_labels(features, **options)


def test_negative_max_distance_is_refused():
    with pytest.raises(ValueError, match="max_distance must be >= 0 or None"):
        jaccard_distance(np.eye(3), max_distance=-0.1)


def test_max_distance_keeps_the_pairs_within_it_and_their_values(features):
    full = jaccard_distance(features, k1=30, k2=6).tocoo()
    pruned = jaccard_distance(features, k1=30, k2=6, max_distance=EPS).tocoo()
    within = full.data <= EPS
    assert 0 < within.sum() < len(within)
    assert dict(zip(zip(pruned.row.tolist(), pruned.col.tolist()), pruned.data.tolist())) == dict(
        zip(zip(full.row[within].tolist(), full.col[within].tolist()), full.data[within].tolist()))
