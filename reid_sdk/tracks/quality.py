"""The frame-quality rule: which boxes of a track are worth a forward pass, and how much each one counts.

Decided from the tracks file alone, before any pixel is decoded, so only chosen frames are cropped:

- size: boxes under ``min_height`` x ``min_width`` pixels (inside the frame) carry too little of the person;
  upscaled to the model's input they are blur.
- truncation: a box less than ``min_visible`` inside the frame is a person entering or leaving, half a body.
- crowding: a box covered more than ``max_overlap`` by another person's box shows that person too, whether they
  hide this one (in front) or show through around them (behind).
- a cap: at most ``max_frames`` of the usable boxes, evenly spread over the track. Neighbouring frames are near
  duplicates; spreading covers the poses and viewpoints of the whole walk, and the cap bounds compute and memory
  per track whatever its length.

Then, with the pixels, each chosen frame's weight in the track's mean is its sharpness (standard deviation of
the Laplacian at the model's input size, which falls with blur as the edges do) relative to the track's
sharpest frame, floored at ``min_weight``: motion blur and defocus count less, never zero. Compared within one
track (one person, one camera), the measure reflects blur rather than clothing texture.

A track with no box passing the rule keeps its ``max_frames`` best boxes (largest, most visible, least covered),
flagged as a fallback, so no track is silently lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from reid_sdk.tracks.boxes import clip_boxes, overlap_fraction, visible_fraction
from reid_sdk.tracks.mot import MotTracks


@dataclass(frozen=True)
class FrameQuality:
    """Thresholds of the frame-quality rule (see the module docstring for why each exists)."""

    min_height: int = 48
    min_width: int = 16
    min_visible: float = 0.95
    max_overlap: float = 0.3
    max_frames: int = 16
    min_weight: float = 0.2

    def __post_init__(self) -> None:
        if self.min_height < 1 or self.min_width < 1:
            raise ValueError(f"min_height and min_width must be >= 1 pixel, got {self.min_height}, {self.min_width}")
        if not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f"min_visible must be in (0, 1], got {self.min_visible}")
        if not 0.0 <= self.max_overlap <= 1.0:
            raise ValueError(f"max_overlap must be in [0, 1], got {self.max_overlap}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if not 0.0 < self.min_weight <= 1.0:
            raise ValueError(f"min_weight must be in (0, 1], got {self.min_weight}")


@dataclass(frozen=True)
class TrackPlan:
    """The boxes of one track chosen for extraction (row indices into the MotTracks, in frame order)."""

    track_id: int
    rows: np.ndarray
    first_frame: int
    last_frame: int
    fallback: bool


def _overlap(tracks: MotTracks) -> np.ndarray:
    overlap = np.zeros(len(tracks))
    _, starts = np.unique(tracks.frames, return_index=True)
    for rows in np.split(np.arange(len(tracks)), starts[1:]):  # rows are sorted by frame
        overlap[rows] = overlap_fraction(tracks.boxes[rows])
    return overlap


def plan_tracks(tracks: MotTracks, frame_size: tuple[int, int], quality: FrameQuality) -> tuple[list[TrackPlan], int]:
    """The chosen boxes of every track, and how many tracks had no box inside the frame at all (left out)."""
    clipped = clip_boxes(tracks.boxes, frame_size)
    heights, widths = clipped[:, 3] - clipped[:, 1], clipped[:, 2] - clipped[:, 0]
    visible = visible_fraction(tracks.boxes, frame_size)
    overlap = _overlap(tracks)
    usable = ((heights >= quality.min_height) & (widths >= quality.min_width) & (visible >= quality.min_visible)
              & (overlap <= quality.max_overlap))
    plans, outside = [], 0
    for track_id, rows in tracks.tracks():
        good = rows[usable[rows]]
        first, last = int(tracks.frames[rows[0]]), int(tracks.frames[rows[-1]])
        if len(good):
            spread = np.unique(np.linspace(0, len(good) - 1, min(quality.max_frames, len(good))).round().astype(int))
            plans.append(TrackPlan(track_id, good[spread], first, last, fallback=False))
            continue
        seen = rows[(heights[rows] > 0) & (widths[rows] > 0)]
        if not len(seen):
            outside += 1
            continue
        score = heights[seen] * visible[seen] * (1.0 - overlap[seen])
        best = np.sort(seen[np.argsort(-score, kind="stable")[: quality.max_frames]])
        plans.append(TrackPlan(track_id, best, first, last, fallback=True))
    return plans, outside


def sharpness_weights(crops: Sequence[np.ndarray], input_size: tuple[int, int], min_weight: float) -> np.ndarray:
    """Each crop's Laplacian standard deviation at ``input_size`` (H, W) over the sharpest one's, floored at
    ``min_weight``."""
    height, width = input_size
    sharpness = np.array([cv2.Laplacian(cv2.cvtColor(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA),
                                                     cv2.COLOR_BGR2GRAY), cv2.CV_64F).std() for crop in crops])
    top = sharpness.max()
    return np.maximum(sharpness / top if top > 0 else np.ones(len(crops)), min_weight)
