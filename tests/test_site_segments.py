"""Recordings as sites really have them: a camera cut into hourly segments (one camera, in time order, tracks never
joined across files, ids of their own), and a start time per camera (manifest, or the videos' names)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from reid_sdk.synthetic.video import VideoSetConfig, render_videos
from reid_sdk.tracks.mot import read_mot, write_mot
from reid_sdk.tracks.site import SEGMENT_TRACK_IDS, find_site, name_time
from reid_sdk.tracks.site_tracklets import prepare_site
from reid_sdk.training.clustering import CannotLink

HOUR = 3600.0
SPLIT = 15  # the first segment holds frames 1..15, the second 16..60 (renumbered from 1)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    videos = render_videos(tmp_path_factory.mktemp("segments") / "site", VideoSetConfig(
        seed=3, num_cameras=2, walkers=3, passers_by=0, cameras_per_walker=(2, 2), frames=60, frame_size=(144, 192)))
    return {video.camera: video for video in videos}


def split_video(video, tracks, first, second) -> None:
    """Cut a camera's video and tracks at frame SPLIT into two segments, each numbered from 1."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    mot = read_mot(tracks)
    for path, part, shift in ((first, frames[:SPLIT], 0), (second, frames[SPLIT:], SPLIT)):
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, part[0].shape[1::-1])
        for image in part:
            writer.write(image)
        writer.release()
        keep = (mot.frames > shift) & (mot.frames <= shift + len(part))
        write_mot(path.with_suffix(".txt"), mot.frames[keep] - shift, mot.track_ids[keep], mot.boxes[keep])


def segmented_site(rendered, root):
    """c1 cut into two hourly segments named by their start times, c2 whole, starting half an hour in."""
    (root / "c1").mkdir(parents=True)
    split_video(rendered["c1"].video, rendered["c1"].tracks, root / "c1" / "2026-03-01T10.avi",
                root / "c1" / "2026-03-01T11.avi")
    (root / "c2").mkdir()
    shutil.copy(rendered["c2"].video, root / "c2" / "2026-03-01T10-30.avi")
    shutil.copy(rendered["c2"].tracks, root / "c2" / "2026-03-01T10-30.txt")
    return root


def test_times_in_file_names():
    assert name_time("2026-03-01T11") - name_time("2026-03-01T10") == HOUR
    assert name_time("20260301_103000") == name_time("2026-03-01T10-30-00") == name_time("2026-03-01T10") + 1800
    assert name_time("c1") is None and name_time("cam_2026-13-45T10") is None


def test_segments_are_one_camera_in_time_order_with_their_own_track_ids(rendered, tmp_path):
    site = find_site(segmented_site(rendered, tmp_path / "site"))
    assert [(c.name, c.video.name, c.segment, c.segments) for c in site.cameras] == [
        ("c1", "2026-03-01T10.avi", 0, 2), ("c1", "2026-03-01T11.avi", 1, 2), ("c2", "2026-03-01T10-30.avi", 0, 1)]
    assert [c.start_time - site.cameras[0].start_time for c in site.cameras] == [0.0, HOUR, HOUR / 2]
    first, second = (camera.read_tracks() for camera in site.cameras[:2])
    assert first.track_ids.max() < SEGMENT_TRACK_IDS <= second.track_ids.min()

    prepared = prepare_site(site, tmp_path / "tracklets")
    assert [camera.name for camera in prepared.cameras] == ["c1", "c2"]  # one camera, not two
    c1 = prepared.cameras[0].tracks
    whole = read_mot(rendered["c1"].tracks)
    crossing = {int(t) for t in np.unique(whole.track_ids)
                if whole.frames[whole.track_ids == t].min() <= SPLIT < whole.frames[whole.track_ids == t].max()}
    ids = {track.track_id for track in c1}
    assert crossing  # the premise: some people walk through the cut
    assert {t + SEGMENT_TRACK_IDS for t in crossing} <= ids and crossing <= ids  # a track cut in two: never joined
    for track in c1:  # frames on the camera's one time line: the second segment's follow the first's
        raw = track.track_id % SEGMENT_TRACK_IDS
        frames = whole.frames[whole.track_ids == raw]
        expected = frames[frames > SPLIT] if track.track_id >= SEGMENT_TRACK_IDS else frames[frames <= SPLIT]
        assert (track.first_frame, track.last_frame) == (expected.min(), expected.max())
    runs = [track.detected_runs for track in c1]
    pairs = CannotLink.from_runs([1] * len(c1), runs).pairs.tolist()
    assert all((c1[i].track_id >= SEGMENT_TRACK_IDS) == (c1[j].track_id >= SEGMENT_TRACK_IDS) for i, j in pairs)


def test_a_segment_without_its_tracks_file_is_skipped_by_name(rendered, tmp_path):
    root = segmented_site(rendered, tmp_path / "site")
    (root / "c1" / "2026-03-01T11.txt").unlink()
    site = find_site(root)
    assert [(c.name, c.segments) for c in site.cameras] == [("c1", 1), ("c2", 1)]
    assert site.skipped == [("c1/2026-03-01T11.avi", "no MOT file 2026-03-01T11.txt beside this segment")]


