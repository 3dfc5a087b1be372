"""The OpenVINO backend: fp32 and INT8 parity on a tiny trained model, modes, metadata, options and errors.

96 x 48 input for the reason given in tests/test_int8.py. bf16 is only checked for running at bf16 and
giving unit features, not for a tight bound: whether it is accurate depends on the CPU (README).
"""

import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import pytest

from reid_sdk.inference.backends import backend_for
from reid_sdk.inference.backends.openvino_backend import OpenVINOOptions, inference_precision, split_evenly
from reid_sdk.cli.export import main
from reid_sdk.export.verify import Tolerance, verify_parity
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.synthetic.layouts import sample_crops
from tests.helpers import random_crops, tiny_model_files

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="OpenVINO is an optional extra (pip install 'reid-sdk[openvino]')")

SIZE = (96, 48)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return tiny_model_files(tmp_path_factory.mktemp("openvino"), SIZE)


@needs_openvino
@pytest.mark.parametrize("mode", ["throughput", "latency"])
def test_fp32_matches_torch_fp32_at_every_batch_size(model_files, mode):
    checks = verify_parity(model_files["fp32"], model_files["checkpoint"], sample_crops(9, seed=2, image_size=SIZE),
                           device="cpu", backend="openvino", backend_options={"mode": mode})
    assert [check.count for check in checks] == [9, 1, 7, 32]
    assert all(check.passes(Tolerance.for_precision("fp32")) for check in checks), [c.describe() for c in checks]


@needs_openvino
def test_throughput_mode_splits_batches_over_streams_in_order(model_files):
    extractor = FeatureExtractor(model_files["fp32"], backend="openvino", batch_size=7,
                                 backend_options={"mode": "throughput", "threads": 2})
    crops = random_crops(10, seed=4)
    reference = FeatureExtractor(model_files["fp32"], device="cpu", batch_size=3).extract(crops)
    np.testing.assert_allclose(extractor.extract(crops), reference, atol=1e-4)
    assert "throughput" in extractor.backend.description


@needs_openvino
def test_int8_parity_on_the_trained_model(model_files):
    checks = verify_parity(model_files["int8"], model_files["checkpoint"], sample_crops(24, seed=5, image_size=SIZE),
                           device="cpu", backend="openvino")
    assert all(check.passes(Tolerance.for_precision("int8")) for check in checks), [c.describe() for c in checks]
    crops = sample_crops(12, seed=6, image_size=SIZE)
    onnx_runtime = FeatureExtractor(model_files["int8"]).extract(crops)
    openvino_int8 = FeatureExtractor(model_files["int8"], backend="openvino").extract(crops)
    assert np.sum(onnx_runtime * openvino_int8, axis=1).min() >= 0.99  # the same Q/DQ file, two runtimes


