"""Searching by track where users think in tracks: reid-index search --track / --entry from stored features,
strips of track galleries showing each track's best crop, and reid-index match --site."""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest

from reid_sdk.cli.index import main
from reid_sdk.gallery import Gallery
from reid_sdk.synthetic.video import VideoSetConfig, render_videos
from reid_sdk.tracks import read_box, read_track_identities
from reid_sdk.visualize.matches import entry_crop, render_strip
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A rendered two-camera site, a tiny model and a gallery of every track (reid-index ingest --site)."""
    from reid_sdk.model import save_checkpoint

    root = tmp_path_factory.mktemp("track-search")
    videos = render_videos(root / "site", VideoSetConfig(seed=7, num_cameras=2, walkers=2, passers_by=1,
                                                         cameras_per_walker=(2, 2), frames=40, frame_size=(144, 192)))
    checkpoint = save_checkpoint(tiny_model(), root / "tiny.pt")
    assert main(["ingest", "--model", str(checkpoint), "--site", str(root / "site"), "--gallery", str(root / "g"),
                 "--device", "cpu", "--progress", "none"]) == 0
    return root, checkpoint, videos


def printed_entries(text: str) -> list[int]:
    """The entry column of the printed match table."""
    return [int(line.split()[4]) for line in text.splitlines() if line.strip()[:1].isdigit()]


def test_search_by_track_uses_the_stored_feature_and_leaves_the_track_out(site, capsys):
    root, _, videos = site
    gallery = Gallery.open(root / "g")
    rows = gallery.rows(gallery.ids())
    entry, row = next((entry, row) for entry, row in rows.items() if row.camera == "c2")
    capsys.readouterr()
    assert main(["search", "--gallery", str(root / "g"), "--track", f"c2:{row.track_id}", "-k", "3"]) == 0  # no model
    by_track = capsys.readouterr().out
    assert f"query 1/1: entry {entry} (camera c2, track {row.track_id})" in by_track
    expected = [m.entry_id for m in gallery.search(gallery.vectors([entry])[0], k=4, query_camera="c2")
                if m.entry_id != entry][:3]
    assert printed_entries(by_track) == expected and entry not in expected
    assert f"track {rows[expected[0]].track_id}, {videos[0].video.resolve()}" in by_track \
        or f"track {rows[expected[0]].track_id}, {videos[1].video.resolve()}" in by_track
    assert main(["search", "--gallery", str(root / "g"), "--entry", str(entry), "-k", "3"]) == 0
    assert capsys.readouterr().out == by_track
    assert main(["search", "--gallery", str(root / "g"), "--track", f"c2:{row.track_id}",
                 "--exclude-camera", "c2"]) == 0
    others = printed_entries(capsys.readouterr().out)
    assert others and all(rows[e].camera == "c1" for e in others)


def test_search_json_is_the_printed_rank_list_as_data(site, capsys):
    root, _, _ = site
    gallery = Gallery.open(root / "g")
    entry = gallery.ids()[0]
    capsys.readouterr()
    assert main(["search", "--gallery", str(root / "g"), "--entry", str(entry), "--top-k", "3"]) == 0
    printed = printed_entries(capsys.readouterr().out)
    assert main(["search", "--gallery", str(root / "g"), "--entry", str(entry), "-k", "3", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)  # stdout holds the JSON document only
    (query,) = document["queries"]
    assert [match["entry_id"] for match in query["matches"]] == printed
    assert all(set(match) >= {"identity", "camera", "score", "timestamp", "track_id"} for match in query["matches"])


def test_strips_of_a_track_gallery_show_each_tracks_best_crop(site, tmp_path, capsys):
    root, _, _ = site
    gallery = Gallery.open(root / "g")
    rows = gallery.rows(gallery.ids())
    entry, row = next(iter(rows.items()))
    meta = row.metadata
    crop = entry_crop(meta)
    assert "path" not in meta and crop is not None
    np.testing.assert_array_equal(crop, read_box(meta["video"], meta["best_frame"], tuple(meta["best_box"])))
    strip = tmp_path / "strip.png"
    assert main(["search", "--gallery", str(root / "g"), "--entry", str(entry), "-k", "2", "--strip", str(strip)]) == 0
    assert strip.is_file() and f"strip written to {strip}" in capsys.readouterr().out
    matches = gallery.search(gallery.vectors([entry])[0], k=2)
    shown = render_strip(crop, matches)
    blank = render_strip(crop, [replace(m, metadata={}) for m in matches])
    assert not np.array_equal(shown, blank)  # the matches' tiles are their crops, not the grey "unreadable" tile


@pytest.mark.parametrize("args, message", [
    (["--track", "c2"], "--track expects CAMERA:TRACK_ID \\(e.g. c2:7\\), got 'c2'"),
    (["--track", "c9:1"],
     "no entry of track 1 of camera c9 in the gallery \\(its track entries are of cameras c1, c2\\)"),
    (["--entry", "999"], "the gallery has no entry 999"),
])
def test_search_by_track_errors_are_one_line(site, capsys, args, message):
    root, _, _ = site
    assert main(["search", "--gallery", str(root / "g"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


@pytest.mark.parametrize("args, message", [
    ([], "search needs one of query images, --track CAMERA:TRACK_ID or --entry ID, got none"),
    (["--track", "c1:1", "--entry", "1"], "got --track and --entry"),
    (["query.jpg"], "search needs --model to embed query images"),
])
def test_search_sources_are_checked_before_anything_runs(site, capsys, args, message):
    root, _, _ = site
    with pytest.raises(SystemExit) as stop:
        main(["search", "--gallery", str(root / "g"), *args])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_match_a_whole_site_into_one_table(site, tmp_path, capsys):
    root, checkpoint, videos = site
    args = ["match", "--model", str(checkpoint), "--gallery", str(root / "g"), "--device", "cpu", "--progress", "none",
            "--threshold", "-1", "-k", "1"]
    out = tmp_path / "matches.csv"
    assert main([*args, "--site", str(root / "site"), "--out", str(out), "--picture", str(tmp_path / "pictures")]) == 0
    with open(out, newline="") as handle:
        table = list(csv.DictReader(handle))
    for video in videos:
        known = read_track_identities(video.identities)
        mine = [r for r in table if r["camera"] == video.camera]
        assert sorted(int(r["track_id"]) for r in mine) == sorted(known)
        assert all(r["match_camera"] not in ("", video.camera) for r in mine)  # other cameras only
        assert all(r["identity"] == known[int(r["track_id"])] for r in mine)
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["matches_c1.png", "matches_c2.png"]

    broken = tmp_path / "broken"
    shutil.copytree(root / "site", broken)
    (broken / videos[1].tracks.name).write_text("1,1,10,10,20,40,0.9,3,1\n")  # only a car
    assert main([*args, "--site", str(broken), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "camera c2 skipped: " in captured.err and "holds no usable tracked boxes" in captured.err
    with open(out, newline="") as handle:
        assert {r["camera"] for r in csv.DictReader(handle)} == {"c1"}  # the readable camera is still written


def test_ultralytics_labels_ingest_like_the_same_tracks_in_mot(site, tmp_path, capsys):
    """The plumbing of --tracks-format ultralytics: a labels folder, boxes scaled by the video's frame size."""
    from reid_sdk.tracks.mot import MotFormat, read_mot

    root, checkpoint, videos = site
    video = videos[0]
    mot = read_mot(video.tracks)
    height, width = cv2.VideoCapture(str(video.video)).read()[1].shape[:2]
    labels = tmp_path / "labels"
    labels.mkdir()
    for frame in np.unique(mot.frames):
        rows = np.flatnonzero(mot.frames == frame)
        lines = [f"0 {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} {(y2 - y1) / height} "
                 f"0.9 {mot.track_ids[row]}" for row, (x1, y1, x2, y2) in zip(rows, mot.boxes[rows])]
        (labels / f"{video.video.stem}_{frame}.txt").write_text("\n".join(lines) + "\n")
    args = ["ingest", "--model", str(checkpoint), "--video", str(video.video), "--camera", video.camera,
            "--device", "cpu", "--progress", "none"]
    read = read_mot(labels, MotFormat("ultralytics"), frame_size=(height, width))
    assert read.frames.tolist() == mot.frames.tolist() and read.track_ids.tolist() == mot.track_ids.tolist()
    np.testing.assert_allclose(read.boxes, mot.boxes, atol=1e-6)
    assert main([*args, "--tracks", str(labels), "--tracks-format", "ultralytics",
                 "--gallery", str(tmp_path / "u")]) == 0
    gallery = Gallery.open(tmp_path / "u")
    stored = sorted(int(row.track_id) for row in gallery.rows(gallery.ids()).values())
    assert stored == sorted(read_track_identities(video.identities)) and len(stored) == len(np.unique(mot.track_ids))
