"""The training data's fingerprint: what a resume compares, and how it names a difference."""

import os

from reid_sdk.datasets.records import DatasetSplits, ImageRecord, TrackletRecord
from reid_sdk.training.data_fingerprint import DataFingerprint


def _images(root, names):
    return DatasetSplits("test", root, train=[ImageRecord(root / name, -1, -1) for name in names])


def _write(root, sizes):
    for name, size in sizes.items():
        (root / name).write_bytes(b"x" * size)
        os.utime(root / name, ns=(10**18, 10**18))


def test_unchanged_data_has_no_changes_and_round_trips(tmp_path):
    _write(tmp_path, {"a.jpg": 10, "b.jpg": 20})
    fingerprint = DataFingerprint.of(_images(tmp_path, ["a.jpg", "b.jpg"]))
    assert DataFingerprint.from_dict(fingerprint.to_dict()) == fingerprint
    assert DataFingerprint.of(_images(tmp_path, ["a.jpg", "b.jpg"])).changes_since(fingerprint) is None


def test_a_swapped_file_a_new_order_and_a_new_count_are_named(tmp_path):
    _write(tmp_path, {"a.jpg": 10, "b.jpg": 20, "c.jpg": 30})
    start = DataFingerprint.of(_images(tmp_path, ["a.jpg", "b.jpg"]))
    reordered = DataFingerprint.of(_images(tmp_path, ["b.jpg", "a.jpg"])).changes_since(start)
    assert reordered == ("2 training sample(s) changed since the run started, e.g. sample a.jpg is now b.jpg "
                         "(labels follow the sample order)")
    grown = DataFingerprint.of(_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])).changes_since(start)
    assert grown == "the training set has 3 samples but had 2 when the run started, e.g. added: c.jpg"
    os.utime(tmp_path / "b.jpg", ns=(2 * 10**18, 2 * 10**18))  # same size, rewritten later
    touched = DataFingerprint.of(_images(tmp_path, ["a.jpg", "b.jpg"])).changes_since(start)
    assert touched.startswith("1 training sample(s) changed since the run started, e.g. b.jpg (modified ")


def test_a_tracklet_is_stamped_by_all_its_frames(tmp_path):
    _write(tmp_path, {"f1.jpg": 10, "f2.jpg": 10, "f3.jpg": 10})
    frames = [tmp_path / "f1.jpg", tmp_path / "f2.jpg", tmp_path / "f3.jpg"]
    start = DataFingerprint.of(DatasetSplits("t", tmp_path, train=[TrackletRecord(tuple(frames), -1, -1, 0)]))
    now = DataFingerprint.of(DatasetSplits("t", tmp_path, train=[TrackletRecord(tuple(frames[:2]), -1, -1, 0)]))
    assert now.changes_since(start) == ("1 training sample(s) changed since the run started, e.g. f1.jpg "
                                        "(3 -> 2 frames, size 30 -> 20)")
