"""torch on the CPU, side by side in one run: fp32 inference against ONNX Runtime fp32 on the same network, and
training images/s against the cores' fp32 peak.

1. Inference: NL-ResNet-50 and NL-MobileNetV2 at 256 x 128 and NL-ResNet-18 at 128 x 64 (random weights),
   batch 16, through ``FeatureExtractor`` on torch fp32 (the shipped torch backend: BatchNorms folded,
   channels_last) and on ONNX Runtime fp32 (the same network exported), and the plain module in NCHW (what
   the torch backend ran before; the trainer's extraction runs it so), end to end from uint8 crops, timed
   in interleaved rounds (medians). Target: torch within 1.5x of ONNX Runtime.
2. Training: reid-train's SGD step (``benchmarks.train_steps``) for NL-ResNet-18 at 128 x 64 (cpu-smoke's
   network, batch 32) and NL-MobileNetV2 at 256 x 128 (batch 16), in NCHW and channels_last (reid-train's
   layout on every device), images/s and the share of the fp32 peak (``benchmarks.cpu_peak``; aim >= 30 %);
   ``benchmarks.train_profile`` splits a step's time by kind of layer.
3. The data path of training: milliseconds per image to decode a rendered crop and augment it (the trainer's
   transforms) in the calling process, against a training step's milliseconds per image.

The thread settings matter on a shared machine: OpenMP threads that spin at barriers (GNU OpenMP's default
with ``OMP_WAIT_POLICY`` unset) take the core from the thread they wait for when another process holds
it. The JSON records ``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY`` and the load; run with both policies to see it.

    OMP_NUM_THREADS=2 python -m benchmarks.cpu_speed
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m benchmarks.cpu_speed --tag passive
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.cpu_peak import cpu_fp32_peak
from benchmarks.train_steps import measure as measure_training
from reid_sdk.datasets import load_dataset
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.inference.preprocess import preprocess_batch
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.training.torch_data import ImageDataset, TransformConfig, build_transform

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
INFERENCE_NETWORKS = (("resnet50", (256, 128)), ("mobilenet_v2", (256, 128)), ("resnet18", (128, 64)))
TRAINING_NETWORKS = (("resnet18", (128, 64), 256, 32), ("mobilenet_v2", (256, 128), 256, 16))
TARGETS = {"torch_over_onnxruntime_max": 1.5, "fraction_of_fp32_peak_min": 0.30}


class PlainModule:
    """The network as the trainer holds it (NCHW, BatchNorms unfolded) behind the extractor's preprocessing."""

    def __init__(self, model: ReIDNet) -> None:
        self.model = model

    @torch.inference_mode()
    def extract(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.model(torch.from_numpy(preprocess_batch(crops, self.model.input_size))).numpy()


def inference(backbone: str, input_size: tuple[int, int], batch_size: int, rounds: int,
              scratch: Path) -> dict[str, Any]:
    """torch fp32, the plain module and ONNX Runtime fp32 crops/s on one network, interleaved, and the ratios."""
    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(backbone=backbone, input_size=input_size, pretrained=None)).eval()
    checkpoint = save_checkpoint(model, scratch / f"{backbone}.pt")
    extractors = {"torch fp32": FeatureExtractor(checkpoint, device="cpu", precision="fp32", batch_size=batch_size),
                  "torch fp32, plain NCHW module": PlainModule(model),
                  "onnxruntime fp32": FeatureExtractor(export_onnx(checkpoint, scratch / f"{backbone}.onnx"),
                                                       device="cpu", batch_size=batch_size)}
    crops = list(np.random.default_rng(0).integers(0, 256, (batch_size, *input_size, 3), dtype=np.uint8))
    reference = extractors["torch fp32, plain NCHW module"].extract(crops)
    agreement = {name: float(np.abs(extractor.extract(crops) - reference).max())
                 for name, extractor in extractors.items()}
    samples: dict[str, list[float]] = {name: [] for name in extractors}
    for _ in range(rounds):
        for name, extractor in extractors.items():
            start = time.perf_counter()
            extractor.extract(crops)
            samples[name].append(time.perf_counter() - start)
    rates = {name: batch_size / statistics.median(values) for name, values in samples.items()}
    ratio = rates["onnxruntime fp32"] / rates["torch fp32"]
    gain = rates["torch fp32"] / rates["torch fp32, plain NCHW module"]
    print(f"inference NL-{backbone} {input_size[0]}x{input_size[1]} batch {batch_size}: torch {rates['torch fp32']:.1f}"
          f" (plain module {rates['torch fp32, plain NCHW module']:.1f}), ONNX Runtime {rates['onnxruntime fp32']:.1f}"
          f" crops/s: torch {ratio:.2f}x slower than ONNX Runtime", flush=True)
    return {"network": f"NL-{backbone} {input_size[0]}x{input_size[1]}", "batch_size": batch_size,
            "crops_per_s": rates, "seconds": samples, "torch_slower_by": ratio, "torch_over_plain_module": gain,
            "max_abs_difference_to_plain_module": agreement,
            "target_met": ratio <= TARGETS["torch_over_onnxruntime_max"]}