def test_manifest_start_times_and_segments(rendered, tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    for name in ("c1", "c2"):
        for suffix in (".avi", ".txt"):
            shutil.copy(rendered[name].video.with_suffix(suffix), root / f"{name}{suffix}")
    shutil.copy(root / "c1.avi", root / "c1b.avi")
    shutil.copy(root / "c1.txt", root / "c1b.txt")
    cameras = [{"camera": "c1", "video": "c1b.avi", "tracks": "c1b.txt", "start_time": "2026-03-01T11:00:00"},
               {"camera": "c1", "video": "c1.avi", "tracks": "c1.txt", "start_time": "2026-03-01T10:00:00+00:00"},
               {"camera": "c2", "video": "c2.avi", "tracks": "c2.txt", "start_time": 1772361000}]
    (root / "manifest.json").write_text(json.dumps({"cameras": cameras}))
    site = find_site(root)
    assert [(c.name, c.video.name, c.segment) for c in site.cameras] == [("c1", "c1.avi", 0), ("c1", "c1b.avi", 1),
                                                                         ("c2", "c2.avi", 0)]
    assert [c.start_time for c in site.cameras] == [name_time("2026-03-01T10"), name_time("2026-03-01T11"),
                                                    1772361000.0]
    cameras[2]["start_time"] = "ten past"
    (root / "manifest.json").write_text(json.dumps({"cameras": cameras}))
    with pytest.raises(ValueError, match="camera c2: start_time 'ten past' is neither seconds nor an ISO 8601"):
        find_site(root)


def test_ingest_stamps_each_segment_with_its_own_start_time(rendered, tmp_path):
    from reid_sdk.cli.index import main
    from reid_sdk.gallery import Gallery
    from reid_sdk.model import save_checkpoint
    from tests.helpers import tiny_model

    root = segmented_site(rendered, tmp_path / "site")
    checkpoint = save_checkpoint(tiny_model(), tmp_path / "tiny.pt")
    assert main(["ingest", "--model", str(checkpoint), "--site", str(root), "--gallery", str(tmp_path / "g"),
                 "--device", "cpu", "--progress", "none"]) == 0
    gallery = Gallery.open(tmp_path / "g")
    rows = gallery.rows(gallery.ids()).values()
    ten = name_time("2026-03-01T10")
    for row in rows:
        start = {("c1", 0): ten, ("c1", 1): ten + HOUR, ("c2", 0): ten + HOUR / 2}[
            (row.camera, int(row.track_id) // SEGMENT_TRACK_IDS)]
        assert start <= row.timestamp <= start + 60 / 10  # the segment's start + seconds into it (10 fps)
    assert {int(row.track_id) // SEGMENT_TRACK_IDS for row in rows if row.camera == "c1"} == {0, 1}


def test_site_matching_puts_each_segment_on_the_site_clock(rendered, tmp_path):
    """reid-adapt's matching step: one camera per name (one picture), each track's times from its segment's start."""
    import csv

    from reid_sdk.adapt.matching import match_site
    from reid_sdk.model import save_checkpoint
    from tests.helpers import tiny_model

    site = find_site(segmented_site(rendered, tmp_path / "site"))
    checkpoint = save_checkpoint(tiny_model(), tmp_path / "tiny.pt")
    summary = match_site(checkpoint, site, tmp_path / "matching", device="cpu", progress=False)
    assert summary.cameras == 2 and summary.skipped_cameras == []
    assert sorted(p.name for p in (tmp_path / "matching").glob("*.png")) == ["matches_c1.png", "matches_c2.png"]
    with open(tmp_path / "matching" / "matches.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    ten = name_time("2026-03-01T10")
    for row in table:
        segment = int(row["track_id"]) // SEGMENT_TRACK_IDS
        start = ten + (HOUR * segment if row["camera"] == "c1" else HOUR / 2)
        assert float(row["first_time"]) == pytest.approx(start + (int(row["first_frame"]) - 1) / 10, abs=0.01)
    assert {int(r["track_id"]) // SEGMENT_TRACK_IDS for r in table if r["camera"] == "c1"} == {0, 1}


def test_track_times_are_the_containers_timestamps(rendered):
    """Times come from the container (CAP_PROP_POS_MSEC: a variable frame rate's real times), frame / fps where a
    track's last box lies past its last chosen frame; for a constant rate both agree."""
    from reid_sdk.tracks.ingest import TrackCrops, VideoInfo, probe_video, track_crops
    from reid_sdk.tracks.quality import TrackPlan

    video = rendered["c1"]
    info = probe_video(video.video)
    for crops in track_crops(info, read_mot(video.tracks)):
        assert crops.first_seconds == pytest.approx((crops.plan.first_frame - 1) / info.fps)
        assert crops.last_chosen_seconds == pytest.approx((crops.frames[-1] - 1) / info.fps)
    plan = TrackPlan(7, np.array([0, 1]), first_frame=3, last_frame=11, fallback=False)
    made = TrackCrops(plan, [np.zeros((4, 2, 3), np.uint8)] * 2, [5, 9], [(0, 0, 2, 4)] * 2, first_seconds=2.0,
                      last_chosen_seconds=3.0)
    ten_fps = VideoInfo(video.video, 10.0, 100, (144, 192))
    feature = made.finish(np.ones(4, np.float32), np.array([1.0, 0.5]), ten_fps, start_time=100.0)
    assert (feature.first_time, feature.last_time) == (102.0, pytest.approx(103.2))  # 2 frames past the last chosen
    unread = TrackCrops(plan, made.crops, made.frames, made.boxes)
    assert unread.finish(np.ones(4, np.float32), np.array([1.0, 0.5]), ten_fps, 100.0).first_time == 100.2
