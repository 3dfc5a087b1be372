"""Float32-input ONNX export (ImageNet mean / std outside the graph) for BoxMOT, DeepStream and Triton.

The float model must give the uint8 model's features on the same crops (FeatureExtractor normalises from the
metadata), at a dynamic or a fixed batch; the DeepStream and Triton config files written beside it must parse
and name the file's real tensors. Triton's config.pbtxt is read by protobuf's own text-format parser against a
message mirroring the fields of Triton's ModelConfig used here (names and types as in model_config.proto), so
a field name, a type or the syntax that Triton would reject fails here too.
"""

import configparser

import numpy as np
import onnx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from reid_sdk.cli.export import main
from reid_sdk.export.formats import InputContract
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.export.serving_configs import NVINFER_SUFFIX, TRITON_CONFIG, write_serving_configs
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.inference.preprocess import preprocess_batch
from reid_sdk.model import save_checkpoint
from reid_sdk.synthetic.layouts import sample_crops
from tests.helpers import tiny_model

SIZE = (64, 32)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("float-input")
    checkpoint = save_checkpoint(tiny_model(input_size=SIZE), folder / "model.pt")
    return {"checkpoint": checkpoint, "uint8": export_onnx(checkpoint, folder / "uint8.onnx"),
            "float": export_onnx(checkpoint, folder / "float" / "reid.onnx", contract=InputContract("float32")),
            "fixed": export_onnx(checkpoint, folder / "fixed" / "reid4.onnx", contract=InputContract("float32", 4))}