def data_path(input_size: tuple[int, int], data: Path, images: int) -> dict[str, Any]:
    """Milliseconds per image to decode and augment training crops in this process (the trainer's dataset)."""
    records = load_dataset(data, "market1501").train[:images]
    dataset = ImageDataset(records, build_transform(TransformConfig(size=input_size), train=True))
    dataset[(0, 0)]  # first call: lazy imports
    start = time.perf_counter()
    for index in range(len(records)):
        dataset[(index, index)]
    return {"input_size": list(input_size), "images": len(records),
            "ms_per_image": 1000 * (time.perf_counter() - start) / len(records)}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (inference and training)")
    parser.add_argument("--inference-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed training steps per round")
    parser.add_argument("--parts", nargs="+", choices=("inference", "training", "data"),
                        default=["inference", "training", "data"])
    parser.add_argument("--note", help="a line stored with the numbers, e.g. 'shared machine, load ~2'")
    parser.add_argument("--tag", default="", help="suffix of the JSON name, e.g. passive")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/cpu_speed[_<tag>].json)")
    args = parser.parse_args(argv)

    name = "cpu_speed" + (f"_{args.tag}" if args.tag else "")
    path = args.out or RESULTS_DIR / f"{name}.json"
    document: dict[str, Any] = {
        "note": args.note, "thread_env": {key: os.environ.get(key) for key in THREAD_VARIABLES},
        "torch_threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg(),
        "cpu_fp32_peak": cpu_fp32_peak(torch.get_num_threads()), "targets": TARGETS,
        "inference": [], "training": [], "data_path": []}
    with tempfile.TemporaryDirectory(prefix="reid-cpu-speed-") as scratch:
        if "inference" in args.parts:
            for backbone, size in INFERENCE_NETWORKS:
                document["inference"].append(inference(backbone, size, args.inference_batch, args.rounds,
                                                       Path(scratch)))
                write_results(name, document, path)
        if "training" in args.parts:
            for backbone, size, embedding, batch in TRAINING_NETWORKS:
                config = ModelConfig(backbone=backbone, input_size=size, embedding_dim=embedding,
                                     pretrained=None)
                result = measure_training(config, torch.device("cpu"), [batch], ["off"], [False, True], args.steps,
                                          warmup=1, rounds=args.rounds)
                document["training"].append(result)
                for row in result["settings"]:
                    print(f"training {result['model']}: {row['setting']}: {row['images_per_s']:.1f} images/s, "
                          f"{100 * row['fraction_of_fp32_peak']:.1f}% of the fp32 peak", flush=True)
                write_results(name, document, path)
        if "data" in args.parts:
            data = Path(scratch) / "data"
            generate("market1501", data, SyntheticConfig(sizes=PRESETS["tiny"]), workers=1)
            for _, size, _, _ in TRAINING_NETWORKS:
                document["data_path"].append(data_path(size, data, 24))
                print(f"data path {size[0]}x{size[1]}: {document['data_path'][-1]['ms_per_image']:.2f} ms per image",
                      flush=True)
    document["load_average_at_end"] = os.getloadavg()
    path = write_results(name, document, path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
