"""reid-train on real-world data and without labels: broken files, reproducibility, label-free choice, the
user's cluster target, a separate evaluation set, shipped configs by name and run-directory housekeeping."""

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from reid_sdk._utils.progress import LoggedProgress
from reid_sdk.cli.train import main
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.training.config import ConfigError, load_config, resolve_config_path
from reid_sdk.training.extraction import extract_records
from reid_sdk.training.camera_centering import center_per_camera
from reid_sdk.training.clustering import merge_stage
from reid_sdk.training.model_choice import (cross_camera_share, label_free_scores, model_choice_rule,
                                            neighbourhood_agreement, silhouette)
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.stage_result import StageResult
from reid_sdk.training.trainer import Trainer
from tests.test_trainer import TINY_RUN

TIMING_KEYS = {"train_seconds", "extract_seconds", "merge_seconds", "eval_seconds", "train_samples_per_s"}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("field") / "market1501"
    generate("market1501", root, SyntheticConfig(seed=5, sizes=PRESETS["tiny"]), workers=2)
    return root


def _config(root, fmt="market1501", *extra):
    return load_config(None, [f"data.root={root}", f"data.format={fmt}", *TINY_RUN, *extra])


def _without_timings(results):
    return [{k: v for k, v in result.as_dict().items() if k not in TIMING_KEYS} for result in results]


def test_broken_files_in_a_crop_folder_are_skipped_and_listed(market, tmp_path):
    crops = tmp_path / "crops"
    shutil.copytree(market / "bounding_box_train", crops / "camera1" / "day2")  # nested folders
    images = sorted((crops / "camera1" / "day2").glob("*.jpg"))
    truncated, empty, png_named = images[0], images[1], images[2]
    truncated.write_bytes(truncated.read_bytes()[:600])  # passes the header sniff, fails to decode
    empty.write_bytes(b"")
    png_named.rename(png_named.with_suffix(".png"))  # a JPEG named .png decodes by its content
    out = tmp_path / "run"
    args = ["--data", str(crops), "--format", "image-folder", "--out", str(out)]
    args += [f"--set={o}" for o in [*TINY_RUN, "clustering.max_stages=2"]]
    assert main(args) == 0
    listed = (out / "skipped_files.txt").read_text().split()
    assert sorted(listed) == sorted([str(truncated), str(empty)])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["clusters_before"] == len(images) - 2
    # a crop folder has no cameras: the label-free score is the neighbourhood agreement, no camera score is made up
    assert rows[1]["label_free_score"] <= rows[1]["neighbour_agreement"]  # kappa never exceeds the agreement it corrects
    assert "cross_camera_share" not in rows[1] and "cross_camera_agreement" not in rows[1]


def test_a_folder_with_nothing_decodable_is_bad_input_not_a_traceback(market, tmp_path, capsys):
    crops = tmp_path / "crops"
    crops.mkdir()
    for index, image in enumerate(sorted((market / "bounding_box_train").glob("*.jpg"))[:4]):
        (crops / f"{index}.jpg").write_bytes(image.read_bytes()[:600])
    args = ["--data", str(crops), "--format", "image-folder", "--out", str(tmp_path / "run")]
    args += [f"--set={o}" for o in TINY_RUN]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "reid-train: error: 0 of 4 training samples" in err and "Traceback" not in err


LABEL_FREE = ("train.select_by=label_free", "clustering.max_stages=2")


@pytest.fixture(scope="module")
def label_free_run(market, tmp_path_factory):
    out = tmp_path_factory.mktemp("label-free") / "run"
    return out, Trainer(_config(market, "market1501", *LABEL_FREE), out).run()


def test_two_runs_of_one_config_are_identical(market, label_free_run, tmp_path):
    out, first = label_free_run
    second = Trainer(_config(market, "market1501", *LABEL_FREE), tmp_path / "again").run()
    assert _without_timings(first) == _without_timings(second)
    a, b = RunDirectory(out).load_stage(1), RunDirectory(tmp_path / "again").load_stage(1)
    assert torch.equal(a["labels"], b["labels"])
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])


