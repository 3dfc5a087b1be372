"""Video + MOT tracks in, per-track features and cross-camera matches out."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from reid_sdk.search.index import ReIDIndex
from reid_sdk.synthetic.video import VideoSetConfig, load_video_set, render_videos
from reid_sdk.tracks import (
    FrameQuality,
    IngestReport,
    MotTracks,
    extract_boxes,
    probe_video,
    read_mot,
    read_track_identities,
    track_features,
)
from reid_sdk.tracks.quality import plan_tracks, sharpness_weights

TINY_SET = VideoSetConfig(seed=3, num_cameras=2, walkers=2, passers_by=1, cameras_per_walker=(2, 2), frames=48,
                          frame_size=(144, 192))


class MeanColourExtractor:
    """A stand-in model whose feature is a crop's mean colour: frame alignment shows in the numbers."""

    feature_dim = 3
    input_size = (64, 32)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def extract(self, crops):
        self.calls.append(len(crops))
        return np.array([crop.reshape(-1, 3).mean(axis=0) + 1.0 for crop in crops], dtype=np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return render_videos(tmp_path_factory.mktemp("videos"), TINY_SET)


def mot(frames, ids, boxes) -> MotTracks:
    return MotTracks(np.array(frames), np.array(ids), np.array(boxes, dtype=np.float64), np.ones(len(frames)))


# -- MOT files ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, message", [
    ("1,2,3,4,5", "expected at least 6 fields frame,id,left,top,width,height"),
    ("1,x,3,4,5,6", "id 'x' is not a number"),
    ("-1,1,3,4,5,6", "frame -1: frames count from 1 \\(MOTChallenge\\) or from 0"),
    ("1.5,1,3,4,5,6", "frame '1.5' is not a whole number"),
    ("1,1,3,4,0,6", "box width and height must be > 0"),
    ("1,1,3,4,5,6,nan", "conf is nan"),
])
def test_malformed_mot_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "tracks.txt"
    path.write_text(f"1,1,10,10,20,40,0.9,-1,-1,-1\n{line}\n")
    with pytest.raises(ValueError, match=f"tracks.txt:2: {message}"):
        read_mot(path)


def test_mot_file_reading(tmp_path, caplog):
    path = tmp_path / "tracks.txt"
    path.write_text("2,7,10,20,30,60,0.8,-1,-1,-1\n1,7,0,0,10,20\n\n1,-1,5,5,5,5,0.3\n1,3,1.5,2,3,4,0.5,-1,-1,-1\n")
    with caplog.at_level(logging.WARNING):
        tracks = read_mot(path)
    assert "skipped 1 rows: no track id (id < 0) (lines 4)" in caplog.text
    assert tracks.frames.tolist() == [1, 1, 2] and tracks.track_ids.tolist() == [3, 7, 7]
    np.testing.assert_allclose(tracks.boxes, [[1.5, 2, 4.5, 6], [0, 0, 10, 20], [10, 20, 40, 80]])
    np.testing.assert_allclose(tracks.confidences, [0.5, 1.0, 0.8])
    assert [(track, rows.tolist()) for track, rows in tracks.tracks()] == [(3, [0]), (7, [1, 2])]

    path.write_text("1,1,0,0,10,20\n1,1,5,5,10,20\n")
    with pytest.raises(ValueError, match="track 1 has two boxes in frame 1"):
        read_mot(path)
    path.write_text("1,-1,0,0,10,20\n")
    with pytest.raises(ValueError, match="holds no usable tracked boxes .*; skipped: 1 no track id"):
        read_mot(path)
    with pytest.raises(FileNotFoundError):
        read_mot(tmp_path / "absent.txt")


