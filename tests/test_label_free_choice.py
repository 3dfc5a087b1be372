"""The label-free model choice ranks features by what they say about identities, never reading one: on
constructed features, identity > noisier identity > random, and features of the camera lowest when cameras are
known; the score equals a direct implementation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_sdk.training.model_choice import label_free_scores, nearest_neighbours, neighbourhood_agreement

IDENTITIES, CAMERAS, CAMERAS_PER_IDENTITY, CROPS_PER_CAMERA, DIMENSIONS = 60, 6, 2, 5, 128


def _constructed(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """60 identities, each seen by 2 of 6 cameras, 5 crops per camera; candidate features of several kinds, the
    cameras, and pseudo-labels split by camera (one cluster per identity and camera), the same for every kind."""
    generator = torch.Generator().manual_seed(seed)
    pids, cameras = [], []
    for pid in range(IDENTITIES):
        for camera in torch.randperm(CAMERAS, generator=generator)[:CAMERAS_PER_IDENTITY].tolist():
            pids += [pid] * CROPS_PER_CAMERA
            cameras += [camera] * CROPS_PER_CAMERA
    pids, cameras = torch.tensor(pids), torch.tensor(cameras)

    def directions(count: int) -> torch.Tensor:
        return F.normalize(torch.randn(count, DIMENSIONS, generator=generator), dim=1)

    def noise(scale: float) -> torch.Tensor:
        return torch.randn(len(pids), DIMENSIONS, generator=generator) * scale / DIMENSIONS ** 0.5

    person, camera = directions(IDENTITIES)[pids], directions(CAMERAS)[cameras]
    kinds = {"identity": person + noise(0.3), "noisier identity": person + noise(0.8), "random": noise(1.0),
             "identity + camera": person + camera + noise(0.3), "camera": camera + noise(0.3)}
    pseudo_labels = torch.unique(pids * CAMERAS + cameras, return_inverse=True)[1]
    return kinds, cameras, pseudo_labels


@pytest.mark.parametrize("seed", [0, 1])
def test_the_score_ranks_identity_features_above_noisier_random_and_camera_features(seed):
    kinds, cameras, pseudo_labels = _constructed(seed)
    with_cameras = {name: label_free_scores(features, pseudo_labels, pseudo_labels, cameras)["label_free_score"]
                    for name, features in kinds.items()}
    assert (with_cameras["identity"] > with_cameras["noisier identity"] > with_cameras["random"]
            > with_cameras["camera"])
    assert with_cameras["identity"] > with_cameras["identity + camera"] > with_cameras["camera"]
    without = {name: label_free_scores(features, pseudo_labels, pseudo_labels, None)["label_free_score"]
               for name, features in kinds.items()}
    assert without["identity"] > without["noisier identity"] > without["random"]
    assert without["identity"] > without["identity + camera"] > without["random"]
    # what the score replaced: the share of neighbours from other cameras ranks random features above identities
    shares = {name: label_free_scores(features, pseudo_labels, pseudo_labels, cameras)["cross_camera_share"]
              for name, features in kinds.items()}
    assert shares["random"] > shares["identity"]


def _slow_agreement(features: np.ndarray, rows: list[int], neighbours: int, cameras: np.ndarray | None) -> float:
    def nearest(i: int, allowed) -> set[int]:
        candidates = [j for j in range(len(features)) if j != i and allowed(j)]
        return set(sorted(candidates, key=lambda j: -float(features[i] @ features[j]))[:neighbours])

    total = 0.0
    for i in rows:
        own = nearest(i, lambda j: True)
        partners = nearest(i, (lambda j: True) if cameras is None else (lambda j: cameras[j] != cameras[i]))
        total += sum(len(own & nearest(j, lambda _: True)) for j in partners) / neighbours ** 2
    return total / len(rows)


@pytest.mark.parametrize("neighbours, with_cameras, max_rows", [(1, False, 4096), (5, True, 4096), (10, True, 20),
                                                               (10, False, 20)])
def test_neighbourhood_agreement_equals_a_direct_implementation(neighbours, with_cameras, max_rows):
    rng = np.random.default_rng(neighbours + max_rows)
    cameras = rng.integers(1, 4, 50)
    groups = rng.integers(0, 8, 50)
    features = rng.standard_normal((50, 12)) + 2.0 * rng.standard_normal((8, 12))[groups]
    features = (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)
    given = torch.from_numpy(cameras) if with_cameras else None
    fast = neighbourhood_agreement(torch.from_numpy(features), given, neighbours, max_rows=max_rows, seed=3)
    rows = list(range(50)) if max_rows >= 50 else torch.randperm(50, generator=torch.Generator().manual_seed(3))[
        :max_rows].tolist()
    assert fast == pytest.approx(_slow_agreement(features, rows, neighbours, cameras if with_cameras else None),
                                 abs=1e-6)


def test_nearest_neighbours_from_other_cameras_never_return_the_own_camera():
    features = F.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    cameras = torch.arange(40) % 4
    found = nearest_neighbours(features, torch.arange(40), 5, cameras)
    assert found.shape == (40, 5) and bool((cameras[found] != cameras[:, None]).all())


def test_bad_input_is_refused_with_a_reason():
    features = torch.randn(10, 4)
    with pytest.raises(ValueError, match="at least 2 cameras"):
        neighbourhood_agreement(features, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="need N = 10 cameras"):
        neighbourhood_agreement(features, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 samples"):
        neighbourhood_agreement(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        neighbourhood_agreement(torch.randn(10))
