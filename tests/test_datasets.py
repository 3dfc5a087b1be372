"""Record loaders on generated layouts: counts, pids, cameras, junk / distractors, membership, bad input."""

from __future__ import annotations

import csv
import logging
import re
import shutil

import pytest

from reid_sdk.datasets import (
    DatasetLayoutError,
    load_dataset,
    load_dukemtmc,
    load_dukemtmc_video,
    load_image_folder,
    load_market1501,
    load_mars,
    load_tracklet_folder,
    statistics_table,
)
from reid_sdk.datasets.files import natural_key
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, _split_pids, generate

TINY = SyntheticConfig(seed=3, sizes=PRESETS["tiny"])
SIZES = TINY.sizes


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    for layout in ("market1501", "dukemtmc", "mars", "dukevideo", "crops", "tracklets"):
        generate(layout, root / layout, TINY, workers=2)
    return root


def test_market1501_round_trip(generated, tmp_path):
    wrapped = tmp_path / "Market-1501-v15.09.15"  # the real archive's extra folder is accepted
    shutil.copytree(generated / "market1501", wrapped)
    splits = load_market1501(tmp_path)
    train_ids, test_ids, _ = _split_pids(TINY)
    assert splits.root == wrapped
    assert len(splits.train) == SIZES.train_images
    assert {r.pid for r in splits.train} == set(train_ids)
    assert {r.pid for r in splits.query} == set(test_ids)
    assert len(splits.gallery) == SIZES.gallery_images + SIZES.distractors
    assert sum(r.pid == 0 for r in splits.gallery) == SIZES.distractors
    assert splits.dropped_junk == SIZES.junk and all(r.pid != -1 for r in splits.gallery)
    assert {r.camera for r in splits.train + splits.query + splits.gallery} <= set(range(1, SIZES.num_cameras + 1))
    for record in splits.query:
        assert re.match(rf"^{record.pid:04d}_c{record.camera}s\d_\d{{6}}_\d\d\.jpg$", record.path.name)
    # every query identity is findable: it has gallery images in another camera
    for record in splits.query:
        assert any(g.pid == record.pid and g.camera != record.camera for g in splits.gallery)
    assert "gallery" in statistics_table(splits)


def test_dukemtmc_distractors_are_gallery_only_identities(generated):
    splits = load_dukemtmc(generated / "dukemtmc")
    query_ids = {r.pid for r in splits.query}
    extra = {r.pid for r in splits.gallery} - query_ids
    assert extra and not extra & {r.pid for r in splits.train}
    assert sum(r.pid in extra for r in splits.gallery) == SIZES.distractors
    assert all(re.match(r"^\d{4}_c\d_f\d{7}\.jpg$", r.path.name) for r in splits.gallery)
    assert splits.dropped_junk == 0


def _frame_labels(name):
    match = re.match(r"^(\d{4}|00-1)C(\d)T\d{4}F\d{3}\.jpg$", name)
    return int(match.group(1).replace("00-1", "-1")), int(match.group(2))


def test_mars_round_trip(generated):
    splits = load_mars(generated / "mars")
    train_ids, test_ids, _ = _split_pids(TINY)
    assert splits.is_video
    assert {r.pid for r in splits.train} == set(train_ids)
    assert {r.pid for r in splits.query} == set(test_ids) and len(splits.query) == len(test_ids)
    assert splits.dropped_junk == SIZES.junk
    assert sum(r.pid == 0 for r in splits.gallery) == SIZES.distractors
    low, high = SIZES.frames_per_tracklet
    for record in splits.train + splits.query + splits.gallery:
        assert low <= len(record.frames) <= high
        assert all(_frame_labels(p.name) == (record.pid, record.camera) for p in record.frames)
        assert all(p.parent.name == p.name[:4] for p in record.frames)


@pytest.mark.parametrize("name", ["tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat"])
@pytest.mark.parametrize("kept", [0, 10, 0.5], ids=["empty", "10-bytes", "half"])
def test_mars_damaged_info_file_is_named_in_one_line(generated, tmp_path, name, kept):
    root = tmp_path / "mars"
    shutil.copytree(generated / "mars" / "info", root / "info")
    for folder in ("bbox_train", "bbox_test"):
        (root / folder).symlink_to(generated / "mars" / folder, target_is_directory=True)
    info = root / "info" / name
    whole = info.read_bytes()
    info.write_bytes(whole[: int(kept * len(whole)) if isinstance(kept, float) else kept])
    expected = f"^cannot read {re.escape(str(info))}, damaged or truncated: "
    with pytest.raises(DatasetLayoutError, match=expected) as error:
        load_mars(root)
    assert "\n" not in str(error.value)