def test_track_identities_file(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("track_id,identity\n3,alice\n4,bob\n")
    assert read_track_identities(path) == {3: "alice", 4: "bob"}
    path.write_text("3,alice\n3,bob\n")
    with pytest.raises(ValueError, match="track 3 is listed twice"):
        read_track_identities(path)


# -- boxes and the quality rule -------------------------------------------------------------------------------------
def test_extract_boxes_clips_and_drops_small_boxes():
    frame = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    boxes = np.array([[10, 20, 30, 60], [-15, 50, 10.2, 130], [70, 0, 90, 8], [40.5, 40.5, 45, 60]])
    crops, kept = extract_boxes(frame, boxes, min_size=(16, 8))
    assert kept.tolist() == [0, 1]  # box 2 is 8 px high once clipped, box 3 5 px wide
    np.testing.assert_array_equal(crops[0], frame[20:60, 10:30])
    np.testing.assert_array_equal(crops[1], frame[50:100, 0:11])  # clipped left and bottom, rounded outwards
    crops[0][:] = 0
    assert frame[20:60, 10:30].any()  # crops are copies
    with pytest.raises(ValueError, match="box 0 .* is empty"):
        extract_boxes(frame, np.array([[10, 10, 5, 20]]))
    with pytest.raises(ValueError, match="\\(N, 4\\)"):
        extract_boxes(frame, np.array([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="frame must be an H x W"):
        extract_boxes(np.zeros((0, 5, 3), np.uint8), boxes)


def test_quality_rule_drops_small_truncated_and_crowded_boxes():
    # frame 1: track 1 small; frame 2: track 2 half outside; frame 3: track 3 half covered by track 4, track 5 far
    # from both; frame 4: track 3 alone; frame 5: track 4 slightly overlapping track 5
    tracks = mot([1, 2, 3, 3, 3, 4, 5, 5], [1, 2, 3, 4, 5, 3, 4, 5],
                 [[10, 10, 30, 40], [-40, 10, 20, 130], [100, 20, 160, 140], [130, 40, 190, 160],
                  [230, 60, 290, 190], [100, 20, 160, 140], [100, 20, 160, 140], [150, 20, 210, 140]])
    plans, outside = plan_tracks(tracks, (200, 300), FrameQuality(min_height=48, max_overlap=0.3))
    chosen = {plan.track_id: (tracks.frames[plan.rows].tolist(), plan.fallback) for plan in plans}
    assert outside == 0
    assert chosen[3] == ([4], False) and chosen[4] == ([5], False)  # frame 3 is crowded for both
    assert chosen[5] == ([3, 5], False)  # 1/6 of it is covered in frame 5
    assert chosen[1] == ([1], True) and chosen[2] == ([2], True)  # nothing usable: best boxes, flagged


def test_quality_rule_spreads_the_frame_cap_and_skips_tracks_outside():
    tracks = mot(list(range(1, 101)) + [1], [1] * 100 + [2], [[10, 10, 40, 90]] * 100 + [[500, 10, 540, 90]])
    plans, outside = plan_tracks(tracks, (200, 300), FrameQuality(max_frames=4))
    assert outside == 1 and len(plans) == 1
    assert tracks.frames[plans[0].rows].tolist() == [1, 34, 67, 100]
    assert (plans[0].first_frame, plans[0].last_frame) == (1, 100)


def test_sharpness_weights_favour_sharp_crops():
    rng = np.random.default_rng(0)
    sharp = cv2.resize(rng.integers(0, 256, (20, 10, 3), dtype=np.uint8), (40, 80), interpolation=cv2.INTER_NEAREST)
    crops = [cv2.GaussianBlur(sharp, (0, 0), 1.0), sharp, cv2.GaussianBlur(sharp, (0, 0), 0.6),
             np.full((80, 40, 3), 128, np.uint8)]
    weights = sharpness_weights(crops, (64, 32), 0.2)
    assert weights[1] == 1.0 and 0.2 < weights[0] < weights[2] < 1.0 and weights[3] == 0.2
    with pytest.raises(ValueError, match="min_visible"):
        FrameQuality(min_visible=0)


# -- video ingestion ------------------------------------------------------------------------------------------------
def test_synthetic_video_set_and_ground_truth(videos):
    assert [v.camera for v in videos] == ["c1", "c2"] == [v.camera for v in load_video_set(videos[0].video.parent)]
    info = probe_video(videos[0].video)
    assert (info.fps, info.frame_count, info.frame_size) == (10.0, 48, (144, 192))
    walkers = [set(read_track_identities(v.identities).values()) for v in videos]
    assert {"p1", "p2"} <= walkers[0] & walkers[1]  # walkers cross both cameras
    assert len((walkers[0] | walkers[1]) - {"p1", "p2"}) == 1  # the passer-by crosses one
    tracks = read_mot(videos[0].tracks)
    assert tracks.frames.max() <= 48 and set(tracks.track_ids) == set(read_track_identities(videos[0].identities))


def direct_track_feature(video, tracks, plan, extractor):
    """The same feature computed without streaming: seek each chosen frame, crop, weight, average."""
    capture = cv2.VideoCapture(str(video))
    crops = []
    for row in plan.rows:
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(tracks.frames[row]) - 1)
        ok, frame = capture.read()
        assert ok
        crops += extract_boxes(frame, tracks.boxes[row][None], min_size=(1, 1))[0]
    weights = sharpness_weights(crops, extractor.input_size, FrameQuality().min_weight)
    mean = (weights[:, None] * extractor.extract(crops)).sum(axis=0) / weights.sum()
    return mean / np.linalg.norm(mean), len(crops)


def test_streamed_track_features_equal_a_direct_computation(videos):
    video = videos[0]
    tracks, extractor = read_mot(video.tracks), MeanColourExtractor()
    features = list(track_features(extractor, video.video, tracks, batch_size=8, start_time=100.0))
    plans, _ = plan_tracks(tracks, (144, 192), FrameQuality())
    assert sorted(f.track_id for f in features) == sorted(p.track_id for p in plans)
    assert max(extractor.calls) < 8 + FrameQuality().max_frames  # tracks are extracted a few at a time
    for feature in features:
        plan = next(p for p in plans if p.track_id == feature.track_id)
        expected, used = direct_track_feature(video.video, tracks, plan, MeanColourExtractor())
        np.testing.assert_allclose(feature.feature, expected, atol=1e-6)
        assert feature.frames_used == used
        frames = tracks.frames[tracks.track_ids == feature.track_id]
        assert (feature.first_frame, feature.last_frame) == (frames.min(), frames.max())
        assert feature.first_time == pytest.approx(100.0 + (frames.min() - 1) / 10.0)
        assert feature.thumbnail.ndim == 3 and feature.best_frame in tracks.frames[plan.rows]


def test_boxes_past_the_end_of_the_video_are_logged(videos, caplog, tmp_path):
    video = videos[0]
    tracks = read_mot(video.tracks)
    late = mot([60, 70], [99, 99], [[50, 20, 90, 120]] * 2)
    combined = MotTracks(np.r_[tracks.frames, late.frames], np.r_[tracks.track_ids, late.track_ids],
                         np.r_[tracks.boxes, late.boxes], np.ones(len(tracks) + 2), "combined")
    report = IngestReport()
    with caplog.at_level(logging.WARNING):
        features = list(track_features(MeanColourExtractor(), video.video, combined, report=report))
    assert ("ended after 48 frames but combined has chosen boxes up to frame 70: 1 tracks lying entirely after the "
            "end were left out") in caplog.text
    assert 99 not in {f.track_id for f in features}  # no frame of it exists
    assert len(features) == len(set(tracks.track_ids))
    assert report == IngestReport(tracks=len(features) + 1, used=len(features), after_video_end=1, frames_read=48)
    assert report.left_out() == "; left out: 1 after the video's last frame (48)"


def test_a_video_without_frames_leaves_out_every_track_and_says_so(videos, caplog, tmp_path):
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (192, 144)).release()  # opens, 0 frames
    tracks, report = read_mot(videos[0].tracks), IngestReport()
    with caplog.at_level(logging.WARNING):
        assert list(track_features(MeanColourExtractor(), empty, tracks, report=report)) == []
    count = len(set(tracks.track_ids))
    assert f"{empty} has no readable frame (an empty video, or a codec OpenCV lacks): its {count} tracks" in caplog.text
    assert report.video_unreadable and report.left_out() == f"; left out: {count}, the video has no readable frame"


def test_probe_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        probe_video(tmp_path / "absent.avi")
    (tmp_path / "text.avi").write_text("not a video")
    with pytest.raises(ValueError, match="cannot open the video"):
        probe_video(tmp_path / "text.avi")


def test_ingest_and_match_tracks_across_cameras(videos):
    from reid_sdk.inference.extractor import FeatureExtractor
    from tests.helpers import tiny_model

    index = ReIDIndex.create(FeatureExtractor(tiny_model(), device="cpu"))
    first, second = videos
    identities = read_track_identities(first.identities)
    added = index.add_tracks(first.video, first.tracks, "c1", identities=identities, start_time=50.0)
    assert sorted(added) == sorted(identities) and len(index) == len(identities)
    entry = index.gallery.search(index.gallery.vectors([added[1]])[0], k=1)[0]
    frames = read_mot(first.tracks).frames[read_mot(first.tracks).track_ids == 1]
    assert (entry.identity, entry.camera, entry.track_id) == (identities[1], "c1", 1)
    assert entry.timestamp == pytest.approx(50.0 + (frames.min() - 1) / 10.0)
    assert entry.metadata["last_time"] == pytest.approx(50.0 + (frames.max() - 1) / 10.0)
    assert entry.metadata["video"] == str(first.video.resolve()) and entry.metadata["frames_used"] >= 1

    index.add_tracks(second.video, second.tracks, "c2")
    k = len(identities)  # every c1 track
    results = index.search_tracks(second.video, read_mot(second.tracks), "c2", k=k)
    assert sorted(r.track.track_id for r in results) == sorted(read_track_identities(second.identities))
    assert all(len(r.matches) == k and {m.camera for m in r.matches} == {"c1"} for r in results)
    reranked = index.search_tracks(second.video, second.tracks, "c2", k=k, rerank=True)
    assert [sorted(m.entry_id for m in r.matches) for r in reranked] == [
        sorted(m.entry_id for m in r.matches) for r in results]  # the same candidates, re-ordered
