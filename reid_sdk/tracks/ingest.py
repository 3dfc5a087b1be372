"""A video and its tracks file in, one re-ID feature per track out, reading the video frame by frame.

Only the frames the quality rule chose are decoded (the others are grabbed and skipped); crops wait in memory
only until their track's last chosen frame has passed, so memory is bounded by ``max_frames`` crops per live
track, whatever the video's length. Each track's feature is the sharpness-weighted mean of its frames' features,
built with :class:`~reid_sdk.tracks.aggregator.TrackletAggregator`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reid_sdk._utils.batching import batches_by_size
from reid_sdk._utils.progress import progress as show_progress
from reid_sdk.tracks.aggregator import pooled_features
from reid_sdk.tracks.boxes import clip_boxes, extract_boxes
from reid_sdk.tracks.mot import MotTracks
from reid_sdk.tracks.quality import FrameQuality, TrackPlan, plan_tracks, sharpness_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What OpenCV says about a video file: frame rate, frame count (may be approximate) and (height, width)."""

    path: Path
    fps: float
    frame_count: int
    frame_size: tuple[int, int]

    def time_of(self, frame: int, start_time: float = 0.0) -> float:
        """Seconds of a 1-based MOT frame number, counted from ``start_time``."""
        return start_time + (frame - 1) / self.fps


def probe_video(path: str | Path, fps: float | None = None) -> VideoInfo:
    """Open ``path`` with OpenCV; ``fps`` overrides (or supplies) the container's frame rate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"OpenCV cannot open the video {path}")
        stated = capture.get(cv2.CAP_PROP_FPS)
        size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if fps is None:
        if not (np.isfinite(stated) and stated > 0):
            raise ValueError(f"{path} does not state its frame rate: pass fps")
        fps = float(stated)
    elif not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if min(size) < 1:
        raise ValueError(f"{path} reports no frame size; is it a video?")
    return VideoInfo(path, float(fps), count, size)


@dataclass
class IngestReport:
    """What :func:`track_features` made of a tracks file: its tracks, how many gave a feature, how many were left
    out (never inside the frame, every chosen box after the video's last readable frame, or already in the gallery
    a resumed ingest adds to) and the frames read."""

    tracks: int = 0
    used: int = 0
    outside_frame: int = 0
    after_video_end: int = 0
    frames_read: int = 0
    already_present: int = 0

    @property
    def video_unreadable(self) -> bool:
        """True when the video gave no frame though tracks needed some (an empty video, or a codec OpenCV lacks)."""
        return self.frames_read == 0 and self.tracks > self.outside_frame + self.already_present

    def left_out(self) -> str:
        """The tracks left out and why, as a clause for a summary line ("" when none was)."""
        reasons = []
        if self.video_unreadable:
            reasons.append(f"{self.after_video_end}, the video has no readable frame")
        elif self.after_video_end:
            reasons.append(f"{self.after_video_end} after the video's last frame ({self.frames_read})")
        if self.outside_frame:
            reasons.append(f"{self.outside_frame} never inside the frame")
        if self.already_present:
            reasons.append(f"{self.already_present} already in the gallery")
        return f"; left out: {', '.join(reasons)}" if reasons else ""


@dataclass(frozen=True)
class TrackFeature:
    """One track's feature and where it comes from: MOT frames and seconds of its first and last box, how many
    frames were used, and the highest-weighted frame (its number, box and crop, for pictures)."""

    track_id: int
    feature: np.ndarray
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    frames_used: int
    best_frame: int
    best_box: tuple[int, int, int, int]
    thumbnail: np.ndarray
    fallback: bool

    def metadata(self, video: Path) -> dict[str, Any]:
        """What a gallery entry of this track stores beside its feature (JSON-friendly)."""
        return {"video": str(video.resolve()), "first_frame": self.first_frame, "last_frame": self.last_frame,
                "first_time": self.first_time, "last_time": self.last_time, "frames_used": self.frames_used,
                "best_frame": self.best_frame, "best_box": list(self.best_box), "quality_fallback": self.fallback}


@dataclass
class TrackCrops:
    """One track's chosen crops as cut from the video: its plan, the crops (BGR), their MOT frames and boxes, and
    the container's time (seconds into the video) of its first MOT frame and of its last chosen frame, as read."""

    plan: TrackPlan
    crops: list[np.ndarray]
    frames: list[int]
    boxes: list[tuple[int, int, int, int]]
    first_seconds: float | None = None
    last_chosen_seconds: float | None = None

    def finish(self, feature: np.ndarray, weights: np.ndarray, info: VideoInfo, start_time: float) -> TrackFeature:
        """The track's TrackFeature given its pooled ``feature`` and its crops' ``weights`` (the highest-weighted
        crop is its best frame). Times, counted from ``start_time``, are the container's timestamps where they were
        read (right for a variable frame rate), frame / frame rate otherwise; a last box after the last chosen
        frame adds its frames at the frame rate."""
        best, plan = int(np.argmax(weights)), self.plan
        first = (start_time + self.first_seconds if self.first_seconds is not None
                 else info.time_of(plan.first_frame, start_time))
        last = (start_time + self.last_chosen_seconds + (plan.last_frame - self.frames[-1]) / info.fps
                if self.last_chosen_seconds is not None and self.frames else info.time_of(plan.last_frame, start_time))
        return TrackFeature(plan.track_id, feature, plan.first_frame, plan.last_frame, first, last,
                            len(self.crops), self.frames[best], self.boxes[best], self.crops[best], plan.fallback)