def test_label_free_choice_never_reads_identities(market, label_free_run, tmp_path):
    """The same run with every identity relabelled at random picks the same stage with the same scores."""
    out, rows = label_free_run
    trainer = Trainer(_config(market, "market1501", *LABEL_FREE), tmp_path / "shuffled")
    pids = sorted({r.pid for split in ("train", "query", "gallery") for r in trainer.splits.split(split)})
    mapping = dict(zip(pids, np.random.default_rng(0).permutation(pids).tolist()))
    for split in ("train", "query", "gallery"):
        setattr(trainer.splits, split, [dataclasses.replace(r, pid=mapping[r.pid]) for r in trainer.splits.split(split)])
    shuffled = trainer.run()
    assert [r.label_free_score for r in shuffled] == [r.label_free_score for r in rows]
    assert [r.best for r in shuffled] == [r.best for r in rows] and sum(r.best for r in rows) == 1
    payload = torch.load(out / "best.pt", weights_only=False)["metadata"]
    assert payload["selected_by"] == "label_free_score" and rows[payload["stage"]].best
    assert "label-free" in payload["why"] and payload["score"] == rows[payload["stage"]].label_free_score


def test_label_free_scores_are_the_stage_model_on_its_training_set(market, label_free_run, tmp_path):
    """Stage 1's scores, recomputed from its checkpoint: the fit (its features under stage 0's merge labels),
    the merge silhouette, the cross-camera share, and the cross-camera agreement, which is the label-free score
    when cameras are known."""
    out, rows = label_free_run
    run_dir = RunDirectory(out)
    trainer = Trainer(_config(market, "market1501", *LABEL_FREE), tmp_path / "check")
    trainer.model.load_state_dict(run_dir.load_stage(1)["model_state"])
    features = extract_records(trainer.model, trainer.splits.train, torch.device("cpu"),
                               channels_last=trainer.channels_last).features.numpy()
    cameras = np.array([record.camera for record in trainer.splits.train])
    learnt = run_dir.load_stage(0)["labels"]
    assert rows[1].fit_silhouette == pytest.approx(_slow_silhouette(features, learnt.numpy()), abs=1e-5)
    assert rows[1].merge_silhouette == pytest.approx(
        _slow_silhouette(features, run_dir.load_stage(1)["labels"].numpy()), abs=1e-5)
    one_neighbour = 1.0 / (len(features) * 10)  # re-extracted features may swap a tied 10th neighbour
    assert rows[1].cross_camera_share == pytest.approx(_slow_cross_camera_share(features, cameras),
                                                          abs=one_neighbour)
    agreement = neighbourhood_agreement(torch.from_numpy(features), torch.from_numpy(cameras), seed=1)  # stage 1's
    assert rows[1].cross_camera_agreement == pytest.approx(agreement, abs=0.02)  # a tied neighbour may swap
    singletons = torch.arange(len(features))
    expected = label_free_scores(torch.from_numpy(features), singletons, singletons, torch.from_numpy(cameras), seed=1)
    assert rows[1].label_free_score == pytest.approx(expected["label_free_score"], abs=0.02)


def _rows(*scores):
    return [StageResult(stage=stage, clusters_before=10, clusters_after=9, loss=1.0, label_free_score=score,
                        fit_silhouette=score, merge_silhouette=score, mAP=score) for stage, score in enumerate(scores)]


def test_rules_keep_the_stage_with_the_highest_score_the_first_on_ties():
    for rule in (model_choice_rule("label_free", has_eval_split=False),
                 model_choice_rule("label_free", has_eval_split=False, cameras_known=True),
                 model_choice_rule("map", has_eval_split=True)):
        assert rule.choose(_rows(0.1, 0.3, 0.3, 0.2)).stage == 1
        assert rule.choose(_rows(-0.2, -0.1)).stage == 1
    assert "other cameras" in model_choice_rule("label_free", has_eval_split=False, cameras_known=True).reason


@pytest.mark.parametrize("select_by, cameras_known", [("map", False), ("label_free", False), ("label_free", True)])
def test_a_new_stage_only_ever_moves_the_choice_to_itself(select_by, cameras_known):
    """best.pt is written as stages finish: the choice over a prefix is the previous choice or the newest row."""
    rule = model_choice_rule(select_by, has_eval_split=select_by == "map", cameras_known=cameras_known)
    rows = _rows(*np.random.default_rng(3).normal(0.1, 0.1, 40).tolist())
    for end in range(2, len(rows) + 1):
        assert rule.choose(rows[:end]) in (rule.choose(rows[: end - 1]), rows[end - 1])


