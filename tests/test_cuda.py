"""CUDA paths, run where a GPU is (skipped elsewhere; ``benchmarks/gpu_suite.sh`` runs them on a lent GPU).

- ``reid-train`` for two stages on CUDA with AMP and channels_last;
- ``merge_stage`` on CUDA gives the CPU's labels at N = 20,000;
- torch (fp32 / fp16), ONNX Runtime's CUDA provider and TensorRT (when installed) against torch fp32 on CPU;
- a FAISS GPU gallery searched from 8 threads while another thread adds entries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid_sdk.cli.export import main as export_main
from reid_sdk.cli.train import main as train_main
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.model import load_checkpoint, save_checkpoint
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate, sample_crops
from reid_sdk.synthetic.vectors import clustered_features
from reid_sdk.training.clustering import merge_stage
from reid_sdk.training.config import load_config
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.trainer import Trainer
from tests.helpers import random_crops, threads_running, tiny_model

pytestmark = pytest.mark.cuda

CUDA_RUN = ["model.backbone=resnet18", "model.input_size=[64, 32]", "model.pretrained=null", "model.embedding_dim=64",
            "train.first_stage_epochs=2", "train.lr_step_epoch=1", "train.later_stage_epochs=1",
            "train.batch_size=8", "train.eval_batch_size=32", "train.amp=auto", "train.channels_last=true",
            "data.num_workers=2", "clustering.merge_percent=0.25", "clustering.max_stages=2"]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _assert_parity(reference: np.ndarray, candidate: np.ndarray, fp32: bool) -> None:
    """DESIGN's promise: cosine >= 0.999 to torch fp32, and max |diff| <= 1e-4 for fp32 engines."""
    assert np.isfinite(candidate).all()
    assert _cosine(reference, candidate).min() >= 0.999
    if fp32:
        assert np.abs(reference - candidate).max() <= 1e-4


# ------------------------------------------------------------------------------------------ reid-train


def test_reid_train_runs_two_stages_on_cuda_with_amp_and_channels_last(tmp_path):
    data = tmp_path / "data"
    generate("market1501", data, SyntheticConfig(seed=3, sizes=PRESETS["tiny"]), workers=2)
    overrides = [f"--set={override}" for override in CUDA_RUN]
    assert train_main(["--data", str(data), "--format", "market1501", "--out", str(tmp_path / "run"),
                       "--device", "cuda", *overrides]) == 0
    run_dir = RunDirectory(tmp_path / "run")
    assert run_dir.completed_stages() == [0, 1]
    rows = run_dir.load_stage(1)["metrics"]
    assert [(row["clusters_before"], row["clusters_after"]) for row in rows] == [(24, 18), (18, 12)]
    assert all(np.isfinite(row["loss"]) and 0.0 <= row["mAP"] <= 1.0 for row in rows)
    model, _ = load_checkpoint(run_dir.best)
    assert all(torch.isfinite(value).all() for value in model.state_dict().values() if value.is_floating_point())

    config = load_config(None, [f"data.root={data}", "data.format=market1501", "train.device=cuda", *CUDA_RUN])
    trainer = Trainer(config, tmp_path / "settings")  # what the run above resolved its settings to
    assert trainer.amp_dtype in (torch.bfloat16, torch.float16) and trainer.channels_last
    weight = trainer.model.stem[0].weight
    assert weight.is_cuda and weight.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------- clustering


@pytest.fixture(scope="module")
def stage_inputs():
    features, _ = clustered_features(20_000, 256, seed=5)
    first = merge_stage(features, np.arange(20_000), 1000)  # a mid-training labelling: clusters of 1..n
    return features, first


def test_merge_stage_on_cuda_equals_cpu_from_singletons(stage_inputs):
    features, first = stage_inputs
    on_gpu = merge_stage(torch.from_numpy(features).cuda(), torch.arange(20_000, device="cuda"), 1000)
    assert on_gpu.is_cuda
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), first)


