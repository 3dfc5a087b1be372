"""The query / gallery protocol on features already extracted: labelled features in, Market-protocol metrics out.

Callers extract features their own way (a deployed FeatureExtractor, the training network) and hand them over
with the records they belong to; nothing here calls back into a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reid_sdk.evaluation.camera_standardisation import DEFAULT_SHRINKAGE, camera_standardise_query_gallery
from reid_sdk.evaluation.metrics import RankResult, rank_metrics

CAMSTD = "_camstd"  # suffix of the camera-standardised metrics' keys: mAP_camstd, rank1_camstd


@dataclass(frozen=True)
class LabelledFeatures:
    """The records of one split that could be read, their features, pids and cameras, and how many could not."""

    records: list[Any]
    features: np.ndarray
    pids: np.ndarray
    cameras: np.ndarray
    unreadable: int

    @classmethod
    def of(cls, records: Sequence[Any], features: np.ndarray, found: np.ndarray | None = None,
           split: str = "records") -> LabelledFeatures:
        """``records`` (each with ``pid`` and ``camera``) with the features of those ``found`` (all when None)."""
        if not records:
            raise ValueError(f"no {split} records to evaluate")
        found = np.ones(len(records), dtype=bool) if found is None else np.asarray(found, dtype=bool)
        if found.shape != (len(records),):
            raise ValueError(f"found must mark each of the {len(records)} {split} records, got shape {found.shape}")
        kept = [record for record, ok in zip(records, found) if ok]
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != len(kept):
            raise ValueError(f"expected ({len(kept)}, D) features for the found {split} records, got {features.shape}")
        return cls(kept, features, np.array([r.pid for r in kept]), np.array([r.camera for r in kept]),
                   len(records) - len(kept))

    def counts(self, split: str) -> dict[str, int]:
        """``num_<split>`` and ``unreadable_<split>`` for a report."""
        return {f"num_{split}": len(self.records), f"unreadable_{split}": self.unreadable}


def query_gallery_metrics(query: LabelledFeatures, gallery: LabelledFeatures, camera_standardised: bool = False,
                          shrinkage: float = DEFAULT_SHRINKAGE) -> RankResult:
    """Market-protocol retrieval of ``query`` against ``gallery`` by cosine distance (features L2-normalised).

    ``camera_standardised``: on features minus their camera's mean, the statistics taken from the query and
    gallery features together (:func:`~reid_sdk.evaluation.camera_standardisation.camera_standardise_query_gallery`).
    """
    query_features, gallery_features = query.features, gallery.features
    if camera_standardised:
        query_features, gallery_features = camera_standardise_query_gallery(
            query_features, query.cameras, gallery_features, gallery.cameras, shrinkage)
    distances = 1.0 - query_features @ gallery_features.T
    return rank_metrics(distances, query.pids, gallery.pids, query.cameras, gallery.cameras)


def camera_standardised_summary(result: RankResult) -> dict[str, float]:
    """The keys under which a report gives camera-standardised metrics: ``mAP_camstd`` and ``rank1_camstd``."""
    return {f"mAP{CAMSTD}": result.mAP, f"rank1{CAMSTD}": result.rank(1)}


def query_gallery_report(query: LabelledFeatures, gallery: LabelledFeatures,
                         shrinkage: float = DEFAULT_SHRINKAGE) -> dict[str, float | int]:
    """The plain metrics (:meth:`RankResult.as_dict`) beside the camera-standardised ``mAP_camstd`` and
    ``rank1_camstd``."""
    standardised = query_gallery_metrics(query, gallery, camera_standardised=True, shrinkage=shrinkage)
    return {**query_gallery_metrics(query, gallery).as_dict(), **camera_standardised_summary(standardised)}
