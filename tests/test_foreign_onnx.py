"""ONNX files exported the torchreid / fast-reid / BoxMOT way: float NCHW input normalised outside the graph."""

from __future__ import annotations

import re
import warnings

import cv2
import numpy as np
import onnx
import pytest
import torch

from reid_sdk.inference.extractor import FeatureExtractor, NonFiniteFeaturesError
from tests.helpers import BROKEN_ONNX_ERRORS, broken_onnx_models, pooling_onnx, random_crops

SIZE = (48, 24)
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def small_network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 12)).eval()


def export_like_torchreid(network, path, batch=None, dynamic_size=False):
    """torch.onnx.export as torchreid's and BoxMOT's export scripts call it: float32 input, optional dynamic axes."""
    axes = {} if batch else {"input": {0: "batch"}, "output": {0: "batch"}}
    if dynamic_size:
        axes["input"] = {**axes.get("input", {}), 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns that it is legacy
        torch.onnx.export(network, (torch.zeros(batch or 2, 3, *SIZE),), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes=axes or None, dynamo=False, opset_version=17)
    return path


def torch_features(network, crops, mean, std, channels="rgb"):
    """What the network gives for crops resized, converted and normalised by hand."""
    batch = []
    for crop in crops:
        image = cv2.resize(crop, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR)
        image = image if channels == "bgr" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        batch.append((image.astype(np.float32) / 255 - np.float32(mean)) / np.float32(std))
    with torch.no_grad():
        features = network(torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy())).numpy()
    return features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    network = small_network()
    return network, {"dynamic": export_like_torchreid(network, folder / "dynamic.onnx"),
                     "batch1": export_like_torchreid(network, folder / "batch1.onnx", batch=1),
                     "batch4": export_like_torchreid(network, folder / "batch4.onnx", batch=4),
                     "open_size": export_like_torchreid(network, folder / "open.onnx", dynamic_size=True)}


@pytest.mark.parametrize("kind", ["dynamic", "batch1", "batch4"])
def test_features_match_the_torch_model_given_the_right_options(models, kind):
    network, files = models
    crops = random_crops(7, seed=3)
    extractor = FeatureExtractor(files[kind], device="cpu", batch_size=5, model_channel_order="rgb", **IMAGENET)
    assert extractor.input_size == SIZE and extractor.feature_dim == 12
    np.testing.assert_allclose(extractor.extract(crops), torch_features(network, crops, **IMAGENET), atol=1e-5)


def test_channel_order_size_and_raw_pixel_scale_options(models):
    network, files = models
    crops = random_crops(3, seed=4)
    bgr = FeatureExtractor(files["open_size"], device="cpu", input_size=SIZE, model_channel_order="bgr", **IMAGENET)
    np.testing.assert_allclose(bgr.extract(crops), torch_features(network, crops, **IMAGENET, channels="bgr"),
                               atol=1e-5)
    raw = FeatureExtractor(files["dynamic"], device="cpu", mean=(0, 0, 0), std=(1 / 255,) * 3,
                           model_channel_order="rgb")  # a graph that takes 0..255 floats
    np.testing.assert_allclose(raw.extract(crops), torch_features(network, crops, (0, 0, 0), (1 / 255,) * 3),
                               atol=1e-5)
    wrong = FeatureExtractor(files["dynamic"], device="cpu", mean=(0.5,) * 3, std=(0.5,) * 3, model_channel_order="rgb")
    assert np.abs(wrong.extract(crops) - torch_features(network, crops, **IMAGENET)).max() > 1e-2


def test_missing_options_are_named(models):
    _, files = models
    with pytest.raises(ValueError, match="no reid-sdk metadata.*missing mean, std, model_channel_order"):
        FeatureExtractor(files["dynamic"], device="cpu")
    with pytest.raises(ValueError, match="missing input_size, std$|missing input_size, std "):
        FeatureExtractor(files["open_size"], device="cpu", mean=(0.5,) * 3, model_channel_order="rgb")


