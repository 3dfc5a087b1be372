"""TrackletAggregator: one running feature per tracked person, built frame by frame.

Each track keeps a weighted sum of its frames' features (float64), the weighted
sum of their norms and when it was last seen: memory is O(tracks x D), never per frame.
A track whose features are zero or cancel out has no direction to normalise:
reading it raises ValueError naming the track, never returns NaN.
"""

from __future__ import annotations

import logging

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _Track:
    feature_sum: np.ndarray
    norm_sum: float  # weighted sum of the frame features' norms: the scale that tells "cancel out" from small
    frames: int
    last_frame: int | None
    last_time: float


# The mean of a track's features counts as cancelled out below this fraction of its frames' mean norm.
_CANCELLED = 1e-6


def _track_feature(track_id: Hashable, track: _Track) -> np.ndarray:
    """The track's weighted mean feature, L2-normalised, float32; ValueError naming the track when its
    features are zero or cancel out (the mean then has no direction: dividing would give NaN or noise)."""
    norm = float(np.linalg.norm(track.feature_sum))
    if not norm > _CANCELLED * track.norm_sum:
        raise ValueError(f"track {track_id!r} has no feature: its {track.frames} frame features are zero or "
                         "cancel out, so their mean has no direction")
    return (track.feature_sum / norm).astype(np.float32)