def test_target_clusters_stops_where_asked(market, tmp_path):
    results = Trainer(_config(market, "market1501", "clustering.target_clusters=15"), tmp_path / "run").run()
    assert [(r.clusters_before, r.clusters_after) for r in results] == [(24, 18), (18, 15)]


def test_separate_labelled_eval_set_for_an_unlabelled_folder(market, tmp_path):
    config = _config(market / "bounding_box_train", "image-folder", f"data.eval_root={market}",
                     "data.eval_format=market1501", "clustering.max_stages=1")
    results = Trainer(config, tmp_path / "run").run()
    assert results[0].mAP is not None and results[0].pairwise_f is None  # evaluated, and no training pid was known
    with pytest.raises(ConfigError, match="select_by=map needs a labelled query / gallery split"):
        Trainer(_config(market / "bounding_box_train", "image-folder", "train.select_by=map"), tmp_path / "x")


def test_shipped_config_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("paper-market").name == "paper-market.yaml"
    assert load_config("cpu-smoke").model.backbone == "resnet18"
    with pytest.raises(ConfigError, match="shipped configs: cpu-smoke, paper-duke"):
        load_config("paper-nowhere")


def test_relative_data_root_is_stored_absolute(market, tmp_path, monkeypatch):
    monkeypatch.chdir(market.parent)
    assert load_config(None, [f"data.root={market.name}"]).data.root == str(market.resolve())


def test_old_checkpoints_pruned_stale_temporaries_removed_and_resume_falls_back(market, tmp_path, caplog):
    out = tmp_path / "run"
    config = _config(market, "market1501", "train.keep_checkpoints=2", "clustering.max_stages=3")
    rows = Trainer(config, out).run()
    run_dir = RunDirectory(out)
    assert run_dir.completed_stages() == [1, 2] and run_dir.best.is_file()
    stale = run_dir.stages / ".stage_03.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    run_dir.stage_path(2).write_bytes(b"not a checkpoint")  # the newest checkpoint is damaged
    with caplog.at_level(logging.WARNING, logger="reid_sdk"):
        resumed = Trainer(config, out, resume=True)
    assert resumed.start_stage == 2 and "resuming from the stage before it" in caplog.text
    again = resumed.run()
    assert not stale.exists()
    assert _without_timings(again) == _without_timings(rows)


def test_missing_imagenet_weights_are_a_start_up_error(market, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    args = ["--data", str(market), "--out", str(tmp_path / "run")]
    args += [f"--set={o}" for o in TINY_RUN] + ["--set", "model.pretrained=imagenet"]
    assert main(args) == 2
    assert "no ImageNet weights for resnet18: looked for resnet18-f37072fd.pth in" in capsys.readouterr().err


def _slow_silhouette(features, labels):
    distances = np.sqrt(np.maximum(((features[:, None, :] - features[None, :, :]) ** 2).sum(-1), 0))
    scores = []
    for i, label in enumerate(labels):
        own = labels == label
        if own.sum() == 1:
            scores.append(0.0)
            continue
        a = distances[i, own].sum() / (own.sum() - 1)
        b = min(distances[i, labels == other].mean() for other in set(labels.tolist()) - {label})
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


@pytest.mark.parametrize("seed", [0, 1])
def test_silhouette_equals_a_direct_implementation(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, 60)
    features = rng.standard_normal((60, 16)) + 2.0 * rng.standard_normal((7, 16))[labels]
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    _, labels = np.unique(labels, return_inverse=True)
    fast = silhouette(torch.from_numpy(features).float(), torch.from_numpy(labels))
    assert fast == pytest.approx(_slow_silhouette(features, labels), abs=1e-5)
    assert silhouette(torch.from_numpy(features).float(), torch.arange(60)) == 0.0


def _slow_cross_camera_share(features, cameras, neighbours=10):
    shares = []
    for i in range(len(features)):
        others = [j for j in range(len(features)) if j != i]
        nearest = sorted(others, key=lambda j: -float(features[i] @ features[j]))[:neighbours]
        shares.append(np.mean([cameras[j] != cameras[i] for j in nearest]))
    return float(np.mean(shares))


@pytest.mark.parametrize("neighbours", [1, 10, 59])
def test_cross_camera_share_equals_a_direct_implementation(neighbours):
    rng = np.random.default_rng(neighbours)
    cameras = rng.integers(1, 5, 60)
    features = rng.standard_normal((60, 16)) + 1.5 * rng.standard_normal((4, 16))[cameras - 1]
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    fast = cross_camera_share(torch.from_numpy(features).float(), torch.from_numpy(cameras), neighbours)
    assert fast == pytest.approx(_slow_cross_camera_share(features, cameras, neighbours), abs=1e-9)
    assert cross_camera_share(torch.from_numpy(features).float(), torch.ones(60, dtype=torch.long)) == 0.0
    with pytest.raises(ValueError, match="N cameras"):
        cross_camera_share(torch.from_numpy(features).float(), torch.ones(59, dtype=torch.long))


def test_progress_logs_lines_when_there_is_no_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="reid_sdk._utils.progress"):
        bar = LoggedProgress(range(5), "stage 0/3 epoch 1/2", unit="batch", interval=0.0)
        for _ in bar:
            bar.set_postfix(loss="1.234")
    lines = [r.message for r in caplog.records]
    assert len(lines) == 6 and lines[-1].startswith("stage 0/3 epoch 1/2: 5/5 batch") and "loss=1.234" in lines[-1]
    assert [" left" in line for line in lines] == [False, True, True, True, False, False]  # from the 2nd to the end


