"""Synthetic pedestrian datasets written in the real layouts (what ``reid-synth`` writes).

A :class:`SyntheticWorld` holds identities and cameras (see :mod:`reid_sdk.synthetic.pedestrians`); the layout
writers plan which identity is seen by which camera how often, name every file exactly as the real dataset
does (with distractors and junk where the real one has them) and render the images. Every image has its own
random stream derived from (seed, kind, pid, camera, index), so output is byte-identical for a seed whatever
the order or number of worker threads.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .pedestrians import (
    Camera,
    DifficultyConfig,
    Identity,
    View,
    encode_jpeg,
    make_camera,
    make_identity,
    render,
    render_clutter,
    sample_view,
)

logger = logging.getLogger(__name__)

JUNK_PID = -1
DISTRACTOR_PID = 0
_IDENTITY, _CAMERA, _IMAGE, _TRACK = 1, 2, 3, 4


@dataclass(frozen=True)
class LayoutSizes:
    """How many identities, cameras, images and tracklets a generated dataset has.

    Image layouts: ``train_images`` are spread over the train sightings (identity x camera); every test sighting
    gives one query image plus a share of ``gallery_images``. Video layouts: every sighting gives
    ``tracklets_per_sighting`` tracklets of ``frames_per_tracklet`` frames; each test identity's first tracklet
    is its query. ``distractors`` / ``junk`` images (or tracklets) are added to the gallery.
    """

    train_ids: int
    test_ids: int
    num_cameras: int = 6
    cameras_per_id: tuple[int, int] = (2, 4)
    train_images: int = 0
    gallery_images: int = 0
    distractors: int = 0
    junk: int = 0
    tracklets_per_sighting: tuple[int, int] = (1, 2)
    frames_per_tracklet: tuple[int, int] = (4, 8)

    def __post_init__(self) -> None:
        if self.train_ids < 1 or self.test_ids < 1:
            raise ValueError(f"need at least one train and one test identity, got {self.train_ids}/{self.test_ids}")
        low, high = self.cameras_per_id
        if not 2 <= low <= high <= self.num_cameras:
            raise ValueError(
                f"cameras_per_id {self.cameras_per_id} must lie in 2..num_cameras ({self.num_cameras}):"
                " a test identity needs a second camera to be findable"
            )
        if not 1 <= self.tracklets_per_sighting[0] <= self.tracklets_per_sighting[1]:
            raise ValueError(f"tracklets_per_sighting must be an increasing range >= 1: {self.tracklets_per_sighting}")
        if not 1 <= self.frames_per_tracklet[0] <= self.frames_per_tracklet[1]:
            raise ValueError(f"frames_per_tracklet must be an increasing range >= 1: {self.frames_per_tracklet}")
        if min(self.train_images, self.gallery_images, self.distractors, self.junk) < 0:
            raise ValueError("image counts must be >= 0")


#: Named sizes: ``tiny`` for tests, ``small`` for the demo and benchmarks, ``market`` at Market-1501 scale.
PRESETS: dict[str, LayoutSizes] = {
    "tiny": LayoutSizes(train_ids=4, test_ids=4, num_cameras=3, cameras_per_id=(2, 3), train_images=24,
                        gallery_images=20, distractors=3, junk=2, tracklets_per_sighting=(1, 2),
                        frames_per_tracklet=(3, 5)),
    "small": LayoutSizes(train_ids=100, test_ids=100, num_cameras=6, cameras_per_id=(2, 4), train_images=1600,
                         gallery_images=1400, distractors=100, junk=60, tracklets_per_sighting=(1, 2),
                         frames_per_tracklet=(6, 12)),
    "market": LayoutSizes(train_ids=751, test_ids=750, num_cameras=6, cameras_per_id=(3, 6), train_images=12936,
                          gallery_images=13120, distractors=2793, junk=3819, tracklets_per_sighting=(1, 3),
                          frames_per_tracklet=(20, 60)),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides a generated dataset: seed, crop size (H, W), sizes and difficulty."""

    seed: int = 0
    image_size: tuple[int, int] = (128, 64)
    sizes: LayoutSizes = field(default_factory=lambda: PRESETS["small"])
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        height, width = self.image_size
        if height < 32 or width < 16:
            raise ValueError(f"image_size must be at least 32 x 16 (H x W), got {self.image_size}")


