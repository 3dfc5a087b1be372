"""A YOLO-family person detector the user brings as an ONNX file, in one of two output layouts.

- ``ultralytics`` (YOLOv8, YOLO11 exported by ``yolo export model=yolo11n.pt format=onnx``): one output
  ``[N, 4 + classes, boxes]``, each box ``cx, cy, w, h`` in input pixels then one score per class (no objectness).
- ``yolov5`` (YOLOv5's ``export.py --include onnx``, YOLOv7, YOLOX with decoded outputs): one output
  ``[N, boxes, 5 + classes]``, ``cx, cy, w, h, objectness`` then one score per class; a box's score is
  objectness times its class score.

Frames are letterboxed to the model's input size (aspect kept, grey 114 padding, as both exporters train), fed as
RGB pixels / 255, and only the person class is kept (COCO's 0 unless told); NMS runs here (cv2.dnn.NMSBoxes)
because neither export includes it.

Example:
    >>> detector = YoloDetector("yolo11n.onnx", YoloOptions(layout="ultralytics"))  # doctest: +SKIP
    >>> detections = detector.detect([frame_bgr])[0]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from reid_sdk.detection.detections import Detections, non_maximum_suppression
from reid_sdk.detection.engine import RawModel

YOLO_LAYOUTS = ("ultralytics", "yolov5")
DEFAULT_INPUT = (640, 640)
_PAD = 114


@dataclass(frozen=True)
class YoloOptions:
    """``layout``: one of :data:`YOLO_LAYOUTS`; ``person_class``: the class index of a person (COCO: 0);
    ``min_score``: the lowest box score kept; ``nms_iou``: overlap above which the weaker box is suppressed;
    ``input_size``: (height, width) for a graph that leaves it open (default 640 x 640; a fixed graph says its own)."""

    layout: str = "ultralytics"
    person_class: int = 0
    min_score: float = 0.25
    nms_iou: float = 0.45
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.layout not in YOLO_LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(YOLO_LAYOUTS)}, got {self.layout!r}")
        if self.person_class < 0 or not 0 <= self.min_score < 1 or not 0 < self.nms_iou <= 1:
            raise ValueError("person_class must be >= 0, min_score in [0, 1) and nms_iou in (0, 1]")


@dataclass(frozen=True)
class Letterbox:
    """How a frame sits in the model input: input = frame * scale + (left, top)."""

    scale: float
    left: int
    top: int

    def to_frame(self, boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Input-pixel boxes (x1, y1, x2, y2) in the frame's pixels, clipped to it."""
        height, width = frame_size
        boxes = (boxes - np.array([self.left, self.top, self.left, self.top], np.float32)) / np.float32(self.scale)
        return np.clip(boxes, 0, np.array([width, height, width, height], np.float32))


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """``frame`` (BGR) resized into ``size`` (height, width) with its aspect kept and padded centred: RGB 3 x H x W."""
    height, width = frame.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    inner = (round(width * scale), round(height * scale))
    left, top = round((size[1] - inner[0]) / 2 - 0.1), round((size[0] - inner[1]) / 2 - 0.1)
    canvas = np.full((*size, 3), _PAD, np.uint8)
    canvas[top:top + inner[1], left:left + inner[0]] = cv2.resize(frame, inner, interpolation=cv2.INTER_LINEAR)
    return canvas[:, :, ::-1].transpose(2, 0, 1), Letterbox(scale, left, top)


def decode(output: np.ndarray, options: YoloOptions) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw output (``layout`` as in the module docstring) -> person boxes (x1, y1, x2, y2) in input
    pixels and their scores, after the score threshold and NMS."""
    rows = output.T if options.layout == "ultralytics" else output
    first_class = 4 if options.layout == "ultralytics" else 5
    if rows.ndim != 2 or rows.shape[1] <= first_class + options.person_class:
        expected = "[N, 4 + classes, boxes]" if options.layout == "ultralytics" else "[N, boxes, 5 + classes]"
        raise ValueError(f"the {options.layout} layout's output is {expected} with person class "
                         f"{options.person_class}; this model gives {list(output.shape)} per image (the other "
                         f"layout, or another person_class?)")
    scores = rows[:, first_class + options.person_class].astype(np.float32)
    if options.layout == "yolov5":
        scores = scores * rows[:, 4]
    keep = scores >= options.min_score
    centre, extent = rows[keep, :2].astype(np.float32), rows[keep, 2:4].astype(np.float32)
    boxes = np.concatenate([centre - extent / 2, centre + extent / 2], axis=1)
    kept = non_maximum_suppression(boxes, scores[keep], options.min_score, options.nms_iou)
    return boxes[kept], scores[keep][kept]


class YoloDetector:
    """People found by a YOLO-family ONNX file (see the module docstring), batches of frames per model call."""

    learning_frames = 0

    def __init__(self, path: str | Path, options: YoloOptions = YoloOptions(), engine: str = "onnxruntime",
                 device: str = "auto") -> None:
        self.options = options
        self.model = RawModel(path, engine, device)
        if self.model.input_size and options.input_size and self.model.input_size != tuple(options.input_size):
            raise ValueError(f"input_size {options.input_size} but {path} fixes {self.model.input_size}")
        self.input_size = self.model.input_size or tuple(options.input_size or DEFAULT_INPUT)
        self.description = f"{Path(path).name} ({options.layout} layout) on {self.model.description}"

    def start_video(self, first_frames: Iterable[np.ndarray]) -> None:
        """Nothing to learn: each frame is detected on its own."""

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        placed = [letterbox(frame, self.input_size) for frame in frames]
        outputs = self.model.run(np.stack([tensor for tensor, _ in placed]))
        found = []
        for frame, (_, box), output in zip(frames, placed, outputs):
            boxes, scores = decode(np.asarray(output), self.options)
            found.append(Detections(box.to_frame(boxes, frame.shape[:2]), scores))
        return found
