"""GPU feature-extraction throughput of NL-ResNet-50 at 256 x 128 from uint8 crops, per engine and precision.

Engines, in the order they run (a run stopped at a time limit keeps the earlier ones): eager torch
(channels_last, as the torch backend runs on CUDA), ``eager-nchw`` (the network alone in the NCHW and
channels_last memory formats, interleaved: what channels_last buys), ``torch.compile`` (default mode),
CUDA graphs (compile mode "reduce-overhead") at batch 1, ONNX Runtime's CUDA provider on the fp16 ONNX
file (when onnxruntime-gpu is installed) and a TensorRT fp16 engine (when tensorrt is); each at every
``--precisions`` entry (fp16 and bf16 by default; the ONNX and TensorRT files are fp16 / fp32 only). The
eager engines run at every precision first, then the compiled ones precision by precision (fp16's
compile and CUDA graphs before bf16's), then the exported files.
For each batch size it times ``FeatureExtractor.extract`` end to end on ``--batches`` batches of
256 x 128 BGR crops per call (validation, threaded preprocessing of the next batch while the GPU runs
this one, pinned upload, network, download) and the backend alone on one preprocessed batch; batch 1
also gives the latency. Targets on one H100 / H200: eager fp16 >= 19,000 crops/s, best engine >= 35,000
crops/s, batch-1 latency <= 1.5 ms.

The JSON is rewritten after every measurement, so a run stopped by a time limit keeps what it measured.

    python -m benchmarks.gpu_extract                                  # all engines, fp16 and bf16, on CUDA
    python -m benchmarks.gpu_extract --engines eager cuda-graphs --precisions fp16      # a subset
    python -m benchmarks.gpu_extract --device cpu --precisions fp32 --backbone resnet18 --input-size 64 32 \\
        --batch-sizes 1 4 --engines eager eager-nchw --seconds 0.2    # the wiring, on a CPU
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, timed, write_results
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.inference.preprocess import preprocess_batch
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.model.config import BACKBONE_WIDTHS
from reid_sdk.model.device import PRECISIONS

ENGINES = ("eager", "eager-nchw", "compiled", "cuda-graphs", "onnxruntime", "tensorrt")
EAGER, COMPILED = ("eager", "eager-nchw"), ("compiled", "cuda-graphs")
FILE_PRECISIONS = ("fp32", "fp16")  # what reid-export writes for ONNX Runtime and TensorRT
TARGETS = {"eager_crops_per_s": 19_000, "best_crops_per_s": 35_000, "batch1_latency_ms": 1.5}


@dataclass(frozen=True)
class Engine:
    """One way to run the network at one precision: how to open it, at which batch sizes, or why it cannot run."""

    name: str
    precision: str
    batch_sizes: tuple[int, ...]
    open: Any  # (batch_size) -> FeatureExtractor
    missing: str | None = None


def engines(model: ReIDNet, args: argparse.Namespace, scratch: Path) -> list[Engine]:
    """The engines asked for at each precision, each opened lazily (exports and engine builds happen in turn)."""
    device, large = args.device, tuple(b for b in args.batch_sizes if b > 1)

    def torch_engine(precision: str, compile_mode: bool | str):
        return lambda batch: FeatureExtractor(model, device=device, precision=precision, batch_size=batch,
                                              compile=compile_mode)

    def onnx_engine(precision: str):
        def open_onnx(batch: int) -> FeatureExtractor:
            from reid_sdk.export.onnx_export import export_network
            from reid_sdk.inference.model_contract import ModelMetadata

            path = scratch / f"model-{precision}.onnx"
            if not path.is_file():
                metadata = ModelMetadata(input_size=model.input_size, feature_dim=model.feature_dim,
                                         precision=precision)
                export_network(model, metadata, path, precision)
            return FeatureExtractor(path, device=device, batch_size=batch)
        return open_onnx

    def tensorrt_engine(precision: str):
        def open_tensorrt(batch: int) -> FeatureExtractor:
            from reid_sdk.cli.export import main as export_main

            path = scratch / f"model-{precision}.engine"
            if not path.is_file():
                checkpoint = save_checkpoint(model, scratch / "model.pt")
                profile = f"1:{max(args.batch_sizes)}:{max(args.batch_sizes)}"
                if export_main([str(checkpoint), "--format", "tensorrt", "--precision", precision, "--batch",
                                profile, "--out", str(path)]) != 0:
                    raise RuntimeError("reid-export could not build the TensorRT engine (its error is above)")
            return FeatureExtractor(path, device=device, batch_size=batch)
        return open_tensorrt

    def file_missing(precision: str, missing: str | None) -> str | None:
        if precision not in FILE_PRECISIONS:
            return f"exported files are {' / '.join(FILE_PRECISIONS)}, not {precision}"
        return missing

    def available(name: str, precision: str) -> Engine:
        if name == "eager":
            return Engine(name, precision, tuple(args.batch_sizes), torch_engine(precision, False))
        if name == "eager-nchw":
            return Engine(name, precision, large, None)  # the network alone: see memory_formats
        if name == "compiled":
            return Engine(name, precision, large, torch_engine(precision, True))
        if name == "cuda-graphs":
            return Engine(name, precision, (1,), torch_engine(precision, "reduce-overhead"))
        if name == "onnxruntime":
            return Engine(name, precision, large, onnx_engine(precision),
                          file_missing(precision, _onnxruntime_missing(device)))
        return Engine(name, precision, large, tensorrt_engine(precision),
                      file_missing(precision, _not_importable("tensorrt")))

    def priority(pair: tuple[str, str]) -> tuple:
        """Eager runs first, then each precision's compiled engines (a compile may not fit), then exported files."""
        name, precision = pair
        rank, order = ENGINES.index(name), args.precisions.index(precision)
        return (0, rank, order) if name in EAGER else (1, order, rank) if name in COMPILED else (2, rank, order)

    pairs = sorted(((name, precision) for name in args.engines for precision in args.precisions), key=priority)
    return [available(name, precision) for name, precision in pairs]


