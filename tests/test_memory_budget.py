"""Fitting a CPU training step into a memory budget: micro-batches and trunk checkpointing against the single pass
they replace, the plan on constructed costs, and the start-up refusal of reid-train / reid-adapt under a tiny budget."""

import copy

import pytest
import torch

from reid_sdk.cli.adapt import main as adapt_main
from reid_sdk.cli.train import main as train_main
from reid_sdk.model import ReIDNet
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.synthetic.video import VideoSetConfig, render_videos
from reid_sdk.training.distributed import Distributed
from reid_sdk.training.memory import CameraProxyMemory
from reid_sdk.training.memory_budget import (MIN_MICRO_BATCH, RUN_MARGIN, ActivationCost, MemoryBudgetError,
                                             StepPlan, measure_activation_cost, micro_batches, plan_step)
from reid_sdk.training.memory_size import parse_memory
from reid_sdk.training.stage_sgd import TrainingPass
from tests.helpers import tiny_config

MIB = 1 << 20


def _model(**overrides) -> ReIDNet:
    torch.manual_seed(0)
    return ReIDNet(tiny_config(dropout=0.0, **overrides)).train()


def _proxy_memory(clips: int) -> CameraProxyMemory:
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(clips, 64, generator=generator)
    labels, cameras = torch.arange(clips) // 2, torch.arange(clips) % 3
    return CameraProxyMemory.from_members(embeddings, labels, cameras)


def _train_step(model: ReIDNet, micro_batch: int | None, clips: torch.Tensor, memory: CameraProxyMemory) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    step = TrainingPass(model, torch.device("cpu"), None, Distributed(), len(clips), micro_batch)
    return float(step._step(clips, memory.sample_targets, memory, optimizer, scaler))


