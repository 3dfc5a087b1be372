"""reid-index ingest / match on a tiny synthetic two-camera video set, called through main(argv)."""

from __future__ import annotations

import csv

import cv2
import pytest

from reid_sdk.cli.index import main
from reid_sdk.gallery import Gallery
from reid_sdk.synthetic.video import VideoSetConfig, render_videos
from reid_sdk.tracks import read_track_identities
from reid_sdk.tracks.match_table import MATCH_COLUMNS
from reid_sdk.tracks.mot import read_mot
from tests.helpers import ctrl_c_at_gallery_add, tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from reid_sdk.model import save_checkpoint

    root = tmp_path_factory.mktemp("tracks-cli")
    videos = render_videos(root / "videos", VideoSetConfig(seed=5, num_cameras=2, walkers=2, passers_by=1,
                                                           cameras_per_walker=(2, 2), frames=48,
                                                           frame_size=(144, 192)))
    return root, save_checkpoint(tiny_model(), root / "tiny.pt"), videos


def camera_args(video, checkpoint, gallery):
    return ["--model", str(checkpoint), "--video", str(video.video), "--tracks", str(video.tracks),
            "--camera", video.camera, "--gallery", str(gallery), "--device", "cpu", "--progress", "none",
            "--identities", str(video.identities)]


def test_ingest_then_match(setup, capsys):
    root, checkpoint, (first, second) = setup
    gallery = root / "gallery"
    assert main(["ingest", *camera_args(first, checkpoint, gallery)]) == 0
    first_ids = read_track_identities(first.identities)
    assert f"{len(first_ids)} tracks of {first.video} (camera c1) added" in capsys.readouterr().out
    stored = Gallery.open(gallery)
    assert len(stored) == len(first_ids)
    assert {m.identity for m in stored.search(stored.vectors(stored.ids()), k=1)[0]} <= set(first_ids.values())

    out, picture = root / "matches.csv", root / "matches.png"
    assert main(["match", *camera_args(second, checkpoint, gallery), "--out", str(out), "--threshold", "-1",
                 "-k", "2", "--picture", str(picture)]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    second_ids = read_track_identities(second.identities)
    assert tuple(rows[0]) == MATCH_COLUMNS
    assert sorted({int(r["track_id"]) for r in rows}) == sorted(second_ids)
    assert all(r["match_camera"] == "c1" and r["identity"] == second_ids[int(r["track_id"])] for r in rows)
    assert all(r["match_identity"] in first_ids.values() and -1 <= float(r["score"]) <= 1 for r in rows)
    assert [r["rank"] for r in rows if r["track_id"] == rows[0]["track_id"]] == ["1", "2"]
    mot = read_mot(second.tracks)
    spans = {track: (mot.frames[mot.track_ids == track].min(), mot.frames[mot.track_ids == track].max())
             for track in second_ids}
    assert all((int(r["first_frame"]), int(r["last_frame"])) == spans[int(r["track_id"])] for r in rows)
    image = cv2.imread(str(picture))
    title = image.shape[0] - len(second_ids) * (160 + 8 + 34 + 6)  # a row per track: bordered crop, captions, gap
    assert title % 22 == 2 and 0 < title < 200 and image.shape[1] == 560  # query + 2 matches, widened for the title

    assert main(["match", *camera_args(second, checkpoint, gallery), "--out", str(out), "--threshold", "1.0"]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(second_ids) and not any(r["match_camera"] for r in rows)  # no match that close
    assert f"{len(second_ids)} tracks of camera c2, 0 with a match >= 1.0" in capsys.readouterr().out

    assert main(["ingest", *camera_args(second, checkpoint, gallery)]) == 0  # appends to the gallery
    assert len(Gallery.open(gallery)) == len(first_ids) + len(second_ids)


def test_ingest_counts_tracks_after_the_video_and_a_video_without_frames(setup, capsys, tmp_path):
    root, checkpoint, (first, _) = setup
    tracks = tmp_path / "tracks.txt"
    tracks.write_text(first.tracks.read_text() + "60,99,50,20,40,100,1,-1,-1,-1\n")  # after the 48 frames
    known = len(read_track_identities(first.identities))
    args = ["--model", str(checkpoint), "--camera", "c1", "--device", "cpu", "--progress", "none"]
    assert main(["ingest", *args, "--video", str(first.video), "--tracks", str(tracks),
                 "--gallery", str(tmp_path / "g")]) == 0
    assert (f"{known} of {known + 1} tracks of {first.video} (camera c1) added; left out: 1 after the video's last "
            f"frame (48); {tmp_path / 'g'} holds {known} entries") in capsys.readouterr().out
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (192, 144)).release()  # opens, 0 frames
    assert main(["ingest", *args, "--video", str(empty), "--tracks", str(first.tracks),
                 "--gallery", str(tmp_path / "g")]) == 0
    captured = capsys.readouterr()
    assert (f"0 of {known} tracks of {empty} (camera c1) added; left out: {known}, the video has no readable frame; "
            f"{tmp_path / 'g'} holds {known} entries") in captured.out
    assert f"{empty} has no readable frame" in captured.err and len(Gallery.open(tmp_path / "g")) == known


def test_track_command_errors(setup, capsys, tmp_path):
    root, checkpoint, (first, _) = setup
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,10,20\n")
    args = ["--model", str(checkpoint), "--video", str(first.video), "--camera", "c1", "--device", "cpu"]
    assert main(["ingest", *args, "--tracks", str(bad), "--gallery", str(tmp_path / "g")]) == 2
    assert "bad.txt:1: expected at least 6 fields frame,id,left" in capsys.readouterr().err
    assert main(["match", *args, "--tracks", str(first.tracks), "--gallery", str(tmp_path / "none"),
                 "--out", str(tmp_path / "m.csv")]) == 2
    assert "no gallery" in capsys.readouterr().err
    assert main(["ingest", *args, "--tracks", str(first.tracks), "--gallery", str(tmp_path / "g"),
                 "--video", str(tmp_path / "absent.avi")]) == 2
    assert "video not found" in capsys.readouterr().err


def test_reid_synth_renders_a_video_set(tmp_path, monkeypatch, capsys):
    from reid_sdk.cli import synth

    tiny = dict(num_cameras=2, walkers=1, passers_by=0, cameras_per_walker=(2, 2), frames=40, frame_size=(96, 128))
    monkeypatch.setattr(synth, "VideoSetConfig", lambda seed: VideoSetConfig(seed=seed, **tiny))
    assert synth.main([str(tmp_path / "videos"), "--layout", "videos", "--seed", "4"]) == 0
    assert "videos: 6 files in" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        "c1.avi", "c1.txt", "c1_identities.csv", "c2.avi", "c2.txt", "c2_identities.csv", "manifest.json"]


