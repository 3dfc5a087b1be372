"""The network: shapes and modes, non-local blocks (eq. 7-9), pooling, BatchNorm folding, configuration errors."""

import copy

import numpy as np
import pytest
import torch

from reid_sdk.model import ModelConfig, ReIDNet, TrainOutput
from reid_sdk.model.network import fold_batch_norms
from reid_sdk.model.non_local import NonLocalBlock
from reid_sdk.model.pooling import GlobalPool
from reid_sdk.training.stage_sgd import parameter_groups
from tests.helpers import tiny_config, tiny_model, with_running_statistics

BACKBONES = [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("mobilenet_v2", 1280)]


@pytest.mark.parametrize("backbone,feature_dim", BACKBONES)
def test_eval_mode_returns_normalised_features_of_backbone_width(backbone, feature_dim):
    model = ReIDNet(tiny_config(backbone=backbone)).eval()
    images = torch.randint(0, 256, (3, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        features = model(images)
    assert features.shape == (3, feature_dim) and features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=1), torch.ones(3))
    assert model.feature_dim == feature_dim


def test_train_mode_returns_normalised_embedding_and_feature():
    model = ReIDNet(tiny_config(embedding_dim=48)).train()
    out = model(torch.rand(4, 3, 64, 32) * 255)
    assert isinstance(out, TrainOutput)
    assert out.embedding.shape == (4, 48) and out.feature.shape == (4, 512)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(4))
    out.embedding.sum().backward()
    assert model.embedding[1].weight.grad is not None


def test_uint8_and_float_inputs_give_the_same_features():
    model = tiny_model()
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(images.float()))


def test_pixel_normalisation_uses_imagenet_statistics():
    model = tiny_model()
    mean = model.pixel_mean.view(1, 3, 1, 1).expand(1, 3, 64, 32)
    with torch.no_grad():
        direct = model.pool(model.layer4(model.non_local16(model.layer3(
            model.non_local8(model.layer2(model.layer1(model.stem(torch.zeros(1, 3, 64, 32)))))))))
        through_forward = model.pooled_features(mean)
    torch.testing.assert_close(through_forward, direct)


def test_fresh_non_local_block_is_identity():
    block = NonLocalBlock(16).eval()
    x = torch.randn(2, 16, 5, 3)
    torch.testing.assert_close(block(x), x)


def test_fresh_non_local_blocks_leave_the_network_unchanged():
    torch.manual_seed(0)
    with_blocks = ReIDNet(tiny_config(non_local=True)).eval()
    without = ReIDNet(tiny_config(non_local=False)).eval()
    without.load_state_dict({k: v for k, v in with_blocks.state_dict().items() if "non_local" not in k})
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(with_blocks(images), without(images))


def _non_local_reference(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """Eq. 8-9 written position by position in float64."""
    x = x.double()
    theta, phi, g = (conv.double()(x) for conv in (block.theta, block.phi, block.g))
    n, inter, h, w = theta.shape
    positions = [(i, j) for i in range(h) for j in range(w)]
    y = torch.zeros(n, inter, h, w, dtype=torch.float64)
    for b in range(n):
        for (pi, pj) in positions:
            acc = torch.zeros(inter, dtype=torch.float64)
            for (qi, qj) in positions:
                acc += torch.dot(theta[b, :, pi, pj], phi[b, :, qi, qj]) * g[b, :, qi, qj]
            y[b, :, pi, pj] = acc / len(positions)
    return x + block.w_z.double()(y)


@pytest.mark.parametrize("height,width,channels", [(4, 3, 8), (2, 2, 16)])  # P > C' and P < C' orders
def test_non_local_block_matches_equations(height, width, channels):
    torch.manual_seed(1)
    block = NonLocalBlock(channels).eval()
    torch.nn.init.uniform_(block.w_z[1].weight, 0.5, 1.5)
    torch.nn.init.uniform_(block.w_z[1].bias, -0.5, 0.5)
    x = torch.randn(2, channels, height, width)
    with torch.no_grad():
        expected = _non_local_reference(block, x)
        block.float()
        actual = block(x)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(actual, x)


@pytest.mark.parametrize("mode", ["avg", "max", "mixed", "gem"])
def test_pooling_against_direct_computation(mode):
    x = torch.randn(3, 5, 4, 2)
    flat = x.numpy().astype(np.float64).reshape(3, 5, -1)
    gem = (np.maximum(flat, 1e-6) ** 3).mean(-1) ** (1 / 3)
    expected = {"avg": flat.mean(-1), "max": flat.max(-1), "mixed": 0.5 * (flat.mean(-1) + flat.max(-1)), "gem": gem}[mode]
    np.testing.assert_allclose(GlobalPool(mode)(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gem_lies_between_avg_and_max_of_non_negative_maps():
    x = torch.rand(4, 6, 5, 3)  # after a ReLU
    gem, avg, largest = GlobalPool("gem")(x), GlobalPool("avg")(x), GlobalPool("max")(x)
    assert bool((gem >= avg - 1e-6).all() and (gem <= largest + 1e-6).all()) and not torch.allclose(gem, avg)


def test_pooling_mode_changes_the_feature():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    outputs = {}
    for mode in ("avg", "max", "mixed"):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs[mode] = ReIDNet(tiny_config(pooling=mode)).eval().pooled_features(images)
    torch.testing.assert_close(outputs["mixed"], 0.5 * (outputs["avg"] + outputs["max"]))


def _map_shapes(model: ReIDNet, *modules: torch.nn.Module) -> list[tuple[int, ...]]:
    """The (C, H, W) of what each module receives in one forward pass of a 64 x 32 image."""
    shapes = []
    hooks = [module.register_forward_pre_hook(lambda _, inputs: shapes.append(tuple(inputs[0].shape[1:])))
             for module in modules]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 32))
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "mobilenet_v2"])
def test_last_stride_one_doubles_the_final_feature_map(backbone):
    maps = {}
    for stride in (1, 2):
        model = ReIDNet(tiny_config(backbone=backbone, last_stride=stride)).eval()
        (maps[stride],) = _map_shapes(model, model.pool)
    assert maps[1][1:] == (2 * maps[2][1], 2 * maps[2][2])


