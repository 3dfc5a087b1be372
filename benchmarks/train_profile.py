"""Where a CPU training step's time goes, by kind of layer, beside where its arithmetic is.

A network's share of the cores' fp32 peak (``benchmarks.train_steps``) is one number; this splits it. Each
convolution is classed by its shape (depthwise 3 x 3, pointwise 1 x 1, dense k x k) with its FLOPs counted from
the shapes (forward 2 x multiply-adds, backward twice the forward); reid-train's SGD step (channels_last, as the
trainer runs on a CPU) then runs under torch's profiler, which times every convolution's forward and backward
call (inclusive of the oneDNN kernels below it), the BatchNorms and the activations. Per kind: share of the
step's time, share of its FLOPs, and achieved GFLOP/s against the peak.

    OMP_NUM_THREADS=2 python -m benchmarks.train_profile
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.cpu_peak import cpu_fp32_peak
from benchmarks.train_steps import build_setting, run_round
from reid_sdk.model import ModelConfig, ReIDNet

NETWORKS = (("mobilenet_v2", (256, 128), 16), ("resnet18", (128, 64), 32))
#: Operators outside the convolutions, timed inclusively (their kernels run inside them).
OTHER_KINDS = {"aten::native_batch_norm": "batch norm", "aten::native_batch_norm_backward": "batch norm",
               "aten::hardtanh": "activations", "aten::hardtanh_": "activations",
               "aten::hardtanh_backward": "activations", "aten::relu": "activations", "aten::relu_": "activations",
               "aten::threshold_backward": "activations"}


def conv_kind(conv: nn.Conv2d) -> str:
    """depthwise, pointwise 1 x 1 or dense k x k."""
    if conv.groups > 1 and conv.groups == conv.in_channels:
        return f"depthwise {conv.kernel_size[0]}x{conv.kernel_size[1]}"
    return "pointwise 1x1" if conv.kernel_size == (1, 1) else "dense kxk"


def conv_inventory(model: ReIDNet, images: torch.Tensor) -> dict[tuple, tuple[str, float]]:
    """{(input shape, weight shape, stride, padding): (kind, forward FLOPs per call)} of every convolution, from one
    forward (shapes alone are ambiguous: MobileNetV2 has stride-1 and stride-2 depthwise layers of one shape)."""
    found: dict[tuple, tuple[str, float]] = {}

    def record(conv: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        per_output = 2 * conv.weight.shape[1] * conv.kernel_size[0] * conv.kernel_size[1]
        key = (tuple(inputs[0].shape), tuple(conv.weight.shape), tuple(conv.stride), tuple(conv.padding))
        found[key] = (conv_kind(conv), per_output * output.numel())

    hooks = [module.register_forward_hook(record) for module in model.modules() if isinstance(module, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return found


def _call_key(event: Any) -> tuple:
    """The inventory key of a profiled convolution call: forward (input, weight, bias, stride, padding, ...),
    backward (grad_output, input, weight, bias sizes, stride, padding, ...)."""
    shapes, values = [tuple(shape) for shape in event.input_shapes], event.concrete_inputs
    if event.name == "aten::convolution":
        return shapes[0], shapes[1], tuple(values[3]), tuple(values[4])
    return shapes[1], shapes[2], tuple(values[4]), tuple(values[5])


def split(config: ModelConfig, batch_size: int, steps: int, peak_gflops: float | None) -> dict[str, Any]:
    """Profile ``steps`` training steps of ``config`` at ``batch_size``; time and FLOPs per kind of layer."""
    torch.manual_seed(0)
    model = ReIDNet(config)
    setting = build_setting(model, torch.device("cpu"), batch_size, "off", True, steps, warmup=1)
    run_round(setting, torch.device("cpu"), 0, timed=False)
    model.train()
    normalised = torch.randn(batch_size, 3, *config.input_size).contiguous(memory_format=torch.channels_last)
    inventory = conv_inventory(model, normalised)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        start = time.perf_counter()
        run_round(setting, torch.device("cpu"), 1)
        wall = time.perf_counter() - start
    seconds: dict[str, float] = defaultdict(float)
    flops: dict[str, float] = defaultdict(float)
    unmatched = 0
    for event in profiler.events():
        if event.name in ("aten::convolution", "aten::convolution_backward"):
            key = _call_key(event)
            if key not in inventory:
                unmatched += 1
                continue
            kind, forward = inventory[key]
            seconds[kind] += event.cpu_time_total / 1e6
            flops[kind] += forward * (1 if event.name == "aten::convolution" else 2)
        elif event.name in OTHER_KINDS:
            seconds[OTHER_KINDS[event.name]] += event.cpu_time_total / 1e6
    seconds["everything else"] = max(0.0, wall - sum(seconds.values()))
    total_flops = sum(flops.values())
    kinds = {}
    for kind in sorted(seconds, key=seconds.get, reverse=True):
        row: dict[str, Any] = {"seconds": round(seconds[kind], 3), "time_share": round(seconds[kind] / wall, 3)}
        if kind in flops:
            achieved = flops[kind] / seconds[kind] / 1e9
            row.update(flop_share=round(flops[kind] / total_flops, 3), achieved_gflops=round(achieved, 1))
            if peak_gflops:
                row["fraction_of_fp32_peak"] = round(achieved / peak_gflops, 3)
        kinds[kind] = row
    return {"network": f"NL-{config.backbone} {config.input_size[0]}x{config.input_size[1]}", "batch_size": batch_size,
            "steps": steps, "wall_seconds": round(wall, 2), "images_per_s": round(steps * batch_size / wall, 1),
            "convolution_gflop_per_step": round(total_flops / steps / 1e9, 2),
            "unmatched_convolution_calls": unmatched, "kinds": kinds}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="profiled training steps per network")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/train_profile_cpu.json)")
    args = parser.parse_args(argv)
    peak = cpu_fp32_peak(torch.get_num_threads())
    document: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "cpu_fp32_peak": peak,
                                "load_average_at_start": os.getloadavg(), "networks": []}
    for backbone, size, batch in NETWORKS:
        config = ModelConfig(backbone=backbone, input_size=size, embedding_dim=256, pretrained=None)
        result = split(config, batch, args.steps, peak.get("peak_gflops"))
        document["networks"].append(result)
        print(f"{result['network']} batch {batch}: {result['images_per_s']} images/s")
        for kind, row in result["kinds"].items():
            share = f", {100 * row['flop_share']:.0f}% of FLOPs at {row['achieved_gflops']} GFLOP/s" \
                if "flop_share" in row else ""
            print(f"  {kind:18s} {100 * row['time_share']:5.1f}% of the time{share}")
    document["load_average_at_end"] = os.getloadavg()
    path = write_results("train_profile_cpu", document, args.out or RESULTS_DIR / "train_profile_cpu.json")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