def test_stage_result_round_trips_through_its_metrics_row():
    result = _rows(0.3)[0]
    result.cross_camera_share, result.best = 0.25, True
    row = result.as_dict()
    assert "rank1" not in row and row["cross_camera_share"] == 0.25  # unmeasured scores are left out
    assert StageResult.from_dict(json.loads(json.dumps(row))) == result
    with pytest.raises(ValueError, match="unknown key.*colour"):
        StageResult.from_dict({**row, "colour": "red"})
    with pytest.raises(ValueError, match="unknown key\\(s\\) none and lacks loss, label_free_score"):
        StageResult.from_dict({key: value for key, value in row.items() if key not in ("loss", "label_free_score")})
    with pytest.raises(ValueError, match="stage 0 has no 'rank1' score"):
        result.score("rank1")


@pytest.mark.parametrize("override, message", [
    ("clustering.merge_percent=0.99", "merge_percent=0.99 merges 24 of 24 samples per stage, which leaves no stage"),
    ("clustering.target_clusters=30", "target_clusters=30 is not below the 24 training samples"),
])
def test_a_schedule_that_runs_no_stage_is_refused_at_start_up(market, tmp_path, capsys, override, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(_config(market, "market1501", override), tmp_path / "run")
    settings = [arg for value in (*TINY_RUN, override) for arg in ("--set", value)]
    assert main(["--data", str(market), "--out", str(tmp_path / "cli"), *settings]) == 2
    assert message.split(" which")[0] in capsys.readouterr().err and not (tmp_path / "cli" / "best.pt").exists()


def test_a_device_torch_names_but_cannot_train_on_is_refused(market, tmp_path):
    with pytest.raises(ValueError, match="device 'meta': reid-sdk runs on cpu or cuda, not meta"):
        Trainer(_config(market, "market1501", "train.device=meta"), tmp_path / "run")


@pytest.mark.parametrize("option", ["clustering.camera_centering=true", "train.loss=camera_proxy"])
def test_camera_options_need_cameras(market, tmp_path, option):
    with pytest.raises(ConfigError, match=r"need\(s\) the camera of every training sample.*image-folder"):
        Trainer(_config(market / "bounding_box_train", "image-folder", option), tmp_path / "run")


def test_camera_aware_run_merges_the_centred_features_of_its_model(market, tmp_path):
    """Both camera options on: stage 0 trains against camera proxies (a finite loss) and merges what the stage
    model's features say once each camera's mean is removed."""
    config = _config(market, "market1501", "clustering.camera_centering=true", "train.loss=camera_proxy",
                     "clustering.max_stages=1")
    trainer = Trainer(config, tmp_path / "run")
    result = trainer.run()[0]
    assert np.isfinite(result.loss) and result.clusters_after == 18
    trainer.model.load_state_dict(RunDirectory(tmp_path / "run").load_stage(0)["model_state"])
    features = extract_records(trainer.model, trainer.splits.train, torch.device("cpu"),
                               channels_last=trainer.channels_last).features
    cameras = torch.tensor([record.camera for record in trainer.splits.train])
    expected = merge_stage(center_per_camera(features, cameras), torch.arange(len(features)), 6)
    assert torch.equal(RunDirectory(tmp_path / "run").load_stage(0)["labels"], expected)
