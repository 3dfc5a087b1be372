"""Synthetic multi-camera surveillance videos with ground-truth MOTChallenge tracks.

The same identities (clothing, body) walk through two or more camera scenes one after the other, across the
view (side view) or towards / away from the camera (front / back view), growing as they come nearer; passers-by
cross one camera only. Each camera keeps its own background, colour cast, blur, resolution and noise (see
:mod:`reid_sdk.synthetic.pedestrians`). Written per camera: ``cN.avi`` (MJPG), ``cN.txt`` (MOT boxes with track
ids, partly outside the frame while people enter and leave) and ``cN_identities.csv`` (track id -> identity),
plus ``manifest.json``. Deterministic per seed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from reid_sdk.synthetic.layouts import empty_folder
from reid_sdk.synthetic.pedestrians import (
    Camera,
    DifficultyConfig,
    Identity,
    View,
    camera_optics,
    make_camera,
    make_identity,
    person_layer,
)
from reid_sdk.tracks.mot import write_mot, write_track_identities

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_FEET = 0.97  # the renderer puts the feet at this fraction of the person layer's height
_NEAR, _FAR = 1.0, 0.55  # feet rows (fractions of the frame height) of the nearest and farthest walking line


@dataclass(frozen=True)
class VideoSetConfig:
    """A set of camera videos: cameras, who walks where, length, frame size and rendering difficulty.

    ``walkers`` identities each cross ``cameras_per_walker`` cameras in turn; ``passers_by`` cross one camera
    only (their tracks have no true match elsewhere). ``person_height`` is the box height over the frame height
    on the farthest and the nearest walking line.
    """

    seed: int = 0
    num_cameras: int = 3
    walkers: int = 6
    passers_by: int = 2
    cameras_per_walker: tuple[int, int] = (2, 3)
    frames: int = 150
    fps: float = 10.0
    frame_size: tuple[int, int] = (270, 480)
    person_height: tuple[float, float] = (0.42, 0.72)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)

    def __post_init__(self) -> None:
        low, high = self.cameras_per_walker
        if not 2 <= low <= high <= self.num_cameras:
            raise ValueError(f"cameras_per_walker {self.cameras_per_walker} must lie in 2..num_cameras "
                             f"({self.num_cameras}): a walker is seen by at least two cameras")
        if self.walkers < 1 or self.passers_by < 0:
            raise ValueError(f"need walkers >= 1 and passers_by >= 0, got {self.walkers}, {self.passers_by}")
        if self.frames < 20 * high:
            raise ValueError(f"frames must be >= {20 * high} so each of up to {high} crossings lasts 20+ frames")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        height, width = self.frame_size
        if height < 96 or width < 96:
            raise ValueError(f"frame_size must be at least 96 x 96 (H x W), got {self.frame_size}")
        if not 0.1 <= self.person_height[0] <= self.person_height[1] <= 0.95:
            raise ValueError(f"person_height must be an increasing range within 0.1..0.95, got {self.person_height}")


@dataclass(frozen=True)
class CameraVideo:
    """One camera's files."""

    camera: str
    video: Path
    tracks: Path
    identities: Path


@dataclass(frozen=True)
class _Crossing:
    """One identity walking through one camera's view: frames [start, start + duration), feet from -> to."""

    identity: str
    appearance: Identity
    track_id: int
    start: int
    duration: int
    origin: tuple[float, float]  # feet (x, y) in pixels
    target: tuple[float, float]
    viewpoint: str
    stride_period: float


def _box_height(config: VideoSetConfig, feet_y: float) -> int:
    height = config.frame_size[0]
    far, near = config.person_height
    share = np.interp(feet_y / height, (_FAR, _NEAR), (far, near))
    return max(16, int(round(share * height)))


