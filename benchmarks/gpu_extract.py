"""GPU feature-extraction throughput of NL-ResNet-50 at 256 x 128 from uint8 crops, per engine.

Engines: eager torch fp16, ``torch.compile`` (default mode) fp16, CUDA graphs (compile mode
"reduce-overhead") at batch 1, ONNX Runtime's CUDA provider on the fp16 ONNX file (when
onnxruntime-gpu is installed) and a TensorRT fp16 engine (when tensorrt is). For each
batch size it times ``FeatureExtractor.extract`` end to end on ``--batches`` batches of
256 x 128 BGR crops per call (validation, threaded preprocessing of the next batch while
the GPU runs this one, pinned upload, network, download) and the backend alone on one
preprocessed batch; batch 1 also gives the latency. Targets on one H100 / H200: eager fp16
>= 19,000 crops/s, best engine >= 35,000 crops/s, batch-1 latency <= 1.5 ms.

The JSON is rewritten after every engine, so a run stopped by a time limit keeps what it measured.

    python -m benchmarks.gpu_extract                                  # all engines, on CUDA
    python -m benchmarks.gpu_extract --engines eager cuda-graphs      # a subset
    python -m benchmarks.gpu_extract --device cpu --precision fp32 --backbone resnet18 --input-size 64 32 \\
        --batch-sizes 1 4 --engines eager --seconds 0.2               # the wiring, on a CPU
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, timed, write_results
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.cli.export import main as export_main
from reid_sdk.export.onnx_export import export_network
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.model.config import BACKBONE_WIDTHS
from reid_sdk.inference.preprocess import preprocess_batch

ENGINES = ("eager", "compiled", "cuda-graphs", "onnxruntime", "tensorrt")
TARGETS = {"eager_crops_per_s": 19_000, "best_crops_per_s": 35_000, "batch1_latency_ms": 1.5}


@dataclass(frozen=True)
class Engine:
    """One way to run the network: how to open it, at which batch sizes, or why it cannot run here."""

    name: str
    batch_sizes: tuple[int, ...]
    open: Any  # (batch_size) -> FeatureExtractor
    missing: str | None = None


def engines(model: ReIDNet, args: argparse.Namespace, scratch: Path) -> list[Engine]:
    """The engines asked for, each opened lazily (exports and engine builds happen when its turn comes)."""
    device, precision, large = args.device, args.precision, tuple(b for b in args.batch_sizes if b > 1)

    def torch_engine(compile_mode: bool | str):
        return lambda batch: FeatureExtractor(model, device=device, precision=precision, batch_size=batch,
                                              compile=compile_mode)

    def onnx_engine(batch: int) -> FeatureExtractor:
        path = scratch / f"model-{precision}.onnx"
        if not path.is_file():
            metadata = ModelMetadata(input_size=model.input_size, feature_dim=model.feature_dim, precision=precision)
            export_network(model, metadata, path, precision)
        return FeatureExtractor(path, device=device, batch_size=batch)

    def tensorrt_engine(batch: int) -> FeatureExtractor:
        path = scratch / f"model-{precision}.engine"
        if not path.is_file():
            checkpoint = save_checkpoint(model, scratch / "model.pt")
            profile = f"1:{max(args.batch_sizes)}:{max(args.batch_sizes)}"
            if export_main([str(checkpoint), "--format", "tensorrt", "--precision", precision, "--batch", profile,
                            "--out", str(path)]) != 0:
                raise RuntimeError("reid-export could not build the TensorRT engine (its error is above)")
        return FeatureExtractor(path, device=device, batch_size=batch)

    available = {
        "eager": Engine("eager", tuple(args.batch_sizes), torch_engine(False)),
        "compiled": Engine("compiled", large, torch_engine(True)),
        "cuda-graphs": Engine("cuda-graphs", (1,), torch_engine("reduce-overhead")),
        "onnxruntime": Engine("onnxruntime", large, onnx_engine, _onnxruntime_missing(device)),
        "tensorrt": Engine("tensorrt", large, tensorrt_engine,
                           None if importlib.util.find_spec("tensorrt") else "tensorrt is not installed"),
    }
    return [available[name] for name in args.engines]


def _onnxruntime_missing(device: str) -> str | None:
    """Why ONNX Runtime cannot run on ``device`` here, or None."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    import onnxruntime

    if device.startswith("cuda") and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"onnxruntime {onnxruntime.__version__} has no CUDA provider (install onnxruntime-gpu)"
    return None


