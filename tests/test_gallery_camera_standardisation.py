"""Camera standardisation in the gallery: statistics kept exactly through adds, removals, saves and reopening
(old galleries included), searches equal to a brute force of the standardised cosine, the switches."""

from __future__ import annotations

import numpy as np
import pytest

from reid_sdk.gallery import Gallery, GalleryConfig
from reid_sdk.gallery.camera_statistics import CameraStatistics
from reid_sdk.search.index import ReIDIndex
from tests.test_gallery import brute_force, standardised_brute_force
from tests.test_gallery_contract import milvus_file, new_location  # noqa: F401 (fixtures: both backends)
from tests.test_gallery_persistence import rewrite_manifest

CAMERAS = [1, 1, 1, 2, 2, "2", None, 3]  # camera 3 has one entry in eight: shrunk hard towards the global mean


def biased(n=160, dim=16, seed=0):
    """Features whose camera adds a large shared offset, their cameras and a few queries of known cameras."""
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(20, dim))
    shift = {camera: 2.0 * rng.normal(size=dim) for camera in (1, 2, "2", 3)}
    cameras = [CAMERAS[i % len(CAMERAS)] for i in range(n)]
    x = np.stack([people[i % 20] + shift.get(camera, 0.0) + 0.2 * rng.normal(size=dim)
                  for i, camera in enumerate(cameras)]).astype(np.float32)
    queries = (people[:6] + np.stack([shift[c] for c in (1, 2, "2", 3, 1, 2)])).astype(np.float32)
    return x, cameras, queries, [1, 2, "2", 3, None, 7]


def test_search_equals_the_standardised_brute_force_with_query_cameras(new_location):  # noqa: F811
    x, cameras, queries, query_cameras = biased()
    gallery = Gallery(16, path=new_location())
    ids = gallery.add(x, identities=list(range(len(x))), cameras=cameras)
    assert gallery.standardises()
    for filters, mask in ((dict(), None), (dict(exclude_camera=[1]), np.array([c != 1 for c in cameras]))):
        scores, found = gallery.search_ids(queries, k=8, query_camera=query_cameras, **filters)
        expected_scores, rows = standardised_brute_force(x, cameras, queries, 8, mask, query_cameras=query_cameras)
        np.testing.assert_array_equal(found, ids[rows])
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5)  # the returned score: standardised cosine
    # the statistics changed: the standardised index is rebuilt, the ranking follows
    fresh = np.roll(x[:40], 1, axis=1)
    more = gallery.add(fresh, cameras=cameras[:40])
    _, found = gallery.search_ids(queries, k=8, query_camera=query_cameras)
    every = np.concatenate([x, fresh])
    rows = standardised_brute_force(every, cameras + cameras[:40], queries, 8, query_cameras=query_cameras)[1]
    np.testing.assert_array_equal(found, np.concatenate([ids, more])[rows])
    # off: the plain cosine
    _, found = gallery.search_ids(queries, k=8, camera_standardise=False)
    np.testing.assert_array_equal(found, np.concatenate([ids, more])[brute_force(every, queries, 8)[1]])
    gallery.close()


def test_statistics_survive_save_and_reopen_and_removals_restore_them_exactly(new_location):  # noqa: F811
    x, cameras, queries, query_cameras = biased(seed=1)
    location = new_location()
    gallery = Gallery(16, path=location)
    first = gallery.add(x[:100], cameras=cameras[:100])
    before = CameraStatistics.from_dict(gallery.camera_statistics.to_dict())
    # exact: the sums of the stored vectors, bit for bit
    assert before == CameraStatistics.of(gallery.vectors(first), cameras[:100])
    added = gallery.add(x[100:], cameras=cameras[100:])
    assert gallery.camera_statistics != before
    assert gallery.remove(added) == len(added)
    assert gallery.camera_statistics == before
    expected = gallery.search(queries, k=5, query_camera=query_cameras)
    gallery.save()
    gallery.close()
    with Gallery.open(location) as reopened:
        assert reopened.camera_statistics == before
        assert reopened.search(queries, k=5, query_camera=query_cameras) == expected


def test_a_gallery_saved_before_the_statistics_were_kept_counts_them_on_opening(tmp_path, caplog):
    x, cameras, queries, _ = biased(seed=2)
    gallery = Gallery(16, path=tmp_path)
    ids = gallery.add(x, cameras=cameras)
    gallery.save()
    expected = gallery.search(queries, k=5, query_camera=1)
    stored = gallery.vectors(ids)
    gallery.close()
    rewrite_manifest(tmp_path, lambda document: document["files"].pop("camera_statistics.json"))
    with caplog.at_level("INFO"), Gallery.open(tmp_path) as old:
        assert old.camera_statistics == CameraStatistics.of(stored, cameras)
        assert old.search(queries, k=5, query_camera=1) == expected
        old.save()  # from now on they are kept
    assert "keeps no camera statistics" in caplog.text
    assert (tmp_path / "g000002.camera_statistics.json").is_file()


def test_a_gallery_without_cameras_searches_plain_and_the_switches_say_so(tmp_path):
    x, _, queries, _ = biased(seed=3)
    plain = Gallery(16)
    plain.add(x)
    assert not plain.standardises() and plain.standardises(True)
    np.testing.assert_array_equal(plain.search_ids(queries, k=5)[1], brute_force(x, queries, 5)[1])
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="camera_standardise must be True, False or None"):
            plain.search(queries, camera_standardise=bad)
    off = Gallery(16, config=GalleryConfig(camera_standardise=False))
    off.add(x, cameras=1)
    assert not off.standardises() and off.standardises(True)
    off.tune(camera_standardise=None)
    assert off.standardises()
    with pytest.raises(ValueError, match="shrinkage"):
        off.tune(camera_shrinkage=-1.0)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_search_their_standardised_copy(kind):
    x, cameras, queries, query_cameras = biased(n=800, seed=4)
    gallery = Gallery(16, index_type=kind, config=GalleryConfig(min_points_per_centroid=8, nlist=8))
    ids = gallery.add(x, cameras=cameras)
    _, found = gallery.search_ids(queries, k=10, query_camera=query_cameras)
    truth = ids[standardised_brute_force(x, cameras, queries, 10, query_cameras=query_cameras)[1]]
    assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]) >= 0.9


class Identity:
    """An extractor whose crops are already features."""

    feature_dim = 16

    def extract(self, crops) -> np.ndarray:
        return np.asarray(crops, dtype=np.float32).reshape(len(crops), -1)


def test_reid_index_takes_the_switch_in_its_constructor_and_per_search():
    x, cameras, queries, _ = biased(seed=5)
    gallery = Gallery(16)
    gallery.add(x, cameras=cameras)
    crops = list(queries[:, None, :, None])  # (1, 16, 1) "crops" the Identity extractor flattens
    on, off = ReIDIndex(Identity(), gallery), ReIDIndex(Identity(), gallery, camera_standardise=False)
    plain = [m.entry_id for m in off.search_batch(crops, k=3)[0]]
    assert plain == brute_force(x, queries[:1], 3)[1][0].tolist()
    assert [m.entry_id for m in on.search_batch(crops, k=3, camera_standardise=False)[0]] == plain
    standardised = [m.entry_id for m in on.search_batch(crops, k=3, query_camera=1)[0]]
    assert standardised == standardised_brute_force(x, cameras, queries[:1], 3, query_cameras=[1])[1][0].tolist()
    with pytest.raises(ValueError, match="camera_standardise must be"):
        ReIDIndex(Identity(), gallery, camera_standardise="off")
