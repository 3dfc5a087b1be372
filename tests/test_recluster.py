"""The re-clustering schedule: P x K batches, the paper's linkage to a threshold, and the loop end to end (both
pseudo-labels, both memories, outliers, resume mid-run, refusals)."""

import shutil

import numpy as np
import pytest
import torch

from reid_sdk.evaluation import same_partition
from reid_sdk.model import load_checkpoint
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.training.clustering import cluster_distance_matrix, merge_stage
from reid_sdk.training.config import ClusteringConfig, ConfigError, ReclusterConfig, load_config
from reid_sdk.training.extraction import extract_records
from reid_sdk.training.samplers import GroupBatchSampler
from reid_sdk.training.memory import CameraProxyMemory, ClusterMemory
from reid_sdk.training.pseudo_labels import (dbscan_settings, epoch_pseudo_labels, linkage_to_threshold,
                                             outliers_marked)
from reid_sdk.training.recluster import ReclusterTrainer
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.schedules import build_trainer
from tests.test_trainer import TINY_RUN

RECLUSTER = ["train.schedule=recluster", "recluster.epochs=3", "recluster.warmup_epochs=1", "recluster.iterations=3", "recluster.instances=2",
             "recluster.k1=6", "recluster.k2=2", "recluster.min_samples=2", "recluster.eps=0.7",
             "recluster.cross_camera_from_epoch=1", "recluster.linkage_threshold=1.0"]


# ------------------------------------------------------------------------------------------- P x K batches

def test_batches_hold_p_distinct_groups_of_k_and_never_an_outlier():
    groups = np.array([0, 0, 0, 1, 1, -1, 2, 2, 2, 2, -1, 3])
    sampler = GroupBatchSampler(groups, groups_per_batch=3, instances=2, batches=20)
    sampler.set_seed(5)
    batches = list(sampler)
    assert len(batches) == 20
    for batch in batches:
        indices = [index for index, _ in batch]
        drawn = groups[indices]
        assert len(indices) == 6 and (drawn >= 0).all()
        assert sorted(np.unique(drawn, return_counts=True)[1]) == [2, 2, 2]  # P = 3 groups, K = 2 each
        for group in np.unique(drawn):
            members = [index for index in indices if groups[index] == group]
            if (groups == group).sum() >= 2:
                assert len(set(members)) == 2  # without replacement where the group has K
    sampler.set_seed(5)
    assert list(sampler) == batches  # the epoch's seed alone decides


def test_ranks_split_one_global_batch():
    groups = np.repeat(np.arange(6), 3)
    whole = GroupBatchSampler(groups, 4, 2, batches=3)
    shares = [GroupBatchSampler(groups, 4, 2, batches=3, rank=rank, world_size=2) for rank in (0, 1)]
    for sampler in (whole, *shares):
        sampler.set_seed(9)
    for batch, first, second in zip(whole, *shares):
        assert first == batch[0::2] and second == batch[1::2]


def test_fewer_groups_than_p_gives_every_group_with_replacement_where_small():
    groups = np.array([0, 0, 1, -1])
    for batch in GroupBatchSampler(groups, groups_per_batch=8, instances=3, batches=2):
        indices = [index for index, _ in batch]
        assert len(indices) == 6 and sorted(groups[indices]) == [0, 0, 0, 1, 1, 1]
        assert set(indices) <= {0, 1, 2}


def test_sampler_refuses_no_group():
    with pytest.raises(ValueError, match="at least one sample in a group"):
        GroupBatchSampler(np.array([-1, -1]), 2, 2, 1)


# ------------------------------------------------------------------------------- the linkage to a threshold

def _blobs(seed=0, identities=6, per_identity=5, dim=32, noise=0.25):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, dim))
    features = np.repeat(centres, per_identity, axis=0) + noise * rng.normal(size=(identities * per_identity, dim))
    features = np.vstack([features, 3 * rng.normal(size=(3, dim))])  # three loners
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return torch.from_numpy(features.astype(np.float32)), np.repeat(np.arange(identities), per_identity)


def test_merge_stage_with_max_distance_walks_only_pairs_within_it():
    features, _ = _blobs()
    labels = torch.arange(len(features))
    distances = cluster_distance_matrix(features, labels)
    threshold = float(distances[distances < float("inf")].quantile(0.02))
    limited = merge_stage(features, labels, 1000, max_distance=threshold)
    # the plain walk cut at the threshold: merging every pair within it (D computed once, union-find)
    pairs = torch.nonzero(torch.triu(distances <= threshold, diagonal=1))
    expected = np.arange(len(features))
    for a, b in pairs.tolist():
        expected[expected == expected[b]] = expected[a]
    assert same_partition(limited.numpy(), expected)
    merges = len(features) - int(limited.max()) - 1
    unlimited = merge_stage(features, labels, merges + 3)
    assert int(unlimited.max()) == int(limited.max()) - 3  # the quota alone merges further


