"""reid-export: ONNX export checked by onnx.checker, parity in ONNX Runtime, metadata, export_model, CLI and its
errors."""

import json
import logging

import cv2
import numpy as np
import onnx
import pytest

from reid_sdk.inference.backends import backend_for
from reid_sdk.inference.backends.onnx_backend import (OnnxRuntimeOptions, check_active_providers, cuda_provider_options,
                                            parse_device, tensorrt_provider_options)
from reid_sdk.cli.export import main
from reid_sdk.export.api import ExportResult, export_model
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.export.verify import Tolerance, verify_parity
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import read_checkpoint, save_checkpoint
from tests.helpers import random_crops, tiny_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint and its fp32 and fp16 ONNX exports."""
    root = tmp_path_factory.mktemp("export")
    checkpoint = save_checkpoint(tiny_model(seed=11), root / "model.pt", metadata={"config": {"lr": 0.1}})
    return {
        "checkpoint": checkpoint,
        "fp32": export_onnx(checkpoint, root / "model.onnx"),
        "fp16": export_onnx(checkpoint, root / "model-fp16.onnx", precision="fp16"),
    }


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_exported_graph_is_valid_with_dynamic_batch_and_uint8_input(exported, precision):
    proto = onnx.load(exported[precision])
    onnx.checker.check_model(proto, full_check=True)
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.name == "images" and graph_output.name == "features"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph_output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 64, 32]
    conv_weights = [init for init in proto.graph.initializer if len(init.dims) == 4 and list(init.dims) != [1, 3, 1, 1]]
    weight_types = {init.data_type for init in conv_weights}
    assert weight_types == {onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT}


def test_metadata_round_trips_through_the_onnx_file(exported):
    props = {p.key: p.value for p in onnx.load(exported["fp16"]).metadata_props}
    metadata = ModelMetadata.from_strings(props)
    expected = ModelMetadata.from_checkpoint(read_checkpoint(exported["checkpoint"]), "fp16")
    assert metadata == expected
    assert metadata.input_size == (64, 32) and metadata.feature_dim == 512 and metadata.channel_order == "rgb"
    assert metadata.pooling == "mixed" and metadata.backbone == "resnet18" and len(metadata.config_hash) == 16


def test_fp32_parity_is_tight_at_batch_1_7_32(exported):
    checks = verify_parity(exported["fp32"], exported["checkpoint"], random_crops(5, seed=1), device="cpu")
    assert [c.count for c in checks] == [5, 1, 7, 32]
    assert all(c.max_abs_diff <= 1e-4 and c.min_cosine >= 0.999 for c in checks), checks
    assert all(c.passes(Tolerance.for_precision("fp32")) for c in checks)


def test_fp16_parity_by_cosine(exported):
    checks = verify_parity(exported["fp16"], exported["checkpoint"], random_crops(5, seed=2), device="cpu")
    assert all(c.min_cosine >= 0.999 for c in checks), checks


def test_parity_detects_a_different_network(exported, tmp_path):
    other = save_checkpoint(tiny_model(seed=12), tmp_path / "other.pt")
    checks = verify_parity(exported["fp32"], other, random_crops(3, seed=3), batch_sizes=(4,), device="cpu")
    assert not any(c.passes(Tolerance.for_precision("fp32")) for c in checks)


def test_feature_extractor_gives_the_same_features_from_pt_and_onnx(exported):
    crops = random_crops(9, seed=4)
    torch_features = FeatureExtractor(exported["checkpoint"], device="cpu", batch_size=4).extract(crops)
    onnx_extractor = FeatureExtractor(exported["fp32"], device="cpu", batch_size=4)
    assert onnx_extractor.input_size == (64, 32) and onnx_extractor.feature_dim == 512
    np.testing.assert_allclose(onnx_extractor.extract(crops), torch_features, atol=1e-4)


def test_export_model_round_trip_gives_the_torch_features(exported, tmp_path):
    import reid_sdk

    assert reid_sdk.export_model is export_model  # the lazy public name
    result = export_model(exported["checkpoint"], "onnx", tmp_path / "api" / "model.onnx")
    assert result == ExportResult(tmp_path / "api" / "model.onnx", "onnx", "fp32")
    crops = random_crops(6, seed=7)
    np.testing.assert_allclose(FeatureExtractor(result.path, device="cpu").extract(crops),
                               FeatureExtractor(exported["checkpoint"], device="cpu").extract(crops), atol=1e-4)


@pytest.mark.parametrize(("options", "message"), [
    ({"format": "tflite"}, "format must be one of onnx, onnx-fp16, onnx-int8, tensorrt, got 'tflite'"),
    ({"format": "onnx", "calibration": "crops/"}, r"calibration is for INT8 \(format onnx-int8, or tensorrt at "
                                                  r"precision int8\), not onnx at fp32"),
    ({"format": "onnx-fp16", "precision": "int8"}, "precision int8 is for format tensorrt; format onnx-fp16 runs at fp16"),
    ({"format": "onnx-int8", "calibration_images": 0}, "calibration_images must be >= 1, got 0"),
    ({"format": "tensorrt", "precision": "int4"}, "engine precision must be one of fp32, fp16, int8, got 'int4'"),
    ({"format": "tensorrt", "batch_profile": (8, 4, 2)}, "batch profile needs 1 <= min <= opt <= max, got 8:4:2"),
])
def test_export_model_refuses_options_that_do_not_apply(exported, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        export_model(exported["checkpoint"], out=tmp_path / "model.onnx", **options)
    assert not list(tmp_path.iterdir()), "checked before any work"


def test_onnx_without_metadata_needs_its_channel_order(exported, tmp_path):
    proto = onnx.load(exported["fp32"])
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, bare)
    with pytest.raises(ValueError, match="has no reid-sdk metadata.*missing model_channel_order"):
        FeatureExtractor(bare)
    crops = random_crops(2, seed=5)
    np.testing.assert_allclose(FeatureExtractor(bare, model_channel_order="rgb").extract(crops),
                               FeatureExtractor(exported["fp32"]).extract(crops), atol=1e-6)


def test_broken_onnx_file_is_refused(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        FeatureExtractor(broken)
    with pytest.raises(FileNotFoundError):
        FeatureExtractor(tmp_path / "absent.onnx")


def _write_crops(folder, count=4):
    folder.mkdir()
    for index, crop in enumerate(random_crops(count, seed=6)):
        cv2.imwrite(str(folder / f"{index}.png"), crop)
    return folder


def test_cli_exports_and_verifies(exported, tmp_path, capsys):
    images = _write_crops(tmp_path / "crops")
    out = tmp_path / "cli" / "model.onnx"
    assert main(["--model", str(exported["checkpoint"]), "--format", "onnx", "--out", str(out), "--verify",
                 "--verify-images", str(images)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (onnx, fp32)" in printed and "verified: 5 checks within tolerance" in printed
    assert "real crops" in printed and FeatureExtractor(out).feature_dim == 512
    assert "synthetic query/gallery  q=50" in printed and "(+0.00 points)" in printed


def test_cli_json_and_the_old_positional_checkpoint(exported, tmp_path, capsys):
    out = tmp_path / "old" / "model.onnx"
    assert main([str(exported["checkpoint"]), "--format", "onnx", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"path": str(out), "format": "onnx", "precision": "fp32", "input": "uint8",
                                        "configs": []}
    assert "positional checkpoint is deprecated" in captured.err and "--model" in captured.err
    with pytest.raises(SystemExit) as given_twice:
        main([str(exported["checkpoint"]), "--model", str(exported["checkpoint"]), "--out", str(out)])
    assert given_twice.value.code == 2 and "give the checkpoint once" in capsys.readouterr().err


def test_cli_verification_failure_exits_1(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Tolerance, "for_precision", classmethod(lambda cls, precision: cls(min_cosine=1.5)))
    code = main(["--model", str(exported["checkpoint"]), "--format", "onnx-fp16", "--out", str(tmp_path / "m.onnx"),
                 "--verify"])  # default real crops: rendered synthetic pedestrians
    assert code == 1
    assert "verification failed: 4 of 5 checks beyond tolerance" in capsys.readouterr().err


def test_cli_bad_inputs_exit_2_with_the_reason(exported, tmp_path, capsys):
    not_checkpoint = tmp_path / "notes.pt"
    not_checkpoint.write_text("hello")
    assert main(["--model", str(not_checkpoint), "--out", str(tmp_path / "a.onnx")]) == 2
    assert "is not a reid-sdk checkpoint" in capsys.readouterr().err
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["--model", str(exported["checkpoint"]), "--out", str(blocker / "model.onnx")]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert main(["--model", str(exported["checkpoint"]), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["--model", str(exported["checkpoint"]), "--format", "tensorrt", "--batch", "8:4:2",
                 "--out", str(tmp_path / "m.engine")]) == 2
    assert "1 <= min <= opt <= max" in capsys.readouterr().err
    assert main(["--model", str(exported["checkpoint"]), "--format", "onnx", "--precision", "fp16",
                 "--out", str(tmp_path / "m.onnx")]) == 2
    assert "precision fp16 is for format tensorrt; format onnx runs at fp32" in capsys.readouterr().err


def test_cli_disk_full_is_one_line_exit_2_and_keeps_the_previous_model(exported, tmp_path, capsys, monkeypatch):
    import errno
    import os
    import shutil

    out = tmp_path / "model.onnx"
    shutil.copyfile(exported["fp32"], out)
    previous = out.read_bytes()

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the space runs out as the new file is flushed
    assert main(["--model", str(exported["checkpoint"]), "--format", "onnx-fp16", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"reid-export: error: no space left on device writing {out}\n"
    assert out.read_bytes() == previous and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_onnx_device_choice_is_checked(exported):
    import onnxruntime

    for device in ("tpu", "cuda:x", "cpu:1"):
        with pytest.raises(ValueError, match=f"must be auto, cpu, cuda or cuda:N for ONNX models, got '{device}'"):
            FeatureExtractor(exported["fp32"], device=device)
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match="has no GPU provider .*pip install 'reid-sdk\\[gpu\\]'"):
            FeatureExtractor(exported["fp32"], device="cuda")


def test_device_strings_name_the_cuda_device():
    assert parse_device("auto") == ("auto", 0) and parse_device("cpu") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0) and parse_device("cuda:3") == ("cuda", 3)
    assert cuda_provider_options(3) == {"device_id": "3", "use_tf32": "0"}  # fp32 means fp32: no TF32


def test_tensorrt_provider_gets_a_cache_and_a_batch_profile(tmp_path):
    options = tensorrt_provider_options(tmp_path, 1, "images", (256, 128), 64)
    assert options["device_id"] == "1" and options["trt_engine_cache_enable"] == "True"
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(tmp_path)
    assert options["trt_profile_min_shapes"] == "images:1x3x256x128"
    assert options["trt_profile_opt_shapes"] == options["trt_profile_max_shapes"] == "images:64x3x256x128"


def test_a_gpu_provider_that_did_not_load_is_an_error_not_a_cpu_run(caplog):
    requested = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    check_active_providers(requested, requested, "cuda:0")  # loaded: nothing to say
    with pytest.raises(ValueError, match="could not load CUDAExecutionProvider and would run on CPUExecutionProvider"):
        check_active_providers(requested, ["CPUExecutionProvider"], "cuda:1")
    with pytest.raises(ValueError, match="CUDA / cuDNN / TensorRT libraries"):
        check_active_providers(["TensorrtExecutionProvider", *requested], requested, "cuda")
    with caplog.at_level(logging.WARNING):
        check_active_providers(requested, ["CPUExecutionProvider"], "auto")  # auto: a warning, then the CPU
    assert "running on the CPU" in caplog.text


def test_backend_choice_and_its_errors(exported, tmp_path):
    assert backend_for(exported["checkpoint"]) == "torch" and backend_for(exported["fp32"]) == "onnxruntime"
    assert backend_for(tmp_path / "m.engine") == "tensorrt" and backend_for(exported["fp32"], "openvino") == "openvino"
    with pytest.raises(ValueError, match="backend must be one of auto, torch, onnxruntime, openvino, tensorrt"):
        backend_for(exported["fp32"], "tflite")
    with pytest.raises(ValueError, match="backend 'tensorrt' runs .engine/.plan files, not 'model.onnx'"):
        backend_for(exported["fp32"], "tensorrt")
    with pytest.raises(ValueError, match="unsupported model file 'm.tflite'"):
        backend_for(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="backend 'onnxruntime' runs model files; a ReIDNet runs on torch"):
        FeatureExtractor(tiny_model(), backend="onnxruntime")
    with pytest.raises(ValueError, match="precision 'fp16': an exported onnxruntime model runs at the precision"):
        FeatureExtractor(exported["fp32"], precision="fp16")
    with pytest.raises(ValueError, match="backend_options are for the onnxruntime and openvino backends, not torch"):
        FeatureExtractor(exported["checkpoint"], backend_options={"threads": 1})
    with pytest.raises(ValueError, match="backend_options must be a dict or OnnxRuntimeOptions, got list"):
        FeatureExtractor(exported["fp32"], backend_options=[1])
    with pytest.raises(ValueError, match="tensorrt_cache_dir is for the TensorRT provider on CUDA"):
        FeatureExtractor(exported["fp32"], device="cpu", backend_options={"tensorrt_cache_dir": str(tmp_path)})


def test_onnx_runtime_thread_option_gives_the_same_features(exported):
    crops = random_crops(5, seed=9)
    one_thread = FeatureExtractor(exported["fp32"], device="cpu", backend_options=OnnxRuntimeOptions(threads=1))
    assert one_thread.backend.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(one_thread.extract(crops), FeatureExtractor(exported["fp32"]).extract(crops), atol=1e-6)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        OnnxRuntimeOptions(threads=0)


def test_mobilenet_v2_exports_with_fp32_parity(tmp_path):
    checkpoint = save_checkpoint(tiny_model(seed=12, backbone="mobilenet_v2"), tmp_path / "mobilenet.pt")
    exported = export_onnx(checkpoint, tmp_path / "mobilenet.onnx")
    metadata = ModelMetadata.from_strings({p.key: p.value for p in onnx.load(exported).metadata_props})
    assert metadata.backbone == "mobilenet_v2" and metadata.feature_dim == 1280
    checks = verify_parity(exported, checkpoint, random_crops(3, seed=3), device="cpu")
    assert all(c.max_abs_diff <= 1e-4 and c.min_cosine >= 0.999 for c in checks), checks
