"""The label-free model choice ranks features by what they say about identities, never reading one: on
constructed features, identity > noisier identity > random, features of the camera lowest when cameras are known,
and features that fooled the uncorrected agreement (low-dimensional nuisances, identities squeezed into two
dimensions, a collapse onto a few points) below identities; the score equals a direct implementation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_sdk.training.model_choice import (TIE_RESOLUTION, label_free_scores, nearest_neighbours,
                                            neighbourhood_agreement)

IDENTITIES, CAMERAS, CAMERAS_PER_IDENTITY, CROPS_PER_CAMERA, DIMENSIONS = 60, 6, 2, 5, 128
#: Features with no identity, or almost none, that the uncorrected agreement ranked above identities.
DEGENERATE = ("1-D nuisance", "2-D nuisance", "identity in 2-D", "collapse")


def constructed_features(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """60 identities, each seen by 2 of 6 cameras, 5 crops per camera; candidate features of several kinds, the
    cameras, and pseudo-labels split by camera (one cluster per identity and camera), the same for every kind.

    The degenerate kinds: one or two scalars per crop (brightness-like) and no identity; the identities on a
    circle in one plane with a little in-plane noise; every crop one of 6 exact points."""
    generator = torch.Generator().manual_seed(seed)
    pids, cameras = [], []
    for pid in range(IDENTITIES):
        for camera in torch.randperm(CAMERAS, generator=generator)[:CAMERAS_PER_IDENTITY].tolist():
            pids += [pid] * CROPS_PER_CAMERA
            cameras += [camera] * CROPS_PER_CAMERA
    pids, cameras = torch.tensor(pids), torch.tensor(cameras)
    count = len(pids)

    def directions(number: int) -> torch.Tensor:
        return F.normalize(torch.randn(number, DIMENSIONS, generator=generator), dim=1)

    def noise(scale: float) -> torch.Tensor:
        return torch.randn(count, DIMENSIONS, generator=generator) * scale / DIMENSIONS ** 0.5

    def scalars() -> torch.Tensor:
        return torch.randn(count, 1, generator=generator)

    person, camera = directions(IDENTITIES)[pids], directions(CAMERAS)[cameras]
    base, first, second = directions(3)
    plane = torch.linalg.qr(torch.randn(DIMENSIONS, 2, generator=generator))[0]  # (d, 2) orthonormal
    circle = F.normalize(torch.randn(IDENTITIES, 2, generator=generator), dim=1)[pids]
    points = directions(6)[torch.randint(0, 6, (count,), generator=generator)]
    kinds = {"identity": person + noise(0.3), "noisier identity": person + noise(0.8), "random": noise(1.0),
             "identity + camera": person + camera + noise(0.3), "camera": camera + noise(0.3),
             "1-D nuisance": base + 0.5 * scalars() * first,
             "2-D nuisance": base + 0.5 * scalars() * first + 0.5 * scalars() * second,
             "identity in 2-D": (circle + 0.02 * torch.randn(count, 2, generator=generator)) @ plane.T,
             "collapse": points}
    pseudo_labels = torch.unique(pids * CAMERAS + cameras, return_inverse=True)[1]
    return {name: F.normalize(features, dim=1) for name, features in kinds.items()}, cameras, pseudo_labels


@pytest.mark.parametrize("seed", [0, 1])
def test_the_score_ranks_identity_features_above_noisier_random_camera_and_degenerate_features(seed):
    kinds, cameras, pseudo_labels = constructed_features(seed)
    rows = {name: label_free_scores(features, pseudo_labels, pseudo_labels, cameras)
            for name, features in kinds.items()}
    with_cameras = {name: row["label_free_score"] for name, row in rows.items()}
    assert (with_cameras["identity"] > with_cameras["noisier identity"] > with_cameras["random"]
            > with_cameras["camera"])
    assert with_cameras["identity"] > with_cameras["identity + camera"] > with_cameras["camera"]
    assert all(with_cameras["identity"] > with_cameras[name] for name in DEGENERATE)
    without = {name: label_free_scores(features, pseudo_labels, pseudo_labels, None)["label_free_score"]
               for name, features in kinds.items()}
    assert without["identity"] > without["noisier identity"] > without["random"]
    assert without["identity"] > without["identity + camera"] > without["random"]
    assert all(without["identity"] > without[name] for name in DEGENERATE)
    # what the chance correction fixed: the uncorrected cross-camera agreement ranks a brightness-like scalar and
    # identities squeezed into a plane above identities
    agreements = {name: row["cross_camera_agreement"] for name, row in rows.items()}
    assert agreements["1-D nuisance"] > agreements["identity"] < agreements["identity in 2-D"]
    # and what the agreement replaced: the share of neighbours from other cameras ranks random above identities
    assert rows["random"]["cross_camera_share"] > rows["identity"]["cross_camera_share"]


def test_crops_collapsed_onto_a_few_points_do_not_agree_by_construction():
    # ~100 identical crops per point: ties broken per row draw each crop's 10 neighbours from its ~99 twins, so a
    # partner shares about 10 * 10 / 99 of them (ties broken by index would make every list the same: 1.0)
    kinds, cameras, _ = constructed_features(0)
    collapse = neighbourhood_agreement(kinds["collapse"], cameras)
    assert collapse < 0.15 < neighbourhood_agreement(kinds["identity"], cameras)


def _slow_nearest(similarity: np.ndarray, i: int, neighbours: int, allowed, multipliers, offsets) -> set[int]:
    """i's nearest samples by (similarity at the tie resolution, then the tie-break hash), from the definition."""
    prime = 2**31 - 1
    candidates = [j for j in range(len(similarity)) if j != i and allowed(j)]
    key = {j: (round(float(similarity[i, j]) / TIE_RESOLUTION), (multipliers[i] * j + offsets[i]) % prime)
           for j in candidates}
    return set(sorted(candidates, key=lambda j: key[j], reverse=True)[:neighbours])


