"""reid-track: the offline background detector against rendered ground truth, YOLO-family ONNX output layouts
decoded to the boxes a tiny exported module emits, ByteTrack keeping ids, MOT files reid_sdk.tracks reads back, and
reid-adapt from videos alone."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from reid_sdk.cli.track import main as track_main
from reid_sdk.detection import BackgroundDetector, Detections, TrackingOptions, YoloDetector, YoloOptions, track_video
from reid_sdk.detection.frames import FrameSampling, read_frames, spread_frames
from reid_sdk.synthetic.video import VideoSetConfig, load_video_set, render_videos
from reid_sdk.tracks.mot import read_mot
from tests.test_site_adaptation import TINY_TRAINING
from tests.helpers import TEST_MEMORY_BUDGET

SITE = VideoSetConfig(seed=5, num_cameras=2, walkers=4, passers_by=1, cameras_per_walker=(2, 2), frames=160,
                      frame_size=(144, 192))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A rendered 2-camera site (160 frames of 144 x 192 each, ground-truth MOT files), read-only for the tests."""
    return render_videos(tmp_path_factory.mktemp("videos") / "site", SITE)[0].video.parent


def matched(truth: np.ndarray, found: np.ndarray, iou: float = 0.5) -> int:
    """How many boxes (x1, y1, x2, y2) of ``truth`` a one-to-one assignment pairs with ``found`` at IoU >= ``iou``."""
    if not len(truth) or not len(found):
        return 0
    top_left = np.maximum(truth[:, None, :2], found[None, :, :2])
    bottom_right = np.minimum(truth[:, None, 2:], found[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = lambda boxes: np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)  # noqa: E731
    overlap = inter / (area(truth)[:, None] + area(found)[None, :] - inter)
    rows, columns = linear_sum_assignment(-overlap)
    return int((overlap[rows, columns] >= iou).sum())


def test_the_background_detector_finds_the_walkers(site):
    """Recall over ground-truth boxes at least half inside the frame, precision over every detection (IoU 0.5).
    On this site (few people, rarely overlapping) the detector scores 0.82-0.99 recall and 0.99-1.0 precision per
    camera; 0.7 / 0.9 leave room for codec and OpenCV differences, while a detector that lost people's parts to the
    shadow label or kept two people side by side as one box (what tuning started from) scored 0.3-0.6 recall and
    0.4-0.9 precision here. Busier sites score lower (benchmarks/tracking.py, docs/results.md)."""
    height, width = SITE.frame_size
    limits = np.array([width, height, width, height], np.float32)
    hits = truths = detections = 0
    for camera in load_video_set(site):
        truth = read_mot(camera.tracks)
        sampling = FrameSampling()
        detector = BackgroundDetector()
        detector.start_video(spread_frames(camera.video, detector.learning_frames, sampling))
        for number, frame in read_frames(camera.video, sampling):
            boxes = truth.boxes[truth.frames == number].astype(np.float32)
            clipped = np.clip(boxes, 0, limits)
            inside = np.prod(clipped[:, 2:] - clipped[:, :2], axis=1) >= 0.5 * np.prod(boxes[:, 2:] - boxes[:, :2],
                                                                                     axis=1)
            found = detector.detect([frame])[0]
            hits += matched(clipped[inside], found.boxes)
            truths += int(inside.sum())
            detections += len(found)
    assert hits / truths >= 0.7 and hits / detections >= 0.9, (hits, truths, detections)


# ----------------------------------------------------------------------------------------- YOLO-family ONNX

CLASSES = 3  # person (0), car (1), bicycle (2)
INPUT = (320, 320)
FRAME = (240, 400)  # height, width: letterboxed with a band above and below
#: Boxes the tiny detector emits, in FRAME pixels (x1, y1, x2, y2), score per class (objectness 1 unless given).
PERSON = (50.0, 40.0, 110.0, 200.0)
CAR = (200.0, 100.0, 380.0, 200.0)
FAINT = (300.0, 20.0, 340.0, 100.0)
EMITTED = [(PERSON, (0.9, 0.05, 0.0), 1.0),
           ((52.0, 42.0, 112.0, 198.0), (0.6, 0.0, 0.0), 1.0),  # the same person again, weaker: NMS removes it
           (CAR, (0.1, 0.95, 0.0), 1.0),  # a car: not a person
           (FAINT, (0.8, 0.0, 0.0), 0.1)]  # objectness 0.1: a person at 0.8 without it, 0.08 in the yolov5 layout


def letterbox_geometry() -> tuple[float, float, float]:
    """Scale and padding of FRAME in INPUT, as ultralytics' LetterBox computes them (centred, aspect kept)."""
    scale = min(INPUT[0] / FRAME[0], INPUT[1] / FRAME[1])
    pad_x = (INPUT[1] - round(FRAME[1] * scale)) / 2
    pad_y = (INPUT[0] - round(FRAME[0] * scale)) / 2
    return scale, round(pad_x - 0.1), round(pad_y - 0.1)


class TinyYolo(torch.nn.Module):
    """Emits EMITTED in the input's pixels in ``layout``; the boxes ride on the image so the export keeps a graph."""

    def __init__(self, layout: str) -> None:
        super().__init__()
        scale, left, top = letterbox_geometry()
        rows = []
        for (x1, y1, x2, y2), scores, objectness in EMITTED:
            x1, x2 = x1 * scale + left, x2 * scale + left
            y1, y2 = y1 * scale + top, y2 * scale + top
            box = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
            rows.append(box + list(scores) if layout == "ultralytics" else box + [objectness] + list(scores))
        table = torch.tensor(rows, dtype=torch.float32)
        self.register_buffer("table", table.T.contiguous() if layout == "ultralytics" else table)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.table.unsqueeze(0) + 0 * images.mean(dim=(1, 2, 3)).view(-1, 1, 1)


def export_tiny_yolo(path: Path, layout: str, fixed_batch: bool) -> Path:
    axes = None if fixed_batch else {"images": {0: "batch"}, "output0": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns that it is legacy
        torch.onnx.export(TinyYolo(layout).eval(), (torch.zeros(1, 3, *INPUT),), str(path), input_names=["images"],
                          output_names=["output0"], dynamic_axes=axes, dynamo=False, opset_version=17)
    return path


@pytest.mark.parametrize("layout, engine, fixed_batch", [("ultralytics", "onnxruntime", True),
                                                          ("ultralytics", "openvino", False),
                                                          ("yolov5", "onnxruntime", False),
                                                          ("yolov5", "openvino", True)])
def test_yolo_layouts_decode_to_the_person_boxes_the_model_emits(tmp_path, layout, engine, fixed_batch):
    model = export_tiny_yolo(tmp_path / "tiny.onnx", layout, fixed_batch)
    detector = YoloDetector(model, YoloOptions(layout=layout), engine=engine, device="cpu")
    frames = [np.full((*FRAME, 3), shade, np.uint8) for shade in (0, 90, 180)]  # a batch (fed 1 by 1 when fixed)
    # the duplicate suppressed, the car left out, and the faint box too where objectness says so
    expected = [(PERSON, 0.9), (FAINT, 0.8)] if layout == "ultralytics" else [(PERSON, 0.9)]
    for found in detector.detect(frames):
        assert len(found) == len(expected)
        for box, score, (emitted, emitted_score) in zip(found.boxes, found.scores, expected):  # best score first
            np.testing.assert_allclose(box, emitted, atol=1.0)
            assert score == pytest.approx(emitted_score, abs=1e-5)


def test_a_model_in_the_other_layout_is_one_clear_error(tmp_path):
    model = export_tiny_yolo(tmp_path / "v5.onnx", "yolov5", fixed_batch=False)
    detector = YoloDetector(model, YoloOptions(layout="ultralytics", person_class=9), device="cpu")
    with pytest.raises(ValueError, match=r"the ultralytics layout's output is \[N, 4 \+ classes, boxes\] with "
                                         r"person class 9; this model gives \[4, 8\] per image"):
        detector.detect([np.zeros((*FRAME, 3), np.uint8)])
    with pytest.raises(ValueError, match="layout must be one of ultralytics, yolov5"):
        YoloOptions(layout="yolox")


# ---------------------------------------------------------------------------------------------- tracking


class Scripted:
    """A detector that returns two people per frame, as fractions of the frame it is shown: A walks right (and is
    missed in frames 20-22), B walks left lower down."""

    learning_frames = 0
    description = "scripted boxes"

    def __init__(self) -> None:
        self.frame = 0
        self.sizes: list[tuple[int, int]] = []

    def start_video(self, first_frames):
        self.frame = 0

    def detect(self, frames):
        found = []
        for frame in frames:
            self.frame += 1
            height, width = frame.shape[:2]
            self.sizes.append((height, width))
            t = self.frame / 60
            boxes = [(0.05 + 0.5 * t, 0.05, 0.25 + 0.5 * t, 0.45), (0.7 - 0.5 * t, 0.5, 0.9 - 0.5 * t, 0.95)]
            if 20 <= self.frame <= 22:
                boxes = boxes[1:]
            scale = np.array([width, height, width, height], np.float32)
            found.append(Detections(np.array(boxes, np.float32) * scale, np.full(len(boxes), 0.9)))
        return found


def blank_video(path: Path, frames: int, size: tuple[int, int] = (120, 160)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size[1], size[0]))
    for _ in range(frames):
        writer.write(np.full((*size, 3), 100, np.uint8))
    writer.release()
    return path


def test_bytetrack_keeps_each_persons_id_across_frames_and_a_short_miss(tmp_path):
    video = blank_video(tmp_path / "cam.avi", 40)
    result = track_video(video, tmp_path / "cam.txt", Scripted(), TrackingOptions(min_frames=1), progress="none")
    tracks = read_mot(result.tracks_file)
    assert result.frames_read == 40 and result.tracks == 2
    ids = {track: set(tracks.frames[rows].tolist()) for track, rows in tracks.tracks()}
    upper = next(track for track, rows in tracks.tracks() if tracks.boxes[rows[0], 1] < 30)
    assert ids[upper] == set(range(1, 41)) - {20, 21, 22}  # one id before and after the miss
    assert set(ids) - {upper} and ids[next(iter(set(ids) - {upper}))] == set(range(1, 41))
    rows = (tmp_path / "cam.txt").read_text().splitlines()
    assert all(row.split(",")[7:] == ["1", "1"] for row in rows)  # class 1 (person), visibility 1 (detected)


def test_stride_and_max_side_keep_the_videos_frame_numbers_and_pixels(tmp_path):
    video = blank_video(tmp_path / "cam.avi", 40)
    detector = Scripted()
    options = TrackingOptions(sampling=FrameSampling(stride=2, max_side=80), min_frames=1)
    tracks = read_mot(track_video(video, tmp_path / "cam.txt", detector, options, progress="none").tracks_file)
    assert set(detector.sizes) == {(60, 80)}  # the detector saw frames half the size
    assert set(tracks.frames.tolist()) == set(range(1, 41, 2))  # every second frame, numbered as in the video
    lower = tracks.boxes[tracks.boxes[:, 1] > 50]
    np.testing.assert_allclose(lower[:, [1, 3]], np.tile([[60.0, 114.0]], (len(lower), 1)), atol=0.01)


def test_reid_track_writes_mot_files_that_reid_sdk_reads_back(site, tmp_path, capsys):
    videos = [camera.video for camera in load_video_set(site)]
    assert track_main([*map(str, videos), "--out", str(tmp_path / "tracks"), "--progress", "none", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [Path(row["tracks_file"]) for row in printed] == [tmp_path / "tracks" / f"{v.stem}.txt" for v in videos]
    for video, row in zip(videos, printed):
        tracks = read_mot(row["tracks_file"])
        assert len(tracks) == row["boxes"] > 50 and len(np.unique(tracks.track_ids)) == row["tracks"]
        assert row["frames_read"] == SITE.frames and 1 <= tracks.frames.min() <= tracks.frames.max() <= SITE.frames


@pytest.mark.parametrize("arguments, message", [
    (["missing.avi"], "video not found: "),
    (["{video}", "--detector", "model.pt"], "detector must be 'background' or a YOLO-family .onnx file"),
    (["{video}", "--detector", "missing.onnx"], "ONNX detector not found: missing.onnx"),
    (["{video}", "--layout", "yolov5"], "layout: options of an ONNX detector, not of the background detector"),
    (["{video}", "--stride", "0"], "stride must be >= 1, got 0"),
    (["{video}", "{video}"], "two videos would write c1.txt"),
])
def test_bad_input_is_one_line_and_exit_2(site, tmp_path, capsys, arguments, message):
    video = str(site / "c1.avi")
    argv = [argument.format(video=video) for argument in arguments] + ["--out", str(tmp_path / "t")]
    assert track_main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("reid-track: error: ") and message in error[0]


# ------------------------------------------------------------------------------------- reid-adapt from videos


def test_reid_adapt_from_videos_alone_tracks_into_the_run_and_goes_to_the_end(site, tmp_path):
    from reid_sdk.adapt.pipeline import adapt_site
    from reid_sdk.adapt.settings import AdaptSettings

    videos = tmp_path / "site"
    videos.mkdir()
    for camera in load_video_set(site):
        shutil.copy(camera.video, videos / camera.video.name)  # videos only: no tracks files
    videos.chmod(0o555)  # the site may be read-only: tracks go into the run folder
    try:
        settings = AdaptSettings(overrides=TINY_TRAINING, device="cpu", max_frames=4, picture_tracks=2,
                                 max_memory=TEST_MEMORY_BUDGET)
        result = adapt_site(videos, tmp_path / "run", settings, progress=False)
    finally:
        videos.chmod(0o755)
    assert sorted(p.name for p in videos.iterdir()) == ["c1.avi", "c2.avi"]
    for name in ("c1", "c2"):
        assert len(read_mot(tmp_path / "run" / "tracks" / name / f"{name}.txt")) > 50
    assert result.parity["passed"] and result.after.cameras == 2 and result.after.tracks >= 4
    header, *rows = (tmp_path / "run" / "after" / "matches.csv").read_text().splitlines()
    assert rows and all(row.split(",")[0] != row.split(",")[8] for row in rows)  # matches across the two cameras


def test_untracked_cameras_are_tracked_once_and_an_unreadable_video_is_skipped_and_said(site, tmp_path, caplog):
    from reid_sdk.adapt.detected_tracks import track_untracked_cameras
    from reid_sdk.tracks.site import find_site

    videos = tmp_path / "site"
    videos.mkdir()
    shutil.copy(site / "c1.avi", videos / "c1.avi")
    (videos / "c2.avi").write_bytes(b"not a video")
    layout = track_untracked_cameras(find_site(videos, untracked=True), tmp_path / "run", progress=False)
    assert [camera.name for camera in layout.cameras] == ["c1"]
    assert layout.skipped == [("c2", f"no tracks file, and OpenCV cannot open the video {videos / 'c2.avi'}")]
    assert "camera c2 skipped: no tracks file" in caplog.text
    written = layout.cameras[0].tracks
    assert written == tmp_path / "run" / "tracks" / "c1" / "c1.txt" and len(read_mot(written)) > 50
    before = written.stat().st_mtime_ns
    again = track_untracked_cameras(find_site(videos, untracked=True), tmp_path / "run", progress=False)
    assert again.cameras[0].tracks == written and written.stat().st_mtime_ns == before  # reused, not tracked again
    (videos / "c1.avi").write_bytes((site / "c2.avi").read_bytes())  # the video replaced: tracked again
    track_untracked_cameras(find_site(videos, untracked=True), tmp_path / "run", progress=False)
    assert written.stat().st_mtime_ns != before