@dataclass(frozen=True)
class Shot:
    """One image file to write: relative path, who (pid; 0 distractor, -1 junk), camera and random stream."""

    path: str
    pid: int
    camera: int
    stream: tuple[int, ...]
    frame: int = -1  # position in its tracklet; -1 for a still image
    encoding: str = ".jpg"


class SyntheticWorld:
    """Identities and cameras of one seed, and the rendering of shots."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self._cameras: dict[int, Camera] = {}
        self._identities: dict[int, Identity] = {}

    def rng(self, *stream: int) -> np.random.Generator:
        """The random generator of one named stream (all entries >= 0)."""
        return np.random.default_rng([self.config.seed, *stream])

    def camera(self, camera: int) -> Camera:
        """Camera ``camera`` (1-based), created on first use."""
        if camera not in self._cameras:
            self._cameras[camera] = make_camera(
                self.rng(_CAMERA, camera), self.config.difficulty, self.config.image_size
            )
        return self._cameras[camera]

    def identity(self, pid: int) -> Identity:
        """Identity ``pid`` (> 0), created on first use."""
        if pid not in self._identities:
            self._identities[pid] = make_identity(self.rng(_IDENTITY, pid), self.config.difficulty)
        return self._identities[pid]

    def render(self, shot: Shot) -> tuple[np.ndarray, int]:
        """The BGR image of ``shot`` (still image, tracklet frame, distractor or junk) and its JPEG quality."""
        size = self.config.image_size
        camera = self.camera(shot.camera)
        rng = self.rng(_IMAGE, *shot.stream, shot.frame + 1)
        view = self._view(shot, camera, rng)
        if shot.pid == JUNK_PID:
            return render_clutter(camera, view, size, rng), view.jpeg_quality
        if shot.pid == DISTRACTOR_PID:  # a stranger, badly framed
            stranger = make_identity(rng, self.config.difficulty)
            image = render(stranger, camera, dataclasses.replace(view, scale=view.scale * 1.7), size, rng)
            return image, view.jpeg_quality
        return render(self.identity(shot.pid), camera, view, size, rng), view.jpeg_quality

    def _view(self, shot: Shot, camera: Camera, rng: np.random.Generator) -> View:
        if shot.frame < 0:
            return sample_view(rng, camera, self.config.difficulty)
        base = sample_view(self.rng(_TRACK, *shot.stream), camera, self.config.difficulty)
        drift = 0.004 * shot.frame
        return dataclasses.replace(
            base,
            stride=float(np.sin(base.stride * np.pi + 0.8 * shot.frame)),
            shift=(base.shift[0] + drift * np.sign(base.shift[0] or 1.0), base.shift[1]),
            scale=base.scale * (1.0 + 0.003 * shot.frame),
            jpeg_quality=int(np.clip(base.jpeg_quality + rng.integers(-5, 6), 1, 100)),
        )

    def encode(self, shot: Shot) -> bytes:
        """The file bytes of ``shot``: JPEG at the view's quality, or lossless PNG."""
        image, quality = self.render(shot)
        if shot.encoding == ".png":
            ok, data = cv2.imencode(".png", image)
            if not ok:
                raise ValueError("OpenCV failed to encode a PNG image")
            return data.tobytes()
        return encode_jpeg(image, quality)


