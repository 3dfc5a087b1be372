"""FeatureExtractor with the torch backend: batching, normalisation, backends from files, bad arguments."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import reid_sdk.model.device as device_module
from reid_sdk.inference.extractor import FeatureExtractor, NonFiniteFeaturesError
from reid_sdk.model.device import cpu_has_amx
from reid_sdk.model import save_checkpoint
from reid_sdk.inference.preprocess import preprocess_batch
from tests.helpers import random_crops, tiny_model, with_running_statistics


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


def _cosine(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_features_are_float32_unit_vectors(model):
    features = FeatureExtractor(model, device="cpu").extract(random_crops(5))
    assert features.shape == (5, 512) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_batched_and_one_by_one_extraction_agree(model):
    crops = random_crops(11, seed=4)
    batched = FeatureExtractor(model, device="cpu", batch_size=4).extract(crops)
    single = np.concatenate([FeatureExtractor(model, device="cpu", batch_size=1).extract(c) for c in crops])
    assert _cosine(batched, single).min() >= 0.9999


def test_features_equal_the_network_on_the_shared_preprocessing(model):
    crops = random_crops(3, seed=5)
    expected = model(torch.from_numpy(preprocess_batch(crops, model.input_size))).detach().numpy()
    np.testing.assert_allclose(FeatureExtractor(model, device="cpu").extract(crops), expected, atol=1e-6)


def test_on_the_cpu_the_backend_folds_batch_norms_runs_channels_last_and_keeps_the_features():
    model = with_running_statistics(tiny_model(seed=6))
    crops = random_crops(4, seed=9)
    expected = model(torch.from_numpy(preprocess_batch(crops, model.input_size))).detach().numpy()
    extractor = FeatureExtractor(model, device="cpu")
    np.testing.assert_allclose(extractor.extract(crops), expected, atol=1e-5)  # fp32 within rounding
    network = extractor.backend.network
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in network.modules())
    assert network.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert isinstance(model.stem[1], torch.nn.BatchNorm2d)  # the caller's module keeps its own


def test_rgb_channel_order_matches_flipped_bgr(model):
    crops = random_crops(2, seed=6)
    bgr = FeatureExtractor(model, device="cpu").extract(crops)
    rgb = FeatureExtractor(model, device="cpu", channel_order="rgb").extract([c[:, :, ::-1].copy() for c in crops])
    np.testing.assert_allclose(bgr, rgb, atol=1e-6)


def test_extract_takes_the_crops_channel_order_per_call(model):
    """One extractor, crops of either order: the per-call order wins, None keeps the extractor's; across batches."""
    crops = random_crops(5, seed=6)
    extractor = FeatureExtractor(model, device="cpu", batch_size=2)
    bgr = extractor.extract(crops)
    rgb = [crop[:, :, ::-1] for crop in crops]
    np.testing.assert_allclose(extractor.extract(rgb, channel_order="rgb"), bgr, atol=1e-6)
    np.testing.assert_allclose(extractor.extract(crops, channel_order="bgr"), bgr, atol=1e-6)
    rgb_extractor = FeatureExtractor(model, device="cpu", channel_order="rgb")
    np.testing.assert_allclose(rgb_extractor.extract(crops, channel_order="bgr"), bgr, atol=1e-6)
    with pytest.raises(ValueError, match="channel_order must be one of"):
        extractor.extract(crops, channel_order="BGR")


def test_channels_first_and_float_crops_are_refused_not_guessed(model):
    extractor = FeatureExtractor(model, device="cpu")
    crop = random_crops(1, seed=3)[0]
    with pytest.raises(ValueError, match=r"crop 1: shape \(3, \d+, \d+\) is channels-first"):
        extractor.extract([crop, crop.transpose(2, 0, 1)])
    with pytest.raises(ValueError, match="crop 0: dtype float32 .* not guessed"):
        extractor.extract(crop.astype(np.float32) / 255)


def test_checkpoint_path_gives_the_same_features(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "model.pt")
    crops = random_crops(3, seed=7)
    np.testing.assert_allclose(FeatureExtractor(str(path), device="cpu").extract(crops),
                               FeatureExtractor(model, device="cpu").extract(crops), atol=1e-6)


