"""Where OpenVINO's CPU time goes for one exported network: per-layer times from its PERF_COUNT profile.

Exports NL-<backbone> at 256 x 128 with random weights (INT8 Q/DQ calibrated on rendered pedestrians, or
fp32), compiles it for the CPU in latency mode (one stream on all of ``--threads``) with ``PERF_COUNT`` on,
runs ``--iterations`` batches after a warm-up and sums each executed node's real time over them
(``InferRequest.get_profiling_info``). Reports the totals per layer type and per kernel (``exec_type``: the
implementation and the precision it ran at, e.g. ``brgconv_avx512_core_vnni_I8``), the share of time in
int8 kernels, the slowest nodes, and the achieved operations per second against the network's count
(``torch.utils.flop_counter``: 2 per multiply-add).

    python -m benchmarks.openvino_profile                                  # NL-ResNet-50, INT8, batch 16
    python -m benchmarks.openvino_profile --backbone mobilenet_v2 --precision fp32
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import RESULTS_DIR, write_results
from reid_sdk.export.int8 import export_onnx_int8
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.model.config import BACKBONE_WIDTHS

TOP_NODES = 15
INT8_MARKERS = ("I8", "U8")  # exec_type suffixes (any case) of kernels that ran in int8


def forward_flops_per_crop(model: ReIDNet) -> float:
    """Convolution and matmul FLOPs of one crop's forward pass."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, *model.input_size, dtype=torch.uint8))
    return float(counter.get_total_flops())


def profile(path: Path, batch_size: int, iterations: int, threads: int) -> tuple[list[dict[str, Any]], float]:
    """Per-node real time (ms, summed over ``iterations`` batches) and the median wall seconds per batch."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(str(path), "CPU", {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY",
                                                      "INFERENCE_PRECISION_HINT": "f32",
                                                      "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    height, width = compiled.input(0).get_partial_shape()[2:].to_shape()
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, 3, height, width), dtype=np.uint8)
    request.infer({0: batch})  # warm-up: first-run allocations and kernel choices
    nodes: dict[str, dict[str, Any]] = {}
    walls = []
    for _ in range(iterations):
        start = time.perf_counter()
        request.infer({0: batch})
        walls.append(time.perf_counter() - start)
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            node = nodes.setdefault(info.node_name, {"node": info.node_name, "type": info.node_type,
                                                     "exec_type": info.exec_type, "ms": 0.0})
            node["ms"] += info.real_time.total_seconds() * 1000 / iterations
    return sorted(nodes.values(), key=lambda node: -node["ms"]), float(np.median(walls))


def summarise(nodes: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Milliseconds per batch and share of the profiled total, grouped by ``key`` ("type" or "exec_type")."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for node in nodes:
        totals[node[key]] += node["ms"]
        counts[node[key]] += 1
    whole = sum(totals.values()) or 1.0
    return [{key: name, "nodes": counts[name], "ms": ms, "share": ms / whole}
            for name, ms in sorted(totals.items(), key=lambda item: -item[1])]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=tuple(BACKBONE_WIDTHS), default="resnet50")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--calibration", type=Path, help="INT8 calibration crops (default: rendered pedestrians)")
    parser.add_argument("--note", help="a line stored with the numbers, e.g. 'shared machine, load ~2'")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/"
                                                 "openvino_profile_<backbone>_<precision>.json)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(backbone=args.backbone, pretrained=None)).eval()
    flops = forward_flops_per_crop(model)
    with tempfile.TemporaryDirectory(prefix="reid-ov-profile-") as scratch:
        checkpoint = save_checkpoint(model, Path(scratch) / "model.pt")
        onnx_file = (export_onnx_int8(checkpoint, Path(scratch) / "model-int8.onnx", args.calibration)
                     if args.precision == "int8" else export_onnx(checkpoint, Path(scratch) / "model.onnx"))
        nodes, wall = profile(onnx_file, args.batch_size, args.iterations, args.threads)
    by_kernel = summarise(nodes, "exec_type")
    int8_share = sum(row["share"] for row in by_kernel if row["exec_type"].upper().endswith(INT8_MARKERS))
    crops_per_s = args.batch_size / wall
    name = f"openvino_profile_{args.backbone}_{args.precision}"
    document = {
        "model": f"NL-{args.backbone}, 256x128, random init, {args.precision} ONNX", "note": args.note,
        "mode": f"latency (one stream), {args.threads} threads, batch {args.batch_size}, "
                f"{args.iterations} profiled batches after one warm-up",
        "load_average": os.getloadavg(), "median_batch_ms": 1000 * wall, "crops_per_s": crops_per_s,
        "profiled_ms_per_batch": sum(node["ms"] for node in nodes),
        "gflop_per_crop": flops / 1e9, "achieved_gop_per_s": crops_per_s * flops / 1e9,
        "int8_kernel_share": int8_share,
        "by_layer_type": summarise(nodes, "type"), "by_kernel": by_kernel, "slowest_nodes": nodes[:TOP_NODES],
    }
    path = write_results(name, document, args.out or RESULTS_DIR / f"{name}.json")
    print(f"{document['model']}: {crops_per_s:.1f} crops/s, {document['achieved_gop_per_s']:.0f} GOP/s achieved, "
          f"{100 * int8_share:.0f}% of the time in int8 kernels")
    for row in by_kernel[:8]:
        print(f"  {row['exec_type']:>40}: {row['ms']:8.2f} ms ({100 * row['share']:4.1f}%, {row['nodes']} nodes)")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