@needs_openvino
def test_inference_precision_is_what_was_asked(model_files):
    fp32 = FeatureExtractor(model_files["fp32"], backend="openvino").backend
    assert str(fp32._compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    import openvino

    capabilities = list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if "BF16" not in capabilities:
        with pytest.raises(ValueError, match="needs a CPU with bf16 support"):
            FeatureExtractor(model_files["fp32"], backend="openvino", precision="bf16")
        return
    extractor = FeatureExtractor(model_files["fp32"], backend="openvino", precision="bf16")
    assert str(extractor.backend._compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    features = extractor.extract(sample_crops(4, seed=7, image_size=SIZE))
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def test_precision_choice():
    assert inference_precision("auto", ["FP32", "BF16"]) == "f32"
    assert inference_precision("bf16", ["FP32", "BF16"]) == "bf16"
    with pytest.raises(ValueError, match="needs a CPU with bf16 support .* FP32, INT8"):
        inference_precision("bf16", ["FP32", "INT8"])
    with pytest.raises(ValueError, match="must be auto, fp32 or bf16; got 'fp16'"):
        inference_precision("fp16", ["FP32", "FP16"])


def test_split_evenly():
    assert split_evenly(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert split_evenly(1, 4) == [(0, 1)]
    assert split_evenly(4, 1) == [(0, 4)]
    assert split_evenly(0, 2) == []


@needs_openvino
def test_metadata_is_read_from_the_onnx_file(model_files, tmp_path):
    extractor = FeatureExtractor(model_files["int8"], backend="openvino")
    assert extractor.input_size == SIZE and extractor.feature_dim == 512
    assert extractor.backend.metadata.precision == "int8" and "int8 model" in extractor.backend.description
    bare = onnx.load(str(model_files["fp32"]))
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    with pytest.raises(ValueError, match="has no reid-sdk metadata.*input_size=\\(H, W\\)"):
        FeatureExtractor(tmp_path / "bare.onnx", backend="openvino")
    crops = random_crops(3, seed=8)
    foreign = FeatureExtractor(tmp_path / "bare.onnx", backend="openvino", input_size=SIZE)
    np.testing.assert_allclose(foreign.extract(crops),
                               FeatureExtractor(model_files["fp32"], backend="openvino").extract(crops), atol=1e-6)


@needs_openvino
def test_bad_options_and_devices_are_named(model_files, tmp_path):
    with pytest.raises(ValueError, match="unknown OpenVINOOptions option\\(s\\) streams; known: mode, threads"):
        FeatureExtractor(model_files["fp32"], backend="openvino", backend_options={"streams": 2})
    with pytest.raises(ValueError, match="OpenVINO mode must be one of throughput, latency"):
        OpenVINOOptions(mode="fast")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        OpenVINOOptions(threads=0)
    with pytest.raises(ValueError, match="runs on the CPU: device must be auto or cpu, got 'cuda'"):
        FeatureExtractor(model_files["fp32"], backend="openvino", device="cuda")
    with pytest.raises(ValueError, match="backend 'openvino' runs .onnx files, not 'model.pt'"):
        backend_for(model_files["checkpoint"], "openvino")
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        FeatureExtractor(tmp_path / "absent.onnx", backend="openvino")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="is not a loadable ONNX model"):
        FeatureExtractor(broken, backend="openvino")


def test_missing_openvino_gives_the_install_hint(model_files):
    code = ("import sys\nsys.modules['openvino'] = None\n"
            "import reid_sdk.inference.backends.openvino_backend\n"  # the runtime imports without OpenVINO
            "from reid_sdk import FeatureExtractor\n"
            f"FeatureExtractor({str(model_files['fp32'])!r}, backend='openvino')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "openvino is not installed" in result.stderr and "pip install 'reid-sdk[openvino]'" in result.stderr


@needs_openvino
def test_reid_export_verifies_under_openvino(model_files, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["--model", str(model_files["checkpoint"]), "--format", "onnx", "--out", str(out), "--verify",
                 "--verify-backend", "openvino"]) == 0
    printed = capsys.readouterr().out
    assert "verified: 5 checks within tolerance" in printed and "(+0.00 points)" in printed


@needs_openvino
def test_a_foreign_float_input_model_is_refused_not_fed_raw_pixels(tmp_path):
    """A float-input graph expects pixels normalised outside it; OpenVINO cannot be told how, so it refuses
    rather than return features of unnormalised pixels (ONNX Runtime takes mean / std / channel order)."""
    from onnx import TensorProto, helper

    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *SIZE])
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("ReduceMean", ["images"], ["features"], axes=[2, 3], keepdims=0)],
                              "float-input", [images], [features])
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    from reid_sdk import FeatureExtractor

    with pytest.raises(ValueError, match="float.onnx has no reid-sdk metadata and takes f32 input, not u8: .* run it on "
                                         "onnxruntime with mean, std and model_channel_order"):
        FeatureExtractor(path, backend="openvino", input_size=SIZE)
