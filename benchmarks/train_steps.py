"""Training images/s of reid-train's SGD step on fixed in-memory crops: the compute a data path has to feed.

The steps are the trainer's own (``StageSGD``: forward, repelled loss against a cluster lookup table,
backward, SGD with Nesterov momentum, table update; AMP and channels_last as asked) on random uint8
crops held in memory, so decoding and augmentation are left out (``benchmarks.train_speed`` times whole
stages with them). Each configuration runs ``--warmup`` steps, then ``--rounds`` timed epochs of
``--steps`` steps, configurations interleaved round by round (a shared machine's load hits each alike);
images/s is from the median round. The training FLOPs per image (3 x the forward pass counted by
``torch.utils.flop_counter``) give the achieved GFLOP/s, and on a CPU its share of the cores' fp32 peak
(``benchmarks.cpu_peak``). The JSON is rewritten after every round.

    python -m benchmarks.train_steps --device cuda --amp bf16 fp16                 # the paper's network
    python -m benchmarks.train_steps --device cpu --backbone resnet18 --input-size 128 64 --batch-sizes 32
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.cpu_peak import cpu_fp32_peak
from reid_sdk.model import ModelConfig, ReIDNet
from reid_sdk.model.config import BACKBONE_WIDTHS
from reid_sdk.training.config import TrainConfig
from reid_sdk.training.memory import ClusterMemory
from reid_sdk.training.stage_sgd import StageSGD, resolve_amp

CLUSTERS = 500  # rows of the lookup table (a mid-training stage on a small set)
AMP_MODES = ("off", "bf16", "fp16")


class RandomCrops(Dataset):
    """``count`` fixed random uint8 images, served as the trainer's datasets serve theirs: (image, pid, camera,
    index), indexed by the trainer's (index, seed) pairs."""

    def __init__(self, count: int, input_size: tuple[int, int], seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (count, 3, *input_size), dtype=torch.uint8, generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, int, int]:
        index = item[0]
        return self.images[index], 0, 0, index


@dataclass
class Setting:
    """One measured configuration and the SGD runners for its warm-up and its timed epochs."""

    name: str
    model: ReIDNet
    batch_size: int
    amp: str
    channels_last: bool
    warmup: StageSGD
    timed: StageSGD
    memory: ClusterMemory
    labels: torch.Tensor
    seconds: list[float]


def build_setting(model: ReIDNet, device: torch.device, batch_size: int, amp: str, channels_last: bool,
                  steps: int, warmup: int) -> Setting:
    """SGD runners over ``warmup`` and ``steps`` batches of random crops for ``model`` (shared by the settings)."""
    train = replace(TrainConfig(), batch_size=batch_size, later_stage_epochs=1, device=str(device))
    amp_dtype = None if amp == "off" else resolve_amp(amp, device)
    if amp != "off" and amp_dtype is None:
        raise ValueError(f"--amp {amp} needs CUDA (the trainer runs fp32 on a CPU)")

    def runner(batches: int) -> StageSGD:
        return StageSGD(model, train, RandomCrops(batches * batch_size, model.input_size), 0, device, amp_dtype,
                        video=False)

    generator = torch.Generator().manual_seed(1)
    samples = max(steps, warmup) * batch_size
    memory = ClusterMemory(torch.randn(CLUSTERS, model.config.embedding_dim, generator=generator).to(device))
    labels = torch.randint(0, CLUSTERS, (samples,), generator=generator)
    name = f"batch {batch_size}, {'AMP ' + amp if amp != 'off' else 'fp32'}, " + \
        ("channels_last" if channels_last else "NCHW")
    return Setting(name, model, batch_size, amp, channels_last, runner(warmup), runner(steps), memory, labels, [])


def train_flops_per_image(model: ReIDNet, device: torch.device, batch_size: int = 2) -> float:
    """FLOPs of one training step per image: 3 x the training forward pass (convolutions and matmuls, 2 per
    multiply-add), the backward pass taken as twice the forward (gradients of the inputs and of the weights).
    torch's counter counts the forward exactly but overcounts grouped convolutions' weight gradients
    (MobileNetV2's depthwise layers came out 20 x), so the backward is not counted directly."""
    images = torch.randint(0, 256, (batch_size, 3, *model.input_size), dtype=torch.uint8, device=device)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images)
    return 3 * counter.get_total_flops() / batch_size