def _slow_agreement(features: np.ndarray, rows: list[int], neighbours: int, cameras: np.ndarray | None,
                    seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    multipliers = torch.randint(1, 2**31 - 1, (len(features),), generator=generator).tolist()
    offsets = torch.randint(0, 2**31 - 1, (len(features),), generator=generator).tolist()
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T

    def nearest(i: int, allowed) -> set[int]:
        return _slow_nearest(similarity, i, neighbours, allowed, multipliers, offsets)

    total = 0.0
    for i in rows:
        own = nearest(i, lambda j: True)
        partners = nearest(i, (lambda j: True) if cameras is None else (lambda j: cameras[j] != cameras[i]))
        total += sum(len(own & nearest(j, lambda _: True)) for j in partners) / neighbours ** 2
    return total / len(rows)


def _slow_null(features: np.ndarray, seed: int) -> np.ndarray:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    centred = unit - unit.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(unit))
    root = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    draw = torch.randn(unit.shape, generator=torch.Generator().manual_seed(seed)).double().numpy()
    return unit.mean(axis=0) + draw @ root


def _slow_kappa(features: np.ndarray, cameras: np.ndarray | None, seed: int) -> float:
    rows = list(range(len(features)))
    agreement = _slow_agreement(features, rows, 10, cameras, seed)
    chance = _slow_agreement(_slow_null(features, seed), rows, 10, cameras, seed)
    return (agreement - chance) / (1.0 - chance)


def _slow_score(features: np.ndarray, cameras: np.ndarray | None, seed: int) -> float:
    if cameras is None:
        return _slow_kappa(features, None, seed)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    camera_means = {camera: unit[cameras == camera].mean(axis=0) for camera in set(cameras.tolist())}
    standardised = unit - np.stack([camera_means[camera] for camera in cameras.tolist()])
    return 0.5 * (_slow_kappa(features, cameras, seed) + _slow_kappa(standardised, cameras, seed))


def _grouped_features(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """50 samples in 8 groups with 3 cameras, float32; the last 6 rows are one crop repeated (exact ties)."""
    rng = np.random.default_rng(seed)
    cameras = rng.integers(1, 4, 50)
    groups = rng.integers(0, 8, 50)
    features = rng.standard_normal((50, 12)) + 2.0 * rng.standard_normal((8, 12))[groups]
    features[44:] = features[44]
    return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32), cameras


@pytest.mark.parametrize("neighbours, with_cameras, max_rows", [(1, False, 4096), (5, True, 4096), (10, True, 20),
                                                               (10, False, 20)])
def test_neighbourhood_agreement_equals_a_direct_implementation(neighbours, with_cameras, max_rows):
    features, cameras = _grouped_features(neighbours + max_rows)
    given = torch.from_numpy(cameras) if with_cameras else None
    fast = neighbourhood_agreement(torch.from_numpy(features), given, neighbours, max_rows=max_rows, seed=3)
    rows = list(range(50)) if max_rows >= 50 else torch.randperm(50, generator=torch.Generator().manual_seed(3))[
        :max_rows].tolist()
    slow = _slow_agreement(features.astype(np.float64), rows, neighbours, cameras if with_cameras else None, 3)
    assert fast == pytest.approx(slow, abs=1e-6)


@pytest.mark.parametrize("with_cameras", [False, True])
def test_the_label_free_score_equals_a_direct_implementation(with_cameras):
    features, cameras = _grouped_features(7)
    given = torch.from_numpy(cameras) if with_cameras else None
    labels = torch.arange(50)
    fast = label_free_scores(torch.from_numpy(features), labels, labels, given, seed=5)["label_free_score"]
    slow = _slow_score(features.astype(np.float64), cameras if with_cameras else None, 5)
    assert fast == pytest.approx(slow, abs=1e-6)


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