def input_size_of(extractor: Any) -> tuple[int, int]:
    """The (H, W) at which a track's crops are weighed by sharpness: the model's input size, (128, 64) for an
    extractor that states none."""
    return tuple(getattr(extractor, "input_size", (128, 64)))


def _finish_tracks(extractor: Any, tracks: list[TrackCrops], info: VideoInfo, quality: FrameQuality,
                   start_time: float) -> list[TrackFeature]:
    """TrackFeatures of tracks whose crops are all collected, extracted in one batch (tracks without a crop left
    out): each is the sharpness-weighted mean of its crops' features."""
    tracks = [track for track in tracks if track.crops]
    weights = [sharpness_weights(track.crops, input_size_of(extractor), quality.min_weight) for track in tracks]
    # the crops are cut from frames OpenCV decoded: BGR, whatever order the extractor expects by default
    features = pooled_features(extractor, [track.crops for track in tracks], weights, channel_order="bgr")
    return [track.finish(feature, weight, info, start_time) for track, feature, weight in zip(tracks, features, weights)]


def track_features(extractor: Any, video: str | Path | VideoInfo, tracks: MotTracks,
                   quality: FrameQuality = FrameQuality(), start_time: float = 0.0, batch_size: int = 64,
                   progress: bool = False, report: IngestReport | None = None) -> Iterator[TrackFeature]:
    """Features of the tracks in ``tracks`` seen in ``video``, yielded as each track's last chosen frame passes.

    ``extractor`` is a FeatureExtractor (anything with ``extract`` and ``input_size``); ``progress`` shows the
    frames read (a bar on a terminal, log lines elsewhere). Tracks entirely outside the frame and boxes past the
    end of the video are logged, and counted in ``report`` (complete once the iterator is exhausted).
    """
    report = IngestReport() if report is None else report
    info = video if isinstance(video, VideoInfo) else probe_video(video)
    used = 0
    for batch in batches_by_size(track_crops(info, tracks, quality, progress, report), batch_size,
                                 lambda track: len(track.crops)):
        finished = _finish_tracks(extractor, batch, info, quality, start_time)
        used += len(finished)
        yield from finished
    report.used = used


