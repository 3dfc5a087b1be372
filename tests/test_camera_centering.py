"""Camera-aware clustering: each camera's mean feature removed before merging, and the trainer's camera options
refused, with a reason, where the data has no cameras."""

import pytest
import torch
import torch.nn.functional as F

from reid_sdk.training.camera_centering import center_per_camera
from reid_sdk.training.clustering import merge_stage


def _camera_biased(seed: int = 0):
    """8 people, each seen once by each of 3 cameras; a camera's offset is larger than people's differences."""
    generator = torch.Generator().manual_seed(seed)
    people = F.normalize(torch.randn(8, 32, generator=generator), dim=1)
    offsets = 2.0 * F.normalize(torch.randn(3, 32, generator=generator), dim=1)
    pids = torch.arange(8).repeat(3)
    cameras = torch.arange(3).repeat_interleave(8)
    return people[pids] + offsets[cameras] + 0.05 * torch.randn(24, 32, generator=generator), pids, cameras


def test_centering_lets_people_merge_across_cameras_where_plain_features_join_strangers():
    features, pids, cameras = _camera_biased()
    for given, across in ((features, False), (center_per_camera(features, cameras), True)):
        labels = merge_stage(given, torch.arange(24), 16)  # 24 crops -> 8 clusters
        pure = all(len(set(pids[labels == c].tolist())) == 1 for c in labels.unique())
        assert pure is across


def test_centred_features_are_unit_length_with_zero_mean_per_camera_before_normalising():
    features, _, cameras = _camera_biased(1)
    centred = center_per_camera(features, cameras + 10)
    torch.testing.assert_close(centred.norm(dim=1), torch.ones(24))
    unit = F.normalize(features, dim=1)
    for camera in range(3):
        rows = unit[cameras == camera]
        expected = F.normalize(rows - rows.mean(0), dim=1)
        torch.testing.assert_close(centred[cameras == camera], expected)


def test_a_camera_with_one_crop_keeps_its_features_and_bad_shapes_are_refused():
    features = torch.randn(5, 4)
    cameras = torch.tensor([0, 0, 1, 1, 2])
    torch.testing.assert_close(center_per_camera(features, cameras)[4], F.normalize(features[4], dim=0))
    with pytest.raises(ValueError, match="N cameras"):
        center_per_camera(features, cameras[:4])
