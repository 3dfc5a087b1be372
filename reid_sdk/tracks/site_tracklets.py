"""A site's tracks as tracklets on disk: the frame-quality rule's crops of every track, one folder per track.

This is how a site's videos become training data (the paper's video setting: one tracklet per track, each its
own cluster at first). Each camera's video is read once (:func:`~reid_sdk.tracks.ingest.track_crops`, the
crops ``reid-index ingest`` embeds) and its tracks are written as ``OUT/<camera>/<track id>/<frame>.jpg``, with
``OUT/<camera>/tracks.json`` last: the camera's tracks, their first and last MOT frame, the runs of frames in
which the tracker detected them (two tracks of one camera detected together in a few frames are two people: the
cannot-link constraint) and what was left out. A camera whose
``tracks.json`` matches its video, tracks file and options is not read again, so an interrupted preparation
resumes where it stopped; ``OUT/site_tracklets.json`` lists the cameras with their numbers (1, 2, ... in site
order).

Left out, counted and logged, never an error: cameras whose files are missing or unreadable, tracks with fewer
than ``min_boxes`` boxes (detector flicker, often a fragment of a longer track), tracks never inside the frame
and tracks after the video's end, and the tracks file's rows :func:`~reid_sdk.tracks.mot.read_mot` does not use
(other classes, coasting rows, boxes beyond any frame). A camera that keeps no track is reported as such, and
every skipped camera is named with its reason in :meth:`SiteTracklets.summary` and :attr:`SiteTracklets.skipped`.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.tracks.ingest import IngestReport, VideoInfo, probe_video, track_crops
from reid_sdk.tracks.mot import MotTracks
from reid_sdk.tracks.quality import FrameQuality
from reid_sdk.tracks.site import SiteCamera, SiteLayout, find_site

logger = logging.getLogger(__name__)

SITE_FILE = "site_tracklets.json"
CAMERA_FILE = "tracks.json"
SITE_FORMAT = "reid-sdk-site-tracklets"
CAMERA_FORMAT = "reid-sdk-site-camera-2"  # 2: detected frame runs per track
#: Where ``reid-train --format videos`` prepares a site's tracklets when given the site itself.
CACHE_FOLDER = ".reid-tracklets"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class TrackletOptions:
    """How tracks become tracklets: the frame-quality rule, and the fewest boxes a track needs to be kept."""

    quality: FrameQuality = FrameQuality()
    min_boxes: int = 3

    def __post_init__(self) -> None:
        if self.min_boxes < 1:
            raise ValueError(f"min_boxes must be >= 1, got {self.min_boxes}")

    def to_dict(self) -> dict[str, Any]:
        return {"quality": asdict(self.quality), "min_boxes": self.min_boxes}


@dataclass(frozen=True)
class SiteTrack:
    """One track of one camera as a tracklet: its crop files in frame order, first and last MOT frame (of all its
    boxes, chosen or not), the inclusive runs of frames it was detected in, whether the quality rule fell back to
    its best boxes, and its identity when known."""

    camera: str
    camera_id: int
    track_id: int
    first_frame: int
    last_frame: int
    frames: tuple[Path, ...]
    detected_runs: tuple[tuple[int, int], ...] = ()
    fallback: bool = False
    identity: str | None = None


@dataclass
class CameraTracklets:
    """One camera's outcome: its tracklets, or why it was skipped; and the tracks left out, by reason."""

    name: str
    camera_id: int
    tracks: list[SiteTrack] = field(default_factory=list)
    skipped: str | None = None  # why the camera gave nothing (missing files, unreadable MOT file, ...)
    mot_tracks: int = 0
    short: int = 0
    outside_frame: int = 0
    after_video_end: int = 0
    frames_read: int = 0
    reused: bool = False

    def left_out(self) -> str:
        """The tracks left out and why, as a clause ("" when none was)."""
        reasons = [f"{count} {why}" for count, why in ((self.short, "with too few boxes"),
                                                       (self.outside_frame, "never inside the frame"),
                                                       (self.after_video_end, "after the video's end")) if count]
        return f"; left out: {', '.join(reasons)}" if reasons else ""

    def line(self) -> str:
        """One line for logs and the CLI."""
        if self.skipped:
            return f"camera {self.name}: skipped, {self.skipped}"
        cached = " (prepared before)" if self.reused else ""
        return f"camera {self.name}: {len(self.tracks)} tracklets of {self.mot_tracks} tracks{self.left_out()}{cached}"


