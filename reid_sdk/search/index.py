"""ReIDIndex: a feature extractor plus a Gallery, the search API a surveillance application calls.

Written against a duck type: ``extractor`` is anything with ``extract(crops) -> (B, D)``
float32 features and ``feature_dim`` (``FeatureExtractor`` on any backend), optionally ``model_id``,
which the gallery records and checks, and ``extract(crops, channel_order=...)`` where a caller names the
crops' colour order. No torch import.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import warnings

import numpy as np

from reid_sdk.gallery import Gallery, Match
from reid_sdk.inference.preprocess import as_crop_list
from reid_sdk.search.reranking import RerankConfig, reranked_distances
from reid_sdk.tracks import (FrameQuality, IngestReport, MotTracks, TrackFeature, probe_video, read_mot,
                             track_features)
from reid_sdk.tracks.aggregator import extract_crops, pooled_features

__all__ = ["Match", "ReIDIndex", "TrackMatches"]

_RERANK_BATCH_BYTES = 64 << 20  # candidate vectors held at once while re-ranking a batch of queries


class Extractor(Protocol):
    feature_dim: int

    def extract(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray: ...


def model_id_of(extractor: Extractor) -> str | None:
    """The extractor's model identity (``FeatureExtractor.model_id``), None for extractors that have none."""
    return getattr(extractor, "model_id", None)


def check_fits(gallery: Gallery, feature_dim: int, model_id: str | None) -> None:
    """Refuse a gallery of another dimension (ValueError) or model (ModelMismatchError) than the extractor's."""
    if gallery.dim != feature_dim:
        where = f" at {gallery.path}" if gallery.path is not None else ""
        raise ValueError(f"the gallery{where} holds {gallery.dim}-d features but the extractor produces "
                         f"{feature_dim}-d features: use a gallery built with this model")
    gallery.check_model(model_id)


def _tracklet_feature(extractor: Extractor, crops: np.ndarray | Sequence[np.ndarray],
                      channel_order: str | None) -> np.ndarray:
    """One L2-normalised feature for a tracklet: the mean of its frames' features."""
    return pooled_features(extractor, [as_crop_list(crops)], channel_order=channel_order)[0]


