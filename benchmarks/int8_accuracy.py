"""INT8 recipes for a backbone: which layers must stay float for min cosine >= 0.99 and mAP within 0.5 points.

For each checkpoint (e.g. a trained NL-MobileNetV2 and its ImageNet start), every recipe in ``RECIPES``
(layer groups kept float, calibration method, calibration crops: the site's own or rendered pedestrians) is
quantized to Q/DQ ONNX and run by ONNX Runtime (and the default recipe also by OpenVINO) on the query and
gallery of a labelled set: per-crop cosine to the torch fp32 features of the same crops, and the mAP change;
also the cosine on the uniform-noise crops of ``reid-export --verify`` (reported, not part of the target).
``--trials`` runs some of them; each run merges its rows into the JSON (by checkpoint and trial name), so
trials measured earlier stay. ``--speed`` adds batch-16 crops/s of the all-INT8, the previous and the default
recipe on OpenVINO and ONNX Runtime against NL-ResNet-50 on ONNX Runtime fp32 (random weights: speed depends on
the compute), timed round-robin.

    python -m benchmarks.int8_accuracy --checkpoints runs/mnv2/best.pt start.pt --data data/synth \\
        --calibration data/synth/bounding_box_train --speed
    python -m benchmarks.int8_accuracy --data data/synth --calibration data/synth/bounding_box_train --speed  # speed only
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.extract_throughput import cpu_description, time_round_robin
from reid_sdk.evaluation.on_dataset import retrieve
from reid_sdk.export.calibration import DEFAULT_MAX_IMAGES, CalibrationBatches
from reid_sdk.export.int8 import quantize_int8
from reid_sdk.export.int8_recipe import Int8Recipe
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.export.verify import random_crops
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet, read_checkpoint, save_checkpoint

ACCURACY_TARGET = {"cosine_min": 0.99, "mAP_points_lost": 0.5}
SPEED_TARGET = 20.0  # x NL-ResNet-50 on ONNX Runtime fp32, batch 16


@dataclass(frozen=True)
class Trial:
    """One quantization to measure: a recipe and where its calibration crops come from."""

    name: str
    recipe: Int8Recipe
    site_calibration: bool = True


PREVIOUS = Int8Recipe(keep_float=("stride4",), calibrate_method="percentile")
MIXED = ("stride4", "last_stage")
RECIPES = [
    Trial("all int8, minmax (the former default)", Int8Recipe()),
    Trial("stride <= 4 float, percentile (the previous default)", PREVIOUS),
    Trial("previous default, rendered calibration", PREVIOUS, site_calibration=False),
    Trial("last stage float, percentile", Int8Recipe(("last_stage",), "percentile")),
    Trial("stride <= 4 + last stage float, percentile", Int8Recipe(MIXED, "percentile")),
    Trial("stride <= 4 + last stage float, percentile, rendered calibration", Int8Recipe(MIXED, "percentile"),
          site_calibration=False),
    Trial("stride <= 4 + last stage float, entropy (default)", Int8Recipe.for_backbone("mobilenet_v2")),
    Trial("default, rendered calibration", Int8Recipe.for_backbone("mobilenet_v2"), site_calibration=False),
]


def features_and_map(extractor: FeatureExtractor, data: Path) -> tuple[np.ndarray, float]:
    """Query + gallery features (rows in dataset order) and the plain query/gallery mAP."""
    retrieval = retrieve(extractor, data, "market1501")
    return np.concatenate([retrieval.query.features, retrieval.gallery.features]), retrieval.result.mAP


def noise_crops() -> list[np.ndarray]:
    """The uniform-noise crops of ``reid-export --verify`` (its batches of 1, 7 and 32)."""
    return [crop for size in (1, 7, 32) for crop in random_crops(size, seed=size)]


def measure(extractor: FeatureExtractor, data: Path, reference: np.ndarray, reference_map: float,
            noise_reference: np.ndarray) -> dict[str, Any]:
    """Cosine to fp32 on the set's crops and on verify's noise crops (not part of the target), and the mAP change."""
    features, mean_ap = features_and_map(extractor, data)
    cosine = np.sum(reference * features, axis=1)
    change = 100 * (mean_ap - reference_map)
    noise_cosine = np.sum(noise_reference * extractor.extract(noise_crops()), axis=1)
    return {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()), "mAP": mean_ap,
            "mAP_change_points": change, "noise_cosine_min": float(noise_cosine.min()),
            "meets_target": bool(cosine.min() >= ACCURACY_TARGET["cosine_min"]
                                 and -change <= ACCURACY_TARGET["mAP_points_lost"])}


def checkpoint_trials(checkpoint: Path, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Every trial's accuracy on one checkpoint."""
    input_size = tuple(read_checkpoint(checkpoint)["input_size"])
    fp32 = export_onnx(checkpoint, folder / "fp32.onnx")
    torch_fp32 = FeatureExtractor(checkpoint, device="cpu", precision="fp32")
    reference, reference_map = features_and_map(torch_fp32, args.data)
    noise_reference = torch_fp32.extract(noise_crops())
    print(f"{checkpoint}: torch fp32 mAP {100 * reference_map:.2f} on {len(reference)} crops", flush=True)
    rows = []
    load_at_start = os.getloadavg()
    for trial in (trial for trial in RECIPES if args.trials is None or trial.name in args.trials):
        calibration = CalibrationBatches(args.calibration if trial.site_calibration else None, input_size,
                                         max_images=args.calibration_images)
        begin = time.perf_counter()
        int8 = quantize_int8(fp32, folder / "int8.onnx", calibration, trial.recipe)
        seconds = time.perf_counter() - begin
        row = {"trial": trial.name, **asdict(trial.recipe), "calibration": calibration.describe(),
               "quantize_s": seconds, "onnxruntime": measure(FeatureExtractor(int8, device="cpu"), args.data,
                                                             reference, reference_map, noise_reference)}
        if trial.recipe == Int8Recipe.for_backbone("mobilenet_v2") and trial.site_calibration and args.openvino:
            row["openvino"] = measure(FeatureExtractor(int8, backend="openvino"), args.data, reference,
                                      reference_map, noise_reference)
        rows.append(row)
        result = row["onnxruntime"]
        print(f"  {trial.name:<44} min cos {result['cosine_min']:.4f} mean {result['cosine_mean']:.4f} "
              f"mAP {100 * result['mAP']:.2f} ({result['mAP_change_points']:+.2f})", flush=True)
    return {"checkpoint": str(checkpoint), "backbone": read_checkpoint(checkpoint)["model_config"]["backbone"],
            "input_size": list(input_size), "torch_fp32_mAP": reference_map, "crops": len(reference),
            "trials": [{**row, "load_average": [load_at_start, os.getloadavg()]} for row in rows]}