def _path(config: VideoSetConfig, rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float], str]:
    """Start and end of the feet, and the viewpoint: across the view, towards or away from the camera."""
    height, width = config.frame_size
    kind = ("across", "towards", "away")[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
    if kind == "across":
        feet = rng.uniform(0.62, 0.95) * height
        margin = _box_height(config, feet) / 4 + 2  # half the box width: start and end just outside the view
        rightwards = rng.random() < 0.5
        xs = (-margin, width + margin) if rightwards else (width + margin, -margin)
        slope = rng.uniform(-0.04, 0.04) * height
        return (xs[0], feet - slope), (xs[1], feet + slope), "right" if rightwards else "left"
    x = rng.uniform(0.25, 0.75) * width
    drift = rng.uniform(-0.1, 0.1) * width
    far, near = (x, 0.58 * height), (x + drift, 0.99 * height)
    return (far, near, "front") if kind == "towards" else (near, far, "back")


def _crossing(config: VideoSetConfig, identity: str, appearance: Identity, track_id: int, start: int, duration: int,
              rng: np.random.Generator) -> _Crossing:
    origin, target, viewpoint = _path(config, rng)
    return _Crossing(identity, appearance, track_id, start, duration, origin, target, viewpoint,
                     float(rng.uniform(7.0, 11.0)))


def plan_crossings(config: VideoSetConfig) -> dict[int, list[_Crossing]]:
    """Who crosses which camera when (camera index -> crossings): walkers visit their cameras in turn."""
    rng = np.random.default_rng([config.seed, 1])
    crossings: dict[int, list[_Crossing]] = {camera: [] for camera in range(config.num_cameras)}

    def add(camera: int, identity: str, appearance: Identity, start: int, duration: int) -> None:
        track_id = len(crossings[camera]) + 1
        crossings[camera].append(_crossing(config, identity, appearance, track_id, start, duration, rng))

    for number in range(config.walkers + config.passers_by):
        identity = f"p{number + 1}"
        appearance = make_identity(np.random.default_rng([config.seed, 2, number]), config.difficulty)
        walker = number < config.walkers
        count = int(rng.integers(config.cameras_per_walker[0], config.cameras_per_walker[1] + 1)) if walker else 1
        budget = config.frames // count
        for slot, camera in enumerate(rng.choice(config.num_cameras, count, replace=False)):
            duration = int(budget * rng.uniform(0.6, 0.85))
            start = slot * budget + int(rng.integers(0, budget - duration + 1))
            add(int(camera), identity, appearance, start, duration)
    return crossings


def _position(crossing: _Crossing, frame: int) -> tuple[float, float]:
    progress = (frame - crossing.start) / max(1, crossing.duration - 1)
    return tuple(o + progress * (t - o) for o, t in zip(crossing.origin, crossing.target))  # type: ignore[return-value]


def _layer_box(config: VideoSetConfig, crossing: _Crossing, frame: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The person's BGRA layer at this frame and its top-left corner in the frame."""
    x, feet = _position(crossing, frame)
    box_height = _box_height(config, feet)
    box_width = max(8, box_height // 2)
    view = View(viewpoint=crossing.viewpoint, scale=1.0, shift=(0.0, 0.0), angle=0.0,
                stride=float(np.sin(2 * np.pi * frame / crossing.stride_period)), background_offset=(0, 0),
                brightness=1.0, occluder=None, jpeg_quality=95)
    layer = person_layer(crossing.appearance, view, (box_height, box_width))
    return layer, (int(round(x - box_width / 2)), int(round(feet - _FEET * box_height)))


def _paste(scene: np.ndarray, layer: np.ndarray, left: int, top: int) -> None:
    """Alpha-blend ``layer`` into ``scene`` (float32) with its top-left at (left, top), clipped to the scene."""
    height, width = scene.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + layer.shape[1], width), min(top + layer.shape[0], height)
    if x1 <= x0 or y1 <= y0:
        return
    part = layer[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
    alpha = part[..., 3:4] / 255.0
    scene[y0:y1, x0:x1] = scene[y0:y1, x0:x1] * (1.0 - alpha) + part[..., :3] * alpha


def _render_camera(config: VideoSetConfig, camera: Camera, crossings: list[_Crossing], number: int,
                   files: CameraVideo) -> int:
    """Write one camera's video and ground truth; returns the number of boxes."""
    height, width = config.frame_size
    writer = cv2.VideoWriter(str(files.video), cv2.VideoWriter_fourcc(*"MJPG"), config.fps, (width, height))
    if not writer.isOpened():
        raise ValueError(f"OpenCV cannot write an MJPG video to {files.video}")
    rng = np.random.default_rng([config.seed, 3, number])
    background = camera.background[:height, :width].astype(np.float32)
    frames, track_ids, boxes = [], [], []
    try:
        for frame in range(config.frames):
            scene = background.copy()
            active = [c for c in crossings if c.start <= frame < c.start + c.duration]
            for crossing in sorted(active, key=lambda c: _position(c, frame)[1]):  # far (higher feet) first
                layer, (left, top) = _layer_box(config, crossing, frame)
                box = (left, top, left + layer.shape[1], top + layer.shape[0])
                if box[2] <= 0 or box[0] >= width or box[3] <= 0 or box[1] >= height:
                    continue
                _paste(scene, layer, left, top)
                frames.append(frame + 1)
                track_ids.append(crossing.track_id)
                boxes.append(box)
            writer.write(camera_optics(scene, camera, 1.0, rng))
    finally:
        writer.release()
    write_mot(files.tracks, np.array(frames), np.array(track_ids), np.array(boxes, dtype=np.float64))
    write_track_identities(files.identities, {c.track_id: c.identity for c in crossings})
    return len(frames)


def render_videos(out: str | Path, config: VideoSetConfig = VideoSetConfig(),
                  overwrite: bool = False) -> list[CameraVideo]:
    """Render every camera's video, MOT ground truth and identities into ``out`` (empty or absent; emptied first
    with ``overwrite``); returns the files."""
    root = empty_folder(out, overwrite)
    height, width = config.frame_size
    crossings = plan_crossings(config)
    videos = []
    for number in range(config.num_cameras):
        name = f"c{number + 1}"
        files = CameraVideo(name, root / f"{name}.avi", root / f"{name}.txt", root / f"{name}_identities.csv")
        camera = make_camera(np.random.default_rng([config.seed, 4, number]), config.difficulty,
                             (-(-height // 3), -(-width // 3)))
        boxes = _render_camera(config, camera, crossings[number], number, files)
        logger.info("%s: %d frames, %d tracks, %d boxes", files.video, config.frames, len(crossings[number]), boxes)
        videos.append(files)
    manifest = {"config": {**asdict(config), "difficulty": asdict(config.difficulty)},
                "cameras": [{"camera": v.camera, "video": v.video.name, "tracks": v.tracks.name,
                             "identities": v.identities.name} for v in videos]}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return videos


def load_video_set(root: str | Path) -> list[CameraVideo]:
    """The camera files listed in a rendered set's manifest."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {root}: render the set with render_videos")
    cameras = json.loads((root / MANIFEST).read_text())["cameras"]
    return [CameraVideo(c["camera"], root / c["video"], root / c["tracks"], root / c["identities"]) for c in cameras]