def measure(extractor: FeatureExtractor, batch_size: int, batches: int, seconds: float) -> dict[str, Any]:
    """crops/s end to end on ``batches`` batches per call and of the backend alone, and the median batch latency."""
    height, width = extractor.input_size
    rng = np.random.default_rng(0)
    crops = list(rng.integers(0, 256, (batch_size * batches, height, width, 3), dtype=np.uint8))
    batch = preprocess_batch(crops[:batch_size], extractor.input_size)
    results = {}
    for label, call, count in (("end_to_end", lambda: extractor.extract(crops), len(crops)),
                               ("backend", lambda: extractor.backend.run(batch), batch_size)):
        start = time.perf_counter()
        call()  # warm-up: compilation, graph capture, allocator, autotuning
        first = time.perf_counter() - start
        call()
        once = max(time.perf_counter() - start - first, 1e-6)
        runs = timed(call, max(3, min(2000, int(seconds / once))))
        results[label] = {"crops_per_s": count / runs["median_s"], "median_call_ms": 1000 * runs["median_s"],
                          "calls": len(runs["wall_s"]), "first_call_s": first}
    return {"batch_size": batch_size, "crops_per_call": len(crops), **results,
            "batch_latency_ms": results["backend"]["median_call_ms"]}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best numbers per engine and the design's targets, from the runs so far."""
    measured = [run for run in runs if "end_to_end" in run]
    best = {}
    for run in measured:
        rate = run["end_to_end"]["crops_per_s"]
        if rate > best.get(run["engine"], {}).get("crops_per_s", 0):
            best[run["engine"]] = {"crops_per_s": rate, "batch_size": run["batch_size"]}
    batch1 = [run["end_to_end"]["median_call_ms"] for run in measured if run["batch_size"] == 1]
    eager = best.get("eager", {}).get("crops_per_s", 0.0)
    fastest = max((value["crops_per_s"] for value in best.values()), default=0.0)
    latency = min(batch1, default=float("inf"))
    return {"best_end_to_end": best, "batch1_latency_ms": latency if batch1 else None,
            "targets_met": {"eager_>=_19000": eager >= TARGETS["eager_crops_per_s"],
                            "best_>=_35000": fastest >= TARGETS["best_crops_per_s"],
                            "batch1_<=_1.5ms": latency <= TARGETS["batch1_latency_ms"]}}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="fp16", help="torch / ONNX / TensorRT precision (fp16 on GPUs)")
    parser.add_argument("--backbone", choices=tuple(BACKBONE_WIDTHS), default="resnet50")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--batches", type=int, default=8, help="batches per end-to-end call (batch 1: always 1)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/gpu_extract_<device>.json)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")

    torch.manual_seed(0)
    config = ModelConfig(backbone=args.backbone, input_size=tuple(args.input_size), pretrained=None)
    model = ReIDNet(config).eval()
    name = f"gpu_extract_{torch.device(args.device).type}"
    path = args.out or RESULTS_DIR / f"{name}.json"
    header = {"model": f"NL-{args.backbone}, mixed pooling, {args.input_size[0]}x{args.input_size[1]}, "
                       "random init", "precision": args.precision, "device": args.device}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for engine in engines(model, args, Path(scratch)):
            if engine.missing:
                runs.append({"engine": engine.name, "skipped": engine.missing})
            for batch_size in () if engine.missing else engine.batch_sizes:
                run: dict[str, Any] = {"engine": engine.name, "batch_size": batch_size}
                try:
                    extractor = engine.open(batch_size)
                    run.update(measure(extractor, batch_size, 1 if batch_size == 1 else args.batches, args.seconds))
                    run["backend_description"] = extractor.backend.description
                except Exception as error:  # noqa: BLE001 - recorded; the other engines still run
                    run["failed"] = f"{type(error).__name__}: {error}"
                runs.append(run)
                print(_line(run), flush=True)
                write_results(name, {**header, "runs": runs, **summary(runs)}, path)
    print(f"wrote {write_results(name, {**header, 'runs': runs, **summary(runs)}, path)}")
    return path


def _line(run: dict[str, Any]) -> str:
    if "end_to_end" not in run:
        return f"{run['engine']:>12} batch {run['batch_size']:>4}: {run.get('failed')}"
    return (f"{run['engine']:>12} batch {run['batch_size']:>4}: {run['end_to_end']['crops_per_s']:9.0f} crops/s end "
            f"to end, {run['backend']['crops_per_s']:9.0f} backend only, {run['batch_latency_ms']:7.2f} ms per batch")


if __name__ == "__main__":
    main()
