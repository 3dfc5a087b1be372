"""torch Datasets: shapes, dtypes, T-frame sampling, transforms and unreadable-file substitution."""

from __future__ import annotations

import shutil

import pytest
import torch

from reid_sdk.datasets import ImageRecord, TrackletRecord, load_market1501, load_tracklet_folder
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.training.torch_data import (
    ImageDataset,
    TrackletDataset,
    TransformConfig,
    build_transform,
    frame_indices,
)

CONFIG = SyntheticConfig(seed=5, image_size=(64, 32), sizes=PRESETS["tiny"])
TRANSFORM = TransformConfig(size=(48, 24), random_erasing=0.5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchdata")
    generate("market1501", root / "market", CONFIG, workers=2)
    generate("tracklets", root / "tracks", CONFIG, workers=2)
    return root


def test_image_dataset_train_and_test_outputs(data):
    records = load_market1501(data / "market").train
    for train in (True, False):
        dataset = ImageDataset(records, build_transform(TRANSFORM, train=train))
        image, pid, camera, index = dataset[3]
        assert image.dtype == torch.uint8 and image.shape == (3, 48, 24)
        assert (pid, camera, index) == (records[3].pid, records[3].camera, 3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    images, pids, _, _ = next(iter(loader))
    assert images.shape == (4, 3, 48, 24) and pids.dtype == torch.int64


def test_image_dataset_is_rgb(data):
    record = load_market1501(data / "market").train[0]
    image, *_ = ImageDataset([record])[0]
    import cv2

    bgr = cv2.imread(str(record.path))
    assert torch.equal(image[0], torch.from_numpy(bgr[:, :, 2]))


def test_unreadable_image_is_substituted_and_counted(data, tmp_path, caplog):
    good = load_market1501(data / "market").train[:3]
    broken = tmp_path / "0001_c1s1_000001_01.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"truncated")  # passes the signature check, fails to decode
    records = [good[0], ImageRecord(broken, 1, 1), good[1]]
    dataset = ImageDataset(records, build_transform(TRANSFORM, train=False))
    with caplog.at_level("WARNING"):
        outputs = [dataset[i] for i in range(len(dataset))] + [dataset[1]]
    assert outputs[1][3] == 2 and outputs[1][1] == good[1].pid  # replaced by the next readable record
    assert dataset.num_unreadable == 1
    assert len([r for r in caplog.records if "cannot decode" in r.getMessage()]) == 1


def test_frame_indices():
    assert frame_indices(10, 4, "evenly") == [0, 3, 6, 9]
    short = frame_indices(3, 8, "evenly")
    assert len(short) == 8 and sorted(set(short)) == [0, 1, 2] and short == sorted(short)
    generator = torch.Generator().manual_seed(0)
    chosen = frame_indices(20, 5, "random", generator)
    assert len(set(chosen)) == 5 and chosen == sorted(chosen)
    assert len(frame_indices(2, 6, "random", generator)) == 6
    assert frame_indices(3, 8, "all") == [0, 1, 2]
    assert frame_indices(30, 8, "all") == frame_indices(30, 8, "evenly")
    with pytest.raises(ValueError, match="sampling mode"):
        frame_indices(3, 2, "middle")


def test_tracklet_dataset_sampling(data):
    records = load_tracklet_folder(data / "tracks").train
    train = TrackletDataset(records, (64, 32), num_frames=8, sampling="random",
                            transform=build_transform(TRANSFORM, train=True))
    clip, pid, camera, index = train[0]
    assert clip.dtype == torch.uint8 and clip.shape == (8, 3, 48, 24)
    evaluation = TrackletDataset(records, (64, 32), num_frames=4, sampling="all",
                                 transform=build_transform(TRANSFORM, train=False))
    clip, *_ = evaluation[0]
    assert clip.shape == (min(4, len(records[0].frames)), 3, 48, 24)


def test_tracklet_with_unreadable_frames_uses_the_others(data, tmp_path):
    record = load_tracklet_folder(data / "tracks").train[0]
    folder = tmp_path / "t"
    folder.mkdir()
    good = shutil.copy(record.frames[0], folder / "frame1.jpg")
    (folder / "frame2.jpg").write_bytes(b"\xff\xd8\xffbroken")
    broken_only = tmp_path / "b.jpg"
    broken_only.write_bytes(b"\xff\xd8\xffbroken")
    records = [TrackletRecord((broken_only,), 7, 1, 0), TrackletRecord((good, folder / "frame2.jpg"), 8, 2, 1)]
    dataset = TrackletDataset(records, (64, 32), num_frames=4, sampling="evenly")
    clip, pid, _, index = dataset[0]  # the first tracklet has no readable frame: the next one is used
    assert (pid, index) == (8, 1) and clip.shape == (4, 3, 64, 32)
    assert dataset.num_unreadable == 2
    assert torch.equal(clip[0], clip[3])