def merged(earlier: dict[str, Any] | None, models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``models`` merged into an earlier JSON's: rows of the same checkpoint and trial replaced, the rest kept, in
    the order of ``RECIPES``."""
    order = {trial.name: index for index, trial in enumerate(RECIPES)}
    result = {model["checkpoint"]: model for model in (earlier or {}).get("models", [])}
    for model in models:
        kept = [row for row in result.get(model["checkpoint"], {}).get("trials", [])
                if row["trial"] in order and row["trial"] not in {new["trial"] for new in model["trials"]}]
        rows = sorted([*kept, *model["trials"]], key=lambda row: order[row["trial"]])
        result[model["checkpoint"]] = {**model, "trials": rows}
    return list(result.values())


def speed(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Batch-16 crops/s: MobileNetV2 INT8 (all-INT8, the previous and the default recipe) vs NL-ResNet-50 ORT
    fp32."""
    torch.manual_seed(0)
    files: dict[str, Path] = {}
    for backbone in ("resnet50", "mobilenet_v2"):
        checkpoint = save_checkpoint(ReIDNet(ModelConfig(backbone=backbone, pretrained=None)).eval(),
                                     folder / f"{backbone}.pt")
        files[f"{backbone} fp32"] = export_onnx(checkpoint, folder / f"{backbone}.onnx")
    recipes = {"all int8": Int8Recipe(), "previous": PREVIOUS, "default": Int8Recipe.for_backbone("mobilenet_v2")}
    for name, recipe in recipes.items():
        calibration = CalibrationBatches(args.calibration, (256, 128), max_images=64)
        files[f"mobilenet_v2 int8 {name}"] = quantize_int8(files["mobilenet_v2 fp32"], folder / f"{name}.onnx",
                                                           calibration, recipe)
    extractors = {"resnet50 onnxruntime fp32": FeatureExtractor(files["resnet50 fp32"], device="cpu")}
    for name in recipes:
        path = files[f"mobilenet_v2 int8 {name}"]
        extractors[f"mobilenet_v2 openvino int8 {name}"] = FeatureExtractor(path, backend="openvino")
        extractors[f"mobilenet_v2 onnxruntime int8 {name}"] = FeatureExtractor(path, device="cpu")
    runs = time_round_robin(extractors, [16], (256, 128), args.rounds, args.seconds)
    baseline = next(run["crops_per_s"] for run in runs if run["backend"] == "resnet50 onnxruntime fp32")
    for run in runs:
        run["x_resnet50_onnxruntime_fp32"] = run["crops_per_s"] / baseline
        print(f"  {run['backend']:<40} {run['crops_per_s']:8.1f} crops/s ({run['x_resnet50_onnxruntime_fp32']:.1f}x)",
              flush=True)
    return {"batch_size": 16, "rounds": args.rounds, "target_x": SPEED_TARGET, "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, nargs="*", default=[],
                        help="models whose trials to measure (none: only --speed, the rows measured earlier stay)")
    parser.add_argument("--data", type=Path, required=True, help="Market-1501-layout set with query / gallery")
    parser.add_argument("--calibration", type=Path, required=True, help="the site's own crops")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_MAX_IMAGES)
    parser.add_argument("--trials", nargs="+", choices=[trial.name for trial in RECIPES], metavar="NAME",
                        help="run only these trials (default: all); rows measured earlier stay in the JSON")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--openvino", action="store_true", help="also run the default recipe's file on OpenVINO")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--note", help="about this run: the JSON's note with --checkpoints, the speed's alone")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/int8_mobilenet_v2.json)")
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="reid-int8-bench-") as scratch:
        models = []
        for index, checkpoint in enumerate(args.checkpoints):
            (Path(scratch) / str(index)).mkdir()
            models.append(checkpoint_trials(checkpoint, args, Path(scratch) / str(index)))
        timing = speed(args, Path(scratch)) if args.speed else None
    if timing is not None:
        timing.update(note=args.note, load_average=[load_at_start, os.getloadavg()])
    out = Path(args.out) if args.out else RESULTS_DIR / "int8_mobilenet_v2.json"
    earlier = json.loads(out.read_text()) if out.is_file() else None  # read last: runs of other checkpoints merge
    timing = timing or (earlier or {}).get("speed")
    note = args.note if models else None
    print("wrote", write_results("int8_mobilenet_v2", {
        "note": note or (earlier or {}).get("note"), "cpu_info": cpu_description(),
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(), "data": str(args.data),
        "accuracy_target": ACCURACY_TARGET, "models": merged(earlier, models), "speed": timing}, out))


if __name__ == "__main__":
    main()
