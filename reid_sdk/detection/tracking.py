"""Videos in, MOTChallenge tracks files out: a detector's boxes followed over time by ByteTrack (as ``supervision``
ships it, MIT licence), streamed frame by frame so memory stays bounded over hours of video.

Rows are ``frame,id,left,top,width,height,conf,class,visibility``: frames count from 1 in the ORIGINAL video (a
stride skips frames, it does not renumber them), boxes are in the original frame's pixels (a ``max_side`` resize is
undone), ``conf`` is the detector's confidence, ``class`` is 1 (person, as MOTChallenge), and ``visibility`` is 1:
ByteTrack writes only the detected boxes it matched, never predicted (coasting) ones.

Example:
    >>> from reid_sdk.detection import BackgroundDetector, TrackingOptions, track_video
    >>> result = track_video("c1.avi", "tracks/c1.txt", BackgroundDetector(), TrackingOptions())  # doctest: +SKIP
    >>> result.line()  # doctest: +SKIP
    'c1.avi: 160 frames read, 5 tracks, 412 boxes -> tracks/c1.txt'
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk._utils.optional import require
from reid_sdk._utils.progress import progress as show_progress
from reid_sdk.detection.background import BackgroundDetector
from reid_sdk.detection.detections import Detections, Detector
from reid_sdk.detection.frames import FrameSampling, read_frames, spread_frames
from reid_sdk.tracks.ingest import probe_video

logger = logging.getLogger(__name__)

PERSON_CLASS = 1  # MOTChallenge's class id of a pedestrian


@dataclass(frozen=True)
class TrackingOptions:
    """How videos are read and tracked.

    ``sampling``: which frames are read and at what size; ``batch``: frames per detector call; ByteTrack's
    ``min_score`` (confidence that starts a track), ``lost_seconds`` (how long a lost track may be found again),
    ``match_threshold`` (its matching threshold) and ``min_frames`` (frames a track needs before it is written).
    """

    sampling: FrameSampling = field(default_factory=FrameSampling)
    batch: int = 8
    min_score: float = 0.25
    lost_seconds: float = 1.0
    match_threshold: float = 0.8
    min_frames: int = 3

    def __post_init__(self) -> None:
        if self.batch < 1 or self.min_frames < 1:
            raise ValueError(f"batch and min_frames must be >= 1, got {self.batch}, {self.min_frames}")
        if not 0 <= self.min_score < 1 or not 0 < self.match_threshold <= 1 or self.lost_seconds < 0:
            raise ValueError("min_score must lie in [0, 1), match_threshold in (0, 1] and lost_seconds >= 0")


@dataclass(frozen=True)
class TrackedVideo:
    """What :func:`track_video` made of one video."""

    video: Path
    tracks_file: Path
    frames_read: int
    tracks: int
    boxes: int

    def line(self) -> str:
        return (f"{self.video.name}: {self.frames_read} frames read, {self.tracks} tracks, {self.boxes} boxes -> "
                f"{self.tracks_file}")


def open_detector(detector: str | Path = "background", **yolo: Any) -> Detector:
    """``background`` (:class:`BackgroundDetector`) or the path of a YOLO-family ``.onnx`` person detector, opened
    with ``yolo`` (:class:`reid_sdk.detection.yolo.YoloOptions` fields and ``engine`` / ``device``)."""
    if str(detector) == "background":
        if yolo:
            raise ValueError(f"{', '.join(sorted(yolo))}: options of an ONNX detector, not of the background detector")
        return BackgroundDetector()
    if Path(detector).suffix.lower() != ".onnx":
        raise ValueError(f"detector must be 'background' or a YOLO-family .onnx file, got {str(detector)!r}")
    from reid_sdk.detection.yolo import YoloDetector, YoloOptions

    engine, device = yolo.pop("engine", "onnxruntime"), yolo.pop("device", "auto")
    return YoloDetector(detector, YoloOptions(**yolo), engine=engine, device=device)


def _byte_track(fps: float, options: TrackingOptions) -> Any:
    """supervision's ByteTrack at the rate frames are read. supervision 0.30 is the last release that ships it
    (0.31 moved it to the ``trackers`` package, which requires opencv-python beside our headless OpenCV), so its
    deprecation notice is silenced here and the ``track`` extra pins supervision < 0.31."""
    supervision = require("supervision", "track")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return supervision.ByteTrack(track_activation_threshold=options.min_score,
                                     lost_track_buffer=max(1, round(30 * options.lost_seconds)),
                                     minimum_matching_threshold=options.match_threshold, frame_rate=fps,
                                     minimum_consecutive_frames=options.min_frames)


def track_video(video: str | Path, out: str | Path, detector: Detector,
                options: TrackingOptions = TrackingOptions(), progress: str = "auto") -> TrackedVideo:
    """Detect and track people in ``video`` into the MOT file ``out`` (written whole or not at all); frames are
    streamed in batches of ``options.batch``, so memory does not grow with the video's length."""
    video, out = Path(video), Path(out)
    info = probe_video(video)
    sampling = options.sampling
    supervision = require("supervision", "track")
    tracker = _byte_track(info.fps / sampling.stride, options)
    detector.start_video(spread_frames(video, detector.learning_frames, sampling) if detector.learning_frames else [])
    scale = 1.0 / sampling.scale(info.frame_size)
    expected = -(-info.frame_count // sampling.stride) if info.frame_count > 0 else None
    counter = show_progress(desc=video.name, total=expected, unit="frames", mode=progress)
    frames_read, boxes, track_ids = 0, 0, set()
    with counter, atomic_write(out) as handle:
        def flush(numbers: list[int], frames: list[np.ndarray]) -> None:
            nonlocal boxes
            for number, found in zip(numbers, detector.detect(frames)):
                found = found.scaled(scale) if scale != 1.0 else found
                tracked = tracker.update_with_detections(supervision.Detections(
                    xyxy=found.boxes.astype(np.float32), confidence=found.scores, class_id=np.zeros(len(found), int)))
                for (x1, y1, x2, y2), confidence, track in zip(tracked.xyxy, tracked.confidence, tracked.tracker_id):
                    handle.write(f"{number},{int(track)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                                 f"{confidence:.3f},{PERSON_CLASS},1\n".encode())
                    track_ids.add(int(track))
                boxes += len(tracked)
            counter.update(len(frames))

        numbers: list[int] = []
        frames: list[np.ndarray] = []
        for number, frame in read_frames(video, sampling):
            numbers.append(number)
            frames.append(frame)
            frames_read += 1
            if len(frames) == options.batch:
                flush(numbers, frames)
                numbers, frames = [], []
        if frames:
            flush(numbers, frames)
        if frames_read == 0:  # inside the write: no empty tracks file is left
            raise ValueError(f"OpenCV read no frame of {video}")
    result = TrackedVideo(video, out, frames_read, len(track_ids), boxes)
    logger.debug("%s", result.line())
    return result


def track_videos(videos: Sequence[str | Path], out: str | Path, detector: Detector,
                 options: TrackingOptions = TrackingOptions(), progress: str = "auto") -> list[TrackedVideo]:
    """One MOT file per video, ``out/<video stem>.txt``; ValueError before any work when two videos share a stem."""
    videos = [Path(video) for video in videos]
    stems = [video.stem for video in videos]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ValueError(f"two videos would write {repeated[0]}.txt: give videos with distinct names")
    missing = [str(video) for video in videos if not video.is_file()]
    if missing:
        raise FileNotFoundError(f"video not found: {', '.join(missing)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    logger.info("tracking %d video(s) into %s: %s + ByteTrack", len(videos), out, detector.description)
    return [track_video(video, out / f"{video.stem}.txt", detector, options, progress) for video in videos]
