"""Evaluating a deployed model (any FeatureExtractor backend) on a labelled dataset's query / gallery split.

A tracklet's feature is the L2-normalised mean of its frame features (every frame, as the paper, decoded a chunk
at a time; or at most ``max_frames`` evenly spaced frames); images that cannot be decoded are left out and counted. Distances are cosine distances, optionally
after average query expansion and / or k-reciprocal re-ranking. Torch-free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.datasets import ImageRecord, TrackletRecord, load_dataset
from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.records import record_paths
from reid_sdk.evaluation.camera_standardisation import DEFAULT_SHRINKAGE, camera_standardise_query_gallery
from reid_sdk.evaluation.metrics import RankResult, rank_metrics
from reid_sdk.evaluation.protocol import LabelledFeatures
from reid_sdk.search.reranking import RerankConfig, average_query_expansion, reranked_distances

logger = logging.getLogger(__name__)

_CHUNK_IMAGES = 1024  # crops decoded and held in memory at once


def _crops_of(records: Sequence[ImageRecord | TrackletRecord],
              max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(record position, decoded BGR crop) for every readable image / sampled frame, in record order."""
    for position, record in enumerate(records):
        for path in record_paths(record, max_frames):
            image = read_image(path)
            if image is not None:
                yield position, image


def extract_features(extractor: Any, records: Sequence[ImageRecord | TrackletRecord],
                     max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features of the records that had a readable image, boolean mask of those records).

    ``extractor`` is a :class:`~reid_sdk.inference.extractor.FeatureExtractor` (or anything with ``extract`` and
    ``feature_dim``). A record's feature is the L2-normalised mean of its (frame) features.
    """
    sums = np.zeros((len(records), extractor.feature_dim), dtype=np.float64)
    counts = np.zeros(len(records), dtype=np.int64)
    owners: list[int] = []
    crops: list[np.ndarray] = []

    def flush() -> None:
        if crops:
            np.add.at(sums, np.asarray(owners), extractor.extract(crops))
            np.add.at(counts, np.asarray(owners), 1)
            owners.clear()
            crops.clear()

    for position, crop in _crops_of(records, max_frames):
        owners.append(position)
        crops.append(crop)
        if len(crops) >= _CHUNK_IMAGES:
            flush()
    flush()
    found = counts > 0
    features = sums[found] / counts[found, None]
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return features.astype(np.float32), found


def labelled_split(extractor: Any, records: Sequence[ImageRecord | TrackletRecord], split: str,
                   max_frames: int | None = None) -> LabelledFeatures:
    """The features of one labelled split's readable records through ``extractor`` (see :func:`extract_features`)."""
    return LabelledFeatures.of(records, *extract_features(extractor, records, max_frames), split=split)


@dataclass(frozen=True)
class Retrieval:
    """A scored query / gallery retrieval: both splits' readable records and features, the (Q, G) distances that
    ranked them (smaller = closer), the metrics, the same metrics on camera-standardised features
    (``standardised``: each camera's mean removed, statistics from query and gallery together) and the details
    (dataset, counts, re-ranking used, shrinkage)."""

    query: LabelledFeatures
    gallery: LabelledFeatures
    distances: np.ndarray
    result: RankResult
    standardised: RankResult
    details: dict[str, Any]


def retrieval_distances(query: np.ndarray, gallery: np.ndarray, rerank: RerankConfig | None = None,
                        query_expansion: int = 0) -> np.ndarray:
    """(Q, G) distances: cosine, after average query expansion over ``query_expansion`` neighbours when > 0,
    re-ranked (k-reciprocal) when ``rerank`` is given."""
    if query_expansion:
        query = average_query_expansion(query, gallery, k=query_expansion)
    if rerank is not None:
        return reranked_distances(query, gallery, rerank)
    return 1.0 - query @ gallery.T


def retrieve(extractor: Any, root: str | Path, format: str, max_frames: int | None = None,
             rerank: RerankConfig | None = None, query_expansion: int = 0,
             shrinkage: float = DEFAULT_SHRINKAGE) -> Retrieval:
    """Load ``root`` as ``format``, extract query and gallery features, rank and score them, plain and
    camera-standardised (``shrinkage``: see :func:`~reid_sdk.evaluation.camera_standardisation.camera_standardise`)."""
    if query_expansion < 0:
        raise ValueError(f"query_expansion must be >= 0 neighbours, got {query_expansion}")
    splits = load_dataset(root, format)
    for split in ("query", "gallery"):
        if not splits.split(split):
            raise ValueError(f"{splits.root} has no {split} records to evaluate")

    query = labelled_split(extractor, splits.query, "query", max_frames)
    gallery = labelled_split(extractor, splits.gallery, "gallery", max_frames)
    if query.unreadable or gallery.unreadable:
        logger.warning("left out %d query and %d gallery entries without a readable image", query.unreadable,
                       gallery.unreadable)
    distances = retrieval_distances(query.features, gallery.features, rerank, query_expansion)
    result = rank_metrics(distances, query.pids, gallery.pids, query.cameras, gallery.cameras)
    standardised_query, standardised_gallery = camera_standardise_query_gallery(
        query.features, query.cameras, gallery.features, gallery.cameras, shrinkage)
    standardised = rank_metrics(retrieval_distances(standardised_query, standardised_gallery, rerank, query_expansion),
                                query.pids, gallery.pids, query.cameras, gallery.cameras)
    details = {"dataset": str(splits.root), "format": format, **query.counts("query"), **gallery.counts("gallery"),
               "rerank": None if rerank is None else asdict(rerank), "query_expansion": query_expansion,
               "camera_shrinkage": shrinkage}
    return Retrieval(query, gallery, distances, result, standardised, details)


def evaluate_model(extractor: Any, root: str | Path, format: str, max_frames: int | None = None,
                   rerank: RerankConfig | None = None, query_expansion: int = 0) -> tuple[RankResult, dict]:
    """:func:`retrieve`'s metrics and details."""
    retrieval = retrieve(extractor, root, format, max_frames, rerank, query_expansion)
    return retrieval.result, retrieval.details
