"""Clustering engine: input checks, output kinds and relabelling, merge counts, and the merge schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid_sdk.training.clustering import MergeSchedule, cluster_distance_matrix, merge_stage


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 6)), np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 6, 7, 7])


@pytest.mark.parametrize(
    "features,labels,message",
    [
        (np.full((3, 4), np.nan), [0, 1, 2], "NaN or inf"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), [0, 1], "NaN or inf"),
        (np.array([[1e300, 1.0], [0.0, 1.0]]), [0, 1], "NaN or inf"),  # overflows float32
        (np.ones((3, 4)), [0, 1], "2 entries but features has 3 rows"),
        (np.ones((3, 4)), [0, 2, 2], "label 1 is unused"),
        (np.ones((3, 4)), [0, -1, 1], "0..C-1"),
        (np.ones((3, 4)), [0.0, 1.0, 2.0], "must be integers"),
        (np.ones((3, 4)), [[0, 1, 2]], "1-D"),
        (np.zeros((0, 4)), [], "empty"),
        (np.ones(4), [0, 1, 2, 3], "2-D"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), [0, 1], "row 1 is all zeros"),
        (np.array([["a", "b"]]), [0], "numeric"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_problem(features, labels, message):
    with pytest.raises(ValueError, match=message):
        merge_stage(features, labels, 1)
    with pytest.raises(ValueError, match=message):
        cluster_distance_matrix(features, labels)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"num_merges": -1}, "num_merges must be >= 0"),
        ({"num_merges": 1.5}, "num_merges must be an integer"),
        ({"num_merges": 1, "linkage": "ward"}, "unknown linkage 'ward'"),
        ({"num_merges": 1, "lam": -0.1}, "lam must be"),
        ({"num_merges": 1, "lam_buc": float("nan")}, "lam_buc must be"),
        ({"num_merges": 1, "block_size": 0}, "block_size"),
        ({"num_merges": 1, "matmul_precision": "fp8"}, "matmul_precision"),
    ],
)
def test_bad_options_raise_value_errors(small, options, message):
    features, labels = small
    with pytest.raises(ValueError, match=message):
        merge_stage(features, labels, **options)


def test_numpy_in_numpy_out_and_tensor_in_tensor_out(small):
    features, labels = small
    from_numpy = merge_stage(features.astype(np.float32), labels.astype(np.int32), 3)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.int32
    from_torch = merge_stage(torch.from_numpy(features), torch.from_numpy(labels), 3)
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.int64
    assert from_torch.tolist() == from_numpy.tolist()
    assert merge_stage(features.tolist(), labels.tolist(), 3).tolist() == from_numpy.tolist()


def test_merges_never_exceed_the_request_and_stop_at_one_cluster(small):
    features, labels = small
    num_clusters = labels.max() + 1
    for num_merges in range(num_clusters + 3):
        result = merge_stage(features, labels, num_merges)
        assert result.max() + 1 == max(1, num_clusters - num_merges)
        assert set(result.tolist()) == set(range(result.max() + 1))
    assert merge_stage(features, labels, 0).tolist() == labels.tolist()


def test_groups_are_numbered_by_their_smallest_old_label():
    points = np.array([[1.0, 0.0], [0.0, 1.0], [0.999, 0.04], [-1.0, 0.0]])
    # Old clusters 0 and 2 are the close pair: they become 0; then old 1 -> 1 and old 3 -> 2.
    assert merge_stage(points, np.array([2, 1, 0, 3]), 1, linkage="min").tolist() == [0, 1, 0, 2]


def test_features_are_normalised_so_scale_does_not_matter(small):
    features, labels = small
    scaled = features * np.linspace(0.1, 10, len(features))[:, None]
    for linkage in ("imd_cpd", "average"):
        assert torch.allclose(
            cluster_distance_matrix(features, labels, linkage=linkage),
            cluster_distance_matrix(scaled, labels, linkage=linkage),
            atol=1e-6,
        )


def test_stage_is_deterministic(small):
    features, labels = small
    runs = [merge_stage(features, labels, 4).tolist() for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_single_sample_and_single_cluster():
    assert merge_stage(np.ones((1, 3)), np.array([0]), 5).tolist() == [0]
    assert merge_stage(np.eye(3), np.array([0, 0, 0]), 2).tolist() == [0, 0, 0]
    assert cluster_distance_matrix(np.eye(3), np.array([0, 0, 0])).tolist() == [[float("inf")]]


def test_matmul_precision_setting_is_restored(small):
    features, labels = small
    before = torch.backends.mkldnn.matmul.fp32_precision
    merge_stage(features, labels, 2, matmul_precision="bf16")
    merge_stage(features, labels, 2)
    assert torch.backends.mkldnn.matmul.fp32_precision == before


def algorithm_1_stages(num_samples, merges_per_stage):
    """Algorithm 1's loop, literally: while C > m: merge m."""
    clusters, counts = num_samples, [num_samples]
    while clusters > merges_per_stage:
        clusters -= merges_per_stage
        counts.append(clusters)
    return counts


@pytest.mark.parametrize(
    "num_samples,percent,merges",
    [(12_936, 0.05, 647), (16_522, 0.05, 826), (100, 0.05, 5), (20, 0.5, 10), (20, 0.025, 1), (7, 0.3, 2)],
)
def test_merge_schedule_follows_algorithm_1(num_samples, percent, merges):
    schedule = MergeSchedule(num_samples, percent)
    assert schedule.merges_per_stage == merges
    assert schedule.cluster_counts() == algorithm_1_stages(num_samples, merges)
    assert schedule.num_stages == len(schedule.cluster_counts()) - 1


def test_market_schedule_has_19_stages():
    schedule = MergeSchedule(12_936)
    assert (schedule.merges_per_stage, schedule.num_stages, schedule.cluster_counts()[-1]) == (647, 19, 643)


def test_buc_rule_counts_as_bucs_code():
    """BUC: nums_to_merge = int(N * p), and int(1 / p) - 1 steps."""
    schedule = MergeSchedule(12_936, 0.05, rule="buc")
    assert (schedule.merges_per_stage, schedule.num_stages, schedule.cluster_counts()[-1]) == (646, 19, 662)
    assert MergeSchedule(100, 0.3, rule="buc").stage_merges() == [30, 30]  # int(1 / 0.3) - 1 = 2 steps


@pytest.mark.parametrize("target,counts", [(700, [12_936 - 647 * k for k in range(19)] + [700]),
                                           (12_000, [12_936, 12_289, 12_000]), (12_936, [12_936]), (1, None)])
def test_target_clusters_is_a_floor_the_schedule_stops_at(target, counts):
    schedule = MergeSchedule(12_936, 0.05, target_clusters=target)
    expected = counts or MergeSchedule(12_936, 0.05).cluster_counts()  # a floor below Algorithm 1's end: no change
    assert schedule.cluster_counts() == expected
    assert all(0 < merges <= 647 for merges in schedule.stage_merges())


@pytest.mark.parametrize(
    "num_samples,percent,message",
    [(10, 0.01, "rounds to no merges"), (10, 0.0, r"\(0, 1\)"), (10, 1.0, r"\(0, 1\)"), (10.5, 0.1, "integer")],
)
def test_merge_schedule_rejects_bad_values(num_samples, percent, message):
    with pytest.raises(ValueError, match=message):
        MergeSchedule(num_samples, percent)