def test_linkage_to_threshold_stops_when_every_pair_is_farther_and_marks_singletons():
    features, _ = _blobs()
    config = ClusteringConfig(merge_percent=0.1)
    threshold = 0.9
    labels = linkage_to_threshold(features, config, threshold)
    assert (labels[-3:] == -1).all() and (labels[:-3] >= 0).all()
    with_loners = labels.copy()
    with_loners[labels == -1] = labels.max() + 1 + np.arange((labels == -1).sum())
    distances = cluster_distance_matrix(features, torch.from_numpy(with_loners))
    assert float(distances.min()) > threshold  # no pair left within the threshold
    again = torch.arange(len(features))  # the same rounds by hand
    while True:
        merged = merge_stage(features, again, 4, max_distance=threshold)
        if int(merged.max()) == int(again.max()):
            break
        again = merged
    np.testing.assert_array_equal(outliers_marked(again.numpy()), labels)


def test_linkage_pseudo_labels_recover_identities_and_centering_removes_a_camera_offset():
    features, identities = _blobs(noise=0.15)
    cameras = torch.tensor([index % 2 for index in range(len(features))])
    shifted = features + 0.9 * torch.nn.functional.one_hot(cameras, features.shape[1]).float()
    shifted = torch.nn.functional.normalize(shifted, dim=1)
    recluster = ReclusterConfig(pseudo_labels="linkage", linkage_threshold=0.9)
    plain = epoch_pseudo_labels(shifted, recluster, ClusteringConfig())
    centred = epoch_pseudo_labels(shifted, recluster, ClusteringConfig(camera_centering=True), cameras)
    assert same_partition(centred[: len(identities)], identities)
    assert not same_partition(plain[: len(identities)], identities)


def test_dbscan_settings_follow_the_data_size_unless_set():
    assert dbscan_settings(ReclusterConfig(), 600) == {"eps": 0.5, "min_samples": 2, "k1": 10, "k2": 6}
    assert dbscan_settings(ReclusterConfig(), 12_936) == {"eps": 0.6, "min_samples": 4, "k1": 30, "k2": 6}
    assert dbscan_settings(ReclusterConfig(eps=0.7, k2=3), 600) == {"eps": 0.7, "min_samples": 2, "k1": 10, "k2": 3}


def test_outliers_marked_renumbers_and_keeps_order():
    np.testing.assert_array_equal(outliers_marked(np.array([4, 4, 7, 2, 2, 9])), [1, 1, -1, 0, 0, -1])
    np.testing.assert_array_equal(outliers_marked(np.array([0, 1, 2])), [-1, -1, -1])


# ----------------------------------------------------------------------------------------- the loop

@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("recluster") / "market1501"
    generate("market1501", root, SyntheticConfig(seed=3, sizes=PRESETS["tiny"]), workers=2)
    return root


def _config(root, *extra):
    return load_config(None, [f"data.root={root}", *TINY_RUN, *RECLUSTER, *extra])


@pytest.fixture(scope="module", params=["dbscan+cluster", "linkage+camera_proxy"])
def full_run(request, market, tmp_path_factory):
    labels, memory = request.param.split("+")
    extra = [f"recluster.pseudo_labels={labels}"] + (["train.loss=camera_proxy"] if memory == "camera_proxy" else [])
    out = tmp_path_factory.mktemp("runs") / request.param
    trainer = build_trainer(_config(market, *extra), out)
    return out, trainer, trainer.run()


def test_trainer_builds_the_recluster_schedule_and_writes_a_row_per_epoch(full_run):
    out, trainer, results = full_run
    assert isinstance(trainer, ReclusterTrainer)
    run_dir = RunDirectory(out)
    assert run_dir.completed_stages() == [0, 1, 2] and [r.stage for r in results] == [0, 1, 2]
    assert run_dir.best.is_file() and sum(r.best for r in results) == 1
    assert results[0].clusters_before == len(trainer.splits.train)  # the warm-up epoch: every sample alone
    for result in results:
        assert result.outliers is not None and 0 <= result.outliers <= len(trainer.splits.train)
        assert result.clusters_before >= 1 and result.mAP is not None and result.mAP_camstd is not None
    _, payload = load_checkpoint(run_dir.best)
    assert payload["metadata"]["config"]["train"]["schedule"] == "recluster"


def test_each_epoch_clusters_afresh_from_its_models_features(full_run):
    """A checkpoint's labels are the clustering of that epoch's model's features (outliers -1), not a merge
    of the previous labels: recomputed here from the checkpoint."""
    out, trainer, _ = full_run
    run_dir = RunDirectory(out)
    cameras = torch.tensor([record.camera for record in trainer.splits.train])
    for epoch in run_dir.completed_stages():
        state = run_dir.load_stage(epoch)
        trainer.model.load_state_dict(state["model_state"])
        features = extract_records(trainer.model, trainer.splits.train, torch.device("cpu"), 32, 0, None, None,
                                   trainer.channels_last, desc="check").features
        expected = epoch_pseudo_labels(features, trainer.config.recluster, trainer.config.clustering, cameras)
        np.testing.assert_array_equal(state["labels"].numpy(), expected)
        assert "optimizer_state" in state