def _crop_list(crops: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """The crops of ``search_batch``: a list of crops or an N x H x W x C array; one 2-D / 3-D array is refused
    (is (N, H, W) N grey crops or one colour crop?)."""
    if isinstance(crops, np.ndarray) and crops.ndim != 4:
        raise ValueError(f"search_batch takes a list of crops or an N x H x W x C array, got an array of shape "
                         f"{crops.shape}; search one crop with search(crop)")
    return as_crop_list(crops)


@dataclass(frozen=True)
class TrackMatches:
    """A track of a video (its feature, frames, times and best crop) and its best gallery matches."""

    track: TrackFeature
    matches: list[Match]


def _reranked_order(query: np.ndarray, candidates: np.ndarray, config: RerankConfig) -> np.ndarray:
    """Positions of ``candidates`` (their vectors, nearest first) in k-reciprocal re-ranked order."""
    if len(candidates) < 2:
        return np.arange(len(candidates))
    small = replace(config, k2=min(config.k2, len(candidates) + 1))  # a short candidate list caps the expansion
    return np.argsort(reranked_distances(query[None], candidates, small)[0], kind="stable")


def _rerank_config(rerank: bool | RerankConfig) -> RerankConfig | None:
    if isinstance(rerank, RerankConfig):
        return rerank
    if isinstance(rerank, bool):
        return RerankConfig() if rerank else None
    raise ValueError(f"rerank must be True, False or a RerankConfig, got {rerank!r}")


class ReIDIndex:
    """Cross-camera person search: crops in, gallery matches out.

    ``search(crop)`` returns the list of :class:`Match` (best first) of ONE crop; ``search_batch(crops)``
    one such list per crop. Crops are H x W x 3 uint8 in the extractor's colour order (``FeatureExtractor``:
    BGR as OpenCV reads, unless made with ``channel_order="rgb"``); every method that takes crops also takes
    ``channel_order="bgr"`` / ``"rgb"`` for them. Filters (``cameras``, ``exclude_camera``, ``since``, ``until``)
    are those of :meth:`Gallery.search`. ``rerank=True`` (or a :class:`RerankConfig`)
    re-orders each query's ``candidates`` nearest entries by k-reciprocal re-ranking.
    ``add_tracks`` / ``search_tracks`` take a video and its MOTChallenge tracks file.

    Camera standardisation (see :class:`~reid_sdk.gallery.Gallery`): ``camera_standardise`` (constructor, or a
    search keyword that overrides it) is None (on where the gallery's entries have cameras), True or False;
    ``query_camera=`` names the camera that saw the query crops (``search_tracks`` passes its ``camera``).

    Example:
        ```python
        index = ReIDIndex.create(FeatureExtractor("model.onnx"), index_type="flat", path="gallery/")
        index.add(crops, identity=names, camera=2, timestamp=times)
        index.save()                                            # atomic; reload with ReIDIndex.load
        for match in index.search(query_crop, k=10, query_camera=2, exclude_camera=2):
            print(match.identity, match.camera, match.score)   # score: the camera-standardised cosine
        plain = index.search(query_crop, k=10, camera_standardise=False)
        per_query = index.search_batch([first_crop, second_crop], k=5)  # one list of matches per crop
        from_pil = index.search(np.asarray(pil_image), channel_order="rgb")
        ```
    """

    def __init__(self, extractor: Extractor, gallery: Gallery, camera_standardise: bool | None = None) -> None:
        check_fits(gallery, int(extractor.feature_dim), model_id_of(extractor))
        gallery.standardises(camera_standardise)  # refuses anything but True, False and None
        self.extractor = extractor
        self.gallery = gallery
        self.camera_standardise = camera_standardise

    @classmethod
    def create(cls, extractor: Extractor, index_type: str = "flat", path: str | Path | None = None,
               camera_standardise: bool | None = None, **gallery_options: Any) -> ReIDIndex:
        """A ReIDIndex over a new, empty gallery sized for the extractor's features and recording its model.

        ``path``: None (in memory), a directory or a Milvus URI; ``gallery_options`` go to :class:`Gallery`
        (``config``, ``overwrite``).
        """
        gallery = Gallery(int(extractor.feature_dim), index_type=index_type, path=path, model_id=model_id_of(extractor),
                          **gallery_options)
        return cls(extractor, gallery, camera_standardise)

    @classmethod
    def load(cls, extractor: Extractor, path: str | Path, camera_standardise: bool | None = None,
             **search_params: Any) -> ReIDIndex:
        """Open a saved gallery for this extractor; ValueError if it holds another dimension or model."""
        gallery = Gallery.open(path, **search_params)
        try:
            return cls(extractor, gallery, camera_standardise)
        except ValueError:
            gallery.close()
            raise

    def save(self, path: str | Path | None = None, overwrite: bool = False) -> Path | str:
        """Save the gallery (see :meth:`Gallery.save`)."""
        return self.gallery.save(path, overwrite=overwrite)

    def __len__(self) -> int:
        return len(self.gallery)

    def add(self, crops: np.ndarray | Sequence[np.ndarray], identity: Any = None, camera: Any = None,
            timestamp: Any = None, track_id: Any = None, metadata: Any = None,
            channel_order: str | None = None) -> np.ndarray:
        """Add one crop or a list of crops; each field is one value for all or one per crop. Returns entry ids."""
        features = extract_crops(self.extractor, as_crop_list(crops), channel_order)
        return self.gallery.add(features, identities=identity, cameras=camera, timestamps=timestamp,
                                track_ids=track_id, metadata=metadata)

    def add_tracklet(self, crops: np.ndarray | Sequence[np.ndarray], identity: Any = None, camera: Any = None,
                     timestamp: float | None = None, track_id: Any = None,
                     metadata: dict[str, Any] | None = None, channel_order: str | None = None) -> int:
        """Add a tracklet's crops as ONE entry (their averaged, normalised feature). Returns its entry id."""
        feature = _tracklet_feature(self.extractor, crops, channel_order)
        return int(self.gallery.add(feature, identities=identity, cameras=camera, timestamps=timestamp,
                                    track_ids=track_id, metadata=metadata)[0])

    def search(self, crop: np.ndarray, k: int = 10, rerank: bool | RerankConfig = False,
               channel_order: str | None = None, **filters: Any) -> list[Match]:
        """Top-k matches of ONE crop (an H x W x C or grey H x W array), best first; several: :meth:`search_batch`.

        Deprecated: a list of crops or an N x H x W x C array still returns one list per crop, with a
        DeprecationWarning, until 0.2.0.
        """
        if isinstance(crop, (list, tuple)) or (isinstance(crop, np.ndarray) and crop.ndim == 4):
            warnings.warn("ReIDIndex.search(crops) with several crops is deprecated and goes in 0.2.0: use "
                          "search_batch(crops), which returns one list of matches per crop", DeprecationWarning,
                          stacklevel=2)
            return self.search_batch(crop, k, rerank, channel_order, **filters)  # type: ignore[return-value]
        return self.search_batch([crop], k, rerank, channel_order, **filters)[0]

    def search_batch(self, crops: np.ndarray | Sequence[np.ndarray], k: int = 10,
                     rerank: bool | RerankConfig = False, channel_order: str | None = None,
                     **filters: Any) -> list[list[Match]]:
        """Top-k matches of each crop of a list (or an N x H x W x C array): one list per crop, in order."""
        features = extract_crops(self.extractor, _crop_list(crops), channel_order)
        return self.search_features(features, k, rerank, **filters)

    def search_tracklet(self, crops: np.ndarray | Sequence[np.ndarray], k: int = 10,
                        rerank: bool | RerankConfig = False, channel_order: str | None = None,
                        **filters: Any) -> list[Match]:
        """Top-k matches of a whole tracklet, searched with its averaged feature."""
        feature = _tracklet_feature(self.extractor, crops, channel_order)
        return self.search_features(feature[None], k, rerank, **filters)[0]

    def search_features(self, features: np.ndarray, k: int = 10, rerank: bool | RerankConfig = False,
                        **filters: Any) -> list[list[Match]]:
        """Top-k matches of each (Q, D) feature row; with ``rerank`` the ``candidates`` nearest entries of each
        query (after the filters) are re-ordered by k-reciprocal re-ranking, and ``score`` stays the cosine
        similarity (camera-standardised, as the candidates were compared, when that is on). Memory is bounded by the
        candidate count: no gallery x gallery matrix."""
        config = _rerank_config(rerank)
        filters.setdefault("camera_standardise", self.camera_standardise)
        if config is None:
            return self.gallery.search(features, k=k, **filters)
        width = max(k, config.candidates)
        step = max(1, _RERANK_BATCH_BYTES // (4 * width * self.gallery.dim))
        results: list[list[Match]] = []
        for start in range(0, len(features), step):
            results += self._reranked(features[start : start + step], k, width, config, filters)
        return results

    def _reranked(self, queries: np.ndarray, k: int, width: int, config: RerankConfig,
                  filters: dict[str, Any]) -> list[list[Match]]:
        """Top-k matches of each query among its ``width`` nearest entries after re-ranking; only the kept
        entries' metadata is read."""
        scores, ids, vectors = self.gallery.search_with_vectors(queries, k=width, **filters)
        queries = self.gallery.query_vectors(queries, filters.get("query_camera"), filters["camera_standardise"])
        kept_scores = np.full((len(queries), min(k, ids.shape[1])), -np.inf, dtype=np.float32)
        kept_ids = np.full(kept_scores.shape, -1, dtype=np.int64)
        for row, query in enumerate(queries):
            found = np.flatnonzero(ids[row] >= 0)
            kept = found[_reranked_order(query, vectors[row, found], config)[:k]]
            kept_scores[row, : len(kept)], kept_ids[row, : len(kept)] = scores[row, kept], ids[row, kept]
        return self.gallery.matches(kept_scores, kept_ids)

    def add_tracks(self, video: str | Path, tracks: str | Path | MotTracks, camera: Any,
                   identities: dict[int, Any] | None = None, fps: float | None = None, start_time: float = 0.0,
                   quality: FrameQuality = FrameQuality(), metadata: dict[str, Any] | None = None,
                   progress: bool = False, report: IngestReport | None = None) -> dict[int, int]:
        """One gallery entry per track of ``video`` (MOT tracks): its quality-weighted mean feature, ``camera``,
        its first timestamp (``start_time`` + seconds into the video), the track id, and in the metadata the
        video, first / last frame and time and the frames used. ``identities`` labels known tracks; ``report``
        receives the counts of tracks used and left out. Returns {track id: entry id}.
        """
        found = list(self._video_tracks(video, tracks, fps, start_time, quality, progress, report))
        if not found:
            return {}
        identities = identities or {}
        ids = self.gallery.add(np.stack([t.feature for t in found]), cameras=camera,
                               identities=[identities.get(t.track_id) for t in found],
                               timestamps=[t.first_time for t in found],
                               track_ids=[t.track_id for t in found],
                               metadata=[{**(metadata or {}), **t.metadata(Path(video))} for t in found])
        return {t.track_id: int(entry) for t, entry in zip(found, ids)}

    def search_tracks(self, video: str | Path, tracks: str | Path | MotTracks, camera: Any, k: int = 5,
                      fps: float | None = None, start_time: float = 0.0, quality: FrameQuality = FrameQuality(),
                      rerank: bool | RerankConfig = False, progress: bool = False,
                      **filters: Any) -> list[TrackMatches]:
        """Every track of ``video`` and its top-k matches in OTHER cameras (``exclude_camera=camera`` unless
        ``filters`` say otherwise), in the order tracks end; camera standardisation takes ``camera`` as the tracks'."""
        filters.setdefault("exclude_camera", camera)
        filters.setdefault("query_camera", camera)
        return [TrackMatches(track, self.search_features(track.feature[None], k, rerank, **filters)[0])
                for track in self._video_tracks(video, tracks, fps, start_time, quality, progress)]

    def _video_tracks(self, video: str | Path, tracks: str | Path | MotTracks, fps: float | None, start_time: float,
                      quality: FrameQuality, progress: bool,
                      report: IngestReport | None = None) -> Iterator[TrackFeature]:
        boxes = tracks if isinstance(tracks, MotTracks) else read_mot(tracks)
        return track_features(self.extractor, probe_video(video, fps), boxes, quality, start_time, progress=progress,
                              report=report)

    def identify(self, crop: np.ndarray, threshold: float = 0.5, channel_order: str | None = None,
                 **filters: Any) -> Any:
        """The identity of the best match when its cosine similarity reaches ``threshold``, else None."""
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        matches = self.search(crop, k=1, channel_order=channel_order, **filters)
        return matches[0].identity if matches and matches[0].score >= threshold else None