@dataclass
class SiteTracklets:
    """A prepared site: the folder holding the tracklets, the site it came from and every camera's outcome."""

    root: Path
    site: Path
    cameras: list[CameraTracklets]

    @property
    def tracks(self) -> list[SiteTrack]:
        """Every tracklet, camera by camera."""
        return [track for camera in self.cameras for track in camera.tracks]

    @property
    def cameras_with_tracks(self) -> list[str]:
        return [camera.name for camera in self.cameras if camera.tracks]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(camera, reason) of every camera skipped, for summaries and reports."""
        return [(camera.name, camera.skipped) for camera in self.cameras if camera.skipped]

    def summary(self) -> str:
        """One line: tracklets, cameras, and the cameras without any, the skipped ones with their reason."""
        empty = [camera.name if not camera.skipped else f"{camera.name} (skipped: {camera.skipped})"
                 for camera in self.cameras if not camera.tracks]
        without = f"; no tracklets from {', '.join(empty)}" if empty else ""
        return (f"{len(self.tracks)} tracklets from {len(self.cameras_with_tracks)} of {len(self.cameras)} cameras "
                f"in {self.root}{without}")


def prepare_site(site: str | Path | SiteLayout, out: str | Path, options: TrackletOptions = TrackletOptions(),
                 progress: bool = False) -> SiteTracklets:
    """Write the tracklets of every camera of ``site`` into ``out`` (see the module docstring); returns them.

    Cameras already prepared with the same files and options are reused. ``progress`` shows the frames read.
    """
    layout = site if isinstance(site, SiteLayout) else find_site(site)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cameras, recordings = [], layout.recordings()
    for number, (name, segments) in enumerate(recordings.items(), start=1):
        outcome = _prepare_camera(segments, number, out / name, options, progress)
        logger.info("[%d/%d] %s", number, len(recordings), outcome.line())
        cameras.append(outcome)
    offset = len(recordings)
    for number, (name, reason) in enumerate(layout.skipped, start=offset + 1):
        cameras.append(CameraTracklets(name, number, skipped=reason))
    with atomic_write(out / SITE_FILE) as handle:
        handle.write(json.dumps({"format": SITE_FORMAT, "site": str(layout.root.resolve()),
                                 "options": options.to_dict(),
                                 "cameras": [_camera_entry(camera) for camera in cameras]}, indent=1).encode())
    return SiteTracklets(out, layout.root, cameras)


def is_prepared(folder: str | Path) -> bool:
    """Whether ``folder`` holds prepared tracklets (:func:`prepare_site`'s output)."""
    return (Path(folder) / SITE_FILE).is_file()


def read_site_tracklets(folder: str | Path) -> SiteTracklets:
    """The tracklets :func:`prepare_site` wrote into ``folder``; ValueError when it is not such a folder."""
    folder = Path(folder)
    document = _read_json(folder / SITE_FILE, SITE_FORMAT)
    cameras = []
    try:
        for entry in document["cameras"]:
            outcome = CameraTracklets(str(entry["name"]), int(entry["id"]), skipped=entry.get("skipped"))
            if outcome.skipped is None:
                _load_camera(folder / outcome.name, outcome)
            cameras.append(outcome)
        site = Path(document["site"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{folder / SITE_FILE} is damaged: {error}; delete it and prepare the site again") from error
    return SiteTracklets(folder, site, cameras)


# ------------------------------------------------------------------------------------------------ one camera


def _source_stamp(segments: list[SiteCamera]) -> dict[str, Any]:
    """What the camera's tracklets depend on: each segment's files (path, size and modification time), and how
    its tracks file is read."""
    stamps = []
    for camera in segments:
        stamp: dict[str, Any] = {"tracks_format": asdict(camera.tracks_format)}
        for key in ("video", "tracks", "identities"):
            path = getattr(camera, key)
            status = path.stat() if path is not None else None
            stamp[key] = None if status is None else [str(path.resolve()), status.st_size, status.st_mtime_ns]
        stamps.append(stamp)
    return {"segments": stamps}


def _prepare_camera(segments: list[SiteCamera], number: int, folder: Path, options: TrackletOptions,
                    progress: bool) -> CameraTracklets:
    """One camera's tracklets from its video, or its segments' videos in time order: a later segment's frames
    follow the earlier ones' (offset by their length), its track ids are its own (see :mod:`.site`)."""
    outcome = CameraTracklets(segments[0].name, number)
    try:
        stamp = _source_stamp(segments)
        if _reusable(folder, stamp, options):
            _load_camera(folder, outcome)
            outcome.reused = True
            return outcome
        sources = [(segment, segment.read_tracks(), probe_video(segment.video)) for segment in segments]
    except (OSError, ValueError) as error:  # a missing, unreadable or malformed file: this camera only
        outcome.skipped = str(error)
        return outcome
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted or outdated preparation
    folder.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    counts = {"mot_tracks": 0, "short": 0, "outside_frame": 0, "after_video_end": 0, "frames_read": 0,
              "rows_left_out": {}}
    frame_offset = 0
    for segment, tracks, info in sources:
        report, short = _prepare_segment(segment, tracks, info, frame_offset, folder, options, progress, rows)
        for key, value in (("mot_tracks", report.tracks), ("short", short), ("outside_frame", report.outside_frame),
                           ("after_video_end", report.after_video_end), ("frames_read", report.frames_read)):
            counts[key] += value
        for reason, count in tracks.left_out.items():
            counts["rows_left_out"][reason] = counts["rows_left_out"].get(reason, 0) + count
        frame_offset += max(info.frame_count, report.frames_read, int(tracks.frames.max()))
    rows.sort(key=lambda row: row["track_id"])
    document = {"format": CAMERA_FORMAT, "camera": outcome.name, "source": stamp, "options": options.to_dict(),
                "counts": counts, "tracks": rows}
    with atomic_write(folder / CAMERA_FILE) as handle:  # last: the camera is complete
        handle.write(json.dumps(document, indent=1).encode())
    _load_camera(folder, outcome)
    return outcome


def _prepare_segment(segment: SiteCamera, tracks: MotTracks, info: VideoInfo, frame_offset: int, folder: Path,
                     options: TrackletOptions, progress: bool, rows: list[dict[str, Any]]) -> tuple[IngestReport, int]:
    """Write one video's tracklets into ``folder`` and their rows (frames offset by ``frame_offset``) into
    ``rows``; returns the video's counts and how many tracks were left out as too short."""
    identities = segment.labels()
    lengths = dict(zip(*np.unique(tracks.track_ids, return_counts=True)))
    report = IngestReport()
    short = 0
    for crops in track_crops(info, tracks, options.quality, progress, report):
        track_id = crops.plan.track_id
        if lengths[track_id] < options.min_boxes:
            short += 1
            continue
        if not crops.crops:
            continue  # after the video's end: counted in the report
        names = [f"{track_id}/{frame:06d}.jpg" for frame in crops.frames]
        (folder / str(track_id)).mkdir()
        for name, crop in zip(names, crops.crops):
            _write_jpeg(folder / name, crop)
        runs = frame_runs(tracks.frames[tracks.track_ids == track_id])
        rows.append({"track_id": track_id, "first_frame": crops.plan.first_frame + frame_offset,
                     "last_frame": crops.plan.last_frame + frame_offset,
                     "detected": [[first + frame_offset, last + frame_offset] for first, last in runs],
                     "fallback": crops.plan.fallback, "identity": identities.get(track_id), "crops": names})
    return report, short


def frame_runs(frames: np.ndarray) -> list[list[int]]:
    """Sorted frame numbers as inclusive runs of consecutive frames: [1, 2, 3, 7, 8] -> [[1, 3], [7, 8]]."""
    frames = np.unique(frames)
    breaks = np.flatnonzero(np.diff(frames) > 1)
    starts, ends = np.r_[frames[:1], frames[breaks + 1]], np.r_[frames[breaks], frames[-1:]]
    return [[int(first), int(last)] for first, last in zip(starts, ends)]


def _write_jpeg(path: Path, crop: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"OpenCV cannot encode the crop for {path}")
    path.write_bytes(encoded.tobytes())


def _reusable(folder: Path, stamp: dict[str, Any], options: TrackletOptions) -> bool:
    """Whether ``folder`` holds this camera's complete tracklets, from the same files with the same options."""
    try:
        document = _read_json(folder / CAMERA_FILE, CAMERA_FORMAT)
    except (OSError, ValueError):
        return False
    return document.get("source") == json.loads(json.dumps(stamp)) and document.get("options") == options.to_dict()


def _load_camera(folder: Path, outcome: CameraTracklets) -> None:
    """Fill ``outcome`` from the camera's ``tracks.json``."""
    document = _read_json(folder / CAMERA_FILE, CAMERA_FORMAT)
    counts = document["counts"]
    outcome.mot_tracks, outcome.short = int(counts["mot_tracks"]), int(counts["short"])
    outcome.outside_frame, outcome.after_video_end = int(counts["outside_frame"]), int(counts["after_video_end"])
    outcome.frames_read = int(counts["frames_read"])
    outcome.tracks = [SiteTrack(outcome.name, outcome.camera_id, int(row["track_id"]), int(row["first_frame"]),
                                int(row["last_frame"]), tuple(folder / name for name in row["crops"]),
                                tuple((int(first), int(last)) for first, last in row["detected"]),
                                bool(row["fallback"]), row.get("identity"))
                      for row in document["tracks"]]


def _camera_entry(camera: CameraTracklets) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": camera.name, "id": camera.camera_id, "tracklets": len(camera.tracks)}
    if camera.skipped:
        entry["skipped"] = camera.skipped
    return entry


def _read_json(path: Path, expected_format: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a prepared site (prepare_site / reid-adapt writes it)")
    try:
        document = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and prepare the site again") from error
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise ValueError(f"{path} is not a {expected_format} file")
    return document