def test_a_site_camera_without_its_mot_file_is_counted_and_exits_2_like_one_camera(setup, capsys, tmp_path):
    """One rule for a missing MOT file, --site or --video/--tracks: the camera is named and counted, the others are
    added, exit 2; a site with no usable camera is exit 2 before anything is read."""
    root, checkpoint, (first, second) = setup
    site = tmp_path / "site"
    site.mkdir()
    for video in (first, second):
        (site / f"{video.camera}.avi").symlink_to(video.video)
    (site / "c1.txt").symlink_to(first.tracks)  # c2 has no MOT file
    args = ["--model", str(checkpoint), "--device", "cpu", "--progress", "none", "--gallery", str(tmp_path / "g")]
    assert main(["ingest", *args, "--site", str(site)]) == 2
    captured = capsys.readouterr()
    known = len(read_track_identities(first.identities))
    assert f"{known} of {known} tracks of {site / 'c1.avi'} (camera c1) added" in captured.out
    assert captured.err.splitlines()[-2:] == [
        f"reid-index: camera c2 of {site}: no MOT file c2.txt beside c2.avi",
        "reid-index: 1 of 2 units failed and were skipped (the others were added): fix them and run the same "
        "command with --resume"]
    assert len(Gallery.open(tmp_path / "g")) == known
    assert main(["ingest", *args, "--video", str(second.video), "--tracks", str(site / "c2.txt"),
                 "--camera", "c2"]) == 2
    assert "1 of 1 units failed and were skipped" in capsys.readouterr().err
    (site / "c1.txt").unlink()
    assert main(["ingest", *args, "--site", str(site)]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"reid-index: error: no camera found in {site}: ")


def test_ctrl_c_in_ingest_says_what_was_committed_and_resume_adds_the_rest(setup, capsys, tmp_path, monkeypatch):
    pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
    from reid_sdk.inference.extractor import FeatureExtractor

    root, checkpoint, (first, second) = setup
    gallery = f"milvus-lite:{tmp_path / 'g.db'}"
    args = ["ingest", "--model", str(checkpoint), "--device", "cpu", "--progress", "none", "--site", str(first.video.parent),
            "--gallery", gallery, "--batch-size", "1000"]  # one model call, one add, per camera

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:  # before anything is added: while the model opens
        patched.setattr(FeatureExtractor, "__init__", ctrl_c)
        assert main(args) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"reid-index: interrupted after adding 0 entries: nothing saved, {gallery} has none of this run's entries")
    with monkeypatch.context() as patched:  # mid-ingest: the first camera is in Milvus once acknowledged
        ctrl_c_at_gallery_add(patched)
        assert main(args) == 130
    known = len(read_track_identities(first.identities))
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"reid-index: interrupted after adding {known} entries: {known} entries of this run are saved in {gallery}: "
        "run the same command with --resume to add the rest")
    assert main([*args, "--resume"]) == 0
    assert len(Gallery.open(gallery)) == known + len(read_track_identities(second.identities))
