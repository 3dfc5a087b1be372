"""Feature-extraction throughput of the non-local ResNet-50 at 256 x 128, from uint8 crops, per backend.

For each backend x precision x batch size it reports crops/s end to end
(FeatureExtractor: validation, preprocessing, upload, network, download) and for the
backend alone on a preprocessed uint8 batch, plus the median batch latency. Run on
the machine you quote:

    python -m benchmarks.extract_throughput                       # CPU: torch fp32/bf16, ONNX Runtime fp32/fp16
    python -m benchmarks.extract_throughput --device cuda --compile default reduce-overhead
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_results
from reid_sdk.backends.model_contract import ModelMetadata
from reid_sdk.export.onnx_export import export_network
from reid_sdk.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet
from reid_sdk.preprocess import preprocess_batch


def _time_calls(function, min_seconds: float, min_calls: int = 3) -> list[float]:
    """Wall time of repeated calls (after one warm-up call), until both minimums are reached."""
    function()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return times


def measure(extractor: FeatureExtractor, batch_size: int, crop_size: tuple[int, int], seconds: float) -> dict:
    """Throughput of one configured extractor on ``batch_size`` random crops of ``crop_size``."""
    rng = np.random.default_rng(0)
    crops = list(rng.integers(0, 256, (batch_size, *crop_size, 3), dtype=np.uint8))
    batch = preprocess_batch(crops, extractor.input_size)
    end_to_end = _time_calls(lambda: extractor.extract(crops), seconds)
    backend_only = _time_calls(lambda: extractor.backend.run(batch), seconds)
    return {
        "batch_size": batch_size,
        "end_to_end_crops_per_s": batch_size / statistics.median(end_to_end),
        "backend_crops_per_s": batch_size / statistics.median(backend_only),
        "median_batch_latency_ms": 1000 * statistics.median(end_to_end),
        "calls": len(end_to_end),
    }


def configurations(model: ReIDNet, device: torch.device, precisions: list[str], compile_modes: list,
                   onnx_dir: Path) -> list[tuple[dict, dict]]:
    """(description, FeatureExtractor keyword arguments) of every backend x precision x compile mode."""
    configs = [({"backend": "torch", "precision": p, "compile": mode},
                {"model": model, "device": str(device), "precision": p, "compile": mode})
               for mode in compile_modes for p in precisions]
    for precision in ("fp32", "fp16"):
        metadata = ModelMetadata(input_size=model.input_size, feature_dim=model.feature_dim, precision=precision)
        path = export_network(model, metadata, onnx_dir / f"model-{precision}.onnx", precision)
        configs.append(({"backend": "onnxruntime", "precision": precision, "compile": False},
                        {"model": path, "device": str(device)}))
    return configs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--batch-sizes", type=int, nargs="+")
    parser.add_argument("--precisions", nargs="+", help="torch precisions (default: CUDA fp32 fp16 bf16, CPU fp32 bf16)")
    parser.add_argument("--compile", nargs="*", default=[], metavar="MODE",
                        help="also measure torch.compile modes (e.g. default reduce-overhead max-autotune)")
    parser.add_argument("--crop-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"),
                        help="size of the input crops; other than 256 128 adds resizing to the end-to-end path")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per configuration")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/extract_throughput_<device>.json)")
    args = parser.parse_args(argv)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    on_cuda = device.type == "cuda"
    batch_sizes = args.batch_sizes or ([1, 32, 256] if on_cuda else [1, 8, 32])
    precisions = args.precisions or (["fp32", "fp16", "bf16"] if on_cuda else ["fp32", "bf16"])
    compile_modes = [False, *[True if mode == "default" else mode for mode in args.compile]]
    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(depth=args.depth, pretrained=None)).eval()
    runs = []
    with tempfile.TemporaryDirectory() as onnx_dir:
        for description, kwargs in configurations(model, device, precisions, compile_modes, Path(onnx_dir)):
            for batch_size in batch_sizes:
                extractor = FeatureExtractor(batch_size=batch_size, **kwargs)
                result = {**description, "device": str(extractor.backend.device),
                          **measure(extractor, batch_size, tuple(args.crop_size), args.seconds)}
                runs.append(result)
                print(f"{result['backend']:>11} {result['precision']:>4} compile={str(result['compile']):<5} "
                      f"batch {batch_size:>4}: {result['end_to_end_crops_per_s']:9.1f} crops/s end to end, "
                      f"{result['backend_crops_per_s']:9.1f} backend only, "
                      f"{result['median_batch_latency_ms']:8.2f} ms per batch", flush=True)
    path = write_results(f"extract_throughput_{device.type}", {
        "model": f"NL-ResNet-{args.depth}, mixed pooling, 256x128, random init",
        "crop_size": list(args.crop_size), "runs": runs,
    }, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