def _batch_independent(model: ReIDNet) -> ReIDNet:
    """The network with its BatchNorm layers on their running statistics: each sample's output depends on it alone."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model


def test_micro_batches_give_the_single_pass_step_when_samples_are_independent():
    """The camera-proxy loss is a mean of per-sample terms against a table fixed during the step: weighted by their
    share, the parts' gradients add up to the whole batch's, and the table sees the whole batch in order."""
    clips = torch.randint(0, 256, (6, 2, 3, 64, 32), dtype=torch.uint8)
    whole, parts = _batch_independent(_model()), _batch_independent(_model())
    whole_memory, parts_memory = _proxy_memory(6), _proxy_memory(6)
    whole_loss = _train_step(whole, None, clips, whole_memory)
    parts_loss = _train_step(parts, 2, clips, parts_memory)
    assert parts_loss == pytest.approx(whole_loss, rel=1e-5)
    for (name, a), b in zip(whole.named_parameters(), parts.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(parts_memory.proxies.table, whole_memory.proxies.table, rtol=1e-4, atol=1e-6)


def test_checkpointed_trunk_gives_the_same_gradients_and_batch_norm_statistics():
    images = torch.randint(0, 256, (4, 3, 64, 32), dtype=torch.uint8)
    plain, checkpointed = _model(), _model()
    checkpointed.checkpoint_trunk = True
    for model in (plain, checkpointed):
        output = model(images)
        (output.embedding[:, :5].sum() + output.feature.square().sum()).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    for (name, a), b in zip(plain.named_buffers(), checkpointed.buffers()):  # counted once, not once more
        torch.testing.assert_close(b, a, msg=name)


def test_activation_cost_is_measured_without_changing_the_model():
    model = _model(backbone="mobilenet_v2")
    before = copy.deepcopy(model.state_dict())
    cost = measure_activation_cost(model)
    assert 0 < cost.checkpointed < cost.full / 2  # MobileNetV2 keeps far more inside its blocks than between them
    assert model.training and not model.checkpoint_trunk
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=name)


COST = ActivationCost(full=50 * MIB, checkpointed=20 * MIB)


def _peak(samples: int, frames: int, per_image: float, resident: int = 500 * MIB) -> int:
    return resident + RUN_MARGIN + int(samples * frames * per_image)


@pytest.mark.parametrize("budget, expected", [
    (_peak(16, 8, COST.full), (16, False)),                      # the whole batch fits: one pass
    (_peak(16, 8, COST.full) - 1, (16, True)),                   # just short: checkpointed
    (_peak(16, 8, COST.checkpointed) - 1, (8, True)),            # two parts of 8
    (_peak(4, 8, COST.checkpointed), (4, True)),                 # four parts of 4
    (_peak(MIN_MICRO_BATCH, 8, COST.checkpointed), (2, True)),   # the smallest setting
])
def test_the_plan_is_the_fastest_setting_that_fits(budget, expected):
    plan = plan_step(16, 8, COST, 500 * MIB, budget)
    assert (plan.micro_batch, plan.checkpoint_trunk) == expected and plan.expected_peak <= budget


def test_a_budget_below_the_smallest_setting_is_refused_in_one_line():
    with pytest.raises(MemoryBudgetError) as error:
        plan_step(16, 8, COST, 500 * MIB, _peak(MIN_MICRO_BATCH, 8, COST.checkpointed) - 1)
    assert "\n" not in str(error.value) and "train.max_memory" in str(error.value)


@pytest.mark.parametrize("samples, micro_batch", [(16, 15), (16, 8), (16, 3), (7, 2), (3, 2), (2, 2), (5, 16)])
def test_micro_batches_split_into_parts_of_at_least_two_and_at_most_the_micro_batch(samples, micro_batch):
    parts = [len(part) for part in torch.tensor_split(torch.arange(samples), micro_batches(samples, micro_batch))]
    assert sum(parts) == samples and min(parts) >= MIN_MICRO_BATCH
    assert max(parts) <= micro_batch or max(parts) < 2 * MIN_MICRO_BATCH  # (3 samples: one part of 3)


def test_describe_names_the_plan():
    assert StepPlan(16, 4, True, 3 << 30).describe() == \
        "batch 16 in micro-batches of 4, trunk checkpointed, expected peak 3.00 GiB"


@pytest.mark.parametrize("text", ["4 potatoes", "0", "", "-1GiB"])
def test_memory_sizes_that_are_not_are_refused(text):
    with pytest.raises(ValueError, match="memory size"):
        parse_memory(text)


@pytest.fixture(scope="module")
def mars(tmp_path_factory):
    root = tmp_path_factory.mktemp("mars")
    generate("mars", root, SyntheticConfig(seed=3, sizes=PRESETS["tiny"]), workers=2)
    return root


def test_reid_train_refuses_a_budget_too_small_at_start_up(mars, tmp_path, capsys):
    code = train_main(["--data", str(mars), "--format", "mars", "--out", str(tmp_path / "run"), "--device", "cpu",
                       "--max-memory", "64MiB", "--set", "model.pretrained=null", "--set", "model.backbone=resnet18",
                       "--set", "model.input_size=[64, 32]"])
    err = capsys.readouterr().err.strip()  # the data's statistics are logged first
    line = err.splitlines()[-1]
    assert code == 2 and "Traceback" not in err and line.startswith("reid-train: ")
    assert "train.max_memory" in line and "budget is 0.06 GiB" in line
    assert not (tmp_path / "run" / "stage_000.pt").exists()


def test_reid_train_rejects_an_unreadable_max_memory(mars, tmp_path, capsys):
    code = train_main(["--data", str(mars), "--format", "mars", "--out", str(tmp_path / "run"),
                       "--max-memory", "lots"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "'lots'" in err


def test_reid_adapt_rejects_an_unreadable_max_memory(tmp_path, capsys):
    site = tmp_path / "site"
    site.mkdir()
    assert adapt_main([str(site), "--out", str(tmp_path / "run"), "--max-memory", "4 potatoes"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "memory size" in err


def test_reid_adapt_refuses_a_budget_too_small_before_any_work(tmp_path, capsys):
    site = render_videos(tmp_path / "site", VideoSetConfig(seed=5, num_cameras=2, walkers=2, passers_by=0,
                                                           cameras_per_walker=(2, 2), frames=40,
                                                           frame_size=(96, 128)))[0].video.parent
    code = adapt_main([str(site), "--out", str(tmp_path / "run"), "--device", "cpu", "--max-memory", "64MiB",
                       "--set", "model.pretrained=null", "--set", "model.backbone=resnet18"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("reid-adapt: ") and "budget is 0.06 GiB" in line
    assert not (tmp_path / "run" / "adapt.json").exists()  # refused before the run folder was claimed
