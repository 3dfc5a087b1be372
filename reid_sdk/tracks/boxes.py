"""Person crops from a video frame and the geometry the frame-quality rule reads from boxes."""

from __future__ import annotations

import numpy as np


def _boxes(boxes_xyxy: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be an (N, 4) array of x1, y1, x2, y2, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    if bad.size:
        raise ValueError(f"box {bad[0]} {boxes[bad[0]].tolist()} is empty: need x2 > x1 and y2 > y1")
    return boxes


def clip_boxes(boxes_xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Integer pixel boxes (x1, y1, x2, y2), outward-rounded then clipped to a (height, width) frame."""
    boxes = _boxes(boxes_xyxy)
    height, width = frame_size
    clipped = np.column_stack([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])]).astype(np.int64)
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    return clipped


def visible_fraction(boxes_xyxy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Share of each box's area inside the frame (1.0 = the whole person is in view)."""
    boxes = _boxes(boxes_xyxy)
    height, width = frame_size
    inside_w = np.clip(np.minimum(boxes[:, 2], width) - np.maximum(boxes[:, 0], 0), 0, None)
    inside_h = np.clip(np.minimum(boxes[:, 3], height) - np.maximum(boxes[:, 1], 0), 0, None)
    return inside_w * inside_h / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def overlap_fraction(boxes_xyxy: np.ndarray) -> np.ndarray:
    """For boxes of one frame: the largest share of each box covered by one other box.

    Whether the other person stands in front (hiding this one) or behind (showing through around this one's
    outline), their pixels end up in this crop's feature.
    """
    boxes = _boxes(boxes_xyxy)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    overlap_w = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
    overlap_h = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
    covered = overlap_w * overlap_h / ((x2 - x1) * (y2 - y1))[:, None]
    np.fill_diagonal(covered, 0.0)
    return covered.max(axis=1, initial=0.0)


def extract_boxes(frame: np.ndarray, boxes_xyxy: np.ndarray,
                  min_size: tuple[int, int] = (16, 8)) -> tuple[list[np.ndarray], np.ndarray]:
    """Crops (copies) of the boxes clipped to the frame, and the indices of the boxes they come from.

    Boxes are x1, y1, x2, y2 in pixels and may reach outside the frame; a box whose clipped part is smaller
    than ``min_size`` (height, width) gives no crop. ValueError on a frame that is not an image or bad boxes.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or 0 in frame.shape[:2]:
        raise ValueError(f"frame must be an H x W (x C) image array, got "
                         f"{type(frame).__name__}{getattr(frame, 'shape', '')}")
    if len(min_size) != 2 or min(min_size) < 1:
        raise ValueError(f"min_size must be (height, width) >= 1, got {min_size}")
    clipped = clip_boxes(boxes_xyxy, frame.shape[:2])
    heights, widths = clipped[:, 3] - clipped[:, 1], clipped[:, 2] - clipped[:, 0]
    keep = np.flatnonzero((heights >= min_size[0]) & (widths >= min_size[1]))
    crops = [frame[y1:y2, x1:x2].copy() for x1, y1, x2, y2 in clipped[keep]]
    return crops, keep
