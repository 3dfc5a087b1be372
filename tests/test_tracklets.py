"""TrackletAggregator: weighted means against numpy, expiry, crops through an extractor, threads, errors."""

import threading

import numpy as np
import pytest

from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.tracks.aggregator import TrackletAggregator
from tests.helpers import random_crops, tiny_model


def _unit(vector):
    return vector / np.linalg.norm(vector)


def test_weighted_mean_per_track_matches_numpy():
    rng = np.random.default_rng(0)
    frames = {track: rng.normal(size=(n, 8)) for track, n in (("a", 5), ("b", 1), (7, 9))}
    weights = {track: rng.uniform(0.1, 2.0, len(f)) for track, f in frames.items()}
    aggregator = TrackletAggregator()
    for step in range(9):
        for track, features in frames.items():
            if step < len(features):
                aggregator.update(track, features[step], weight=weights[track][step], frame=step)
    for track, features in frames.items():
        expected = _unit(np.average(features, axis=0, weights=weights[track]))
        np.testing.assert_allclose(aggregator.get(track), expected, rtol=1e-6, atol=1e-6)
        assert aggregator.get(track).dtype == np.float32
        assert aggregator.frame_count(track) == len(features)


def test_finish_returns_the_feature_and_forgets_the_track():
    aggregator = TrackletAggregator()
    aggregator.update_many(["x", "y"], np.eye(3)[:2])
    aggregator.update("x", np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(aggregator.finish("x"), _unit(np.array([1.0, 0.0, 1.0])), rtol=1e-6)
    assert "x" not in aggregator and len(aggregator) == 1
    with pytest.raises(KeyError, match="unknown track id 'x'"):
        aggregator.get("x")
    with pytest.raises(KeyError):
        aggregator.finish("x")


def test_expiry_by_idle_frames_returns_finished_tracks():
    aggregator = TrackletAggregator(max_idle_frames=2)
    aggregator.update("old", np.ones(4), frame=0)
    aggregator.update("new", np.ones(4), frame=2)
    assert aggregator.expire() == {}
    aggregator.update("new", -np.ones(4), frame=3)
    expired = aggregator.expire()
    assert list(expired) == ["old"] and aggregator.track_ids() == ["new"]
    np.testing.assert_allclose(expired["old"], np.full(4, 0.5))


def test_expiry_by_idle_seconds_uses_the_clock():
    now = [100.0]
    aggregator = TrackletAggregator(max_idle_seconds=5.0, clock=lambda: now[0])
    aggregator.update(1, np.ones(2))
    now[0] = 103.0
    aggregator.update(2, np.ones(2))
    now[0] = 105.5
    assert list(aggregator.expire()) == [1]
    now[0] = 108.5
    assert list(aggregator.expire()) == [2] and len(aggregator) == 0


def test_crops_go_through_the_extractor():
    extractor = FeatureExtractor(tiny_model(), device="cpu")
    crops = random_crops(3, seed=1)
    aggregator = TrackletAggregator(extractor=extractor)
    for crop in crops:
        aggregator.update("t", crop)
    expected = _unit(extractor.extract(crops).astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(aggregator.get("t"), expected, rtol=1e-5, atol=1e-6)
    assert aggregator.feature_dim == 512


def test_concurrent_updates_lose_nothing():
    aggregator = TrackletAggregator()
    rng = np.random.default_rng(2)
    per_thread = [rng.normal(size=(200, 16)) for _ in range(8)]

    def work(features):
        for index, feature in enumerate(features):
            aggregator.update(index % 4, feature)

    threads = [threading.Thread(target=work, args=(f,)) for f in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = np.stack(per_thread)
    for track in range(4):
        assert aggregator.frame_count(track) == 8 * 50
        np.testing.assert_allclose(aggregator.get(track), _unit(everything[:, track::4].reshape(-1, 16).mean(0)),
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("frames", [np.zeros((2, 4)), np.array([[1.0, 2.0, 0.0, 0.0], [-1.0, -2.0, 0.0, 0.0]]),
                                    np.array([[0.1, 0.2, 0.3, 0.0], [-0.1, -0.2, -0.3 + 1e-12, 0.0]])],
                         ids=["zero", "opposite", "cancel-to-rounding"])
def test_a_track_without_direction_is_an_error_naming_it_never_nan(frames, caplog):
    aggregator = TrackletAggregator(max_idle_frames=0)
    aggregator.update_many(["ghost", "kept"], [frames[0], np.ones(4)], frame=0)
    aggregator.update("ghost", frames[1], frame=0)
    aggregator.update("new", np.ones(4), frame=2)
    with np.errstate(all="raise"):  # no numpy warning on the way either
        with pytest.raises(ValueError, match="track 'ghost' has no feature: its 2 frame features are zero or cancel"):
            aggregator.get("ghost")
        with pytest.raises(ValueError, match="track 'ghost' has no feature"):
            aggregator.finish("ghost")
        assert aggregator.track_ids() == ["kept", "new"]  # finish drops the track it refused
        aggregator.update("ghost", frames[0], frame=0)
        aggregator.update("ghost", frames[1], frame=0)
        with caplog.at_level("WARNING", logger="reid_sdk"):
            finished = aggregator.expire()  # the directionless idle track is dropped, the other one finishes
    assert set(finished) == {"kept"} and aggregator.track_ids() == ["new"]
    assert "dropped idle track 'ghost' has no feature" in caplog.text


def test_a_small_but_consistent_track_keeps_its_direction():
    aggregator = TrackletAggregator()
    aggregator.update_many(["tiny", "tiny"], [np.array([1e-30, 0.0]), np.array([2e-30, 0.0])])
    np.testing.assert_allclose(aggregator.get("tiny"), [1.0, 0.0])


def test_bad_input_is_refused():
    aggregator = TrackletAggregator()
    aggregator.update("a", np.ones(4))
    with pytest.raises(ValueError, match="dimension 3 != 4"):
        aggregator.update("a", np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        aggregator.update("a", np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="weights must be one finite positive value"):
        aggregator.update("a", np.ones(4), weight=0.0)
    with pytest.raises(ValueError, match="no extractor"):
        aggregator.update("a", np.zeros((8, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="2 track ids but 1"):
        aggregator.update_many(["a", "b"], [np.ones(4)])
    with pytest.raises(ValueError, match="max_idle_frames must be >= 0"):
        TrackletAggregator(max_idle_frames=-1)
    assert aggregator.frame_count("a") == 1
