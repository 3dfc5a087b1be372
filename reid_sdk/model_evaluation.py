"""Evaluating a deployed model (any FeatureExtractor backend) on a labelled dataset's query / gallery split.

A tracklet's feature is the L2-normalised mean of its frame features (at most ``max_frames`` evenly spaced
frames); images that cannot be decoded are left out and counted. Torch-free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.datasets import ImageRecord, TrackletRecord, load_dataset
from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.records import record_paths
from reid_sdk.evaluation import RankResult, evaluate_query_gallery

logger = logging.getLogger(__name__)

_CHUNK_IMAGES = 1024  # crops decoded and held in memory at once


def _crops_of(records: Sequence[ImageRecord | TrackletRecord], max_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """(record position, decoded BGR crop) for every readable image / sampled frame, in record order."""
    for position, record in enumerate(records):
        for path in record_paths(record, max_frames):
            image = read_image(path)
            if image is not None:
                yield position, image


def extract_features(extractor: Any, records: Sequence[ImageRecord | TrackletRecord],
                     max_frames: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(features of the records that had a readable image, boolean mask of those records).

    ``extractor`` is a :class:`~reid_sdk.extractor.FeatureExtractor` (or anything with ``extract`` and
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


def evaluate_model(extractor: Any, root: str | Path, format: str, max_frames: int = 32) -> tuple[RankResult, dict]:
    """Load ``root`` as ``format``, extract query and gallery features, score them; returns (result, details)."""
    splits = load_dataset(root, format)
    for split in ("query", "gallery"):
        if not splits.split(split):
            raise ValueError(f"{splits.root} has no {split} records to evaluate")
    result, counts = evaluate_query_gallery(lambda records: extract_features(extractor, records, max_frames),
                                            splits.query, splits.gallery)
    if counts["unreadable_query"] or counts["unreadable_gallery"]:
        logger.warning("left out %d query and %d gallery entries without a readable image",
                       counts["unreadable_query"], counts["unreadable_gallery"])
    return result, {"dataset": str(splits.root), "format": format, **counts}