def run_round(setting: Setting, device: torch.device, stage_seed: int, timed: bool = True) -> float:
    """One epoch of ``setting`` (timed, or its warm-up): seconds from the first step to the loss read back (a
    device sync). The shared model is put in the setting's memory format first, outside the timing."""
    setting.model.to(memory_format=torch.channels_last if setting.channels_last else torch.contiguous_format)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    (setting.timed if timed else setting.warmup).train(1, 2, setting.labels, setting.memory, seed=stage_seed)
    return time.perf_counter() - start


def summarise(settings: list[Setting], steps: int, flops: float, peak: dict[str, Any] | None) -> list[dict]:
    """images/s of each setting's median round, achieved GFLOP/s, and its share of the CPU peak."""
    rows = []
    for setting in settings:
        row: dict[str, Any] = {"setting": setting.name, "batch_size": setting.batch_size, "amp": setting.amp,
                               "channels_last": setting.channels_last, "round_seconds": setting.seconds}
        if setting.seconds:
            images_per_s = steps * setting.batch_size / statistics.median(setting.seconds)
            row.update(images_per_s=images_per_s, achieved_gflops=images_per_s * flops / 1e9)
            if peak and peak.get("peak_gflops"):
                row["fraction_of_fp32_peak"] = row["achieved_gflops"] / peak["peak_gflops"]
        rows.append(row)
    return rows


def measure(config: ModelConfig, device: torch.device, batch_sizes: list[int], amp_modes: list[str],
            channels_last: list[bool], steps: int, warmup: int, rounds: int,
            save=lambda document: None) -> dict[str, Any]:
    """Every (batch, AMP, memory format) of ``config`` on ``device``, interleaved; ``save`` gets each round's view."""
    torch.manual_seed(0)
    model = ReIDNet(config).to(device)
    flops = train_flops_per_image(model, device)
    peak = cpu_fp32_peak(torch.get_num_threads()) if device.type == "cpu" else None
    settings = [build_setting(model, device, batch, amp, layout, steps, warmup)
                for batch in batch_sizes for amp in amp_modes for layout in channels_last]
    header = {"model": f"NL-{config.backbone}, {config.input_size[0]}x{config.input_size[1]}, embedding "
                       f"{config.embedding_dim}, random init", "device": str(device), "steps_per_round": steps,
              "warmup_steps": warmup, "train_gflop_per_image": flops / 1e9, "cpu_fp32_peak": peak}
    for setting in settings:
        run_round(setting, device, 0, timed=False)
    for round_index in range(rounds):
        for setting in settings:
            setting.seconds.append(run_round(setting, device, round_index + 1))
            print(f"{header['model']}: {setting.name}: round {round_index + 1}: "
                  f"{steps * setting.batch_size / setting.seconds[-1]:.1f} images/s", flush=True)
        save({**header, "settings": summarise(settings, steps, flops, peak)})
    return {**header, "settings": summarise(settings, steps, flops, peak)}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", choices=tuple(BACKBONE_WIDTHS), default="resnet50")
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--embedding-dim", type=int, default=2048)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64],
                        help="16 is the paper's (reid-train's default)")
    parser.add_argument("--amp", nargs="+", choices=AMP_MODES, help="default: bf16 and fp16 on CUDA, off on a CPU")
    parser.add_argument("--memory-format", nargs="+", choices=("channels_last", "nchw"),
                        help="default: channels_last (as reid-train)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing (allocator, cuDNN autotuning)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/train_steps_<device>.json)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as reid-train on CUDA
    on_cuda = device.type == "cuda"
    amp_modes = args.amp or (["bf16", "fp16"] if on_cuda else ["off"])
    layouts = [name == "channels_last" for name in args.memory_format or ["channels_last"]]
    config = ModelConfig(backbone=args.backbone, input_size=tuple(args.input_size), embedding_dim=args.embedding_dim,
                         pretrained=None)
    name = f"train_steps_{device.type}"
    path = args.out or RESULTS_DIR / f"{name}.json"
    try:
        document = measure(config, device, args.batch_sizes, amp_modes, layouts, args.steps, args.warmup,
                           args.rounds, lambda partial: write_results(name, partial, path))
    except ValueError as error:
        parser.error(str(error))
    write_results(name, document, path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