_BF16_SCRIPT = """
import numpy as np
import reid_sdk.model.device as device_module
from reid_sdk.inference.extractor import FeatureExtractor, NonFiniteFeaturesError
from reid_sdk.model.device import cpu_has_amx
from tests.helpers import random_crops, tiny_model, with_running_statistics
model = tiny_model(seed=3)
crops = random_crops(4, seed=8)
fp32 = FeatureExtractor(model, device="cpu").extract(crops)
bf16 = FeatureExtractor(model, device="cpu", precision="bf16").extract(crops)
assert bf16.dtype == np.float32
print(float(np.min(np.sum(fp32 * bf16, axis=1))))
"""


def test_bf16_on_cpu_stays_close_to_fp32():
    """bf16 where it is allowed; on AMX CPUs with oneDNN capped below AMX, the documented way to get it."""
    env = dict(os.environ)
    if cpu_has_amx():
        env["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"
    result = subprocess.run([sys.executable, "-c", _BF16_SCRIPT], env=env, capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], check=False)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-1]) > 0.98


def test_bf16_on_cpu_is_refused_on_amx_unless_onednn_is_capped(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    with pytest.raises(ValueError, match="refused on this CPU: it has AMX.*ONEDNN_MAX_CPU_ISA"):
        device_module.resolve_precision("bf16", torch.device("cpu"))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    with pytest.raises(ValueError, match="AMX"):
        device_module.resolve_precision("bf16", torch.device("cpu"))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert device_module.resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16


def test_the_callers_model_is_left_untouched(model, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)  # the bf16 copy is what is checked here
    before = {k: v.clone() for k, v in model.state_dict().items()}
    FeatureExtractor(model, device="cpu", precision="bf16")
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_non_finite_features_raise_naming_backend_and_precision():
    broken = tiny_model(seed=4)
    with torch.no_grad():
        broken.layer4[0].bn1.weight[0] = float("nan")
    with pytest.raises(NonFiniteFeaturesError, match="torch on cpu at fp32 backend returned NaN.*3 of 3 crops"):
        FeatureExtractor(broken, device="cpu").extract(random_crops(3))


def test_bad_crop_error_names_its_index_across_batches(model):
    crops = random_crops(6, seed=9)
    crops[5] = np.zeros((0, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="crop 5: empty image"):
        FeatureExtractor(model, device="cpu", batch_size=4).extract(crops)


def test_bad_arguments_are_refused(model, tmp_path):
    with pytest.raises(ValueError, match="no crops given"):
        FeatureExtractor(model, device="cpu").extract([])
    with pytest.raises(ValueError, match="unsupported model file .model.tflite.: expected one of .pt, .pth, .ckpt, .onnx"):
        FeatureExtractor(tmp_path / "model.tflite")
    with pytest.raises(ValueError, match="expected a ReIDNet or a checkpoint path"):
        FeatureExtractor(object())
    with pytest.raises(ValueError, match="batch_size"):
        FeatureExtractor(model, batch_size=0)
    with pytest.raises(ValueError, match="channel_order"):
        FeatureExtractor(model, channel_order="yuv")
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        FeatureExtractor(model, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        FeatureExtractor(model, device="cpu", precision="int4")
    with pytest.raises(FileNotFoundError):
        FeatureExtractor(tmp_path / "absent.pt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_silent_fallback(model):
    with pytest.raises(ValueError, match="CUDA is not available"):
        FeatureExtractor(model, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_channels_last_agrees_with_cpu_fp32(model):
    crops = random_crops(33, seed=10)
    cpu = FeatureExtractor(model, device="cpu").extract(crops)
    cuda32 = FeatureExtractor(model, device="cuda", precision="fp32", batch_size=8).extract(crops)
    cuda16 = FeatureExtractor(model, device="cuda", batch_size=8).extract(crops)
    assert _cosine(cpu, cuda32).min() >= 0.9999
    assert _cosine(cpu, cuda16).min() >= 0.999