def test_dukevideo_round_trip(generated):
    splits = load_dukemtmc_video(generated / "dukevideo")
    train_ids, test_ids, _ = _split_pids(TINY)
    assert {r.pid for r in splits.train} == set(train_ids)
    assert {r.pid for r in splits.query} == set(test_ids)
    for record in splits.train + splits.query + splits.gallery:
        assert len({p.parent for p in record.frames}) == 1
        for path in record.frames:
            assert re.match(rf"^{record.pid:04d}_C{record.camera}_F\d{{4}}_X\d{{5}}\.jpg$", path.name)
        assert [p.name for p in record.frames] == sorted(p.name for p in record.frames)


def test_image_folder_counts_and_skips_bad_files(generated, tmp_path, caplog):
    folder = tmp_path / "crops"
    shutil.copytree(generated / "crops", folder)
    with open(folder / "labels.csv") as handle:
        labelled = list(csv.DictReader(handle))
    (folder / "cam1" / "broken.jpg").write_text("not an image")
    (folder / "cam2" / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    jpeg_named_png = folder / "cam1" / "disguised.png"  # the content decides the decoder
    jpeg_named_png.write_bytes(next((folder / "cam1").glob("*.jpg")).read_bytes())
    with caplog.at_level(logging.WARNING):
        splits = load_image_folder(folder)
    assert len(splits.train) == len(labelled) + 1
    assert splits.skipped_files == 2
    assert len([r for r in caplog.records if "skipped 2" in r.getMessage()]) == 1
    assert any(p.suffix == ".png" for p in (r.path for r in splits.train))
    assert all(r.pid == -1 and r.camera == -1 for r in splits.train)


def test_image_folder_follows_folder_links_and_searches_a_looped_folder_once(generated, tmp_path, caplog):
    storage, site = tmp_path / "storage", tmp_path / "site"
    shutil.copytree(generated / "crops", storage)
    site.mkdir()
    shutil.move(storage / "cam1", site / "cam1")
    for camera in ("cam2", "cam3"):  # the other cameras' crops live elsewhere, linked in
        (site / camera).symlink_to(storage / camera, target_is_directory=True)
    (site / "cam1" / "up").symlink_to(site, target_is_directory=True)  # a loop
    (site / "cam3_again").symlink_to(storage / "cam3", target_is_directory=True)  # a second path to one folder
    with caplog.at_level(logging.WARNING):
        splits = load_image_folder(site)
    assert len(splits.train) == len(load_image_folder(generated / "crops").train)
    assert {record.path.parent.name for record in splits.train} == {"cam1", "cam2", "cam3"}
    [warning] = [r.getMessage() for r in caplog.records if "linked folder" in r.getMessage()]
    assert "skipped 2 linked folder(s) already searched through another path" in warning
    assert warning.endswith(f"e.g. {site / 'cam3_again'}")


def test_tracklet_folder_sorts_frames_naturally(generated, tmp_path):
    splits = load_tracklet_folder(generated / "tracklets")
    with open(generated / "tracklets" / "labels.csv") as handle:
        assert len(splits.train) == len(list(csv.DictReader(handle)))
    track = tmp_path / "tracks" / "track1"
    track.mkdir(parents=True)
    frame = next((generated / "tracklets" / "track1").glob("*.jpg")).read_bytes()
    for number in (10, 2, 1, 11, 3):
        (track / f"frame{number}.jpg").write_bytes(frame)
    record = load_tracklet_folder(tmp_path / "tracks").train[0]
    assert [p.name for p in record.frames] == ["frame1.jpg", "frame2.jpg", "frame3.jpg", "frame10.jpg", "frame11.jpg"]


def test_natural_key():
    names = ["frame10", "frame2", "Frame1", "frame2b", "a100x", "a20x"]
    assert sorted(names, key=natural_key) == ["a20x", "a100x", "Frame1", "frame2", "frame2b", "frame10"]


def test_missing_and_empty_roots_name_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="bounding_box_train"):
        load_market1501(tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match="MARS layout"):
        load_mars(tmp_path)
    for name in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / name).mkdir()
    with pytest.raises(DatasetLayoutError, match="no usable images.*Market-1501 layout"):
        load_market1501(tmp_path)
    with pytest.raises(DatasetLayoutError, match="folder of person crops"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset format"):
        load_dataset(tmp_path, "cuhk03")


def test_misnamed_files_are_skipped_not_relabelled(generated, tmp_path):
    root = tmp_path / "market"
    shutil.copytree(generated / "market1501", root)
    sample = next((root / "query").glob("*.jpg"))
    shutil.copy(sample, root / "query" / "holiday_photo.jpg")
    splits = load_market1501(root)
    assert splits.skipped_files == 1
    assert len(splits.query) == len(list((generated / "market1501" / "query").glob("*.jpg")))