def test_resume_mid_run_repeats_the_uninterrupted_run(full_run, tmp_path):
    out, _, results = full_run
    stopped = tmp_path / "stopped"
    shutil.copytree(out, stopped)
    RunDirectory(stopped).stage_path(2).unlink()  # as if killed during epoch 2
    resumed = build_trainer(load_config(RunDirectory(stopped).config), stopped, resume=True)
    assert resumed.start_stage == 2
    rows = resumed.run()
    assert [r.loss for r in rows] == pytest.approx([r.loss for r in results], rel=1e-5)
    np.testing.assert_array_equal(RunDirectory(stopped).load_stage(2)["labels"].numpy(),
                                  RunDirectory(out).load_stage(2)["labels"].numpy())


def test_camera_proxies_use_caps_settings_and_train_within_camera_only_before_the_cross_camera_epoch(market, tmp_path):
    trainer = build_trainer(_config(market, "train.loss=camera_proxy"), tmp_path / "run")
    extracted = trainer._extract_train()
    labels = torch.tensor([index % 3 if index % 5 else -1 for index in range(len(trainer.splits.train))])
    early, targets = trainer._epoch_memory(extracted, labels, epoch=0)
    late, _ = trainer._epoch_memory(extracted, labels, epoch=1)
    assert isinstance(early, CameraProxyMemory) and early.weight == 0.0 and late.weight == 0.5
    assert early.proxies.temperature == 0.07 and early.proxies.momentum == 0.2
    assert (targets[labels == -1] == -1).all() and (targets[labels >= 0] >= 0).all()
    proxy_cluster = early.proxy_cluster[targets[labels >= 0]]
    torch.testing.assert_close(proxy_cluster.cpu(), labels[labels >= 0])  # each sample's proxy is of its cluster


def test_cluster_memory_uses_cluster_contrasts_settings(market, tmp_path):
    trainer = build_trainer(_config(market), tmp_path / "run")
    extracted = trainer._extract_train()
    labels = torch.tensor([index % 3 if index % 5 else -1 for index in range(len(trainer.splits.train))])
    memory, targets = trainer._epoch_memory(extracted, labels, epoch=0)
    assert isinstance(memory, ClusterMemory) and memory.num_clusters == 3
    assert memory.temperature == 0.05 and memory.momentum == 0.1
    torch.testing.assert_close(targets, labels)


def test_refusals_at_start_up_and_when_everything_is_an_outlier(market, tmp_path):
    with pytest.raises(ConfigError, match="not a multiple of recluster.instances"):
        build_trainer(_config(market, "recluster.instances=3"), tmp_path / "a")
    with pytest.raises(ConfigError, match="every one of the 24 samples out as an outlier: raise recluster.eps"):
        build_trainer(_config(market, "recluster.eps=0.0001", "recluster.min_samples=4"), tmp_path / "c").run()


@pytest.mark.parametrize("schedule", ["stages", "recluster"])
def test_patience_stops_once_the_chosen_score_has_not_improved(market, tmp_path, monkeypatch, caplog, schedule):
    """mAP falls after the first stage / epoch: with patience 1 the run stops after the second, best.pt the first."""
    from reid_sdk.training.trainer import Trainer

    scores = iter([0.5, 0.4, 0.3, 0.2])
    monkeypatch.setattr(Trainer, "_evaluate", lambda self: {"mAP": (score := next(scores)), "rank1": score})
    extra = ["train.patience=1", "train.select_by=map", "recluster.epochs=4"]
    config = _config(market, *extra) if schedule == "recluster" else load_config(
        None, [f"data.root={market}", *TINY_RUN, "clustering.merge_percent=0.2", *extra])
    with caplog.at_level("INFO"):
        results = build_trainer(config, tmp_path / "run").run()
    assert [result.stage for result in results] == [0, 1] and results[0].best
    assert "has not improved for 1" in caplog.text and "not run" in caplog.text


def test_tracklets_train_as_clips_in_the_recluster_schedule(tmp_path):
    """Video: each tracklet is one sample, trained as a clip, clustered on the mean of its frames."""
    root = tmp_path / "mars"
    generate("mars", root, SyntheticConfig(seed=3, sizes=PRESETS["tiny"]), workers=2)
    config = load_config(None, [f"data.root={root}", "data.format=mars", *TINY_RUN, *RECLUSTER,
                                "recluster.epochs=2"])
    trainer = build_trainer(config, tmp_path / "run")
    results = trainer.run()
    assert trainer.video and [result.stage for result in results] == [0, 1]
    assert results[0].clusters_before == len(trainer.splits.train) and results[1].mAP is not None


def test_resume_refuses_a_stage_run_whose_config_now_names_the_recluster_schedule(market, tmp_path, capsys):
    from reid_sdk.cli.train import main
    from reid_sdk.training.config import save_config

    out = tmp_path / "run"
    build_trainer(load_config(None, [f"data.root={market}", *TINY_RUN, "clustering.max_stages=1"]), out).run()
    save_config(_config(market), RunDirectory(out).config)  # config.yaml edited to the other schedule
    assert main(["--out", str(out), "--resume"]) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reid-train: error:")]
    assert "holds no optimiser state: it was written by Algorithm 1's stages" in error
