"""Site adaptation: a site's videos + MOT tracks as training data, the cannot-link constraint in the merge, the one
command (``reid-adapt``) end to end with resume, and the bad inputs a site brings."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from reid_sdk.datasets import DatasetLayoutError, load_dataset
from reid_sdk.synthetic.video import VideoSetConfig, render_videos
from reid_sdk.tracks.match_table import MATCH_COLUMNS
from reid_sdk.tracks.mot import read_mot, write_mot
from reid_sdk.tracks.site import find_site
from reid_sdk.tracks.site_tracklets import CACHE_FOLDER, TrackletOptions, prepare_site, read_site_tracklets
from tests.helpers import TEST_MEMORY_BUDGET

TINY_SITE = VideoSetConfig(seed=5, num_cameras=3, walkers=4, passers_by=1, cameras_per_walker=(2, 3), frames=72,
                           frame_size=(144, 192))
#: The smallest training that runs every step: a ResNet-18 at 64 x 32 from random weights, two 1-epoch stages.
TINY_TRAINING = ("model.backbone=resnet18", "model.pretrained=null", "model.input_size=[64, 32]",
                 "model.embedding_dim=32", "model.non_local=false", "train.batch_size=4", "train.first_stage_epochs=1",
                 "train.lr_step_epoch=1", "train.later_stage_epochs_video=1", "clustering.merge_percent=0.2",
                 "clustering.max_stages=2", "data.frames_per_tracklet=2", "data.eval_max_frames=4")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """A rendered 3-camera site (manifest layout), shared read-only by the tests (copy it to change it)."""
    return render_videos(tmp_path_factory.mktemp("site") / "site", TINY_SITE)[0].video.parent


def camera_folders(rendered: Path, target: Path, cameras=("c1", "c2", "c3")) -> Path:
    """The rendered site in the one-folder-per-camera layout, with the identity files."""
    for name in cameras:
        (target / name).mkdir(parents=True)
        for suffix in (".avi", ".txt", "_identities.csv"):
            shutil.copy(rendered / f"{name}{suffix}", target / name / f"{name}{suffix}")
    return target


# ---------------------------------------------------------------------------------------------- the data path


def test_a_site_becomes_tracklets_with_cameras_and_frame_spans(rendered, tmp_path):
    site = camera_folders(rendered, tmp_path / "site")
    splits = load_dataset(site, "videos")
    records = splits.train
    truth = {name: read_mot(site / name / f"{name}.txt") for name in ("c1", "c2", "c3")}
    assert splits.is_video and splits.root == site / CACHE_FOLDER
    assert {record.camera for record in records} == {1, 2, 3}  # cameras numbered in site order
    for record in records:
        camera = f"c{record.camera}"
        track = int(record.frames[0].parent.name)
        frames = truth[camera].frames[truth[camera].track_ids == track]
        assert record.frame_span == (frames.min(), frames.max())  # the track's first and last box
        assert 1 <= len(record.frames) <= TrackletOptions().quality.max_frames
        assert all(path.is_file() and int(path.stem) in frames for path in record.frames)
    assert all(record.pid > 0 for record in records)  # every track has an identity file entry: diagnostics only


def test_the_prepared_site_is_reused_and_a_changed_camera_prepared_again(rendered, tmp_path):
    site = camera_folders(rendered, tmp_path / "site")
    first = prepare_site(site, tmp_path / "tracklets")
    stamps = {name: (tmp_path / "tracklets" / name / "tracks.json").stat().st_mtime_ns for name in ("c1", "c2", "c3")}
    tracks = read_mot(site / "c2" / "c2.txt")
    keep = tracks.track_ids != tracks.track_ids[0]
    write_mot(site / "c2" / "c2.txt", tracks.frames[keep], tracks.track_ids[keep], tracks.boxes[keep])
    second = prepare_site(site, tmp_path / "tracklets")
    again = {name: (tmp_path / "tracklets" / name / "tracks.json").stat().st_mtime_ns for name in ("c1", "c2", "c3")}
    assert [c.reused for c in second.cameras] == [True, False, True]
    assert again["c1"] == stamps["c1"] and again["c3"] == stamps["c3"] and again["c2"] != stamps["c2"]
    assert len(second.cameras[1].tracks) == len(first.cameras[1].tracks) - 1
    assert [t.frames for t in read_site_tracklets(tmp_path / "tracklets").tracks] == [t.frames for t in second.tracks]


def test_site_layouts_side_by_side_and_skipped_cameras(rendered, tmp_path, caplog):
    site = tmp_path / "site"
    site.mkdir()
    for name in ("c1", "c2"):
        shutil.copy(rendered / f"{name}.avi", site / f"{name}.avi")
        shutil.copy(rendered / f"{name}.txt", site / f"{name}.txt")
    shutil.copy(rendered / "c3.avi", site / "c3.avi")  # no tracks file
    (site / "c4").mkdir()
    (site / "c4" / "a.txt").write_text("1,1,0,0,10,20\n")
    (site / "c4" / "b.txt").write_text("1,1,0,0,10,20\n")
    (site / "c4" / "c4.mp4").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        layout = find_site(site)
    assert [camera.name for camera in layout.cameras] == ["c1", "c2"]
    assert dict(layout.skipped) == {
        "c4": "needs one video and one MOT file (.txt), found 1 video(s) and 2 .txt file(s)",
        "c3": "no MOT file c3.txt beside c3.avi"}
    assert "camera c3 skipped" in caplog.text and "camera c4 skipped" in caplog.text
    prepared = prepare_site(layout, tmp_path / "tracklets")
    assert [c.skipped is not None for c in prepared.cameras] == [False, False, True, True]


# ---------------------------------------------------------------------------------------------- cannot-link


def brute_force_pairs(cameras, first, last):
    return sorted([i, j] for i, j in itertools.combinations(range(len(cameras)), 2)
                  if cameras[i] == cameras[j] and first[i] <= last[j] and first[j] <= last[i])


def test_cannot_link_pairs_are_the_overlapping_spans_of_one_camera():
    from reid_sdk.training.clustering import CannotLink

    rng = np.random.default_rng(0)
    for _ in range(20):
        count = int(rng.integers(1, 40))
        cameras = rng.integers(1, 4, count)
        first = rng.integers(1, 200, count)
        last = first + rng.integers(0, 40, count)
        constraint = CannotLink.from_spans(cameras, first, last)
        assert constraint.pairs.tolist() == brute_force_pairs(cameras, first, last)
    touching = CannotLink.from_spans([1, 1, 1], [1, 10, 13], [10, 12, 20])  # inclusive: 0 and 1 share frame 10
    assert touching.pairs.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="sample 0's detected frame runs are empty, end before they start"):
        CannotLink.from_spans([1], [5], [4])


@pytest.mark.parametrize("pseudo_labels,kept_apart", [("linkage", True), ("dbscan", False)])
def test_the_recluster_schedule_says_whether_its_clustering_keeps_cannot_link_pairs_apart(
        rendered, tmp_path, caplog, pseudo_labels, kept_apart):
    from reid_sdk.training.config import load_config
    from reid_sdk.training.schedules import build_trainer

    site = camera_folders(rendered, tmp_path / "site")
    config = load_config(None, [f"data.root={site}", "data.format=videos", "train.device=cpu", "data.num_workers=0",
                                *TINY_TRAINING, "train.schedule=recluster", "recluster.instances=2",
                                f"recluster.pseudo_labels={pseudo_labels}"])
    with caplog.at_level(logging.INFO):
        trainer = build_trainer(config, tmp_path / "run")
    assert trainer.cannot_link is kept_apart  # what reid-adapt's summary reports
    said = "stay apart" if kept_apart else "are NOT kept apart: DBSCAN takes no constraint"
    assert f"pairs of tracks one camera saw at overlapping times {said}" in caplog.text
    assert "clustering.max_stages=2: Algorithm 1's, unused by the re-clustering schedule" in caplog.text


def camera_biased_tracks(seed: int, people: int = 12, cameras: int = 3):
    """Tracks whose features are mostly their camera's look: unconstrained merging joins strangers of one camera.

    Each person crosses every camera once, at a random time; everyone a camera sees in one time window co-occurs.
    """
    rng = np.random.default_rng(seed)
    camera_look = rng.normal(size=(cameras, 16)) * 3.0
    person_look = rng.normal(size=(people, 16))
    features, camera_ids, first, last, pids = [], [], [], [], []
    for person, camera in itertools.product(range(people), range(cameras)):
        features.append(camera_look[camera] + person_look[person] + 0.2 * rng.normal(size=16))
        start = int(rng.integers(0, 300))
        camera_ids.append(camera)
        first.append(start)
        last.append(start + int(rng.integers(20, 120)))
        pids.append(person)
    return np.array(features), np.array(camera_ids), np.array(first), np.array(last), np.array(pids)


def reference_constrained_walk(matrix, labels, num_merges, forbidden_samples):
    """Slow and plain: sorted (D, a, b) pairs, groups as sets of samples, each candidate checked sample by sample."""
    num_clusters = int(labels.max()) + 1
    groups = {c: {c} for c in range(num_clusters)}  # group id -> clusters
    members = {c: set(np.flatnonzero(labels == c).tolist()) for c in range(num_clusters)}
    owner = list(range(num_clusters))
    pairs = sorted((float(matrix[a, b]), a, b) for a, b in itertools.combinations(range(num_clusters), 2))
    merges = 0
    for _, a, b in pairs:
        if merges == min(num_merges, num_clusters - 1):
            break
        ga, gb = owner[a], owner[b]
        if ga == gb:
            continue
        samples_a = set().union(*(members[c] for c in groups[ga]))
        samples_b = set().union(*(members[c] for c in groups[gb]))
        if any((min(i, j), max(i, j)) in forbidden_samples for i in samples_a for j in samples_b):
            continue
        keep, gone = min(ga, gb), max(ga, gb)
        groups[keep] |= groups.pop(gone)
        for cluster in groups[keep]:
            owner[cluster] = keep
        merges += 1
    order = sorted(groups)
    new = {cluster: order.index(owner[cluster]) for cluster in range(num_clusters)}
    return [new[int(label)] for label in labels], merges


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_merged_cluster_holds_two_co_occurring_tracks_of_one_camera(seed, monkeypatch):
    from reid_sdk.training.clustering import CannotLink, cluster_distance_matrix, merge_stage, stage

    features, cameras, first, last, _ = camera_biased_tracks(seed)
    constraint = CannotLink.from_spans(cameras, first, last)
    labels = np.arange(len(features))
    forbidden = {tuple(pair) for pair in constraint.pairs.tolist()}
    matrix = cluster_distance_matrix(features, labels).numpy()
    for num_merges in (5, 15, 30):
        plain = merge_stage(features, labels, num_merges)
        assert constraint.violations(plain) > 0  # the premise: camera bias alone joins co-occurring strangers
        kept_apart = merge_stage(features, labels, num_merges, cannot_link=constraint)
        assert constraint.violations(kept_apart) == 0
        expected, merges = reference_constrained_walk(matrix, labels, num_merges, forbidden)
        assert kept_apart.tolist() == expected and merges == num_merges
        monkeypatch.setattr(stage, "_initial_capacity", lambda target: 1)  # skipped pairs force more candidates
        assert merge_stage(features, labels, num_merges, cannot_link=constraint).tolist() == expected
        monkeypatch.undo()


def test_cannot_link_across_stages_and_with_merged_clusters():
    """Clusters of several samples: a constraint between any two members keeps the groups apart."""
    from reid_sdk.training.clustering import CannotLink, cluster_distance_matrix, merge_stage

    features, cameras, first, last, _ = camera_biased_tracks(3)
    constraint = CannotLink.from_spans(cameras, first, last)
    labels = merge_stage(features, np.arange(len(features)), 10, cannot_link=constraint)
    forbidden = {tuple(pair) for pair in constraint.pairs.tolist()}
    matrix = cluster_distance_matrix(features, labels, linkage="imd_cpd").numpy()
    for num_merges in (3, 12):
        expected, _ = reference_constrained_walk(matrix, labels, num_merges, forbidden)
        result = merge_stage(features, labels, num_merges, cannot_link=constraint)
        assert result.tolist() == expected and constraint.violations(result) == 0


def test_without_constraints_the_merge_is_unchanged_and_when_none_is_allowed_it_stops(caplog):
    from reid_sdk.training.clustering import CannotLink, merge_stage

    features, cameras, first, last, _ = camera_biased_tracks(4)
    labels = np.arange(len(features))
    empty = CannotLink(np.empty((0, 2), np.int64), len(features))
    for num_merges in (1, 10, 35):
        assert merge_stage(features, labels, num_merges, cannot_link=empty).tolist() == \
            merge_stage(features, labels, num_merges).tolist()
    everyone = CannotLink.from_spans(np.zeros(6), np.zeros(6), np.full(6, 9))  # six people in view together
    pairs = CannotLink(np.vstack([everyone.pairs[everyone.pairs[:, 0] > 0], [[0, 1]]]), 6)  # 0 may join 2..5
    with caplog.at_level(logging.INFO):
        result = merge_stage(features[:6], np.arange(6), 5, cannot_link=pairs)
    assert result.tolist()[:2] != [0, 0] and pairs.violations(result) == 0
    assert result.max() + 1 == 5  # one merge was possible (0 with one of 2..5), then no allowed pair was left
    assert "cannot-link: 1 of 5 merges made" in caplog.text


# ---------------------------------------------------------------------------------------------- the one command


def test_adapt_runs_end_to_end_and_resumes_without_repeating_work(rendered, tmp_path, monkeypatch, capsys, caplog):
    from reid_sdk.adapt import pipeline
    from reid_sdk.adapt.settings import AdaptSettings
    from reid_sdk.cli.adapt import main
    from reid_sdk.training.clustering import CannotLink
    from reid_sdk.training.run_dir import RunDirectory
    from reid_sdk.training.trainer import Trainer

    site = camera_folders(rendered, tmp_path / "site")
    out = tmp_path / "run"
    settings = AdaptSettings(overrides=TINY_TRAINING, device="cpu", max_frames=4, picture_tracks=2,
                             max_memory=TEST_MEMORY_BUDGET)
    run_stage = Trainer._run_stage

    def interrupted(self, stage, *args):
        if stage == 1:
            raise KeyboardInterrupt
        return run_stage(self, stage, *args)

    monkeypatch.setattr(Trainer, "_run_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.adapt_site(site, out, settings, progress=False)
    monkeypatch.undo()
    before = (out / "before" / "summary.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        result = pipeline.adapt_site(site, out, settings, progress=False)
    assert "resuming after stage 0" in caplog.text  # training went on from its last finished stage
    assert (out / "before" / "summary.json").stat().st_mtime_ns == before  # the start was not measured again
    assert result.training["stages"] == 2 and result.training["cannot_link"] is True
    assert result.parity["passed"] and (out / "model.onnx").is_file()
    for folder in (out / "before", out / "after"):
        assert (folder / "gallery").is_dir() and (folder / "matches.csv").is_file()
        assert sorted(p.name for p in folder.glob("matches_*.png")) == ["matches_c1.png", "matches_c2.png",
                                                                       "matches_c3.png"]
    assert result.before.rank1 is not None and result.after.queries == result.before.queries > 0
    header, *rows = (out / "after" / "matches.csv").read_text().splitlines()
    assert header == ",".join(MATCH_COLUMNS)  # reid-index match's format
    assert all(row.split(",")[0] != row.split(",")[8] for row in rows)  # matches come from other cameras
    report = json.loads((out / "report.json").read_text())
    assert report["after"]["tracks"] == result.after.tracks == len(read_site_tracklets(out / "tracklets").tracks)
    records = load_dataset(out / "tracklets", "videos").train
    run = RunDirectory(out / "train")
    labels = run.load_stage(run.completed_stages()[-1])["labels"].numpy()
    assert CannotLink.of_records(records).violations(labels) == 0
    cost = json.loads((out / "seconds.json").read_text())
    assert report["seconds"] == cost and set(cost) == {"tracklets", "before", "train", "export", "after"}

    def never(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    for name in ("build_trainer", "match_site", "export_model", "verify_parity", "save_checkpoint"):
        monkeypatch.setattr(pipeline, name, never)
    monkeypatch.setattr(pipeline, "_match", never)
    argv = [str(site), "--out", str(out), "--device", "cpu", "--max-frames", "4", "--pictures", "2",
            "--max-memory", TEST_MEMORY_BUDGET]
    argv += [item for override in TINY_TRAINING for item in ("--set", override)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "before (random start, model.pretrained=null):" in printed and "parity with torch: passed" in printed
    assert "label_free_score per stage: 0: " in printed  # every stage's score, the chosen one starred
    resumed = json.loads((out / "report.json").read_text())["seconds"]
    assert all(resumed[step] >= cost[step] for step in cost) and resumed["train"] > 0  # what the steps cost
    assert main([*argv, "--json", "--progress", "none"]) == 0  # a finished run: its report, as data
    assert json.loads(capsys.readouterr().out) == json.loads((out / "report.json").read_text())
    assert main([str(site), "--out", str(out), "--device", "cpu", "--max-memory", TEST_MEMORY_BUDGET]) == 2  # other settings: refused, nothing lost
    assert "holds another adaptation (its settings differ" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("damaged", ["not json", "[1, 2]", '{"train": null}'])
def test_a_damaged_step_time_file_is_reported_and_started_again(tmp_path, caplog, damaged):
    from reid_sdk.adapt.pipeline import StepClock

    path = tmp_path / "seconds.json"
    path.write_text(damaged)
    with caplog.at_level(logging.WARNING):
        clock = StepClock(path)
    assert "is damaged" in caplog.text and clock.seconds == {}
    clock.lap("tracklets")
    assert set(json.loads(path.read_text())) == {"tracklets"}  # rewritten whole, readable again


def test_a_camera_with_no_tracks_or_a_bad_video_is_skipped_and_counted(rendered, tmp_path):
    site = camera_folders(rendered, tmp_path / "site")
    (site / "c2" / "c2.txt").write_text("1,-1,10,10,20,40\n")  # a detection no tracker claimed: no track
    (site / "c3" / "c3.avi").write_bytes(b"not a video")
    prepared = prepare_site(site, tmp_path / "tracklets")
    assert [bool(c.tracks) for c in prepared.cameras] == [True, False, False]
    assert "holds no usable tracked boxes" in prepared.cameras[1].skipped
    assert "cannot open the video" in prepared.cameras[2].skipped
    assert [name for name, _ in prepared.skipped] == ["c2", "c3"]
    assert "no tracklets from c2 (skipped: " in prepared.summary() and ", c3 (skipped: " in prepared.summary()
    with pytest.raises(DatasetLayoutError, match="tracks from one camera only \\(c1\\) in .*: a model cannot learn to "
                                                 "match people across cameras from one camera"):
        load_dataset(site, "videos")


def test_a_malformed_identities_file_or_odd_mot_text_keeps_the_camera(rendered, tmp_path, caplog):
    """Labels are for reports only; a BOM and a latin-1 comment are no reason to lose a camera (issue 36, item 4)."""
    site = camera_folders(rendered, tmp_path / "site")
    (site / "c1" / "c1_identities.csv").write_text("track_id,identity\n1,a,b\n")
    tracks = (site / "c2" / "c2.txt").read_bytes()
    (site / "c2" / "c2.txt").write_bytes(b"\xef\xbb\xbf# tracker caf\xe9\n" + tracks)
    with caplog.at_level(logging.WARNING):
        prepared = prepare_site(site, tmp_path / "tracklets")
    assert prepared.skipped == [] and all(camera.tracks for camera in prepared.cameras)
    assert all(track.identity is None for track in prepared.cameras[0].tracks)
    assert all(track.identity is not None for track in prepared.cameras[1].tracks)
    assert "camera c1: identities file ignored, the camera goes on without labels" in caplog.text


def test_tracks_outside_the_frame_and_after_the_video_end_are_counted(rendered, tmp_path):
    site = camera_folders(rendered, tmp_path / "site", cameras=("c1", "c2"))
    tracks = read_mot(site / "c1" / "c1.txt")
    frames = np.concatenate([tracks.frames, [1, 2, 3], [500, 501, 502]])  # the video has 72 frames
    ids = np.concatenate([tracks.track_ids, [90, 90, 90], [91, 91, 91]])
    boxes = np.concatenate([tracks.boxes, [[-900, -900, -850, -800]] * 3, [[10, 10, 60, 110]] * 3])
    write_mot(site / "c1" / "c1.txt", frames, ids, boxes)
    prepared = prepare_site(site, tmp_path / "tracklets")
    camera = prepared.cameras[0]
    assert camera.outside_frame == 1 and camera.after_video_end == 1 and camera.frames_read == 72
    assert {t.track_id for t in camera.tracks}.isdisjoint({90, 91})
    assert "left out: 1 never inside the frame, 1 after the video's end" in camera.line()


def test_hundreds_of_short_tracks(rendered, tmp_path):
    """Detector flicker: tracks under min_boxes are left out and counted; short tracks above it are tracklets."""
    site = camera_folders(rendered, tmp_path / "site", cameras=("c1", "c2"))
    tracks = read_mot(site / "c2" / "c2.txt")
    rng = np.random.default_rng(0)
    flicker = 300
    lengths = rng.integers(1, 5, flicker)  # 1..4 boxes each
    starts = rng.integers(1, 60, flicker)
    frames = np.concatenate([tracks.frames, *[start + np.arange(n) for start, n in zip(starts, lengths)]])
    ids = np.concatenate([tracks.track_ids, *[np.full(n, 100 + i) for i, n in enumerate(lengths)]])
    lefts = rng.uniform(0, 130, flicker)
    boxes = np.concatenate([tracks.boxes, *[np.tile([x, 20, x + 30, 100], (n, 1)) for x, n in zip(lefts, lengths)]])
    write_mot(site / "c2" / "c2.txt", frames, ids, boxes)
    prepared = prepare_site(site, tmp_path / "tracklets", TrackletOptions(min_boxes=3))
    camera = prepared.cameras[1]
    assert camera.short == int((lengths < 3).sum())
    assert len(camera.tracks) == len(np.unique(tracks.track_ids)) + int((lengths >= 3).sum())
    records = load_dataset(tmp_path / "tracklets", "videos").train  # identities partly unknown: no pids
    assert len(records) == len(prepared.tracks) and {r.pid for r in records} == {-1}


def test_one_camera_only_stops_with_a_clear_message(rendered, tmp_path, capsys):
    from reid_sdk.cli.adapt import main
    from reid_sdk.cli.train import main as train_main

    site = camera_folders(rendered, tmp_path / "site", cameras=("c1",))
    assert main([str(site), "--out", str(tmp_path / "run"), "--max-memory", TEST_MEMORY_BUDGET]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("reid-adapt: error: tracks from one camera only (c1) in") and "cannot learn" in error
    assert len(error.splitlines()) == 1 and not (tmp_path / "run").exists()  # said before any work
    assert train_main(["--data", str(site), "--format", "videos", "--out", str(tmp_path / "train")]) == 2
    assert "cannot learn to match people across cameras" in capsys.readouterr().err


@pytest.mark.parametrize("prepare, message", [
    (lambda site: None, "site folder not found"),
    (lambda site: site.mkdir(), "no camera found in"),
    (lambda site: (site.mkdir(), (site / "manifest.json").write_text("{}")), "does not list cameras"),
])
def test_bad_sites_are_one_line_and_exit_2(tmp_path, capsys, prepare, message):
    from reid_sdk.cli.adapt import main

    site = tmp_path / "site"
    prepare(site)
    assert main([str(site), "--out", str(tmp_path / "run"), "--max-memory", TEST_MEMORY_BUDGET]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_a_run_folder_holding_something_else_is_refused(rendered, tmp_path, capsys):
    from reid_sdk.cli.adapt import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([str(rendered), "--out", str(out), "--max-memory", TEST_MEMORY_BUDGET]) == 2
    assert "is not empty and holds no reid-adapt run" in capsys.readouterr().err
