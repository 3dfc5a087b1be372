"""Camera standardisation: against a slow loop, on features with a large camera offset, shrinkage, unseen cameras,
and the camera-standardised metrics of the query / gallery protocol."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reid_sdk.evaluation import (LabelledFeatures, camera_standardise, camera_standardised_summary,
                                 query_gallery_metrics, query_gallery_report)
from reid_sdk.gallery.camera_statistics import CameraStatistics


def slow_camera_standardise(features, cameras, shrinkage):
    """Row by row: unit rows, per-camera means shrunk towards the global mean, subtracted, unit again."""
    unit = [np.asarray(row, np.float64) / np.linalg.norm(row) for row in features]
    global_mean = sum(unit) / len(unit)
    out = []
    for row, camera in zip(unit, cameras):
        members = [other for other, their in zip(unit, cameras) if their == camera]
        mean = (sum(members) + shrinkage * global_mean) / (len(members) + shrinkage)
        centred = row - mean
        out.append(centred / np.linalg.norm(centred))
    return np.array(out)


def offset_world(seed=0, identities=12, shots=3, offset=3.0, dim=32):
    """Two cameras that each add a large offset to every feature; identities are otherwise clearly apart."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(identities, dim))
    camera_shift = {1: offset * rng.normal(size=dim), 2: offset * rng.normal(size=dim)}
    features, pids, cameras = [], [], []
    for pid in range(identities):
        for camera in (1, 2):
            for _ in range(shots):
                features.append(people[pid] + camera_shift[camera] + 0.3 * rng.normal(size=dim))
                pids.append(pid)
                cameras.append(camera)
    features = np.asarray(features, np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True), np.array(pids), np.array(cameras)


def labelled(features, pids, cameras, keep):
    records = [SimpleNamespace(pid=p, camera=c) for p, c in zip(pids[keep], cameras[keep])]
    return LabelledFeatures.of(records, features[keep])


@pytest.mark.parametrize("shrinkage", [0.0, 1.0, 10.0])
def test_matches_a_slow_loop(shrinkage):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 8)).astype(np.float32) * rng.uniform(0.5, 3, size=(40, 1)).astype(np.float32)
    cameras = rng.integers(1, 5, 40)
    result = camera_standardise(features, cameras, shrinkage)
    assert result.dtype == np.float32 and result.shape == features.shape
    np.testing.assert_allclose(result, slow_camera_standardise(features, cameras, shrinkage), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(result, axis=1), 1.0, atol=1e-5)


def test_removing_the_camera_offset_recovers_identities():
    features, pids, cameras = offset_world()
    query, gallery = labelled(features, pids, cameras, np.arange(len(pids)) % 3 == 0), labelled(
        features, pids, cameras, np.arange(len(pids)) % 3 != 0)
    plain = query_gallery_metrics(query, gallery)
    standardised = query_gallery_metrics(query, gallery, camera_standardised=True)
    assert plain.mAP < 0.4
    assert standardised.mAP > 0.9
    report = query_gallery_report(query, gallery)
    assert report["mAP"] == pytest.approx(plain.mAP)
    assert report["mAP_camstd"] == pytest.approx(standardised.mAP)
    assert report["rank1_camstd"] == pytest.approx(standardised.rank(1))
    assert camera_standardised_summary(standardised) == {"mAP_camstd": standardised.mAP,
                                                         "rank1_camstd": standardised.rank(1)}


def test_a_camera_of_one_row_is_shrunk_towards_the_global_mean():
    features = np.array([[1, 0, 0], [0.8, 0.6, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)
    cameras = np.array([1, 1, 1, 2])
    statistics = CameraStatistics.of(features, cameras, shrinkage=3.0)
    global_mean = features.mean(axis=0)
    np.testing.assert_allclose(statistics.mean(2), (features[3] + 3.0 * global_mean) / 4.0)
    # without shrinkage the lone row is its camera's mean: nothing is left of it, a zero row (scores 0)
    alone = camera_standardise(features, cameras, shrinkage=0.0)
    np.testing.assert_array_equal(alone[3], 0.0)
    assert np.isfinite(alone).all()
    # with shrinkage it keeps a direction: its own, pulled away from the global mean
    shrunk = camera_standardise(features, cameras, shrinkage=3.0)
    np.testing.assert_allclose(shrunk, slow_camera_standardise(features, cameras, 3.0), atol=1e-6)
    assert shrunk[3][2] > 0.7


def test_a_query_camera_absent_from_the_gallery_uses_the_global_statistics():
    rng = np.random.default_rng(2)
    gallery, gallery_cameras = rng.normal(size=(20, 6)).astype(np.float32), rng.integers(1, 3, 20)
    statistics = CameraStatistics.of(gallery, gallery_cameras)
    query = rng.normal(size=(3, 6)).astype(np.float32)
    unit = query / np.linalg.norm(query, axis=1, keepdims=True)
    expected = unit - statistics.global_mean()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    for camera in (7, None, "1"):  # unseen, none, and "1" is not camera 1
        np.testing.assert_allclose(statistics.standardise(query, [camera] * 3), expected, atol=1e-6)


@pytest.mark.parametrize("features, cameras, message", [
    (np.ones((3, 2)), np.array([1, 2]), "one camera per row"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([1, 2]), "all-zero row"),
    (np.array([[1.0, np.nan]]), np.array([1]), "NaN"),
])
def test_bad_input_is_refused_in_one_line(features, cameras, message):
    with pytest.raises(ValueError, match=message):
        camera_standardise(features, cameras)
    with pytest.raises(ValueError, match="shrinkage"):
        camera_standardise(np.eye(2), np.array([1, 2]), shrinkage=-1.0)


def test_statistics_restore_exactly_and_round_trip():
    rng = np.random.default_rng(3)
    base, more = rng.normal(size=(30, 5)), rng.normal(size=(9, 5))
    cameras, more_cameras = list(rng.integers(1, 4, 30)), [1, "door", None] * 3
    statistics = CameraStatistics.of(base, cameras)
    before = CameraStatistics.from_dict(statistics.to_dict())
    statistics.add(more, more_cameras)
    assert statistics != before
    statistics.remove(more, more_cameras)
    assert statistics == before
    # order never matters: counted in another order, the sums are the same bit for bit
    order = rng.permutation(30)
    assert CameraStatistics.of(base[order], [cameras[i] for i in order]) == before
    with pytest.raises(ValueError, match="camera 'door'"):
        statistics.remove(more[:1], ["door"])
