"""Cannot-link: pairs of samples that never share a cluster, such as two tracks one camera saw at the same time.

A camera's tracker gives each person in view their own track, so two tracks of one camera whose frame ranges
overlap are two different people: free supervision that a site's videos give and no anchor uses. The merge
(:func:`~reid_sdk.training.clustering.merge_stage`) skips a candidate pair whenever joining the two groups would
put two cannot-linked samples in one cluster; a constraint between two groups holds for every group that later
contains either, so once the walk has seen every pair, no two clusters left can be joined.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CannotLink:
    """Sample pairs ``(i, j)``, i < j, that must end in different clusters, among ``num_samples`` samples.

    Example:
        ```python
        # tracks 0 and 1 of camera 1 overlap in frames 40..50; track 2 (camera 2) overlaps both in time
        constraint = CannotLink.from_spans(cameras=[1, 1, 2], first_frames=[10, 40, 30], last_frames=[50, 90, 60])
        assert constraint.pairs.tolist() == [[0, 1]]
        ```
    """

    pairs: np.ndarray  # (P, 2) int64, rows sorted, i < j
    num_samples: int

    def __post_init__(self) -> None:
        pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= self.num_samples or (pairs[:, 0] >= pairs[:, 1]).any()):
            raise ValueError(f"cannot-link pairs must be (i, j) with 0 <= i < j < {self.num_samples}")
        object.__setattr__(self, "pairs", np.unique(pairs, axis=0))

    def __len__(self) -> int:
        return len(self.pairs)

    @classmethod
    def from_spans(cls, cameras: Sequence[Any], first_frames: Sequence[int],
                   last_frames: Sequence[int]) -> CannotLink:
        """Every pair of samples of one camera whose inclusive frame ranges [first, last] overlap."""
        cameras = np.asarray(cameras)
        first, last = np.asarray(first_frames, np.int64), np.asarray(last_frames, np.int64)
        if not (cameras.shape == first.shape == last.shape) or cameras.ndim != 1:
            raise ValueError("need one camera, first frame and last frame per sample")
        if (last < first).any():
            raise ValueError(f"sample {int(np.flatnonzero(last < first)[0])} ends before it starts")
        pairs = []
        for camera in np.unique(cameras):
            members = np.flatnonzero(cameras == camera)
            members = members[np.argsort(first[members], kind="stable")]
            starts = first[members]
            # sorted by start: j after i overlaps i exactly when it starts before i ends
            stops = np.searchsorted(starts, last[members], side="right")
            for position, stop in enumerate(stops):
                others = members[position + 1 : stop]
                if len(others):
                    mine = np.full(len(others), members[position])
                    pairs.append(np.column_stack([np.minimum(mine, others), np.maximum(mine, others)]))
        return cls(np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64), len(cameras))

    @classmethod
    def of_records(cls, records: Sequence[Any]) -> CannotLink | None:
        """The constraint of tracklet records carrying a ``frame_span`` (a site's tracks); None when any lacks one."""
        spans = [getattr(record, "frame_span", None) for record in records]
        if not records or any(span is None for span in spans):
            return None
        return cls.from_spans([record.camera for record in records], [s[0] for s in spans], [s[1] for s in spans])

    def cluster_pairs(self, labels: np.ndarray) -> np.ndarray:
        """(Q, 2) distinct cluster pairs (a < b) that hold a cannot-linked sample pair under ``labels``; pairs
        already inside one cluster (from labels made without the constraint) are left out, and counted in a log."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (self.num_samples,):
            raise ValueError(f"cannot-link covers {self.num_samples} samples, got {labels.shape[0]} labels")
        clusters = labels[self.pairs]
        inside = clusters[:, 0] == clusters[:, 1]
        if inside.any():
            logger.warning("%d cannot-linked sample pairs already share a cluster (labels made without the "
                           "constraint): they stay together", int(inside.sum()))
        clusters = np.sort(clusters[~inside], axis=1)
        return np.unique(clusters, axis=0) if len(clusters) else np.empty((0, 2), np.int64)

    def violations(self, labels: np.ndarray) -> int:
        """How many cannot-linked pairs share a cluster under ``labels``."""
        clusters = np.asarray(labels)[self.pairs]
        return int((clusters[:, 0] == clusters[:, 1]).sum()) if len(clusters) else 0
