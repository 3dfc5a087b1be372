"""The repelled loss and its lookup table, and the camera-aware proxies, against direct computations; V's
alignment after a merge."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_sdk.training.clustering import merge_stage
from reid_sdk.training.memory import CameraProxyMemory, ClusterMemory


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _centroids_by_loop(embeddings, labels):
    """Row c: normalised mean of the normalised embeddings labelled c, one cluster at a time."""
    return np.stack([_unit(_unit(embeddings[labels == c]).mean(axis=0)) for c in range(labels.max() + 1)])


def test_table_rows_are_normalised_member_means():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(40, 6)) * rng.uniform(0.5, 3.0, size=(40, 1))
    labels = rng.permutation(np.arange(40) % 7)
    memory = ClusterMemory.from_members(torch.tensor(embeddings, dtype=torch.float32), torch.tensor(labels))
    np.testing.assert_allclose(memory.table.numpy(), _centroids_by_loop(embeddings, labels), atol=1e-6)


def test_table_follows_the_new_labels_after_a_merge():
    rng = np.random.default_rng(1)
    features = _unit(rng.normal(size=(30, 5))).astype(np.float32)
    embeddings = rng.normal(size=(30, 4)).astype(np.float32)
    old = np.arange(30) % 12
    new = merge_stage(features, old, num_merges=5)
    assert new.max() + 1 == 7
    for cluster in range(12):  # a merge never splits an old cluster
        assert len(np.unique(new[old == cluster])) == 1
    memory = ClusterMemory.from_members(torch.tensor(embeddings), torch.tensor(new))
    assert memory.num_clusters == 7
    np.testing.assert_allclose(memory.table.numpy(), _centroids_by_loop(embeddings, new), atol=1e-6)


def test_loss_is_cross_entropy_of_scaled_cosine_logits():
    rng = np.random.default_rng(2)
    table = _unit(rng.normal(size=(5, 8)))
    embeddings = _unit(rng.normal(size=(6, 8)))
    labels = np.array([0, 4, 4, 2, 1, 3])
    memory = ClusterMemory(torch.tensor(table, dtype=torch.float32), temperature=0.1)
    logits = embeddings @ table.T / 0.1
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_probabilities[np.arange(6), labels].mean()
    actual = memory.loss(torch.tensor(embeddings, dtype=torch.float32), torch.tensor(labels))
    assert actual.item() == pytest.approx(expected, rel=1e-5)


def test_ema_update_matches_the_sequential_definition_with_repeated_labels():
    rng = np.random.default_rng(3)
    table = _unit(rng.normal(size=(6, 5)))
    embeddings = _unit(rng.normal(size=(12, 5)))
    labels = np.array([1, 3, 1, 1, 0, 3, 5, 5, 2, 1, 0, 4])
    expected = table.copy()
    for vector, label in zip(embeddings, labels):
        expected[label] = _unit(0.5 * expected[label] + 0.5 * vector)
    memory = ClusterMemory(torch.tensor(table, dtype=torch.float32), momentum=0.5)
    memory.update(torch.tensor(embeddings, dtype=torch.float32), torch.tensor(labels))
    np.testing.assert_allclose(memory.table.numpy(), expected, atol=1e-6)


def test_update_does_not_touch_other_rows_and_ignores_gradients():
    table = F.normalize(torch.randn(4, 3), dim=1)
    memory = ClusterMemory(table.clone(), momentum=0.2)
    embedding = F.normalize(torch.randn(1, 3), dim=1).requires_grad_()
    memory.update(embedding, torch.tensor([2]))
    torch.testing.assert_close(memory.table[[0, 1, 3]], table[[0, 1, 3]])
    torch.testing.assert_close(memory.table[2], F.normalize(0.2 * table[2] + 0.8 * embedding.detach()[0], dim=0))
    assert not memory.table.requires_grad


def test_bad_tables_and_labels():
    with pytest.raises(ValueError, match="C x D"):
        ClusterMemory(torch.zeros(3))
    with pytest.raises(ValueError, match=r"contiguous 0..C-1; clusters \[1\]"):
        ClusterMemory.from_members(torch.randn(3, 2), torch.tensor([0, 2, 2]))


def _camera_proxy_setup(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4])
    cameras = torch.tensor([1, 5, 1, 1, 7, 5, 7, 1, 5, 7, 7, 7])
    embeddings = torch.randn(len(labels), 6, generator=generator)
    return embeddings, labels, cameras


def test_camera_proxies_are_the_mean_of_each_cluster_and_camera():
    embeddings, labels, cameras = _camera_proxy_setup()
    memory = CameraProxyMemory.from_members(embeddings, labels, cameras)
    pairs = sorted({(int(l), int(c)) for l, c in zip(labels, cameras)})
    assert memory.num_proxies == len(pairs)
    for proxy, (label, camera) in enumerate(pairs):
        members = (labels == label) & (cameras == camera)
        expected = F.normalize(F.normalize(embeddings[members], dim=1).mean(0), dim=0)
        torch.testing.assert_close(memory.proxies.table[proxy], expected)
        assert (int(memory.proxy_cluster[proxy]), int(sorted(set(cameras.tolist()))[memory.proxy_camera[proxy]])) \
            == (label, camera)
        assert bool((memory.sample_targets[members] == proxy).all())


def _slow_camera_proxy_loss(table, proxy_cluster, proxy_camera, embeddings, targets, temperature, weight, negatives):
    total = 0.0
    for v, target in zip(F.normalize(embeddings, dim=1).tolist(), targets.tolist()):
        scores = [sum(a * b for a, b in zip(v, row)) / temperature for row in table.tolist()]
        same_camera = [k for k in range(len(scores)) if proxy_camera[k] == proxy_camera[target]]
        within = -scores[target] + math.log(sum(math.exp(scores[k]) for k in same_camera))
        positives = [k for k in range(len(scores)) if proxy_cluster[k] == proxy_cluster[target]]
        others = sorted((scores[k] for k in range(len(scores)) if k not in positives), reverse=True)[:negatives]
        denominator = math.log(sum(math.exp(scores[k]) for k in positives) + sum(math.exp(s) for s in others))
        cross = sum(denominator - scores[k] for k in positives) / len(positives)
        total += within + weight * cross
    return total / len(targets)


@pytest.mark.parametrize("negatives", [1, 3, 50])
def test_camera_proxy_loss_equals_a_direct_implementation(negatives):
    embeddings, labels, cameras = _camera_proxy_setup()
    memory = CameraProxyMemory.from_members(embeddings, labels, cameras, temperature=0.5, weight=0.7,
                                            negatives=negatives)
    batch = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    targets = memory.sample_targets[[0, 3, 4, 9, 11]]
    expected = _slow_camera_proxy_loss(memory.proxies.table, memory.proxy_cluster.tolist(),
                                       memory.proxy_camera.tolist(), batch, targets, 0.5, 0.7, negatives)
    assert float(memory.loss(F.normalize(batch, dim=1), targets)) == pytest.approx(expected, rel=1e-5)


def test_camera_proxy_update_moves_only_the_samples_own_proxy():
    embeddings, labels, cameras = _camera_proxy_setup()
    memory = CameraProxyMemory.from_members(embeddings, labels, cameras, momentum=0.3)
    before = memory.proxies.table.clone()
    target = memory.sample_targets[4:5]
    memory.update(F.normalize(torch.ones(1, 6), dim=1), target)
    changed = torch.nonzero((memory.proxies.table != before).any(dim=1)).flatten().tolist()
    assert changed == [int(target)]


def test_camera_proxies_refuse_a_camera_count_that_is_not_one_per_sample():
    embeddings, labels, cameras = _camera_proxy_setup()
    with pytest.raises(ValueError, match="one camera per sample"):
        CameraProxyMemory.from_members(embeddings, labels, cameras[:-1])