def sample_crops(count: int, seed: int = 0, image_size: tuple[int, int] = (128, 64)) -> list[np.ndarray]:
    """``count`` rendered BGR pedestrian crops, two per identity from different cameras, kept in memory.

    For checks that want realistic crops without writing a dataset (e.g. ``reid-export --verify``).
    """
    world = SyntheticWorld(SyntheticConfig(seed=seed, image_size=image_size))
    shots = [Shot(path="", pid=1 + index // 2, camera=1 + index % 6, stream=(index,)) for index in range(count)]
    return [world.render(shot)[0] for shot in shots]


# ----------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Sighting:
    """An identity seen by one camera, with how many images or tracklets."""

    pid: int
    camera: int
    count: int


def _split_pids(config: SyntheticConfig, extra: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Train and test pids (disjoint, interleaved over 1..N like the real datasets), then ``extra`` pids above N."""
    sizes = config.sizes
    total = sizes.train_ids + sizes.test_ids
    order = np.random.default_rng([config.seed, 5]).permutation(np.arange(1, total + 1))
    train = sorted(order[: sizes.train_ids].tolist())
    test = sorted(order[sizes.train_ids :].tolist())
    return train, test, list(range(total + 1, total + extra + 1))


def _camera_sets(pids: list[int], config: SyntheticConfig, salt: int) -> dict[int, list[int]]:
    sizes = config.sizes
    low, high = sizes.cameras_per_id
    result = {}
    for pid in pids:
        rng = np.random.default_rng([config.seed, 6, salt, pid])
        count = int(rng.integers(low, high + 1))
        result[pid] = sorted((rng.choice(sizes.num_cameras, size=count, replace=False) + 1).tolist())
    return result


def _spread(total: int, slots: int, minimum: int, rng: np.random.Generator) -> list[int]:
    """``total`` split over ``slots`` counts, each >= ``minimum`` (raises when impossible)."""
    if total < slots * minimum:
        raise ValueError(f"cannot spread {total} images over {slots} sightings with at least {minimum} each")
    extra = rng.multinomial(total - slots * minimum, np.full(slots, 1.0 / slots)) if slots else []
    return [minimum + int(e) for e in extra]


def plan_sightings(pids: list[int], total: int, minimum: int, config: SyntheticConfig, salt: int) -> list[Sighting]:
    """Sightings of ``pids`` whose image counts add up to exactly ``total``."""
    cameras = _camera_sets(pids, config, salt)
    pairs = [(pid, camera) for pid in pids for camera in cameras[pid]]
    counts = _spread(total, len(pairs), minimum, np.random.default_rng([config.seed, 7, salt]))
    return [Sighting(pid, camera, count) for (pid, camera), count in zip(pairs, counts)]


def _counts_in_range(bounds: tuple[int, int], rng: np.random.Generator) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


# ------------------------------------------------------------------------------------------- image layouts


def _market_name(pid: int, camera: int, index: int) -> str:
    sequence = 1 + index % 6
    return f"{pid:04d}_c{camera}s{sequence}_{index * 25 + camera:06d}_{1 + index % 3:02d}.jpg"


def _duke_name(pid: int, camera: int, index: int) -> str:
    return f"{pid:04d}_c{camera}_f{index * 120 + camera * 7:07d}.jpg"


def _market_shots(config: SyntheticConfig) -> list[Shot]:
    """Market-1501: 6-ish cameras, pid 0000 distractors and -1 junk in ``bounding_box_test``."""
    sizes = config.sizes
    train, test, _ = _split_pids(config)
    shots = _identity_shots(config, train, test, _market_name)
    for kind, pid, count in (("distractor", DISTRACTOR_PID, sizes.distractors), ("junk", JUNK_PID, sizes.junk)):
        for index in range(count):
            camera = 1 + index % sizes.num_cameras
            name = _market_name(pid, camera, index) if pid >= 0 else "-1" + _market_name(0, camera, index)[4:]
            shots.append(Shot(f"bounding_box_test/{name}", pid, camera, (pid + 1, camera, index)))
    return shots


def _duke_shots(config: SyntheticConfig) -> list[Shot]:
    """DukeMTMC-reID: distractors are extra identities seen by one camera, in the gallery only (no junk)."""
    sizes = config.sizes
    extra_ids = max(1, sizes.distractors // 3) if sizes.distractors else 0
    train, test, extra = _split_pids(config, extra_ids)
    shots = _identity_shots(config, train, test, _duke_name)
    for position in range(sizes.distractors):
        pid = extra[position % len(extra)]
        camera = 1 + pid % sizes.num_cameras
        index = position // len(extra)
        shots.append(Shot(f"bounding_box_test/{_duke_name(pid, camera, index)}", pid, camera, (pid + 1, camera, index)))
    return shots


def _identity_shots(config: SyntheticConfig, train: list[int], test: list[int],
                    name: Callable[[int, int, int], str]) -> list[Shot]:
    """Train images, one query per test sighting and the gallery images of the identities."""
    sizes = config.sizes
    shots = []
    for sighting in plan_sightings(train, sizes.train_images, 1, config, salt=0):
        for index in range(sighting.count):
            shots.append(_shot("bounding_box_train", sighting, index, name))
    for sighting in plan_sightings(test, sizes.gallery_images, 1, config, salt=1):
        shots.append(_shot("query", sighting, 0, name))
        for index in range(1, sighting.count + 1):
            shots.append(_shot("bounding_box_test", sighting, index, name))
    return shots


def _shot(folder: str, sighting: Sighting, index: int, name: Callable[[int, int, int], str]) -> Shot:
    pid, camera = sighting.pid, sighting.camera
    return Shot(f"{folder}/{name(pid, camera, index)}", pid, camera, (pid + 1, camera, index))


# ------------------------------------------------------------------------------------------- video layouts


@dataclass(frozen=True)
class Tracklet:
    """A planned tracklet: identity, camera, number within (pid, camera), frame count."""

    pid: int
    camera: int
    number: int
    length: int

    def shots(self, frame_path: Callable[[Tracklet, int], str]) -> list[Shot]:
        stream = (self.pid + 1, self.camera, 1000 + self.number)
        return [Shot(frame_path(self, f), self.pid, self.camera, stream, frame=f) for f in range(self.length)]


def _plan_tracklets(pids: list[int], config: SyntheticConfig, salt: int) -> list[Tracklet]:
    sizes = config.sizes
    tracklets = []
    for pid, cameras in _camera_sets(pids, config, salt).items():
        rng = np.random.default_rng([config.seed, 8, salt, pid])
        for camera in cameras:
            for number in range(1, _counts_in_range(sizes.tracklets_per_sighting, rng) + 1):
                tracklets.append(Tracklet(pid, camera, number, _counts_in_range(sizes.frames_per_tracklet, rng)))
    return tracklets


def _noise_tracklets(pid: int, count: int, config: SyntheticConfig) -> list[Tracklet]:
    """``count`` distractor (pid 0) or junk (pid -1) tracklets spread over the cameras."""
    sizes = config.sizes
    rng = np.random.default_rng([config.seed, 9, pid + 1])
    return [
        Tracklet(pid, 1 + index % sizes.num_cameras, 1 + index // sizes.num_cameras,
                 _counts_in_range(sizes.frames_per_tracklet, rng))
        for index in range(count)
    ]


def _query_split(tracklets: list[Tracklet]) -> tuple[list[Tracklet], list[Tracklet]]:
    """Each identity's first tracklet is a query; everything else (noise included) is gallery."""
    seen, query, gallery = set(), [], []
    for tracklet in tracklets:
        if tracklet.pid > 0 and tracklet.pid not in seen:
            seen.add(tracklet.pid)
            query.append(tracklet)
        else:
            gallery.append(tracklet)
    return query, gallery


def _mars_pid(pid: int) -> str:
    return "00-1" if pid == JUNK_PID else f"{pid:04d}"


def _mars_frame(tracklet: Tracklet, frame: int) -> str:
    return f"{_mars_pid(tracklet.pid)}C{tracklet.camera}T{tracklet.number:04d}F{frame + 1:03d}.jpg"


def _write_mars(root: Path, config: SyntheticConfig, world: SyntheticWorld, workers: int) -> int:
    """MARS: frames in ``bbox_*/<pid>/``, 1-based ``info/`` tables; query rows point into the test table."""
    sizes = config.sizes
    train_ids, test_ids, _ = _split_pids(config)
    train = _plan_tracklets(train_ids, config, salt=2)
    query, gallery = _query_split(_plan_tracklets(test_ids, config, salt=3))
    test = query + gallery + _noise_tracklets(DISTRACTOR_PID, sizes.distractors, config) + _noise_tracklets(
        JUNK_PID, sizes.junk, config)
    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    shots = []
    for split, tracklets in (("train", train), ("test", test)):
        names, table = [], []
        for tracklet in tracklets:
            table.append([len(names) + 1, len(names) + tracklet.length, tracklet.pid, tracklet.camera])
            frames = tracklet.shots(lambda t, f, s=split: f"bbox_{s}/{_mars_pid(t.pid)}/{_mars_frame(t, f)}")
            names.extend(Path(shot.path).name for shot in frames)
            shots.extend(frames)
        (info / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        _write_mat(info / f"tracks_{split}_info.mat", f"track_{split}_info", np.asarray(table, dtype=np.float64))
    _write_mat(info / "query_IDX.mat", "query_IDX", np.arange(1, len(query) + 1, dtype=np.float64)[None, :])
    return _write_shots(root, shots, world, workers)


def _write_mat(path: Path, name: str, array: np.ndarray) -> None:
    """A MATLAB 5 file holding ``array`` as ``name``, with a fixed header text (scipy stamps the time there)."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, {name: array})
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by reid-synth".ljust(116)
    path.write_bytes(bytes(data))


def _dukevideo_frame(tracklet: Tracklet, frame: int, number: int) -> str:
    return f"{tracklet.pid:04d}_C{tracklet.camera}_F{frame + 1:04d}_X{number:05d}.jpg"


def _write_dukevideo(root: Path, config: SyntheticConfig, world: SyntheticWorld, workers: int) -> int:
    """DukeMTMC-VideoReID: ``{train,query,gallery}/<pid>/<tracklet>/<frames>``; distractors are one-camera ids."""
    sizes = config.sizes
    extra_ids = max(1, sizes.distractors // 3) if sizes.distractors else 0
    train_ids, test_ids, extra = _split_pids(config, extra_ids)
    query, gallery = _query_split(_plan_tracklets(test_ids, config, salt=3))
    rng = np.random.default_rng([config.seed, 10])
    gallery += [Tracklet(pid, 1 + pid % sizes.num_cameras, 1, _counts_in_range(sizes.frames_per_tracklet, rng))
                for pid in extra]
    shots = []
    for split, tracklets in (("train", _plan_tracklets(train_ids, config, salt=2)), ("query", query),
                             ("gallery", gallery)):
        numbers: dict[int, int] = {}
        for tracklet in tracklets:
            folder_number = numbers[tracklet.pid] = numbers.get(tracklet.pid, 0) + 1
            shots.extend(tracklet.shots(
                lambda t, f, s=split, n=folder_number: f"{s}/{t.pid:04d}/{n:04d}/{_dukevideo_frame(t, f, n)}"))
    return _write_shots(root, shots, world, workers)


# -------------------------------------------------------------------------------------- unlabelled layouts


def _write_crops(root: Path, config: SyntheticConfig, world: SyntheticWorld, workers: int) -> int:
    """Unlabelled crops ``cam<c>/<n>.jpg`` (every fifth one a PNG) plus ``labels.csv`` with the hidden truth."""
    train, _, _ = _split_pids(config)
    shots = []
    for sighting in plan_sightings(train, config.sizes.train_images, 1, config, salt=0):
        for index in range(sighting.count):
            encoding = ".png" if len(shots) % 5 == 4 else ".jpg"
            path = f"cam{sighting.camera}/{len(shots) + 1:06d}{encoding}"
            shots.append(Shot(path, sighting.pid, sighting.camera, (sighting.pid + 1, sighting.camera, index),
                              encoding=encoding))
    _write_labels(root / "labels.csv", [(shot.path, shot.pid, shot.camera) for shot in shots])
    return _write_shots(root, shots, world, workers)


def _write_tracklet_folders(root: Path, config: SyntheticConfig, world: SyntheticWorld, workers: int) -> int:
    """Unlabelled tracklets ``track<n>/frame<k>.jpg`` (natural order matters) plus ``labels.csv``."""
    train, _, _ = _split_pids(config)
    shots, labels = [], []
    for number, tracklet in enumerate(_plan_tracklets(train, config, salt=2), start=1):
        labels.append((f"track{number}", tracklet.pid, tracklet.camera))
        shots.extend(tracklet.shots(lambda t, f, n=number: f"track{n}/frame{f + 1}.jpg"))
    _write_labels(root / "labels.csv", labels)
    return _write_shots(root, shots, world, workers)


def _write_labels(path: Path, rows: list[tuple[str, int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "pid", "camera"))
        writer.writerows(rows)


# ------------------------------------------------------------------------------------------------- writing


def _write_shots(root: Path, shots: list[Shot], world: SyntheticWorld, workers: int) -> int:
    """Render and write every shot (threads: OpenCV releases the GIL); returns the number of files."""
    for folder in sorted({str(Path(shot.path).parent) for shot in shots}):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for camera in sorted({shot.camera for shot in shots}):
        world.camera(camera)
    for pid in sorted({shot.pid for shot in shots if shot.pid > 0}):
        world.identity(pid)

    def write(shot: Shot) -> None:
        (root / shot.path).write_bytes(world.encode(shot))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(write, shots, chunksize=32):
            pass
    return len(shots)


def _write_image_layout(shots_of: Callable[[SyntheticConfig], list[Shot]]):
    def writer(root: Path, config: SyntheticConfig, world: SyntheticWorld, workers: int) -> int:
        return _write_shots(root, shots_of(config), world, workers)

    return writer


WRITERS: dict[str, Callable[[Path, SyntheticConfig, SyntheticWorld, int], int]] = {
    "market1501": _write_image_layout(_market_shots),
    "dukemtmc": _write_image_layout(_duke_shots),
    "mars": _write_mars,
    "dukevideo": _write_dukevideo,
    "crops": _write_crops,
    "tracklets": _write_tracklet_folders,
}


def empty_folder(out: str | Path, overwrite: bool = False) -> Path:
    """``out`` as an empty folder: created when absent; when it holds files, emptied with ``overwrite``, else
    refused (a second dataset there would mix with the first under the same identity numbers)."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise ValueError(f"{root} is not empty: a second dataset there would mix with the first under the same "
                             "identity numbers; choose an empty folder or pass --overwrite to replace its contents")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def generate(layout: str, out: str | Path, config: SyntheticConfig | None = None, workers: int | None = None,
             overwrite: bool = False) -> int:
    """Write a synthetic dataset in ``layout`` (a key of :data:`WRITERS`) under ``out``; returns the file count.

    ``out`` must be empty or absent: two datasets in one folder would share identity numbers. With
    ``overwrite`` its contents are deleted first.
    """
    if layout not in WRITERS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(WRITERS)}")
    config = config or SyntheticConfig()
    root = empty_folder(out, overwrite)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    count = WRITERS[layout](root, config, SyntheticWorld(config), workers)
    logger.info("wrote %d %s files under %s", count, layout, root)
    return count


# ------------------------------------------------------------------------------------------------- command
