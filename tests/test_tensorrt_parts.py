"""TensorRT path without TensorRT: profiles, batch splitting, builder flags (a fake shaped like TensorRT 11's
API, where the real library cannot run), sidecar metadata, and the install hints."""

from types import SimpleNamespace

import pytest

from reid_sdk.inference.model_contract import ModelMetadata, read_sidecar, sidecar_path, write_sidecar
from reid_sdk.inference.backends.tensorrt_backend import cuda_device_index, split_batches
from reid_sdk.cli.export import main
from reid_sdk.export.tensorrt_build import (build_engine, configure_builder, network_flags, parse_batch_profile,
                                            profile_shapes)
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import save_checkpoint
from tests.helpers import tiny_model

try:
    import tensorrt  # noqa: F401

    HAS_TENSORRT = True
except ImportError:
    HAS_TENSORRT = False

METADATA = ModelMetadata(input_size=(64, 32), feature_dim=512, pooling="mixed", backbone="resnet18", precision="fp16",
                         config_hash="0123456789abcdef")


def test_batch_profile_parsing():
    assert parse_batch_profile("1:32:256") == (1, 32, 256)
    assert parse_batch_profile("4:4:4") == (4, 4, 4)
    for bad in ("1:32", "a:b:c", "0:1:2", "8:4:16", "1:64:32"):
        with pytest.raises(ValueError, match="batch profile"):
            parse_batch_profile(bad)


def test_profile_shapes_follow_the_input_size():
    assert profile_shapes((1, 8, 64), (256, 128)) == ((1, 3, 256, 128), (8, 3, 256, 128), (64, 3, 256, 128))


def test_split_batches_covers_everything_in_runs_the_profile_takes():
    assert split_batches(10, 1, 4) == [(0, 3), (3, 6), (6, 10)]
    assert split_batches(4, 1, 4) == [(0, 4)] and split_batches(0, 1, 4) == []
    assert split_batches(9, 3, 4) == [(0, 3), (3, 6), (6, 9)], "no remainder below the smallest batch"
    for count, low, high in ((2, 3, 8), (5, 3, 4)):  # 2 < min; 5 fits neither 3+2 nor 4+1
        with pytest.raises(ValueError, match=f"cannot be split into runs of {low}..{high}, the batch sizes"):
            split_batches(count, low, high)


def test_split_batches_against_brute_force():
    """Runs within the profile, as few as any split has, found whenever any split exists."""
    for count in range(1, 40):
        for low, high in ((1, 5), (2, 5), (5, 5), (2, 8), (5, 8)):
            feasible = [runs for runs in range(1, count + 1) if runs * low <= count <= runs * high]
            if not feasible:
                with pytest.raises(ValueError):
                    split_batches(count, low, high)
                continue
            split = split_batches(count, low, high)
            assert [start for start, _ in split] == [0, *[stop for _, stop in split[:-1]]] and split[-1][1] == count
            assert len(split) == min(feasible) and all(low <= stop - start <= high for start, stop in split)


def test_cuda_device_index():
    assert cuda_device_index("auto") == 0 and cuda_device_index("cuda") == 0 and cuda_device_index("cuda:2") == 2
    for device in ("cpu", "cuda:x", "auto:1", "gpu"):
        with pytest.raises(ValueError, match="TensorRT engines run on CUDA only"):
            cuda_device_index(device)


def _fake_tensorrt(strongly_typed: bool = True) -> SimpleNamespace:
    """The builder API surface of TensorRT 11: no FP16 / INT8 builder flags, no calibrator (removed in 11)."""
    flags = SimpleNamespace(TF32=6, DEBUG=2)
    creation = SimpleNamespace(STRONGLY_TYPED=0) if strongly_typed else SimpleNamespace()
    return SimpleNamespace(BuilderFlag=flags, NetworkDefinitionCreationFlag=creation,
                           MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"))


class _RecordingConfig:
    def __init__(self) -> None:
        self.cleared, self.pools = [], {}

    def clear_flag(self, flag) -> None:
        self.cleared.append(flag)

    def set_memory_pool_limit(self, pool, size) -> None:
        self.pools[pool] = size


def test_engines_are_strongly_typed_and_fp32_has_no_tf32():
    trt = _fake_tensorrt()
    assert network_flags(trt) == 1  # 1 << STRONGLY_TYPED
    assert network_flags(_fake_tensorrt(strongly_typed=False)) == 0  # a TensorRT that dropped the flag: always on
    for precision, cleared in (("fp32", [6]), ("fp16", []), ("int8", [])):
        config = _RecordingConfig()
        configure_builder(trt, config, precision, workspace_gib=0.5)
        assert config.cleared == cleared and config.pools == {"workspace": 1 << 29}


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


def test_build_engine_validates_before_needing_tensorrt(tmp_path):
    int4 = ModelMetadata(input_size=(64, 32), feature_dim=512, precision="int4")
    with pytest.raises(ValueError, match="engine precision must be one of"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", int4, (1, 2, 4))


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_missing_tensorrt_says_how_to_install(tmp_path, capsys):
    checkpoint = save_checkpoint(tiny_model(), tmp_path / "model.pt")
    assert main([str(checkpoint), "--format", "tensorrt", "--out", str(tmp_path / "model.engine")]) == 2
    err = capsys.readouterr().err
    assert "tensorrt is not installed" in err and "pip install 'reid-sdk[tensorrt]'" in err
    assert not (tmp_path / "model.onnx").exists(), "nothing is exported before the missing TensorRT is noticed"
    write_sidecar(tmp_path / "model.engine", METADATA, (1, 2, 4))
    (tmp_path / "model.engine").write_bytes(b"engine")
    with pytest.raises(ImportError, match="pip install 'reid-sdk\\[tensorrt\\]'"):
        FeatureExtractor(tmp_path / "model.engine")


def test_tensorrt_backend_refuses_cpu_and_a_precision(tmp_path):
    with pytest.raises(ValueError, match="TensorRT engines run on CUDA only"):
        FeatureExtractor(tmp_path / "model.engine", device="cpu")
    with pytest.raises(ValueError, match="precision 'fp16': an exported tensorrt model runs at the precision"):
        FeatureExtractor(tmp_path / "model.engine", precision="fp16")