def test_contradicting_options_raise(models, tmp_path):
    _, files = models
    with pytest.raises(ValueError, match=r"input_size=\(64, 32\) \(the graph fixes \(48, 24\)\)"):
        FeatureExtractor(files["dynamic"], device="cpu", input_size=(64, 32), model_channel_order="rgb", **IMAGENET)
    with pytest.raises(ValueError, match="input_dtype='uint8' \\(the graph takes float32\\)"):
        FeatureExtractor(files["dynamic"], device="cpu", input_dtype="uint8", model_channel_order="rgb", **IMAGENET)
    with pytest.raises(ValueError, match="std must be three finite numbers"):
        FeatureExtractor(files["dynamic"], device="cpu", mean=(0, 0, 0), std=(0, 1, 1), model_channel_order="rgb")
    with pytest.raises(ValueError, match="model_channel_order must be one of"):
        FeatureExtractor(files["dynamic"], device="cpu", model_channel_order="gbr", **IMAGENET)


class RawPixels(torch.nn.Module):
    """A network that normalises inside its graph and takes uint8 pixels, as reid-sdk exports do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = small_network()

    def forward(self, images):
        return self.body(images.float() / 255)


@pytest.fixture(scope="module")
def reid_sdk_onnx(tmp_path_factory):
    """A uint8-input graph carrying reid-sdk metadata (what reid-export writes, without the slow exporter)."""
    from reid_sdk.inference.model_contract import ModelMetadata

    path = tmp_path_factory.mktemp("ours") / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(RawPixels().eval(), (torch.zeros(2, 3, 64, 32, dtype=torch.uint8),), str(path),
                          input_names=["images"], output_names=["features"], dynamo=False, opset_version=17,
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    proto = onnx.load(path)
    for key, value in ModelMetadata(input_size=(64, 32), feature_dim=12).to_strings().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)
    return path


def test_reid_sdk_files_refuse_options_that_contradict_their_metadata(reid_sdk_onnx):
    assert FeatureExtractor(reid_sdk_onnx, input_size=(64, 32), model_channel_order="rgb").input_size == (64, 32)
    with pytest.raises(ValueError, match="reid-sdk model whose metadata contradicts: input_size=\\(128, 64\\)"):
        FeatureExtractor(reid_sdk_onnx, input_size=(128, 64))
    with pytest.raises(ValueError, match="mean \\(the model normalises inside its graph\\)"):
        FeatureExtractor(reid_sdk_onnx, mean=(0.485, 0.456, 0.406))
    with pytest.raises(ValueError, match="input_dtype='float32' \\(the file says 'uint8'\\)"):
        FeatureExtractor(reid_sdk_onnx, input_dtype="float32")


@pytest.mark.parametrize("model", ["model.pt", "model.engine"])
def test_options_for_a_model_that_describes_itself_are_refused(model):
    with pytest.raises(ValueError, match=f"mean, std describe foreign ONNX models only; {model} configures itself"):
        FeatureExtractor(model, device="cpu", **IMAGENET)


def test_uint8_foreign_graph_takes_no_mean(reid_sdk_onnx, tmp_path):
    proto = onnx.load(reid_sdk_onnx)
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, bare)
    with pytest.raises(ValueError, match="mean/std \\(the graph takes uint8 pixels"):
        FeatureExtractor(bare, model_channel_order="rgb", **IMAGENET)


def test_a_model_that_outputs_zeros_is_refused_not_returned_as_unit_rows(tmp_path):
    zeros = pooling_onnx(tmp_path / "zeros.onnx", zero=True)  # foreign: no reid-sdk metadata
    extractor = FeatureExtractor(zeros, device="cpu", model_channel_order="rgb")
    with pytest.raises(NonFiniteFeaturesError, match="returned all-zero features for 3 of 3 crops .first: crop 0.; "
                                                     "they cannot be L2-normalised"):
        extractor.extract(random_crops(3))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("kind", sorted(BROKEN_ONNX_ERRORS))
def test_a_broken_onnx_file_is_refused_when_opened_in_one_line(tmp_path, kind, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    path = broken_onnx_models(tmp_path)[kind]
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}{BROKEN_ONNX_ERRORS[kind]}") as refused:
        FeatureExtractor(path, device="cpu", backend=backend)
    assert "\n" not in str(refused.value)
