"""TensorRT path without TensorRT: profiles, calibration batches, sidecar metadata, and the install hints."""

import logging

import cv2
import numpy as np
import pytest

from reid_sdk.backends.tensorrt_backend import split_batches
from reid_sdk.cli.export import main
from reid_sdk.backends.model_contract import ModelMetadata, read_sidecar, sidecar_path, write_sidecar
from reid_sdk.export.tensorrt_build import CalibrationBatches, build_engine, parse_batch_profile, profile_shapes
from reid_sdk.extractor import FeatureExtractor
from reid_sdk.model import save_checkpoint
from reid_sdk.preprocess import preprocess_batch
from tests.helpers import random_crops, tiny_model

try:
    import tensorrt  # noqa: F401

    HAS_TENSORRT = True
except ImportError:
    HAS_TENSORRT = False

METADATA = ModelMetadata(input_size=(64, 32), feature_dim=512, pooling="mixed", depth=18, precision="fp16",
                         config_hash="0123456789abcdef")


def test_batch_profile_parsing():
    assert parse_batch_profile("1:32:256") == (1, 32, 256)
    assert parse_batch_profile("4:4:4") == (4, 4, 4)
    for bad in ("1:32", "a:b:c", "0:1:2", "8:4:16", "1:64:32"):
        with pytest.raises(ValueError, match="batch profile"):
            parse_batch_profile(bad)


def test_profile_shapes_follow_the_input_size():
    assert profile_shapes((1, 8, 64), (256, 128)) == ((1, 3, 256, 128), (8, 3, 256, 128), (64, 3, 256, 128))


def test_split_batches_covers_everything_in_profile_sized_runs():
    assert split_batches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert split_batches(4, 4) == [(0, 4)]
    assert split_batches(0, 4) == []


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "model.engine"
    path = write_sidecar(engine, METADATA, (1, 16, 64))
    assert path == sidecar_path(engine) and path.name == "model.engine.json"
    assert read_sidecar(engine) == (METADATA, (1, 16, 64))


def test_missing_or_broken_sidecar_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.engine.json"):
        read_sidecar(tmp_path / "model.engine")
    sidecar_path(tmp_path / "model.engine").write_text('{"reid_sdk.input_size": "64x32"}')
    with pytest.raises(ValueError, match="batch_profile"):
        read_sidecar(tmp_path / "model.engine")


def test_calibration_batches_preprocess_like_inference_and_count_bad_files(tmp_path, caplog):
    crops = random_crops(5, seed=3)
    (tmp_path / "sub").mkdir()
    for index, crop in enumerate(crops):
        cv2.imwrite(str(tmp_path / ("sub" if index % 2 else "") / f"img{index}.png"), crop)
    (tmp_path / "img9.jpg").write_bytes(b"not an image")
    batches = CalibrationBatches(tmp_path, (64, 32), batch_size=2)
    with caplog.at_level(logging.WARNING):
        produced = list(batches)
    assert [len(b) for b in produced] == [2, 2, 1] and all(b.dtype == np.uint8 for b in produced)
    ordered = [crops[i] for i in (0, 2, 4, 1, 3)]  # natural order of relative paths: img0 img2 img4 sub/img1 sub/img3
    np.testing.assert_array_equal(np.concatenate(produced), preprocess_batch(ordered, (64, 32)))
    assert [p.name for p in batches.skipped] == ["img9.jpg"]
    assert "skipped 1 unreadable" in caplog.text


def test_calibration_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="calibration folder not found"):
        CalibrationBatches(tmp_path / "absent", (64, 32), 2)
    with pytest.raises(ValueError, match="has no images"):
        CalibrationBatches(tmp_path, (64, 32), 2)


def test_build_engine_validates_before_needing_tensorrt(tmp_path):
    with pytest.raises(ValueError, match="engine precision must be one of"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", METADATA, (1, 2, 4), precision="int4")
    with pytest.raises(ValueError, match="INT8 engine needs calibration crops"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", METADATA, (1, 2, 4), precision="int8")


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_missing_tensorrt_says_how_to_install(tmp_path, capsys):
    checkpoint = save_checkpoint(tiny_model(), tmp_path / "model.pt")
    assert main([str(checkpoint), "--format", "tensorrt", "--out", str(tmp_path / "model.engine")]) == 2
    assert "TensorRT is not installed: pip install 'reid-sdk[tensorrt]'" in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists(), "nothing is exported before the missing TensorRT is noticed"
    write_sidecar(tmp_path / "model.engine", METADATA, (1, 2, 4))
    (tmp_path / "model.engine").write_bytes(b"engine")
    with pytest.raises(ImportError, match="pip install 'reid-sdk\\[tensorrt\\]'"):
        FeatureExtractor(tmp_path / "model.engine")


def test_tensorrt_backend_refuses_cpu(tmp_path):
    with pytest.raises(ValueError, match="TensorRT engines run on CUDA only"):
        FeatureExtractor(tmp_path / "model.engine", device="cpu")