@pytest.mark.parametrize("linkage", ["imd_cpd", "average", "buc"])
def test_merge_stage_on_cuda_equals_cpu_on_mixed_clusters(stage_inputs, linkage):
    features, labels = stage_inputs
    expected = merge_stage(features, labels, 1000, linkage=linkage)
    on_gpu = merge_stage(features, labels, 1000, linkage=linkage, device="cuda")
    assert isinstance(on_gpu, np.ndarray)  # numpy in, numpy out, whatever device did the work
    np.testing.assert_array_equal(on_gpu, expected)


# ------------------------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint, its fp32 / fp16 ONNX files, crops, and the torch fp32 CPU features of the crops."""
    root = tmp_path_factory.mktemp("cuda-parity")
    checkpoint = save_checkpoint(tiny_model(seed=11), root / "model.pt")
    crops = sample_crops(16) + random_crops(24, seed=7)
    return {"root": root, "checkpoint": checkpoint, "crops": crops,
            "fp32": export_onnx(checkpoint, root / "model.onnx"),
            "fp16": export_onnx(checkpoint, root / "model-fp16.onnx", precision="fp16"),
            "reference": FeatureExtractor(checkpoint, device="cpu", precision="fp32").extract(crops)}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_on_cuda_matches_torch_fp32(exported, precision):
    # batch 8 over 40 crops: the pipelined preprocessing fills both halves of the pinned upload buffer
    extractor = FeatureExtractor(exported["checkpoint"], device="cuda", precision=precision, batch_size=8)
    _assert_parity(exported["reference"], extractor.extract(exported["crops"]), fp32=precision == "fp32")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnxruntime_cuda_provider_matches_torch_fp32(exported, precision):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (install onnxruntime-gpu: reid-sdk[gpu])")
    extractor = FeatureExtractor(exported[precision], device="cuda", batch_size=16)
    assert extractor.backend.session.get_providers()[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    _assert_parity(exported["reference"], extractor.extract(exported["crops"]), fp32=precision == "fp32")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_torch_fp32(exported, precision):
    pytest.importorskip("tensorrt")
    engine = exported["root"] / f"model-{precision}.engine"
    assert export_main(["--model", str(exported["checkpoint"]), "--format", "tensorrt", "--precision", precision,
                        "--batch", "1:8:32", "--out", str(engine)]) == 0
    features = FeatureExtractor(engine, device="cuda", batch_size=16).extract(exported["crops"])
    _assert_parity(exported["reference"], features, fp32=precision == "fp32")


# --------------------------------------------------------------------------------------------- FAISS


def test_faiss_gpu_gallery_searched_from_8_threads_while_one_adds():
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss has no GPU support here (install faiss-gpu-cu12: reid-sdk[gpu])")
    from reid_sdk.gallery import Gallery, GalleryConfig

    x, _ = clustered_features(30_000, 128, seed=9)
    gallery = Gallery(128, index_type="flat", config=GalleryConfig(device="gpu"))
    gallery.add(x[:20_000])

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(60):
            rows = rng.integers(0, 20_000, int(rng.choice([1, 8, 64])))
            scores, ids = gallery.search_ids(x[rows], k=10)
            # entries 0..19,999 never change: each query finds itself first, then nine others, best first
            assert (ids[:, 0] == rows).all() and np.allclose(scores[:, 0], 1.0, atol=1e-4)
            assert (ids >= 0).all() and (np.diff(scores, axis=1) <= 1e-6).all()

    with threads_running(searcher, 8):
        for start in range(20_000, 30_000, 1000):
            gallery.add(x[start : start + 1000])
    queries = x[::997]
    scores, ids = gallery.search_ids(queries, k=10)
    exact = queries.astype(np.float64) @ x.astype(np.float64).T
    expected = -np.sort(-exact, axis=1)[:, :10]
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(exact, ids, axis=1), expected, atol=1e-4)
