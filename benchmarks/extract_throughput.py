"""Feature-extraction throughput of the non-local ResNet-50 at 256 x 128, from uint8 crops.

For each precision x batch size it reports crops/s end to end (FeatureExtractor:
preprocessing + upload + network) and for the network alone on device-resident
input, plus batch-1 latency. Run on the machine you quote:

    python -m benchmarks.extract_throughput                       # CPU: fp32, bf16
    python -m benchmarks.extract_throughput --device cuda --compile reduce-overhead max-autotune
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmarks.common import write_results
from reid_sdk.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet


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


def _synchronised(function, device: torch.device):
    def call():
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return call


def measure(model: ReIDNet, device: str, precision: str, batch_size: int, compile_mode: bool | str,
            crop_size: tuple[int, int], seconds: float) -> dict:
    extractor = FeatureExtractor(model, device=device, batch_size=batch_size, precision=precision,
                                 compile=compile_mode)
    rng = np.random.default_rng(0)
    crops = list(rng.integers(0, 256, (batch_size, *crop_size, 3), dtype=np.uint8))
    backend = extractor.backend
    end_to_end = _time_calls(lambda: extractor.extract(crops), seconds)
    resident = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy())
    if tuple(crop_size) != tuple(extractor.input_size):
        resident = torch.nn.functional.interpolate(resident.float(), size=extractor.input_size).to(torch.uint8)
    resident = resident.to(backend.device)
    if backend.device.type == "cuda":
        resident = resident.contiguous(memory_format=torch.channels_last)

    def network_only():
        with torch.inference_mode():
            backend._forward(resident)

    network = _time_calls(_synchronised(network_only, backend.device), seconds)
    return {
        "precision": precision, "batch_size": batch_size, "compile": compile_mode,
        "end_to_end_crops_per_s": batch_size / statistics.median(end_to_end),
        "network_crops_per_s": batch_size / statistics.median(network),
        "median_batch_latency_ms": 1000 * statistics.median(end_to_end),
        "calls": len(end_to_end),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--batch-sizes", type=int, nargs="+")
    parser.add_argument("--precisions", nargs="+")
    parser.add_argument("--compile", nargs="*", default=[], metavar="MODE",
                        help="also measure torch.compile modes (e.g. default reduce-overhead max-autotune)")
    parser.add_argument("--crop-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"),
                        help="size of the input crops; other than 256 128 adds resizing to the end-to-end path")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per configuration")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/extract_throughput_<device>.json)")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    on_cuda = device.type == "cuda"
    batch_sizes = args.batch_sizes or ([1, 32, 256] if on_cuda else [1, 8, 32])
    precisions = args.precisions or (["fp32", "fp16", "bf16"] if on_cuda else ["fp32", "bf16"])
    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(depth=args.depth, pretrained=None)).eval()
    runs = []
    for compile_mode in [False, *[True if mode == "default" else mode for mode in args.compile]]:
        for precision in precisions:
            for batch_size in batch_sizes:
                result = measure(model, str(device), precision, batch_size, compile_mode,
                                 tuple(args.crop_size), args.seconds)
                runs.append(result)
                print(f"{precision:>5} batch {batch_size:>4} compile={compile_mode}: "
                      f"{result['end_to_end_crops_per_s']:9.1f} crops/s end to end, "
                      f"{result['network_crops_per_s']:9.1f} network only, "
                      f"{result['median_batch_latency_ms']:8.2f} ms per batch", flush=True)
    path = write_results(f"extract_throughput_{device.type}", {
        "model": f"NL-ResNet-{args.depth}, mixed pooling, 256x128", "crop_size": list(args.crop_size),
        "device": str(device), "runs": runs,
    }, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