def _metadata(path) -> ModelMetadata:
    return ModelMetadata.from_strings({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def _io(path) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    graph = onnx.load(str(path)).graph
    return graph.input[0], graph.output[0]


def _dims(value) -> list[int]:
    return [dim.dim_value for dim in value.type.tensor_type.shape.dim]


def test_metadata_records_the_float_contract_and_the_graph_takes_float(files):
    metadata = _metadata(files["float"])
    assert (metadata.input_dtype, metadata.input_mean, metadata.input_std) == ("float32", IMAGENET_MEAN, IMAGENET_STD)
    assert _metadata(files["uint8"]).input_dtype == "uint8" and _metadata(files["uint8"]).input_mean is None
    model_input, _ = _io(files["float"])
    assert model_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model_input.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert _dims(_io(files["fixed"])[0]) == [4, 3, *SIZE]


@pytest.mark.parametrize("kind,backend", [("float", "onnxruntime"), ("fixed", "onnxruntime"), ("float", "openvino")])
def test_float_model_features_equal_the_uint8_models_on_the_same_crops(files, kind, backend):
    crops = sample_crops(11, seed=2, image_size=(90, 40))  # 11: the fixed batch of 4 runs 4 + 4 + 3 (padded)
    reference = FeatureExtractor(files["uint8"], device="cpu").extract(crops)
    candidate = FeatureExtractor(files[kind], device="cpu", batch_size=8, backend=backend)
    features = candidate.extract(crops)
    np.testing.assert_allclose(features, reference, atol=2e-5)
    assert candidate.model_id == FeatureExtractor(files["uint8"], device="cpu").model_id


def test_the_float_graph_is_fed_imagenet_normalised_rgb(files):
    """Independent of FeatureExtractor: normalise by hand as BoxMOT does and run the file in ONNX Runtime."""
    import onnxruntime

    crops = sample_crops(3, seed=4, image_size=SIZE)
    pixels = preprocess_batch(crops, SIZE).astype(np.float32) / 255
    normalised = (pixels - np.array(IMAGENET_MEAN, np.float32)[:, None, None]) / np.array(IMAGENET_STD,
                                                                                          np.float32)[:, None, None]
    session = onnxruntime.InferenceSession(str(files["float"]), providers=["CPUExecutionProvider"])
    raw = session.run(None, {"images": normalised})[0]
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               FeatureExtractor(files["uint8"], device="cpu").extract(crops), atol=2e-5)


def test_openvino_refuses_a_fixed_batch_and_options_must_repeat_the_metadata(files):
    with pytest.raises(ValueError, match="fixes its batch at 4, and the openvino backend splits batches"):
        FeatureExtractor(files["fixed"], backend="openvino")
    assert FeatureExtractor(files["float"], device="cpu", mean=IMAGENET_MEAN, std=IMAGENET_STD).input_size == SIZE
    with pytest.raises(ValueError, match="metadata contradicts: mean=\\(0.5, 0.5, 0.5\\)"):
        FeatureExtractor(files["float"], device="cpu", mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="mean \\(the model normalises inside its graph\\)"):
        FeatureExtractor(files["uint8"], device="cpu", mean=IMAGENET_MEAN)


def test_metadata_without_the_contracts_parts_is_malformed():
    with pytest.raises(ValueError, match="input_mean and input_std go with input_dtype float32"):
        ModelMetadata(input_size=SIZE, feature_dim=8, input_dtype="float32")
    with pytest.raises(ValueError, match="input_dtype must be one of uint8, float32"):
        ModelMetadata(input_size=SIZE, feature_dim=8, input_dtype="float16")
    strings = ModelMetadata(input_size=SIZE, feature_dim=8).to_strings()
    strings["reid_sdk.input_dtype"] = "float32"
    with pytest.raises(ValueError, match="malformed reid-sdk metadata"):
        ModelMetadata.from_strings(strings, source="m.onnx")


def _triton_message():
    """ModelConfig / ModelInput / ModelOutput with the fields (names, types) of Triton's model_config.proto
    that reid-export writes; built at run time since Triton's own Python package carries gRPC with it."""
    proto = descriptor_pb2.FileDescriptorProto(name="model_config_subset.proto", package="inference", syntax="proto2")
    data_type = proto.enum_type.add(name="DataType")
    for number, name in enumerate(["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
                                   "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64",
                                   "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"]):
        data_type.value.add(name=name, number=number)
    field = descriptor_pb2.FieldDescriptorProto
    for message in ("ModelInput", "ModelOutput"):
        tensor = proto.message_type.add(name=message)
        tensor.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
        tensor.field.add(name="data_type", number=2, type=field.TYPE_ENUM, type_name=".inference.DataType",
                         label=field.LABEL_OPTIONAL)
        tensor.field.add(name="dims", number=4 if message == "ModelInput" else 3, type=field.TYPE_INT64,
                         label=field.LABEL_REPEATED)
    config = proto.message_type.add(name="ModelConfig")
    config.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    config.field.add(name="platform", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    config.field.add(name="max_batch_size", number=4, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    config.field.add(name="input", number=5, type=field.TYPE_MESSAGE, type_name=".inference.ModelInput",
                     label=field.LABEL_REPEATED)
    config.field.add(name="output", number=6, type=field.TYPE_MESSAGE, type_name=".inference.ModelOutput",
                     label=field.LABEL_REPEATED)
    config.field.add(name="default_model_filename", number=8, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


@pytest.mark.parametrize("kind", ["float", "fixed"])
def test_triton_config_parses_and_names_the_real_tensors(files, kind):
    path = files[kind]
    write_serving_configs(path, (1, 16, 64))
    config = text_format.Parse((path.parent / TRITON_CONFIG).read_text(), _triton_message()())
    model_input, model_output = _io(path)
    assert (config.name, config.platform, config.default_model_filename) == (path.stem, "onnxruntime_onnx", path.name)
    assert [t.name for t in config.input] == [model_input.name] and [t.name for t in config.output] == [model_output.name]
    assert config.input[0].data_type == config.output[0].data_type == 11  # TYPE_FP32
    if kind == "float":  # dynamic batch: Triton adds the batch axis itself
        assert config.max_batch_size == 64
        assert list(config.input[0].dims) == _dims(model_input)[1:] and list(config.output[0].dims) == _dims(model_output)[1:]
    else:
        assert config.max_batch_size == 0
        assert list(config.input[0].dims) == _dims(model_input) == [4, 3, *SIZE]
        assert list(config.output[0].dims) == _dims(model_output) == [4, _metadata(path).feature_dim]


def test_deepstream_config_parses_names_the_real_tensors_and_normalises_within_cosine_0999(files):
    path = files["fixed"]
    write_serving_configs(path, (1, 16, 64))
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.read_string((path.with_name(path.stem + NVINFER_SUFFIX)).read_text())
    settings = parser["property"]
    model_input, model_output = _io(path)
    assert (path.parent / settings["onnx-file"]).resolve() == path.resolve()
    assert settings["output-blob-names"] == model_output.name
    assert settings["infer-dims"] == ";".join(map(str, _dims(model_input)[1:]))
    assert (settings["batch-size"], settings["network-mode"], settings["model-color-format"]) == ("4", "0", "0")
    assert (settings["network-type"], settings["output-tensor-meta"], settings["process-mode"]) == ("100", "1", "2")
    # nvinfer feeds net-scale-factor * (pixel - offsets[c]): one scale for three stds; the cost is small
    scale, offsets = float(settings["net-scale-factor"]), [float(v) for v in settings["offsets"].split(";")]
    np.testing.assert_allclose(offsets, np.array(IMAGENET_MEAN) * 255)
    crops = sample_crops(8, seed=6, image_size=SIZE)
    pixels = preprocess_batch(crops, SIZE).astype(np.float32)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fed = ((pixels - np.array(offsets, np.float32)[:, None, None]) * np.float32(scale))
    raw = np.concatenate([session.run(None, {"images": fed[i:i + 4]})[0] for i in (0, 4)])
    approximate = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    exact = FeatureExtractor(files["uint8"], device="cpu").extract(crops)
    assert np.sum(approximate * exact, axis=1).min() >= 0.999


def test_cli_writes_the_float_model_and_its_configs_and_refuses_what_does_not_apply(files, tmp_path, capsys):
    out = tmp_path / "served" / "reid.onnx"
    assert main(["--model", str(files["checkpoint"]), "--input", "float32", "--out", str(out), "--verify"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (onnx, fp32, float32 input normalised outside)" in printed
    assert f"wrote {out.parent / 'reid_nvinfer.txt'}" in printed and f"wrote {out.parent / 'config.pbtxt'}" in printed
    assert "verified: 5 checks within tolerance" in printed
    for argv, message in (
            (["--format", "tensorrt", "--input", "float32"], "float32 input and a fixed batch are for ONNX files"),
            (["--fixed-batch", "0"], "a fixed batch size must be >= 1, got 0"),
            (["--format", "onnx-int8", "--int8-float", "head"], "float layer groups must be among"),
            (["--int8-float", "depthwise"], "an INT8 recipe is for INT8")):
        assert main(["--model", str(files["checkpoint"]), "--out", str(tmp_path / "x" / "m.onnx"), *argv]) == 2
        error = capsys.readouterr().err
        assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())


def test_float_input_int8_export_calibrates_through_the_normalisation(files, tmp_path):
    from reid_sdk.export.int8 import export_onnx_int8

    out = export_onnx_int8(files["checkpoint"], tmp_path / "int8.onnx", max_images=8, batch_size=4,
                           contract=InputContract("float32", 4))
    assert _metadata(out).input_dtype == "float32" and _metadata(out).precision == "int8"
    crops = sample_crops(6, seed=9, image_size=SIZE)
    uint8_int8 = export_onnx_int8(files["checkpoint"], tmp_path / "uint8-int8.onnx", max_images=8, batch_size=4)
    features = FeatureExtractor(out, device="cpu").extract(crops)
    # the same ranges from the same crops, whichever side normalises them
    assert np.sum(features * FeatureExtractor(uint8_int8, device="cpu").extract(crops), axis=1).min() >= 0.99
