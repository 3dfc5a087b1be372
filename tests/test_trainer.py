"""reid-train end to end on tiny synthetic data: run directory, stage semantics, resume, errors, NaN, video."""

import json
import shutil

import numpy as np
import pytest
import torch

from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.model import load_checkpoint, save_checkpoint
from reid_sdk.cli.train import main
from reid_sdk.training.config import load_config
from reid_sdk.training.memory import ClusterMemory
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.stage_sgd import TrainingDiverged, stage_plan
from reid_sdk.training.stage_result import StageResult
from reid_sdk.training.trainer import Trainer, time_left
from tests.helpers import tiny_model

TINY_RUN = ["model.backbone=resnet18", "model.input_size=[64, 32]", "model.pretrained=null", "model.embedding_dim=64",
            "train.first_stage_epochs=2", "train.lr_step_epoch=1", "train.later_stage_epochs=1",
            "train.later_stage_epochs_video=1", "train.batch_size=8", "train.device=cpu", "train.eval_batch_size=32",
            "data.num_workers=0", "clustering.merge_percent=0.25", "data.frames_per_tracklet=2",
            "train.keep_checkpoints=0"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    config = SyntheticConfig(seed=3, sizes=PRESETS["tiny"])
    for layout in ("market1501", "mars", "crops"):
        generate(layout, root / layout, config, workers=2)
    return root


def _config(data_root, layout="market1501", *extra):
    return load_config(None, [f"data.root={data_root}", f"data.format={layout}", *TINY_RUN, *extra])


@pytest.fixture(scope="module")
def full_run(datasets, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "market"
    rows = [result.as_dict() for result in Trainer(_config(datasets / "market1501"), out).run()]
    return out, rows  # as metrics.jsonl holds them


def _stage_labels(out):
    run_dir = RunDirectory(out)
    return [run_dir.load_stage(stage)["labels"].numpy() for stage in run_dir.completed_stages()]


def test_run_directory_holds_config_checkpoints_metrics_and_plot(full_run, datasets):
    out, rows = full_run
    run_dir = RunDirectory(out)
    assert load_config(run_dir.config) == _config(datasets / "market1501")
    assert run_dir.completed_stages() == [0, 1, 2]
    lines = [json.loads(line) for line in run_dir.metrics.read_text().splitlines()]
    assert lines == rows and [row["stage"] for row in rows] == [0, 1, 2]
    assert all(0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["pairwise_f"] <= 1.0 for row in rows)
    assert run_dir.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, payload = load_checkpoint(run_dir.best)
    best_stage = max(rows, key=lambda row: row["mAP"])["stage"]
    assert payload["metadata"]["stage"] == best_stage and payload["metadata"]["mAP"] == max(r["mAP"] for r in rows)
    assert payload["metadata"]["config"]["clustering"]["linkage"] == "imd_cpd" and model.feature_dim == 512
    state = run_dir.load_stage(2)
    assert set(state) == {"format", "stage", "model_config", "model_state", "labels", "metrics"}
    assert int(state["labels"].max()) + 1 == 6 and state["metrics"] == rows  # stage 2's labels, after its merge


def test_cluster_counts_fall_by_m_and_merges_are_monotone(full_run):
    out, rows = full_run
    assert [(row["clusters_before"], row["clusters_after"]) for row in rows] == [(24, 18), (18, 12), (12, 6)]
    previous = np.arange(24)
    for labels in _stage_labels(out):
        assert sorted(np.unique(labels)) == list(range(labels.max() + 1))  # contiguous
        for cluster in np.unique(previous):  # each old cluster lies inside one new cluster
            assert len(np.unique(labels[previous == cluster])) == 1
        previous = labels


def test_resume_after_a_stop_reaches_the_same_labels(full_run, tmp_path):
    out, rows = full_run
    stopped = tmp_path / "stopped"
    shutil.copytree(out, stopped)
    for stage in (1, 2):  # as if killed during stage 1
        RunDirectory(stopped).stage_path(stage).unlink()
    resumed = Trainer(load_config(RunDirectory(stopped).config), stopped, resume=True)
    assert resumed.start_stage == 1
    resumed_rows = resumed.run()
    for expected, actual in zip(_stage_labels(out), _stage_labels(stopped)):
        np.testing.assert_array_equal(actual, expected)
    assert [r.loss for r in resumed_rows] == pytest.approx([r["loss"] for r in rows], rel=1e-5)
    assert [r.mAP for r in resumed_rows] == pytest.approx([r["mAP"] for r in rows], abs=1e-6)


def test_resume_refuses_training_data_changed_since_the_run_started(datasets, tmp_path, capsys):
    data, out = tmp_path / "market1501", tmp_path / "run"
    shutil.copytree(datasets / "market1501", data)
    Trainer(_config(data, "market1501", "clustering.max_stages=1"), out).run()
    images = sorted((data / "bounding_box_train").iterdir())
    other = next(image for image in images[1:] if image.stat().st_size != images[0].stat().st_size)
    size = images[0].stat().st_size
    images[0].write_bytes(other.read_bytes())  # another person's image under the old name: same count, same order
    assert main(["--out", str(out), "--resume"]) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reid-train: error:")]
    assert (f"1 training sample(s) changed since the run started, e.g. bounding_box_train/{images[0].name} "
            f"(size {size} -> {other.stat().st_size}, modified ") in error
    RunDirectory(out).data_fingerprint.unlink()  # as a run from before fingerprints: resumes, with a warning
    assert main(["--out", str(out), "--resume"]) == 0
    assert "records no fingerprint of its training data" in capsys.readouterr().err
    assert RunDirectory(out).read_data_fingerprint() is not None  # later resumes are checked


def test_an_existing_run_is_not_overwritten(full_run, datasets, capsys):
    out, _ = full_run
    args = ["--data", str(datasets / "market1501"), "--format", "market1501", "--out", str(out)]
    args += [f"--set={override}" for override in TINY_RUN]
    assert main(args) == 2
    assert "already holds a run (stages up to 2); pass --resume" in capsys.readouterr().err


def test_start_up_errors_are_one_line_and_exit_2(datasets, tmp_path, capsys):
    base = ["--out", str(tmp_path / "run")] + [f"--set={override}" for override in TINY_RUN]
    assert main(base + ["--data", str(tmp_path / "nowhere"), "--format", "market1501"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(base + ["--data", str(datasets / "market1501"), "--format", "market1501",
                        "--set", "clustering.merge_percent=2"]) == 2
    assert "merge_percent (p) must be in (0, 1)" in capsys.readouterr().err
    other = save_checkpoint(tiny_model(pooling="avg"), tmp_path / "other.pt")
    assert main(base + ["--data", str(datasets / "market1501"), "--format", "market1501",
                        "--set", f"train.init_checkpoint={other}"]) == 2
    assert "another model config: pooling: 'avg' != 'mixed'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "stages").exists(), "nothing is written before the inputs are valid"


def test_nan_loss_stops_the_stage_and_keeps_the_last_good_checkpoint(datasets, tmp_path, monkeypatch):
    real_loss = ClusterMemory.loss

    def loss_nan_after_stage_0(self, embeddings, labels):
        value = real_loss(self, embeddings, labels)
        return value * float("nan") if self.num_clusters < 24 else value

    monkeypatch.setattr(ClusterMemory, "loss", loss_nan_after_stage_0)
    trainer = Trainer(_config(datasets / "market1501"), tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="loss became nan at stage 1/2 epoch 1/1"):
        trainer.run()
    run_dir = RunDirectory(tmp_path / "run")
    assert run_dir.completed_stages() == [0] and run_dir.best.is_file()
    assert len(run_dir.metrics.read_text().splitlines()) == 1


def test_a_full_disk_at_a_checkpoint_is_one_line_exit_2_and_keeps_the_run(datasets, tmp_path, capsys, monkeypatch):
    from collections import namedtuple

    real_save = torch.save

    def save_until_the_disk_fills(state, handle, *args, **kwargs):
        if "stage_01" in getattr(handle, "name", ""):  # what torch says when the disk fills under its zip writer
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real_save(state, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: namedtuple("usage", "total used free")(10**9, 10**9, 0))
    out = tmp_path / "run"
    args = ["--data", str(datasets / "market1501"), "--format", "market1501", "--out", str(out)]
    assert main(args + [f"--set={override}" for override in TINY_RUN + ["clustering.max_stages=2"]]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.splitlines()[-1] == (
        f"reid-train: error: no space left on device writing {out / 'stages' / 'stage_01.pt'}")
    run_dir = RunDirectory(out)
    assert run_dir.completed_stages() == [0] and run_dir.load_stage(0)["stage"] == 0
    assert len(run_dir.metrics.read_text().splitlines()) == 1 and load_checkpoint(run_dir.best)[1]["metadata"]
    assert not list(out.rglob(".*.tmp"))


def test_video_tracklets_train_and_evaluate(datasets, tmp_path):
    results = Trainer(_config(datasets / "mars", "mars", "clustering.max_stages=2"), tmp_path / "run").run()
    assert len(results) == 2 and all(result.mAP is not None for result in results)
    assert results[0].clusters_after < results[0].clusters_before


def test_unlabelled_crops_train_without_evaluation(datasets, tmp_path):
    results = Trainer(_config(datasets / "crops", "image-folder", "clustering.max_stages=1"), tmp_path / "run").run()
    assert len(results) == 1 and results[0].mAP is None and results[0].pairwise_f is None
    model, payload = load_checkpoint(tmp_path / "run" / "best.pt")
    assert payload["metadata"]["stage"] == 0


def test_stage_plan_follows_the_paper():
    config = load_config(None)
    first = stage_plan(0, config.train, video=False)
    assert first.epochs == 20 and first.learning_rates[:15] == (0.1,) * 15
    assert first.learning_rates[15:] == pytest.approx((0.01,) * 5)
    assert stage_plan(3, config.train, video=False).learning_rates == (0.01, 0.01)
    assert stage_plan(3, config.train, video=True).epochs == 5


def test_time_left_scales_the_stage_pace_by_each_later_stage_epochs():
    first = StageResult(stage=0, clusters_before=10, clusters_after=9, loss=1.0, label_free_score=0.0,
                        fit_silhouette=0.0, merge_silhouette=0.0, train_seconds=60.0, extract_seconds=5.0,
                        merge_seconds=1.0, eval_seconds=4.0)
    epochs = {0: 2, 1: 6, 2: 6, 3: 6}.__getitem__  # 30 s an epoch, 10 s a stage besides training
    assert time_left(first, 4, epochs) == pytest.approx(3 * (6 * 30 + 10))
    assert time_left(first, 1, epochs) == 0


def test_cli_runs_and_reports(datasets, tmp_path, capsys):
    args = ["--data", str(datasets / "market1501"), "--format", "market1501", "--out", str(tmp_path / "run"),
            "--linkage", "buc"] + [f"--set={override}" for override in TINY_RUN + ["clustering.max_stages=1"]]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "done: 1 stages" in printed and "best.pt is stage 0, chosen by mAP = " in printed
    assert "mAP per stage: 0: " in printed and "*" in printed  # every stage's score, the chosen one starred
    assert load_config(tmp_path / "run" / "config.yaml").clustering.linkage == "buc"
    assert int(RunDirectory(tmp_path / "run").load_stage(0)["labels"].max()) + 1 == 18