@pytest.mark.parametrize("backbone,stride8_channels,stride16_channels",
                         [("resnet18", 128, 256), ("resnet50", 512, 1024), ("mobilenet_v2", 32, 96)])
def test_non_local_blocks_follow_the_stride_8_and_stride_16_stages(backbone, stride8_channels, stride16_channels):
    model = ReIDNet(tiny_config(backbone=backbone)).eval()
    shapes = _map_shapes(model, model.non_local8, model.non_local16)
    assert shapes == [(stride8_channels, 8, 4), (stride16_channels, 4, 2)]


def test_parameter_groups_split_the_mobilenet_trunk_from_the_new_parts():
    model = ReIDNet(tiny_config(backbone="mobilenet_v2"))
    backbone, new = parameter_groups(model, lr=0.1, backbone_scale=0.1)
    assert model.backbone_stages == ("features8", "features16", "features32")
    assert {id(p) for p in backbone["params"]} == {id(p) for name in model.backbone_stages
                                                   for p in model.get_submodule(name).parameters()}
    new_names = {name.split(".")[0] for name, p in model.named_parameters() if any(p is q for q in new["params"])}
    assert new_names == {"non_local8", "non_local16", "embedding"}
    assert (backbone["lr"], new["lr"]) == pytest.approx((0.01, 0.1))
    assert len(backbone["params"]) + len(new["params"]) == len(list(model.parameters()))



def test_a_frozen_stage_keeps_its_weights_and_statistics_while_the_rest_trains():
    model = ReIDNet(tiny_config(backbone="mobilenet_v2")).to(memory_format=torch.channels_last)
    model.freeze_trunk(1)
    model.train()
    assert not model.features8.training and model.features16.training  # frozen BatchNorms stay in eval mode
    before = copy.deepcopy(model.state_dict())
    groups = parameter_groups(model, lr=0.1, backbone_scale=1.0)
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    assert not any(p.requires_grad for p in model.features8.parameters())
    assert {id(p) for group in groups for p in group["params"]} == {id(p) for p in model.parameters()
                                                                  if p.requires_grad}
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randint(0, 256, (4, 3, 64, 32), dtype=torch.uint8)).embedding.sum().backward()
        optimizer.step()
    after = model.state_dict()
    changed = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert "features8" not in changed and {"features16", "features32", "embedding"} <= changed
    assert model.trunk_blocks()[0] is model.features16[0]  # checkpointing has nothing to recompute in it


def test_freezing_the_first_stage_cuts_the_saved_activations_and_refuses_too_many_stages():
    from reid_sdk.training.memory_budget import measure_activation_cost

    model = ReIDNet(tiny_config(backbone="mobilenet_v2"))
    whole = measure_activation_cost(model)
    model.freeze_trunk(1)
    frozen = measure_activation_cost(model)
    assert frozen.full < 0.8 * whole.full and frozen.checkpointed < whole.checkpointed
    with pytest.raises(ValueError, match="frozen stages must be 0..3"):
        model.freeze_trunk(4)

def test_wrong_input_shape_is_rejected():
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        tiny_model()(torch.zeros(1, 1, 64, 32))


@pytest.mark.parametrize(
    "field,value,message",
    [("backbone", "resnet101", "backbone"), ("pooling", "sum", "pooling"), ("last_stride", 3, "last_stride"),
     ("dropout", 1.0, "dropout"), ("input_size", (16, 8), "input_size"), ("embedding_dim", 0, "embedding_dim")],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})


def test_config_dict_round_trip_and_unknown_keys():
    config = tiny_config(pooling="max", last_stride=1)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({**config.to_dict(), "colour": "red"})


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "mobilenet_v2"])
def test_folding_the_batch_norms_keeps_the_features_and_leaves_none(backbone):
    model = with_running_statistics(tiny_model(seed=2, backbone=backbone))
    images = torch.randint(0, 256, (3, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = model(images)
        folded = fold_batch_norms(copy.deepcopy(model))
        assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
        torch.testing.assert_close(folded(images), expected, atol=1e-5, rtol=0)
