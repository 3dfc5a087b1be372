"""Run configuration: the paper's defaults, YAML + --set overrides, the shipped configs, and one-line errors."""

from pathlib import Path

import pytest

from reid_sdk.cli.train import build_parser, resolve_config
from reid_sdk.training.config import ConfigError, RunConfig, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "reid_sdk" / "configs"


def test_defaults_are_the_papers_schedule():
    config = RunConfig()
    assert (config.train.batch_size, config.train.first_stage_epochs, config.train.first_stage_lr) == (16, 20, 0.1)
    assert (config.train.lr_step_epoch, config.train.lr_decay, config.train.later_stage_lr) == (15, 0.1, 0.01)
    assert (config.train.later_stage_epochs, config.train.later_stage_epochs_video) == (2, 5)
    assert (config.train.momentum, config.train.weight_decay, config.train.backbone_lr_scale) == (0.9, 5e-4, 0.1)
    assert (config.train.temperature, config.train.memory_momentum) == (0.1, 0.5)
    assert (config.clustering.linkage, config.clustering.lam, config.clustering.merge_percent) == ("imd_cpd", 0.3, 0.05)
    assert (config.model.backbone, config.model.non_local, config.model.pooling) == ("resnet50", True, "mixed")
    assert (config.model.dropout, config.model.embedding_dim, config.model.input_size) == (0.5, 2048, (256, 128))


def test_yaml_then_overrides_with_typed_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  batch_size: 32\nmodel:\n  backbone: resnet18\n")
    config = load_config(path, ["train.batch_size=64", "model.input_size=[128, 64]", "model.pretrained=null",
                                "model.non_local=false", "clustering.lam=0", "data.root=/data/x"])
    assert config.train.batch_size == 64 and config.model.backbone == "resnet18"
    assert config.model.input_size == (128, 64) and config.model.pretrained is None
    assert config.model.non_local is False and config.clustering.lam == 0.0 and config.data.root == "/data/x"
    assert isinstance(config.clustering.lam, float)


def test_saved_config_loads_back_equal(tmp_path):
    config = load_config(None, ["train.seed=7", "clustering.block_size=512", "model.last_stride=1"])
    assert load_config(save_config(config, tmp_path / "config.yaml")) == config


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / name)
    assert config.data.format in ("market1501", "dukemtmc", "mars", "dukevideo")


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.batchsize=8", "unknown config key train.batchsize; train has: device, seed, batch_size"),
        ("optimiser.lr=0.1", "unknown config key optimiser; the top level has: data, model, clustering, train"),
        ("train.batch_size=sixteen", "config train.batch_size: expected int, got 'sixteen' \\(str\\)"),
        ("train.batch_size=16.5", "config train.batch_size: expected int, got 16.5"),
        ("model.non_local=1", "config model.non_local: expected bool, got 1"),
        ("model.input_size=[256]", "config model.input_size: expected 2 values"),
        ("clustering.merge_percent=1.5", "merge_percent \\(p\\) must be in \\(0, 1\\), got 1.5"),
        ("clustering.merge_percent=0", "merge_percent \\(p\\) must be in \\(0, 1\\)"),
        ("clustering.lam=-0.3", "clustering.lam \\(lambda\\) must be >= 0, got -0.3"),
        ("clustering.linkage=single", "clustering.linkage must be one of imd_cpd"),
        ("model.backbone=resnet101", "config model: backbone must be one of resnet18, resnet34, resnet50, mobilenet_v2, "
                                   "got 'resnet101'"),
        ("data.format=cuhk03", "data.format must be one of market1501"),
        ("train.amp=int8", "train.amp must be one of auto, bf16, fp16, off"),
        ("train.batch_size", "--set expects section.key=value"),
        ("train.batch_size.x=3", "config train.batch_size: expected int, got \\{'x': 3\\}"),
        ("train.backbone_lr_scale=-1", "train.backbone_lr_scale must be >= 0 \\(0 freezes the backbone\\), got -1"),
        ("train.lr_decay=0", "train.lr_decay must be in \\(0, 1\\], got 0"),
        ("train.lr_step_epoch=0", "train.lr_step_epoch must be >= 1"),
        ("train.momentum=1.5", "train.momentum must be in \\[0, 1\\), got 1.5"),
        ("train.weight_decay=-0.1", "train.weight_decay must be >= 0"),
        ("train.seed=-3", "train.seed must be >= 0"),
        ("train.schedule=nightly", "train.schedule must be one of stages, recluster, got 'nightly'"),
        ("train.patience=0", "train.patience must be >= 1, or null"),
        ("train.frozen_stages=-1", "train.frozen_stages must be >= 0, got -1"),
        ("train.frozen_stages=6", "train.frozen_stages must be 0..5 for resnet50 \\(its stages: stem, layer1, "
                                  "layer2, layer3, layer4\\), got 6"),
        ("recluster.eps=1.5", "recluster.eps is a Jaccard distance: it must be in \\(0, 1\\)"),
        ("recluster.pseudo_labels=kmeans", "recluster.pseudo_labels must be one of dbscan, linkage"),
        ("recluster.warmup_epochs=50", "recluster.warmup_epochs must be in \\[0, epochs\\), got 50"),
        ("recluster.k1=0", "recluster.min_samples, recluster.k1 and recluster.k2 must be >= 1"),
    ],
)
def test_bad_configuration_is_one_clear_line(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_override_below_a_value_is_refused():
    with pytest.raises(ConfigError, match="--set train.batch_size.x: batch_size is not a section"):
        load_config(None, ["train.batch_size=3", "train.batch_size.x=3"])


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_config(listing)


def test_ablation_flags_become_config_values(tmp_path):
    args = build_parser().parse_args(["--out", str(tmp_path / "run"), "--data", "/d", "--format", "dukemtmc",
                                      "--linkage", "buc", "--pooling", "avg", "--no-non-local", "--device", "cpu",
                                      "--set", "train.seed=3"])
    config = resolve_config(args)
    assert (config.clustering.linkage, config.model.pooling, config.model.non_local) == ("buc", "avg", False)
    assert (config.data.root, config.data.format, config.train.device, config.train.seed) == ("/d", "dukemtmc",
                                                                                                "cpu", 3)


def test_resume_needs_a_saved_run_and_no_new_settings(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="has no config.yaml"):
        resolve_config(build_parser().parse_args(["--out", str(run), "--resume"]))
    run.mkdir()
    save_config(RunConfig(), run / "config.yaml")
    assert resolve_config(build_parser().parse_args(["--out", str(run), "--resume"])) == RunConfig()
    with pytest.raises(ConfigError, match="drop --config/--set"):
        resolve_config(build_parser().parse_args(["--out", str(run), "--resume", "--set", "train.seed=1"]))
