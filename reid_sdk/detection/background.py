"""An offline person detector for fixed cameras: foreground against a learnt background, person-shaped blobs kept.

Nothing is downloaded: OpenCV's MOG2 background subtractor learns the scene from frames spread over the video
(people move, so the per-pixel mixture keeps the empty scene), then marks each frame's foreground; shadows, which
MOG2 labels apart (grey 127), are dropped; an opening removes speckle and a tall closing joins a person's parts;
each connected blob whose box is person-shaped (height over width, height, filled share) is a detection. Its
confidence is the blob's filled share of its box (a lone person fills about half) times how close its height over
width is to a standing person's. People walking together give one box; a camera that moves sees everything as
foreground: bring a YOLO-family ONNX detector there (:mod:`reid_sdk.detection.yolo`).

Example:
    >>> import numpy as np
    >>> scene = np.full((120, 160, 3), 90, np.uint8)
    >>> detector = BackgroundDetector()
    >>> detector.start_video([scene] * 10)
    >>> frame = scene.copy(); frame[30:100, 60:90] = 220  # a 70 x 30 person-shaped blob
    >>> found = detector.detect([frame])[0]
    >>> len(found), found.boxes[0, 1].item(), found.boxes[0, 3].item()  # one person, from row 30 to 100
    (1, 30.0, 100.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from reid_sdk.detection.detections import Detections

_FOREGROUND = 200  # MOG2 marks foreground 255 and shadows 127


@dataclass(frozen=True)
class BackgroundOptions:
    """The background model and the blobs kept.

    ``learning_frames``: frames spread over the video that teach the empty scene; ``history`` / ``var_threshold``:
    MOG2's (frames the model remembers while it runs; squared distance in variances that counts as foreground: low,
    as clothes often resemble the scene); ``learning_rate``: how fast the model follows the scene while it detects
    (slow, so a person who lingers is not learnt into the background); ``join_rows``: the height (in 1/120ths of
    the frame) of the closing that joins a person's parts split by clothes of the scene's colour; ``min_height``:
    the smallest person as a share of the frame height; ``aspect``: the range of box height over
    width kept (a standing person's silhouette is about 2 to 4; a sliver entering the frame, up to 9; stepping, wider);
    ``min_fill``: the smallest share of the box the blob covers; ``person_aspect``: a silhouette's height over width
    (scores highest, and tells how many people side by side a wide blob holds); ``box_aspect``: boxes narrower than
    this height over width are widened about their centre to it (a person box with the arms' swing, and the 2:1 crop
    a re-ID model takes, so crops are not stretched).
    """

    learning_frames: int = 30
    history: int = 500
    learning_rate: float = 0.002
    var_threshold: float = 8.0
    join_rows: int = 24
    min_height: float = 0.12
    aspect: tuple[float, float] = (0.8, 9.0)
    min_fill: float = 0.15
    person_aspect: float = 2.6
    box_aspect: float = 2.0

    def __post_init__(self) -> None:
        if self.learning_frames < 1 or self.history < 1 or self.var_threshold <= 0 or not 0 <= self.learning_rate <= 1:
            raise ValueError("learning_frames and history must be >= 1, var_threshold > 0 and learning_rate in [0, 1]")
        if not 0 < self.min_height < 1 or not 0 <= self.min_fill < 1:
            raise ValueError(f"min_height must lie in (0, 1) and min_fill in [0, 1), got {self.min_height}, "
                             f"{self.min_fill}")
        if not 0 < self.aspect[0] < self.aspect[1]:
            raise ValueError(f"aspect must be an increasing range of positive numbers, got {self.aspect}")


class BackgroundDetector:
    """Person blobs moving against a fixed camera's learnt background (see the module docstring)."""

    def __init__(self, options: BackgroundOptions = BackgroundOptions()) -> None:
        self.options = options
        self._subtractor: cv2.BackgroundSubtractor | None = None
        self.description = "background subtraction (OpenCV MOG2)"

    @property
    def learning_frames(self) -> int:
        return self.options.learning_frames

    def start_video(self, first_frames: Iterable[np.ndarray]) -> None:
        """Learn the scene from ``first_frames`` (``learning_frames`` frames spread over the new video, read one by
        one: each weighs the same)."""
        self._subtractor = cv2.createBackgroundSubtractorMOG2(history=self.options.history,
                                                               varThreshold=self.options.var_threshold,
                                                               detectShadows=True)
        for frame in first_frames:
            self._subtractor.apply(frame, learningRate=1.0 / self.options.learning_frames)

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        if self._subtractor is None:
            raise RuntimeError("call start_video before detect")
        rate = self.options.learning_rate
        return [self._blobs(self._subtractor.apply(frame, learningRate=rate)) for frame in frames]

    def _blobs(self, mask: np.ndarray) -> Detections:
        """Person-shaped blobs of a MOG2 mask: shadow pixels may join a person's parts (a dark coat or trousers are
        often labelled shadow), but a box spans only the blob's foreground pixels, so a cast shadow never widens it.
        A blob wider than one standing person is cut into as many equal columns as people fit side by side (parts
        much shorter than the blob are dropped)."""
        height = mask.shape[0]
        unit = max(1, round(height / 120))  # morphology scaled with the frame
        speckle = np.ones((2 * unit + 1,) * 2, np.uint8)
        strong = cv2.morphologyEx((mask > _FOREGROUND).astype(np.uint8), cv2.MORPH_OPEN, speckle)
        joined = cv2.morphologyEx((mask > 0).astype(np.uint8), cv2.MORPH_OPEN, speckle)
        joined = cv2.morphologyEx(joined | strong, cv2.MORPH_CLOSE,
                                  np.ones((self.options.join_rows * unit + 1, 3 * unit + 1), np.uint8))
        _, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
        found = []
        for label in np.flatnonzero(stats[:, cv2.CC_STAT_HEIGHT] >= self.options.min_height * height):
            if label == 0:
                continue
            left, top, width, tall = stats[label, :4]
            window = (slice(top, top + tall), slice(left, left + width))
            pixels = (labels[window] == label) & (strong[window] > 0)
            people = max(1, round(width / (tall / self.options.person_aspect)))
            bounds = np.linspace(0, width, people + 1).round().astype(int)
            parts = [self._person(pixels[:, start:stop], left + start, top, mask.shape)
                     for start, stop in zip(bounds, bounds[1:])]
            # a part much shorter than its blob is a limb or a bag, not a person beside another
            found += [part for part in parts if part is not None and part[0][3] - part[0][1] >= 0.6 * tall]
        return Detections(np.array([box for box, _ in found], np.float32).reshape(-1, 4),
                          np.array([score for _, score in found], np.float32))

    def _person(self, pixels: np.ndarray, left: int, top: int,
                frame_size: tuple[int, int]) -> tuple[tuple[float, float, float, float], float] | None:
        """The box and confidence of one blob's foreground ``pixels`` (placed at ``left``, ``top``), None when it
        is not person-shaped."""
        rows, columns = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
        if len(rows) == 0:
            return None
        x1, y1, x2, y2 = left + columns[0], top + rows[0], left + columns[-1] + 1, top + rows[-1] + 1
        box_height, box_width = y2 - y1, x2 - x1
        aspect = box_height / box_width
        fill = pixels.sum() / (box_height * box_width)
        low, high = self.options.aspect
        if box_height < self.options.min_height * frame_size[0] or not low <= aspect <= high or \
                fill < self.options.min_fill:
            return None
        shape = np.exp(-0.5 * (np.log(aspect / self.options.person_aspect) / 0.5) ** 2)
        centre, half = (x1 + x2) / 2, max(box_width, box_height / self.options.box_aspect) / 2
        box = (max(0.0, centre - half), float(y1), min(float(frame_size[1]), centre + half), float(y2))
        return box, float(min(fill / 0.5, 1.0) * shape)