def _not_importable(module: str) -> str | None:
    """Why ``module`` cannot be imported here, or None."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        return f"{module} is not importable: {error}"
    return None


def _onnxruntime_missing(device: str) -> str | None:
    """Why ONNX Runtime cannot run on ``device`` here, or None."""
    if (reason := _not_importable("onnxruntime")) is not None:
        return reason
    import onnxruntime

    if device.startswith("cuda") and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"onnxruntime {onnxruntime.__version__} has no CUDA provider (install onnxruntime-gpu)"
    return None


def measure(extractor: FeatureExtractor, crops: list[np.ndarray], batch_size: int, seconds: float) -> dict[str, Any]:
    """crops/s end to end on ``crops`` per call and of the backend alone, and the median batch latency."""
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


def memory_formats(model: ReIDNet, device: str, precision: str, batch_size: int, seconds: float,
                   rounds: int = 3) -> dict[str, Any]:
    """The network alone (inference mode, uint8 batch already on the device) in NCHW and channels_last, timed in
    alternating rounds: crops/s of each from its median call, and the channels_last speed-up."""
    target = torch.device(device)
    sync = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)
    network = copy.deepcopy(model).eval().to(target, PRECISIONS[precision])
    images = torch.randint(0, 256, (batch_size, 3, *model.input_size), dtype=torch.uint8, device=target)
    formats = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    samples: dict[str, list[float]] = {name: [] for name in formats}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, memory_format in formats.items():
                network.to(memory_format=memory_format)
                batch = images.contiguous(memory_format=memory_format)
                network(batch)  # warm-up: cuDNN picks kernels for this layout
                sync()
                start = time.perf_counter()
                network(batch)
                sync()
                calls = max(3, min(500, int(seconds / rounds / max(time.perf_counter() - start, 1e-6))))
                samples[name] += timed(lambda: network(batch), calls, sync)["wall_s"]
    rates = {name: batch_size / statistics.median(values) for name, values in samples.items()}
    return {"batch_size": batch_size, "network_crops_per_s": rates,
            "channels_last_speedup": rates["channels_last"] / rates["nchw"]}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best numbers per engine and precision and the design's targets, from the runs so far."""
    measured = [run for run in runs if "end_to_end" in run]
    best: dict[str, dict[str, Any]] = {}
    for run in measured:
        key, rate = f"{run['engine']} {run['precision']}", run["end_to_end"]["crops_per_s"]
        if rate > best.get(key, {}).get("crops_per_s", 0):
            best[key] = {"crops_per_s": rate, "batch_size": run["batch_size"]}
    batch1 = [run["end_to_end"]["median_call_ms"] for run in measured if run["batch_size"] == 1]
    eager = max((run["end_to_end"]["crops_per_s"] for run in measured if run["engine"] == "eager"), default=0.0)
    fastest = max((value["crops_per_s"] for value in best.values()), default=0.0)
    latency = min(batch1, default=float("inf"))
    return {"best_end_to_end": best, "batch1_latency_ms": latency if batch1 else None,
            "targets_met": {"eager_>=_19000": eager >= TARGETS["eager_crops_per_s"],
                            "best_>=_35000": fastest >= TARGETS["best_crops_per_s"],
                            "batch1_<=_1.5ms": latency <= TARGETS["batch1_latency_ms"]}}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", choices=tuple(PRECISIONS), default=["fp16", "bf16"],
                        help="torch precisions (exported files: fp16 / fp32 only)")
    parser.add_argument("--backbone", choices=tuple(BACKBONE_WIDTHS), default="resnet50")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1])
    parser.add_argument("--batches", type=int, default=8, help="batches per end-to-end call (batch 1: always 1)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
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
                       "random init", "device": args.device, "precisions": args.precisions}
    rng = np.random.default_rng(0)
    crops = {size: list(rng.integers(0, 256, (size * (1 if size == 1 else args.batches), *args.input_size, 3),
                                     dtype=np.uint8)) for size in args.batch_sizes}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for engine in engines(model, args, Path(scratch)):
            if engine.missing:
                runs.append({"engine": engine.name, "precision": engine.precision, "skipped": engine.missing})
                print(f"{engine.name:>12} {engine.precision}: skipped ({engine.missing})", flush=True)
            for batch_size in () if engine.missing else engine.batch_sizes:
                run: dict[str, Any] = {"engine": engine.name, "precision": engine.precision, "batch_size": batch_size}
                try:
                    if engine.open is None:
                        run.update(memory_formats(model, args.device, engine.precision, batch_size, args.seconds))
                    else:
                        extractor = engine.open(batch_size)
                        run.update(measure(extractor, crops[batch_size], batch_size, args.seconds))
                        run["backend_description"] = extractor.backend.description
                        del extractor
                except Exception as error:  # noqa: BLE001 - recorded; the other engines still run
                    run["failed"] = f"{type(error).__name__}: {error}"
                runs.append(run)
                print(_line(run), flush=True)
                write_results(name, {**header, "runs": runs, **summary(runs)}, path)
    print(f"wrote {write_results(name, {**header, 'runs': runs, **summary(runs)}, path)}")
    return path


def _line(run: dict[str, Any]) -> str:
    label = f"{run['engine']:>12} {run['precision']} batch {run['batch_size']:>4}"
    if "network_crops_per_s" in run:
        rates = run["network_crops_per_s"]
        return (f"{label}: network alone {rates['nchw']:9.0f} crops/s NCHW, {rates['channels_last']:9.0f} "
                f"channels_last (x{run['channels_last_speedup']:.2f})")
    if "end_to_end" not in run:
        return f"{label}: {run.get('failed')}"
    return (f"{label}: {run['end_to_end']['crops_per_s']:9.0f} crops/s end to end, "
            f"{run['backend']['crops_per_s']:9.0f} backend only, {run['batch_latency_ms']:7.2f} ms per batch")


if __name__ == "__main__":
    main()
