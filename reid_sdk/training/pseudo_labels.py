"""An epoch's pseudo-labels for the re-clustering schedule: every sample clustered afresh, outliers marked -1.

``dbscan`` is Cluster Contrast's: DBSCAN on the k-reciprocal Jaccard distance. ``linkage`` is the paper's own
merge rule (``clustering.linkage``, IMD/CPD by default) run from singletons: merge stages of
``clustering.merge_percent`` x N pairs each, D recomputed between stages, until no pair of clusters is within
``recluster.linkage_threshold``; clusters still of one sample are the outliers. Inside the loop a merge is
undone at the next epoch, which Algorithm 1's stages never do.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from reid_sdk.training.camera_centering import center_per_camera
from reid_sdk.training.clustering import CannotLink, dbscan_jaccard_labels, merge_stage
from reid_sdk.training.config import ClusteringConfig, ReclusterConfig

OUTLIER = -1
#: Training sets below this many samples take the small-set DBSCAN settings where the config leaves them null.
SMALL_SET = 4000
#: Cluster Contrast's settings (Market's 12,936 crops, about 17 a person) and the small-set ones, measured on
#: rendered 600-crop sets of 60 people (benchmarks/real_start.py): there k1 = 30 spans three people's crops and
#: eps 0.6 joins them, so the first clusterings mix people and the features never recover.
LARGE_SET_DBSCAN = {"eps": 0.6, "min_samples": 4, "k1": 30}
SMALL_SET_DBSCAN = {"eps": 0.5, "min_samples": 2, "k1": 10}


def epoch_pseudo_labels(features: torch.Tensor, recluster: ReclusterConfig, clustering: ClusteringConfig,
                        cameras: torch.Tensor | None = None, cannot_link: CannotLink | None = None,
                        device: torch.device | None = None) -> np.ndarray:
    """(N,) int64 labels 0..C-1, -1 for outliers, from L2-normalised ``features`` (N, d).

    With ``clustering.camera_centering`` each camera's mean feature is removed first (``cameras`` needed).
    ``cannot_link`` applies to the linkage (DBSCAN takes no constraint)."""
    if clustering.camera_centering:
        if cameras is None:
            raise ValueError("clustering.camera_centering needs the samples' cameras")
        features = center_per_camera(features, cameras)
    if recluster.pseudo_labels == "dbscan":
        return dbscan_jaccard_labels(features.cpu(), **dbscan_settings(recluster, len(features)))
    return linkage_to_threshold(features, clustering, recluster.linkage_threshold, cannot_link, device)


def dbscan_settings(recluster: ReclusterConfig, num_samples: int) -> dict[str, float | int]:
    """DBSCAN's eps, min_samples, k1 and k2 for a training set of ``num_samples``: the config's values, and for
    those left null Cluster Contrast's (:data:`LARGE_SET_DBSCAN`) or below :data:`SMALL_SET` samples
    :data:`SMALL_SET_DBSCAN`."""
    by_size = SMALL_SET_DBSCAN if num_samples < SMALL_SET else LARGE_SET_DBSCAN
    chosen = {name: getattr(recluster, name) for name in by_size}
    return {**{name: by_size[name] if value is None else value for name, value in chosen.items()}, "k2": recluster.k2}


def linkage_to_threshold(features: torch.Tensor, clustering: ClusteringConfig, threshold: float,
                         cannot_link: CannotLink | None = None, device: torch.device | None = None) -> np.ndarray:
    """The paper's bottom-up clustering from singletons until no cluster pair has D <= ``threshold``; labels as
    :func:`epoch_pseudo_labels` (a cluster of one sample is an outlier)."""
    count = features.shape[0]
    per_stage = max(1, math.ceil(clustering.merge_percent * count))
    labels = torch.arange(count)
    while True:
        merged = merge_stage(features, labels, per_stage, clustering.linkage, clustering.lam, clustering.lam_buc,
                             device=device, block_size=clustering.block_size, cannot_link=cannot_link,
                             max_distance=threshold).cpu()
        if int(merged.max()) == int(labels.max()):
            break
        labels = merged
    return outliers_marked(labels.numpy())


def outliers_marked(labels: np.ndarray) -> np.ndarray:
    """``labels`` with every one-sample cluster set to -1 and the others renumbered 0..C-1 in label order."""
    labels = np.asarray(labels, dtype=np.int64)
    result = np.full(len(labels), OUTLIER, dtype=np.int64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    kept = counts[inverse] > 1
    result[kept] = np.unique(labels[kept], return_inverse=True)[1]
    return result
