"""One frame's person boxes, what every detector returns, and the non-maximum suppression they share."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable
from typing import Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class Detections:
    """Person boxes of one frame: ``boxes`` float32 (N, 4) as x1, y1, x2, y2 in the frame's pixels, ``scores``
    float32 (N,) confidences in 0..1."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def scaled(self, factor: float) -> Detections:
        """The boxes multiplied by ``factor`` (back to the original frame after a resize)."""
        return Detections(self.boxes * np.float32(factor), self.scores)


class Detector(Protocol):
    """Finds people in batches of BGR frames (H x W x 3 uint8) of one video, in order; ``learning_frames``
    frames spread over a video are shown to :meth:`start_video` first (0: none)."""

    learning_frames: int
    description: str  # what finds the people, for the log (e.g. "yolo11n.onnx (ultralytics layout) on onnxruntime")

    def start_video(self, first_frames: Iterable[np.ndarray]) -> None:
        """Forget the previous video; ``first_frames`` are ``learning_frames`` frames of the new one (a background
        model learns the scene from them)."""
        ...

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        """Person boxes of each frame."""
        ...


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
                            iou_threshold: float) -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2) kept by OpenCV's NMS (cv2.dnn.NMSBoxes), best score first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    rects = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    kept = cv2.dnn.NMSBoxes(rects.tolist(), np.asarray(scores, np.float64).tolist(), score_threshold, iou_threshold)
    return np.asarray(kept, dtype=np.int64).reshape(-1)