def track_crops(video: str | Path | VideoInfo, tracks: MotTracks, quality: FrameQuality = FrameQuality(),
                progress: bool = False, report: IngestReport | None = None,
                skip_tracks: Collection[int] = frozenset()) -> Iterator[TrackCrops]:
    """The chosen crops of every track in ``tracks``, yielded as each track's last chosen frame passes (tracks cut
    short by the end of the video at the end, those with no crop before it empty): what :func:`track_features`
    embeds, and what site adaptation writes to disk as tracklets. ``report`` gets the counts, ``used`` excepted.
    Tracks in ``skip_tracks`` (already in a gallery) are planned, so they still crowd their neighbours' boxes as
    in a full read, but not cut: frames only they need are skipped undecoded.
    """
    report = IngestReport() if report is None else report
    info = video if isinstance(video, VideoInfo) else probe_video(video)
    plans, outside = plan_tracks(tracks, info.frame_size, quality)
    report.tracks, report.outside_frame = len(plans) + outside, outside
    if outside:
        logger.warning("%s: %d tracks never inside the %d x %d frame were left out", tracks.source, outside,
                       *info.frame_size)
    kept = [plan for plan in plans if plan.track_id not in skip_tracks]
    report.already_present, plans = len(plans) - len(kept), kept
    if not plans:
        return
    wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)  # frame -> [(track id, row)]
    for plan in plans:
        for row in plan.rows:
            wanted[int(tracks.frames[row])].append((plan.track_id, int(row)))
    collected = {plan.track_id: TrackCrops(plan, [], [], []) for plan in plans}
    starts: dict[int, list[int]] = defaultdict(list)  # frame -> tracks whose first MOT frame it is
    for plan in plans:
        starts[plan.first_frame].append(plan.track_id)
    last_wanted = max(wanted)
    capture = cv2.VideoCapture(str(info.path))
    frame = 0
    try:
        with show_progress(desc=info.path.name, total=last_wanted, unit="frame",
                           mode="auto" if progress else "none") as bar:
            while frame < last_wanted:
                frame += 1
                needed = wanted.get(frame)
                ok, image = capture.read() if needed else (capture.grab(), None)
                if not ok:
                    frame -= 1
                    break
                bar.update(1)
                seconds = _container_seconds(capture)
                for track_id in starts.get(frame, ()):
                    collected[track_id].first_seconds = seconds
                if needed:
                    yield from _crop_frame(image, frame, seconds, needed, tracks, collected)
    finally:
        capture.release()
    report.frames_read = frame
    if frame < last_wanted:
        report.after_video_end = sum(not track.crops for track in collected.values())
        if frame == 0:
            logger.warning("%s has no readable frame (an empty video, or a codec OpenCV lacks): its %d tracks were "
                           "left out", info.path, report.after_video_end)
        else:
            logger.warning("%s ended after %d frames but %s has chosen boxes up to frame %d: %d tracks lying entirely "
                           "after the end were left out, the others use the frames before the end", info.path, frame,
                           tracks.source, last_wanted, report.after_video_end)
        yield from collected.values()


def _container_seconds(capture: cv2.VideoCapture) -> float | None:
    """The container's timestamp of the frame just read or grabbed (seconds into the video); None where the
    backend gives none."""
    milliseconds = capture.get(cv2.CAP_PROP_POS_MSEC)
    return milliseconds / 1000.0 if np.isfinite(milliseconds) and milliseconds >= 0 else None


def _crop_frame(image: np.ndarray, frame: int, seconds: float | None, needed: list[tuple[int, int]],
                tracks: MotTracks, collected: dict[int, TrackCrops]) -> Iterator[TrackCrops]:
    """Collect the chosen crops of one frame (its container time ``seconds``); hand over the tracks whose last
    chosen frame this is."""
    track_ids, rows = zip(*needed)
    boxes = tracks.boxes[list(rows)]
    crops, kept = extract_boxes(image, boxes, min_size=(1, 1))
    clipped = clip_boxes(boxes, image.shape[:2])
    for crop, index in zip(crops, kept):
        track = collected[track_ids[index]]
        track.crops.append(crop)
        track.frames.append(frame)
        track.boxes.append(tuple(int(v) for v in clipped[index]))
        track.last_chosen_seconds = seconds
    for track_id in set(track_ids):
        track = collected[track_id]
        if int(tracks.frames[track.plan.rows[-1]]) == frame:
            yield collected.pop(track_id)


def read_box(video: str | Path, frame: int, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The crop ``box`` (x1, y1, x2, y2) of MOT frame ``frame`` (1-based) of a video; None when unreadable."""
    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, frame - 1)
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok:
        return None
    crops, _ = extract_boxes(image, np.array([box], dtype=np.float64), min_size=(1, 1))
    return crops[0] if crops else None
