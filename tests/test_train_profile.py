"""benchmarks.train_profile: its FLOP count per convolution against torch's own counter, and a profiled step
that accounts every convolution call and its time."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.train_profile import conv_inventory, split
from reid_sdk.model import ModelConfig, ReIDNet


def test_convolution_flops_match_torch_counter_and_depthwise_layers_are_found():
    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(backbone="mobilenet_v2", input_size=(64, 32), embedding_dim=32, pretrained=None))
    images = torch.randn(2, 3, 64, 32)
    inventory = conv_inventory(model, images)
    seen = []
    hooks = [module.register_forward_hook(lambda conv, inputs, output: seen.append((conv, inputs[0])))
             for module in model.modules() if isinstance(module, torch.nn.Conv2d)]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    for conv, inputs in seen:  # each call's count against torch's counter on that convolution alone
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            conv(inputs)
        key = (tuple(inputs.shape), tuple(conv.weight.shape), conv.stride, conv.padding)
        assert inventory[key][1] == counter.get_total_flops()
    kinds = {kind for kind, _ in inventory.values()}
    assert {"depthwise 3x3", "pointwise 1x1", "dense kxk"} <= kinds


def test_a_profiled_step_accounts_for_every_convolution_call():
    config = ModelConfig(backbone="resnet18", input_size=(64, 32), embedding_dim=32, pretrained=None)
    result = split(config, batch_size=4, steps=1, peak_gflops=100.0)
    assert result["unmatched_convolution_calls"] == 0
    kinds = result["kinds"]
    assert sum(row["time_share"] for row in kinds.values()) == pytest.approx(1.0, abs=0.01)
    assert sum(row.get("flop_share", 0.0) for row in kinds.values()) == pytest.approx(1.0, abs=1e-3)
    assert kinds["dense kxk"]["flop_share"] > 0.5  # ResNet's 3 x 3 convolutions hold its arithmetic