class TrackletAggregator:
    """Per-track running (optionally quality-weighted) mean of frame features, L2-normalised on read.

    ``extractor`` (anything with ``extract(crops) -> (B, D)``) lets ``update`` take
    crops instead of features. Tracks idle for more than ``max_idle_frames`` frames
    (counted from the newest frame index seen) or ``max_idle_seconds`` are finished
    by :meth:`expire`, which returns their features so none is lost. Thread-safe.

    Example:
        ```python
        tracks = TrackletAggregator(max_idle_frames=30)
        tracks.update_many(["p1", "p2"], frame_features, weights=[0.9, 0.6], frame=frame)
        person = tracks.get("p1")         # the weighted mean so far, L2-normalised
        finished = tracks.expire()        # {track_id: feature} of tracks idle for more than 30 frames
        ```
    """

    def __init__(self, extractor: object | None = None, max_idle_frames: int | None = None,
                 max_idle_seconds: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("max_idle_frames", max_idle_frames), ("max_idle_seconds", max_idle_seconds)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.extractor = extractor
        self.max_idle_frames = max_idle_frames
        self.max_idle_seconds = max_idle_seconds
        self.clock = clock
        self.feature_dim: int | None = getattr(extractor, "feature_dim", None)
        self._tracks: dict[Hashable, _Track] = {}
        self._newest_frame: int | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, track_id: Hashable) -> bool:
        return track_id in self._tracks

    def track_ids(self) -> list[Hashable]:
        with self._lock:
            return list(self._tracks)

    def update(self, track_id: Hashable, feature_or_crop: np.ndarray, weight: float = 1.0,
               frame: int | None = None) -> None:
        """Add one observation of ``track_id``: a (D,) feature, or a crop when an extractor is set."""
        self.update_many([track_id], [feature_or_crop], [weight], frame)

    def update_many(self, track_ids: Sequence[Hashable], features_or_crops: Sequence[np.ndarray] | np.ndarray,
                    weights: Sequence[float] | None = None, frame: int | None = None) -> None:
        """Add one observation for each of several tracks (e.g. all detections of a frame, extracted in one batch)."""
        if len(track_ids) != len(features_or_crops):
            raise ValueError(f"{len(track_ids)} track ids but {len(features_or_crops)} features/crops")
        weights = np.ones(len(track_ids)) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(track_ids),) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(f"weights must be one finite positive value per track, got {weights}")
        if not len(track_ids):
            return
        features = self._as_features(features_or_crops)
        norms = np.linalg.norm(features, axis=1)
        now = self.clock()
        with self._lock:
            if frame is not None:
                self._newest_frame = frame if self._newest_frame is None else max(self._newest_frame, frame)
            for track_id, feature, norm, weight in zip(track_ids, features, norms, weights):
                track = self._tracks.get(track_id)
                if track is None:
                    track = self._tracks[track_id] = _Track(np.zeros(self.feature_dim), 0.0, 0, frame, now)
                track.feature_sum += weight * feature
                track.norm_sum += float(weight * norm)
                track.frames += 1
                track.last_frame = frame if frame is not None else track.last_frame
                track.last_time = now

    def _as_features(self, items: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Features as float64 (B, D): vectors are validated, crops go through the extractor."""
        first = np.asarray(items[0])
        if first.ndim == 1:
            features = np.asarray(np.stack([np.asarray(v) for v in items]), dtype=np.float64)
        elif self.extractor is None:
            raise ValueError("got image crops but this TrackletAggregator has no extractor; pass (D,) features")
        else:
            features = np.asarray(self.extractor.extract(list(items)), dtype=np.float64)
        if features.ndim != 2:
            raise ValueError(f"features must be 1-D vectors of equal length, got shape {features.shape}")
        if self.feature_dim is None:
            self.feature_dim = features.shape[1]
        if features.shape[1] != self.feature_dim:
            raise ValueError(f"feature dimension {features.shape[1]} != {self.feature_dim} of this aggregator")
        if not np.all(np.isfinite(features)):
            raise ValueError("features contain NaN or infinite values")
        return features

    def get(self, track_id: Hashable) -> np.ndarray:
        """The track's current feature: the weighted mean of its frames, L2-normalised, float32 (D,)."""
        with self._lock:
            track = self._tracks.get(track_id)
            if track is None:
                raise KeyError(f"unknown track id {track_id!r}")
            return _track_feature(track_id, track)

    def frame_count(self, track_id: Hashable) -> int:
        with self._lock:
            if track_id not in self._tracks:
                raise KeyError(f"unknown track id {track_id!r}")
            return self._tracks[track_id].frames

    def finish(self, track_id: Hashable) -> np.ndarray:
        """Return the track's feature and forget the track (forgotten also when it has no feature: ValueError)."""
        with self._lock:
            track = self._tracks.pop(track_id, None)
        if track is None:
            raise KeyError(f"unknown track id {track_id!r}")
        return _track_feature(track_id, track)

    def expire(self) -> dict[Hashable, np.ndarray]:
        """Finish every track idle beyond the configured limits; returns {track_id: feature}.

        An idle track without a feature (its frame features are zero or cancel) is dropped with a logged warning
        and left out of the result: a streaming loop keeps finishing the others.
        """
        now = self.clock()
        with self._lock:
            idle = {track_id: track for track_id, track in self._tracks.items() if self._is_idle(track, now)}
            for track_id in idle:
                del self._tracks[track_id]
        finished = {}
        for track_id, track in idle.items():
            try:
                finished[track_id] = _track_feature(track_id, track)
            except ValueError as error:
                logger.warning("dropped idle %s", error)
        return finished

    def _is_idle(self, track: _Track, now: float) -> bool:
        if self.max_idle_seconds is not None and now - track.last_time > self.max_idle_seconds:
            return True
        return (
            self.max_idle_frames is not None
            and self._newest_frame is not None
            and track.last_frame is not None
            and self._newest_frame - track.last_frame > self.max_idle_frames
        )


def extract_crops(extractor: Any, crops: Sequence[np.ndarray], channel_order: str | None = None) -> np.ndarray:
    """``extractor.extract(crops)``, naming the crops' colour order ("bgr" / "rgb") when it is not the extractor's
    own (``FeatureExtractor.channel_order``; BGR for an extractor that states none, so a duck-typed one is only
    asked with the keyword for RGB crops). None leaves the order to the extractor."""
    if channel_order is None or channel_order == getattr(extractor, "channel_order", "bgr"):
        return extractor.extract(crops)
    return extractor.extract(crops, channel_order=channel_order)


def pooled_features(extractor: Any, groups: Sequence[Sequence[np.ndarray]],
                    weights: Sequence[np.ndarray | None] | None = None,
                    channel_order: str | None = None) -> np.ndarray:
    """One L2-normalised float32 feature per group of crops (a track's or a tracklet's frames, or one image): the
    mean of its crops' features, weighted by ``weights[i]`` when given, every group extracted in ONE
    ``extractor.extract`` call. What every gallery ingest stores, on one process or many. ``channel_order`` names
    the crops' colour order ("bgr" for frames and files OpenCV decoded), None for the extractor's own."""
    if not len(groups):
        return np.empty((0, int(extractor.feature_dim)), dtype=np.float32)
    sizes = [len(group) for group in groups]
    if not min(sizes):
        raise ValueError(f"group {sizes.index(0)} has no crop, so it has no feature")
    features = extract_crops(extractor, [crop for group in groups for crop in group], channel_order)
    aggregator = TrackletAggregator()
    pooled = np.empty((len(groups), features.shape[1]), dtype=np.float32)
    ends = np.cumsum(sizes)
    for index, (end, size) in enumerate(zip(ends, sizes)):
        aggregator.update_many([index] * size, features[end - size : end], None if weights is None else weights[index])
        pooled[index] = aggregator.finish(index)
    return pooled
