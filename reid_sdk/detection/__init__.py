"""People found in camera frames and followed over time: detectors (an offline background model, a YOLO-family
ONNX file the user brings), ByteTrack tracking, and MOTChallenge tracks files written per video (``reid-track``).

Runtime code: imports without torch; the tracker needs the ``track`` extra (``pip install 'reid-sdk[track]'``).
"""

from reid_sdk.detection.background import BackgroundDetector, BackgroundOptions
from reid_sdk.detection.detections import Detections
from reid_sdk.detection.tracking import TrackingOptions, open_detector, track_video, track_videos
from reid_sdk.detection.yolo import YOLO_LAYOUTS, YoloDetector, YoloOptions

__all__ = ["BackgroundDetector", "BackgroundOptions", "Detections", "TrackingOptions", "YOLO_LAYOUTS", "YoloDetector",
           "YoloOptions", "open_detector", "track_video", "track_videos"]
