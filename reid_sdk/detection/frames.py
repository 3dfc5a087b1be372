"""Frames of a video streamed one at a time (never a whole video in memory), every ``stride``-th, shrunk so their
longer side is at most ``max_side`` pixels: what the detectors see of long recordings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameSampling:
    """Which frames are read and at what size: every ``stride``-th frame (1 = all), resized so the longer side is
    at most ``max_side`` pixels (None = as recorded; frames are never enlarged)."""

    stride: int = 1
    max_side: int | None = None

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.max_side is not None and self.max_side < 32:
            raise ValueError(f"max_side must be >= 32 pixels, got {self.max_side}")

    def scale(self, frame_size: tuple[int, int]) -> float:
        """The resize factor (<= 1) for frames of ``frame_size`` (height, width)."""
        longer = max(frame_size)
        return 1.0 if self.max_side is None or longer <= self.max_side else self.max_side / longer

    def resized(self, frame: np.ndarray, scale: float) -> np.ndarray:
        if scale == 1.0:
            return frame
        height, width = frame.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def open_video(path: str | Path) -> cv2.VideoCapture:
    """An opened capture of ``path``; FileNotFoundError / ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"OpenCV cannot open the video {path}")
    return capture


def read_frames(path: str | Path, sampling: FrameSampling) -> Iterator[tuple[int, np.ndarray]]:
    """(1-based frame number, BGR frame at the sampling's size) for every ``stride``-th frame, decoded one by one
    (frames skipped by the stride are grabbed, not decoded)."""
    capture = open_video(path)
    try:
        number, scale = 0, None
        while True:
            number += 1
            if (number - 1) % sampling.stride:
                if not capture.grab():
                    return
                continue
            ok, frame = capture.read()
            if not ok:
                return
            scale = sampling.scale(frame.shape[:2]) if scale is None else scale
            yield number, sampling.resized(frame, scale)
    finally:
        capture.release()


def spread_frames(path: str | Path, count: int, sampling: FrameSampling) -> Iterator[np.ndarray]:
    """Up to ``count`` frames spread evenly over the video (by seeking), at the sampling's size, one at a time."""
    capture = open_video(path)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        positions = np.unique(np.linspace(0, max(total - 1, 0), count).round().astype(int)) if total > 0 else [0]
        for position in positions:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(position))
            ok, frame = capture.read()
            if ok:
                yield sampling.resized(frame, sampling.scale(frame.shape[:2]))
    finally:
        capture.release()
