"""Tracker text files as trackers really write them: the class column, BoxMOT's and ultralytics' layouts, frames
from 0, BOMs and comment lines, absurd numbers, coasting rows; and the cannot-link constraint built from detected
frames only."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from reid_sdk.tracks.mot import MotFormat, read_mot
from reid_sdk.tracks.site import SiteCamera
from reid_sdk.tracks.site_tracklets import frame_runs
from reid_sdk.training.clustering import CannotLink
from reid_sdk.training.clustering.constraints import MIN_SHARED_FRAMES
from tests.helpers import TEST_MEMORY_BUDGET


def write(tmp_path, text: str | bytes, name: str = "tracks.txt"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_the_class_column_keeps_people_and_counts_the_rest(tmp_path, caplog):
    path = write(tmp_path, "1,1,10,10,20,40,0.9,1,1\n"      # a pedestrian (MOT ground truth class 1)
                           "1,2,50,10,40,20,0.8,3,1\n"      # a car
                           "2,1,11,10,20,40,0.9,-1,-1\n"    # tracker output: class unset
                           "2,3,90,10,20,40,0.7,3,1\n")
    with caplog.at_level(logging.WARNING):
        tracks = read_mot(path)
    assert tracks.track_ids.tolist() == [1, 1]
    assert tracks.left_out == {"class other than 1 (the person class of mot files)": 2}
    assert "skipped 2 rows: class other than 1" in caplog.text and "(lines 2, 4)" in caplog.text
    cars = read_mot(path, MotFormat("mot", person_class=3))
    assert cars.track_ids.tolist() == [2, 1, 3]  # -1 (unset) is kept whatever the person class
    assert cars.left_out == {"class other than 3 (the person class)": 1}


def test_boxmot_save_txt_is_read_directly(tmp_path):
    # BoxMOT's --save-txt: space-separated integers frame id left top width height conf class det_index, COCO
    # classes (0 person, 2 car); its integer confidences are 0 and mark nothing
    path = write(tmp_path, "1 4 100 50 30 80 0 0 0\n1 5 300 60 90 40 0 2 1\n2 4 102 51 30 80 0 0 0\n")
    tracks = read_mot(path, MotFormat("boxmot"))
    assert tracks.frames.tolist() == [1, 2] and tracks.track_ids.tolist() == [4, 4]
    np.testing.assert_allclose(tracks.boxes[0], [100, 50, 130, 130])
    assert tracks.left_out == {"class other than 0 (the person class of boxmot files)": 1}
    with pytest.raises(ValueError, match="holds no usable tracked boxes .*class other than 1"):
        read_mot(path)  # read as MOTChallenge, class 0 is not a pedestrian: said, not silently empty
    with pytest.raises(ValueError, match="unknown tracks format 'yolo'; expected one of mot, boxmot, ultralytics"):
        MotFormat("yolo")


def test_ultralytics_label_folders_are_read_with_the_frame_size(tmp_path):
    # yolo track ... save_txt=True: labels/<video>_<frame>.txt, "class xc yc w h [conf] id" normalised, COCO classes
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "cam1_1.txt").write_text("0 0.5 0.5 0.25 0.5 0.9 3\n2 0.1 0.1 0.1 0.1 0.8 4\n")  # a person, a car
    (labels / "cam1_2.txt").write_text("0 0.5 0.55 0.25 0.5 3\n0 0.2 0.2 0.1 0.1\n")  # no conf saved; no id
    tracks = read_mot(labels, MotFormat("ultralytics"), frame_size=(200, 400))
    assert tracks.frames.tolist() == [1, 2] and tracks.track_ids.tolist() == [3, 3]
    np.testing.assert_allclose(tracks.boxes, [[150, 50, 250, 150], [150, 60, 250, 160]])
    np.testing.assert_allclose(tracks.confidences, [0.9, 1.0])
    assert tracks.left_out == {"class other than 0 (the person class of ultralytics files)": 1,
                               "no track id (id < 0)": 1}
    with pytest.raises(ValueError, match="ultralytics labels are normalised to the frame: the video's frame size"):
        read_mot(labels, MotFormat("ultralytics"))
    (labels / "cam2_1.txt").write_text("0 0.5 0.5 0.25 0.5 7\n")
    with pytest.raises(ValueError, match="holds the labels of 2 videos \\(cam1, cam2\\): give one video's"):
        read_mot(labels, MotFormat("ultralytics"), frame_size=(200, 400))
    with pytest.raises(FileNotFoundError, match="labels folder not found"):
        read_mot(tmp_path / "absent", MotFormat("ultralytics"), frame_size=(200, 400))


def test_frames_from_zero_are_shifted_and_negative_frames_refused(tmp_path):
    tracks = read_mot(write(tmp_path, "0,1,10,10,20,40\n1,1,10,10,20,40\n"))
    assert tracks.frames.tolist() == [1, 2]
    assert read_mot(write(tmp_path, "1,1,10,10,20,40\n3,1,10,10,20,40\n")).frames.tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"tracks.txt:2: frame -2: frames count from 1 \(MOTChallenge\) or from 0"):
        read_mot(write(tmp_path, "1,1,10,10,20,40\n-2,1,10,10,20,40\n"))


def test_a_bom_and_comment_lines_in_any_encoding_are_skipped(tmp_path):
    text = b"\xef\xbb\xbf# exported by caf\xe9 tracker\n1,1,10,10,20,40,0.9,-1,-1,-1\n#d\xe9but\n\n2,1,11,10,20,40\n"
    tracks = read_mot(write(tmp_path, text))
    assert tracks.frames.tolist() == [1, 2] and tracks.left_out == {}
    with pytest.raises(ValueError, match="tracks.txt:2: not text"):
        read_mot(write(tmp_path, b"1,1,10,10,20,40\n1,\xe9,1\n"))


@pytest.mark.parametrize("frame", ["100000000000000000000", "1e20", "1000000001"])
def test_an_absurd_frame_number_is_refused_by_file_and_line(tmp_path, frame):
    path = write(tmp_path, f"1,1,10,10,20,40\n{frame},1,10,10,20,40\n")
    with pytest.raises(ValueError, match=f"tracks.txt:2: frame {frame} is beyond 1e\\+09"):
        read_mot(path)


def test_boxes_beyond_any_frame_are_skipped_and_counted_by_line(tmp_path, caplog):
    path = write(tmp_path, "1,1,10,10,20,40\n1,2,1e308,10,1e308,40\n2,1,11,10,20,40\n2,2,inf,10,20,40\n")
    with caplog.at_level(logging.WARNING):
        tracks = read_mot(path)
    assert tracks.track_ids.tolist() == [1, 1]
    assert tracks.left_out == {"box not finite or beyond 1e+07 pixels": 2}
    assert f"{path}: skipped 2 rows: box not finite or beyond 1e+07 pixels (lines 2, 4)" in caplog.text


def test_coasting_rows_are_left_out(tmp_path):
    # track 1 detected in frames 1-2, predicted (conf 0) in 3-4; track 2's visibility 0 in frame 2
    path = write(tmp_path, "1,1,10,10,20,40,0.9,-1,1\n2,1,11,10,20,40,0.8,-1,1\n3,1,12,10,20,40,0,-1,1\n"
                           "4,1,13,10,20,40,0,-1,1\n1,2,60,10,20,40,0.9,1,1\n2,2,60,10,20,40,0.9,1,0\n")
    tracks = read_mot(path)
    assert list(zip(tracks.frames.tolist(), tracks.track_ids.tolist())) == [(1, 1), (1, 2), (2, 1)]
    assert sum(tracks.left_out.values()) == 3 and "coasting" in next(iter(tracks.left_out))
    assert len(read_mot(path, MotFormat("boxmot", person_class=1))) == 6  # boxmot marks nothing: integer confs
    with pytest.raises(ValueError, match="no usable tracked boxes .*3 coasting"):
        read_mot(write(tmp_path, "1,1,10,10,20,40,0\n2,1,10,10,20,40,0\n3,1,10,10,20,40,0\n"))


def test_a_malformed_identities_file_keeps_the_camera_without_labels(tmp_path, caplog):
    labels = write(tmp_path, "track_id,identity\n1,alice,extra\n", "c1_identities.csv")
    camera = SiteCamera("c1", tmp_path / "c1.avi", tmp_path / "c1.txt", labels)
    with caplog.at_level(logging.WARNING):
        assert camera.labels() == {}
    assert "camera c1: identities file ignored, the camera goes on without labels" in caplog.text
    write(tmp_path, "\ufefftrack_id,identity\n1,alice\n", "c1_identities.csv")  # a BOM: still read
    assert camera.labels() == {1: "alice"}


# ---------------------------------------------------------------------------------------------- cannot-link


def runs_of(tracks):
    return {track: frame_runs(tracks.frames[rows]) for track, rows in tracks.tracks()}


def test_a_fragmented_track_with_coasting_overlap_is_not_constrained(tmp_path):
    # one person: track 1 detected in 1..20, then coasts (conf 0) in 21..35 while the tracker already started
    # track 2 on the same person at frame 22 (detected 22..50); their spans overlap in 22..35
    rows = [f"{f},1,{10 + f},10,20,40,0.9,-1,-1,-1" for f in range(1, 21)]
    rows += [f"{f},1,{10 + f},10,20,40,0,-1,-1,-1" for f in range(21, 36)]
    rows += [f"{f},2,{10 + f},10,20,40,0.9,-1,-1,-1" for f in range(22, 51)]
    tracks = read_mot(write(tmp_path, "\n".join(rows) + "\n"))
    runs = runs_of(tracks)
    assert runs == {1: [[1, 20]], 2: [[22, 50]]}
    assert len(CannotLink.from_runs([1, 1], [runs[1], runs[2]])) == 0
    assert len(CannotLink.from_spans([1, 1], [1, 22], [35, 50])) == 1  # what the spans alone said: apart forever


def test_two_people_side_by_side_are_constrained_and_a_brief_duplicate_is_not(tmp_path):
    rows = [f"{f},{track},{x},10,20,40,0.9,-1,-1,-1" for f in range(1, 31) for track, x in ((1, 10), (2, 200))]
    rows += [f"{f},3,15,10,20,40,0.9,-1,-1,-1" for f in range(30, 30 + MIN_SHARED_FRAMES - 1)]  # a switch's duplicate
    runs = runs_of(read_mot(write(tmp_path, "\n".join(rows) + "\n")))
    constraint = CannotLink.from_runs([1, 1, 1], [runs[1], runs[2], runs[3]])
    assert constraint.pairs.tolist() == [[0, 1]]
    assert CannotLink.from_runs([1, 2], [runs[1], runs[2]]).pairs.tolist() == []  # other cameras: never


def test_shared_detected_frames_match_a_set_intersection():
    rng = np.random.default_rng(1)
    for _ in range(20):
        count = int(rng.integers(1, 25))
        cameras = rng.integers(1, 3, count)
        frames = [np.unique(rng.integers(1, 60, int(rng.integers(1, 30)))) for _ in range(count)]
        runs = [frame_runs(sample) for sample in frames]
        assert all(np.array_equal(np.concatenate([np.arange(a, b + 1) for a, b in r]), f) for r, f in zip(runs, frames))
        for min_shared in (1, MIN_SHARED_FRAMES):
            expected = sorted([i, j] for i, j in itertools.combinations(range(count), 2)
                              if cameras[i] == cameras[j] and len(np.intersect1d(frames[i], frames[j])) >= min_shared)
            assert CannotLink.from_runs(cameras, runs, min_shared).pairs.tolist() == expected
    with pytest.raises(ValueError, match="sample 0's detected frame runs .* not sorted and disjoint"):
        CannotLink.from_runs([1], [[(5, 9), (8, 12)]])


def test_reid_adapt_reads_the_site_in_the_named_layout(tmp_path, monkeypatch, capsys):
    from reid_sdk.adapt import pipeline
    from reid_sdk.adapt.settings import AdaptSettings
    from reid_sdk.cli.adapt import main

    seen = []

    def stop(site, tracks_format, untracked):  # the first thing adapt_site reads: the site's layout
        seen.append(tracks_format)
        raise ValueError("stop here")

    monkeypatch.setattr(pipeline, "find_site", stop)
    assert main([str(tmp_path), "--out", str(tmp_path / "run"), "--tracks-format", "boxmot",
                 "--person-class", "2", "--max-memory", TEST_MEMORY_BUDGET]) == 2
    assert seen == [MotFormat("boxmot", person_class=2)] and "stop here" in capsys.readouterr().err
    assert AdaptSettings().mot_format() == MotFormat("mot")
    with pytest.raises(ValueError, match="unknown tracks format 'yolo'"):
        AdaptSettings(tracks_format="yolo")
