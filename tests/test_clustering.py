"""The clustering engine against a plain-Python float64 brute force, scipy's hierarchy, and itself across blocks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import linkage as scipy_linkage

from reid_sdk.training.clustering import (
    LINKAGES,
    cluster_compactness,
    cluster_distance_matrix,
    merge_stage,
)
from reid_sdk.training.clustering import kernel, stage
from reid_sdk.training.clustering.selection import CandidatePool

TOLERANCE = 1e-5  # fp32 Gram-based distances vs float64 differences


# ---------------------------------------------------------------- plain-Python reference


def unit(points):
    """Rows scaled to unit length, as lists of Python floats."""
    rows = [[float(v) for v in p] for p in points]
    return [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in rows]


def distance(p, q):
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(p, q)))


def members_of(labels):
    clusters = {}
    for index, label in enumerate(labels):
        clusters.setdefault(int(label), []).append(index)
    return [clusters[c] for c in range(len(clusters))]


def brute_force_compactness(points, members):
    return (
        sum(distance(points[i], points[j]) for i in members for j in members if i != j) / len(members)
    )


def brute_force_matrix(points, labels, linkage, lam=0.3, lam_buc=0.005):
    """{(a, b): D} for a < b, straight from the definitions in DESIGN.md."""
    points = unit(points)
    clusters = members_of(labels)
    cpd = [brute_force_compactness(points, m) for m in clusters]
    result = {}
    for a, b in itertools.combinations(range(len(clusters)), 2):
        d = [distance(points[i], points[j]) for i in clusters[a] for j in clusters[b]]
        size_a, size_b = len(clusters[a]), len(clusters[b])
        result[a, b] = {
            "min": min(d),
            "max": max(d),
            "average": sum(d) / (size_a * size_b),
            "buc": min(d) ** 2 + lam_buc * (size_a + size_b),
            "imd": (min(d) + max(d)) / 2,
            "imd_cpd": (min(d) + max(d)) / 2 + lam * (cpd[a] + cpd[b]),
        }[linkage]
    return result


def matrix_as_pairs(matrix):
    """{(a, b): D} for a < b from a dense (C, C) tensor."""
    values = matrix.cpu().numpy().astype(np.float64)
    return {(a, b): float(values[a, b]) for a, b in itertools.combinations(range(len(values)), 2)}


def reference_walk(pairs, labels, num_merges):
    """Walk pairs by (D, a, b), union-find, stop after min(num_merges, C - 1) merges.

    Returns the new labels (groups numbered by their smallest old label) and the D values looked at,
    the one after the last looked-at pair included.
    """
    num_clusters = int(max(labels)) + 1
    parent = list(range(num_clusters))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    ordered = sorted(pairs.items(), key=lambda item: (item[1], item[0]))
    target, merges, looked = min(num_merges, num_clusters - 1), 0, 0
    for (a, b), _ in ordered:
        if merges == target:
            break
        looked += 1
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)  # the root is the group's smallest label
            merges += 1
    roots = sorted({find(c) for c in range(num_clusters)})
    rank = {root: index for index, root in enumerate(roots)}
    new_labels = [rank[find(int(label))] for label in labels]
    return new_labels, [value for _, value in ordered[: looked + 1]]


def assert_no_near_ties(values, gap=20 * TOLERANCE):
    """Precondition of comparing fp32 with float64: the walked order does not hinge on rounding."""
    steps = np.diff(np.asarray(values))
    assert steps.size == 0 or steps.min() > gap, "inputs have a near-tie; choose another seed"


def random_case(seed, num_samples, dim, max_size):
    """Random points and shuffled labels with clusters of mixed sizes 1..max_size."""
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < num_samples:
        sizes.append(int(min(rng.integers(1, max_size + 1), num_samples - sum(sizes))))
    labels = rng.permutation(np.repeat(rng.permutation(len(sizes)), sizes))
    centres = rng.standard_normal((len(sizes), dim))
    points = centres[labels] + 0.6 * rng.standard_normal((num_samples, dim))
    return points, labels


def dyadic_case(seed, num_samples, pool_size, singletons):
    """Points with many exact duplicates, all distances exact: 4 entries of +-0.5 in 8 dimensions (norm 1)."""
    rng = np.random.default_rng(seed)
    pool = np.zeros((pool_size, 8))
    for row in pool:
        row[rng.choice(8, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    points = pool[rng.integers(0, pool_size, num_samples)]
    if singletons:
        return points, rng.permutation(num_samples)
    half = num_samples // 2
    labels = np.concatenate([np.arange(half), rng.integers(0, half, num_samples - half)])
    return points, rng.permutation(labels)


CASES = [(0, 9, 4, 2), (1, 24, 8, 4), (2, 47, 16, 6)]


# ---------------------------------------------------------------- every linkage against the brute force


@pytest.mark.parametrize("linkage", LINKAGES)
@pytest.mark.parametrize("seed,num_samples,dim,max_size", CASES)
def test_distance_matrix_matches_brute_force(linkage, seed, num_samples, dim, max_size):
    points, labels = random_case(seed, num_samples, dim, max_size)
    matrix = cluster_distance_matrix(points, labels, linkage=linkage, lam=0.3, lam_buc=0.02)
    expected = brute_force_matrix(points, labels, linkage, lam=0.3, lam_buc=0.02)
    assert matrix.shape == (labels.max() + 1,) * 2
    assert torch.isinf(torch.diagonal(matrix)).all()
    assert torch.equal(matrix, matrix.T)
    for (a, b), value in expected.items():
        assert matrix[a, b].item() == pytest.approx(value, abs=TOLERANCE), (a, b)


@pytest.mark.parametrize("linkage", LINKAGES)
@pytest.mark.parametrize("seed,num_samples,dim,max_size", CASES)
def test_merge_stage_matches_brute_force(linkage, seed, num_samples, dim, max_size):
    points, labels = random_case(seed, num_samples, dim, max_size)
    pairs = brute_force_matrix(points, labels, linkage)
    num_clusters = labels.max() + 1
    for num_merges in sorted({1, num_clusters // 3, num_clusters - 2}):
        expected, looked_at = reference_walk(pairs, labels, num_merges)
        assert_no_near_ties(looked_at)
        result = merge_stage(points, labels, num_merges, linkage=linkage)
        assert result.tolist() == expected
        assert result.max() + 1 == num_clusters - num_merges


@pytest.mark.parametrize("linkage", LINKAGES)
def test_exact_ties_between_duplicates_go_to_the_smaller_pair(linkage):
    """Singleton clusters of duplicated points: D = d exactly for every linkage, with many exact ties."""
    points, labels = dyadic_case(seed=3, num_samples=30, pool_size=7, singletons=True)
    pairs = brute_force_matrix(points, labels, linkage)
    for num_merges in (1, 5, 12, 22, 29):
        expected, _ = reference_walk(pairs, labels, num_merges)
        assert merge_stage(points, labels, num_merges, linkage=linkage).tolist() == expected


@pytest.mark.parametrize("linkage", ["min", "max", "buc"])
def test_exact_ties_in_mixed_clusters_of_duplicates(linkage):
    points, labels = dyadic_case(seed=4, num_samples=40, pool_size=9, singletons=False)
    pairs = brute_force_matrix(points, labels, linkage)
    matrix = cluster_distance_matrix(points, labels, linkage=linkage)
    for (a, b), value in pairs.items():
        assert matrix[a, b].item() == pytest.approx(value, abs=TOLERANCE)
    for num_merges in (1, 4, 9, 15):
        expected, _ = reference_walk(pairs, labels, num_merges)
        assert merge_stage(points, labels, num_merges, linkage=linkage).tolist() == expected


# ---------------------------------------------------------------- scipy's agglomerative clustering


@pytest.mark.parametrize("linkage,method", [("min", "single"), ("max", "complete"), ("average", "average")])
def test_one_merge_at_a_time_reproduces_scipy(linkage, method):
    rng = np.random.default_rng(11)
    points = np.asarray(unit(rng.standard_normal((14, 5))))
    tree = scipy_linkage(points, method=method, metric="euclidean")
    assert_no_near_ties(tree[:, 2])
    sets = {i: frozenset([i]) for i in range(len(points))}  # scipy's cluster ids -> points
    labels = np.arange(len(points))
    for step, row in enumerate(tree):
        first, second = sets[int(row[0])], sets[int(row[1])]
        sets[len(points) + step] = first | second
        matrix = cluster_distance_matrix(points, labels, linkage=linkage)
        assert matrix.min().item() == pytest.approx(row[2], abs=TOLERANCE)
        new_labels = merge_stage(points, labels, 1, linkage=linkage)
        groups = {}
        for old in range(labels.max() + 1):
            members = np.flatnonzero(labels == old)
            groups.setdefault(int(new_labels[members[0]]), set()).add(frozenset(members.tolist()))
        assert [group for group in groups.values() if len(group) > 1] == [{first, second}]
        labels = new_labels
    assert labels.max() == 0


# ---------------------------------------------------------------- blocked selection == dense matrix walk


@pytest.mark.parametrize("linkage", LINKAGES)
def test_blocked_stage_walks_the_dense_matrix_for_every_block_size(linkage):
    points, labels = random_case(seed=5, num_samples=70, dim=8, max_size=6)
    num_clusters = labels.max() + 1
    reference = None
    for block_size in (1, 2, 5, 17, 64, 10_000):
        matrix = cluster_distance_matrix(points, labels, linkage=linkage, block_size=block_size)
        if reference is None:
            reference = matrix
        assert torch.allclose(matrix, reference, rtol=0, atol=1e-6)
        for num_merges in (1, 9, num_clusters - 1):
            expected, looked_at = reference_walk(matrix_as_pairs(matrix), labels, num_merges)
            result = merge_stage(points, labels, num_merges, linkage=linkage, block_size=block_size)
            assert result.tolist() == expected  # same numbers, walked identically: exact
            assert_no_near_ties(looked_at, gap=1e-5)  # so it is also the same across block sizes
            reference_labels, _ = reference_walk(matrix_as_pairs(reference), labels, num_merges)
            assert result.tolist() == reference_labels


def test_more_candidates_are_fetched_when_skipped_pairs_use_them_up(monkeypatch):
    points, labels = dyadic_case(seed=6, num_samples=60, pool_size=6, singletons=True)  # ~10 copies each
    expected = [merge_stage(points, labels, k, linkage="imd_cpd", block_size=8).tolist() for k in (20, 50, 59)]
    monkeypatch.setattr(stage, "_initial_capacity", lambda target: 1)
    for k, labels_k in zip((20, 50, 59), expected):
        assert merge_stage(points, labels, k, linkage="imd_cpd", block_size=8).tolist() == labels_k
        pairs = brute_force_matrix(points, labels, "imd_cpd")
        assert labels_k == reference_walk(pairs, labels, k)[0]


def test_candidate_pool_keeps_the_smallest_pairs_in_strict_order():
    """Panels offered as the engine does (upper triangle, ids permuted); values are small integers: many ties."""
    rng = np.random.default_rng(7)
    num_clusters = 30
    ids = rng.permutation(num_clusters)
    values = rng.integers(0, 6, (num_clusters, num_clusters)).astype(np.float32)
    pool = CandidatePool(capacity=25, num_clusters=num_clusters)
    for start, stop in [(0, 4), (4, 11), (11, 12), (12, 30)]:
        block = values[start:stop, start:].copy()
        block[:, : stop - start][np.tril(np.ones((stop - start,) * 2, dtype=bool))] = np.inf
        pool.offer(torch.from_numpy(block), torch.from_numpy(ids[start:stop]), torch.from_numpy(ids[start:]))
    offered = {
        tuple(sorted((int(ids[p]), int(ids[q])))): float(values[p, q])
        for p, q in itertools.combinations(range(num_clusters), 2)
    }
    expected = sorted(offered.items(), key=lambda item: (item[1], item[0]))[:25]
    kept, first, second = pool.sorted_pairs()
    assert list(zip(first.tolist(), second.tolist())) == [pair for pair, _ in expected]
    assert kept.tolist() == [value for _, value in expected]
    assert pool.truncated


# ---------------------------------------------------------------- CPD


def test_compactness_of_a_singleton_is_zero_and_of_a_pair_is_their_distance():
    points = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    compactness = cluster_compactness(points, np.array([0, 0, 1]))
    assert compactness[1].item() == 0.0
    assert compactness[0].item() == pytest.approx(distance(points[0], points[1]), abs=1e-6)


def test_compactness_matches_brute_force_in_every_batching(monkeypatch):
    points, labels = random_case(seed=8, num_samples=40, dim=6, max_size=9)
    expected = [brute_force_compactness(unit(points), m) for m in members_of(labels)]
    for batch_elements in (1 << 22, 20, 3):  # whole runs, several clusters per product, row chunks
        monkeypatch.setattr(kernel, "_COMPACTNESS_BATCH_ELEMENTS", batch_elements)
        assert cluster_compactness(points, labels).tolist() == pytest.approx(expected, abs=TOLERANCE)


def test_compactness_enters_imd_cpd_with_weight_lambda():
    points, labels = random_case(seed=9, num_samples=20, dim=5, max_size=5)
    compactness = cluster_compactness(points, labels)
    imd = cluster_distance_matrix(points, labels, linkage="imd")
    full = cluster_distance_matrix(points, labels, linkage="imd_cpd", lam=0.7)
    expected = imd + 0.7 * (compactness[:, None] + compactness[None, :])
    assert torch.allclose(full, expected, atol=1e-6)
