"""fp32 stays fp32: pixel mean / std under fp16 / bf16 casts of the network, and no TF32 where fp32 is promised."""

import numpy as np
import pytest
import torch

import reid_sdk.model.device as device_module
from reid_sdk.inference.backends.torch_backend import TorchBackend
from reid_sdk.model.config import PIXEL_MEAN, PIXEL_STD
from tests.helpers import tiny_model

MEAN = torch.tensor(PIXEL_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
STD = torch.tensor(PIXEL_STD, dtype=torch.float32).view(1, 3, 1, 1)


@pytest.mark.parametrize("cast", [lambda m: m.half(), lambda m: m.to(torch.bfloat16), lambda m: m.double(),
                                  lambda m: m.to("cpu", torch.float16)], ids=["half", "to-bf16", "double", "to-both"])
def test_casting_the_network_keeps_the_pixel_statistics_fp32(cast):
    model = cast(tiny_model())
    assert model.stem[0].weight.dtype != torch.float32  # the weights did change
    assert model.pixel_mean.dtype == model.pixel_std.dtype == torch.float32
    assert torch.equal(model.pixel_mean, MEAN) and torch.equal(model.pixel_std, STD)
    assert torch.equal(model.state_dict()["pixel_mean"], MEAN)


def test_a_bf16_network_sees_the_fp32_normalised_pixels():
    model = tiny_model().to(torch.bfloat16)
    images = torch.arange(3 * 64 * 32, dtype=torch.int64).remainder(256).to(torch.uint8).view(1, 3, 64, 32)
    seen = []
    model.stem.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    model(images)
    expected = ((images.float() - MEAN) / STD).to(torch.bfloat16)  # bf16 statistics would shift 123.675 to 123.5
    assert torch.equal(seen[0], expected)


def test_the_torch_backend_runs_bf16_weights_with_fp32_statistics(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)  # the cast is checked, not oneDNN's AMX
    model = tiny_model()
    backend = TorchBackend(model, device="cpu", precision="bf16")
    assert backend.network.layer1[0].conv1.weight.dtype == torch.bfloat16
    assert backend.network.pixel_mean.dtype == torch.float32 and torch.equal(backend.network.pixel_std, STD)
    assert model.stem[0].weight.dtype == torch.float32  # the caller's module is a different object


def test_batches_anywhere_in_the_pinned_buffer_are_found_by_row():
    backend = TorchBackend(tiny_model(), device="cpu")
    backend._pinned = torch.zeros(6, 3, 64, 32, dtype=torch.uint8)  # stands in for the CUDA page-locked buffer
    rows = backend._pinned.numpy()
    assert backend._pinned_row(rows[:3]) == 0 and backend._pinned_row(rows[3:6]) == 3
    assert backend._pinned_row(rows[2:3]) == 2
    assert backend._pinned_row(rows[4:].copy()) is None  # same shape, other memory
    assert backend._pinned_row(rows.reshape(-1)[5:].view(np.uint8)[: 3 * 64 * 32].reshape(1, 3, 64, 32)) is None
    assert backend._pinned_row(rows[::2]) is None  # not contiguous


def test_true_fp32_turns_tf32_off_for_cuda_and_restores_the_flags():
    from reid_sdk.model.device import true_fp32

    flags = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    before = [flag.fp32_precision for flag in flags]
    with true_fp32(torch.device("cuda")):  # only flags change: no GPU is needed to check them
        assert [flag.fp32_precision for flag in flags] == ["ieee"] * 2
    assert [flag.fp32_precision for flag in flags] == before
    with true_fp32(torch.device("cpu")):
        assert [flag.fp32_precision for flag in flags] == before
