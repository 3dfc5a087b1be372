"""Cannot-link: pairs of samples that never share a cluster, such as two tracks one camera saw at the same time.

A camera's tracker gives each person in view their own track, so two tracks of one camera that the detector saw
together are two different people: free supervision that a site's videos give and no anchor uses. "Together"
means in at least :data:`MIN_SHARED_FRAMES` frames where both have a detected box. Overlapping spans are not
enough: a tracker keeps a lost track alive for ``max_age`` frames (writing predicted, "coasting" boxes, which
:func:`~reid_sdk.tracks.mot.read_mot` leaves out) while the person's next fragment starts, so one person's
fragments overlap in span; and around an identity switch both ids can hold a detected box for a frame or two. The merge
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

#: Frames with a detected box of both tracks before two tracks of one camera are kept apart. A re-initialised
#: or switched track overlaps its predecessor's detections for one or two frames (a duplicate box taken by both
#: ids); three frames is 0.12 s at 25 fps, so two people really seen together are still constrained.
MIN_SHARED_FRAMES = 3


@dataclass(frozen=True)
class CannotLink:
    """Sample pairs ``(i, j)``, i < j, that must end in different clusters, among ``num_samples`` samples.

    Example:
        ```python
        # tracks 0 and 1 of camera 1 are both detected in frames 40..50; track 2 (camera 2) overlaps both in time
        constraint = CannotLink.from_spans(cameras=[1, 1, 2], first_frames=[10, 40, 30], last_frames=[50, 90, 60])
        assert constraint.pairs.tolist() == [[0, 1]]
        # one person's fragments: track 1 starts while track 0 coasts (frames 20..29 detected only in track 1)
        fragments = CannotLink.from_runs(cameras=[1, 1], detected_runs=[[(1, 19), (30, 30)], [(20, 60)]])
        assert len(fragments) == 0
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
    def from_spans(cls, cameras: Sequence[Any], first_frames: Sequence[int], last_frames: Sequence[int],
                   min_shared: int = 1) -> CannotLink:
        """Every pair of samples of one camera detected in every frame of their inclusive ranges [first, last]
        that share at least ``min_shared`` frames (1: any overlap)."""
        if not len(first_frames) == len(last_frames) == len(cameras):
            raise ValueError("need one camera, first frame and last frame per sample")
        return cls.from_runs(cameras, [[(first, last)] for first, last in zip(first_frames, last_frames)], min_shared)

    @classmethod
    def from_runs(cls, cameras: Sequence[Any], detected_runs: Sequence[Sequence[tuple[int, int]]],
                  min_shared: int = MIN_SHARED_FRAMES) -> CannotLink:
        """Every pair of samples of one camera with at least ``min_shared`` frames in common among their detected
        frames, each sample's given as sorted, disjoint inclusive runs ``[(first, last), ...]``."""
        cameras = np.asarray(cameras)
        if cameras.ndim != 1 or len(cameras) != len(detected_runs):
            raise ValueError("need one camera and one list of detected frame runs per sample")
        if min_shared < 1:
            raise ValueError(f"min_shared must be >= 1, got {min_shared}")
        runs = [np.asarray(sample, np.int64).reshape(-1, 2) for sample in detected_runs]
        for number, sample in enumerate(runs):
            if not len(sample) or (sample[:, 1] < sample[:, 0]).any() or (sample[1:, 0] <= sample[:-1, 1]).any():
                raise ValueError(f"sample {number}'s detected frame runs are empty, end before they start or are not "
                                 f"sorted and disjoint: {sample.tolist()}")
        first = np.array([sample[0, 0] for sample in runs], np.int64)
        last = np.array([sample[-1, 1] for sample in runs], np.int64)
        pairs = []
        for camera in np.unique(cameras):
            members = np.flatnonzero(cameras == camera)
            members = members[np.argsort(first[members], kind="stable")]
            starts = first[members]
            # sorted by start: j after i overlaps i exactly when it starts before i ends
            stops = np.searchsorted(starts, last[members], side="right")
            for position, stop in enumerate(stops):
                others = members[position + 1 : stop]
                others = others[[_shared_frames(runs[members[position]], runs[other]) >= min_shared
                                 for other in others]] if len(others) else others
                if len(others):
                    mine = np.full(len(others), members[position])
                    pairs.append(np.column_stack([np.minimum(mine, others), np.maximum(mine, others)]))
        return cls(np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64), len(cameras))

    @classmethod
    def of_records(cls, records: Sequence[Any]) -> CannotLink | None:
        """The constraint of tracklet records carrying ``detected_runs`` (a site's tracks); None when any lacks
        them."""
        runs = [getattr(record, "detected_runs", None) for record in records]
        if not records or any(sample is None for sample in runs):
            return None
        return cls.from_runs([record.camera for record in records], runs)

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


def _shared_frames(runs: np.ndarray, others: np.ndarray) -> int:
    """How many frames two sorted lists of disjoint inclusive runs (R, 2) have in common."""
    starts = np.maximum(runs[:, None, 0], others[None, :, 0])
    ends = np.minimum(runs[:, None, 1], others[None, :, 1])
    return int(np.clip(ends - starts + 1, 0, None).sum())
