"""Feature-extraction speed and accuracy per backend, side by side in one run, from uint8 crops.

CPU (default): each ``--backbones`` network (NL-ResNet-50 by default; mobilenet_v2, the light one) at
256 x 128 with random weights (speed depends on the compute, not the weights) through torch fp32, ONNX
Runtime fp32 and INT8 (Q/DQ), and OpenVINO fp32, bf16 and INT8 (throughput and latency modes): batch-1
latency and batch 16 / 64 crops/s end to end (FeatureExtractor: validation, preprocessing, network), and
every backend's cosine to torch fp32 on rendered pedestrians. ``--accuracy-checkpoint`` (trained models,
e.g. the demo's runs/imd_cpd/best.pt; each is used for the backbone it holds) with ``--accuracy-data``
(their Market-1501-layout data) adds each backend's cosine and mAP change against torch fp32 on that model.
Timing is round-robin (every configuration once per round, medians over all rounds), so a change of load
on a shared machine hits every backend alike. The JSON (one per backbone: ``extract_throughput_<device>.json``
for resnet50, ``extract_throughput_<device>_<backbone>.json`` for the others) records the CPU model, its ISA
flags, the load and the thread settings; ``--note`` adds a line (e.g. that the machine was shared).

    python -m benchmarks.extract_throughput --accuracy-checkpoint demo/runs/imd_cpd/best.pt \\
        --accuracy-data demo/data --calibration demo/data/bounding_box_train
    python -m benchmarks.extract_throughput --backbones mobilenet_v2 --accuracy-checkpoint runs/mnv2/best.pt \\
        --accuracy-data data/synth --calibration data/synth/bounding_box_train
    python -m benchmarks.extract_throughput --device cuda --compile default reduce-overhead

A trained MobileNetV2 in a few CPU minutes: ``reid-synth data/synth --image-size 256x128 --train-ids 60
--test-ids 60`` then ``reid-train --config cpu-smoke --data data/synth --out runs/mnv2 --set
model.backbone=mobilenet_v2 --set "model.input_size=[256, 128]" --set model.pretrained=imagenet --set
clustering.max_stages=2``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_results
from reid_sdk.export.int8 import export_onnx_int8
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.export.verify import synthetic_query_gallery
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.model.checkpoint import read_checkpoint
from reid_sdk.model.config import BACKBONE_WIDTHS
from reid_sdk.model.device import check_cpu_bf16
from reid_sdk.evaluation.on_dataset import evaluate_model
from reid_sdk.synthetic.layouts import sample_crops

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
# The design's targets for the light backbone on 2 cores: OpenVINO INT8 at batch 16 and batch 1, mAP kept.
LIGHT_BACKBONE = "mobilenet_v2"
LIGHT_TARGETS = {"openvino_int8_batch16_crops_per_s": 1000, "openvino_int8_batch1_ms": 2.0, "mAP_points_lost": 1.0}
REFERENCE = "torch fp32"
BASELINE = "onnxruntime fp32"


@dataclass
class Candidate:
    """One backend configuration: which exported file it runs and the FeatureExtractor arguments."""

    name: str
    artefact: str  # "checkpoint", "fp32" or "int8" (the ONNX file)
    kwargs: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    def open(self, files: dict[str, Path], device: str, batch_size: int) -> FeatureExtractor:
        return FeatureExtractor(files[self.artefact], device=device, batch_size=batch_size, **self.kwargs)


def cpu_description() -> dict[str, Any]:
    """CPU model, the ISA flags that decide INT8 / bf16 speed, and what OpenVINO says it can compute."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = text.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    info: dict[str, Any] = {"model": model, "isa_flags": {flag: flag in flags for flag in ISA_FLAGS}}
    try:
        import openvino

        info["openvino_capabilities"] = list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        info["openvino"] = openvino.__version__
    except ImportError:
        info["openvino"] = None
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    return info


def cpu_candidates() -> list[Candidate]:
    """Every CPU configuration; those this machine cannot run are kept with the reason."""
    candidates = [Candidate(REFERENCE, "checkpoint", {"precision": "fp32"}),
                  Candidate("torch bf16", "checkpoint", {"precision": "bf16"}),
                  Candidate(BASELINE, "fp32"), Candidate("onnxruntime int8", "int8")]
    for precision, artefact in (("fp32", "fp32"), ("bf16", "fp32"), ("int8", "int8")):
        candidates.append(Candidate(f"openvino {precision}", artefact,
                                    {"backend": "openvino", "precision": "bf16" if precision == "bf16" else "auto"}))
    candidates.append(Candidate("openvino int8 latency", "int8",
                                {"backend": "openvino", "backend_options": {"mode": "latency"}}))
    try:
        check_cpu_bf16()
    except ValueError as exc:
        candidates[1].skipped = str(exc)
    return candidates


def cuda_candidates(precisions: list[str], compile_modes: list) -> list[Candidate]:
    """Torch at each precision and compile mode, and ONNX Runtime's CUDA provider on the fp32 / fp16 files."""
    candidates = [Candidate(REFERENCE, "checkpoint", {"precision": "fp32"})]
    candidates += [Candidate(f"torch {p}" + (f" compile={mode}" if mode else ""), "checkpoint",
                             {"precision": p, "compile": mode})
                   for mode in compile_modes for p in precisions if (p, mode) != ("fp32", False)]
    return candidates + [Candidate(BASELINE, "fp32"), Candidate("onnxruntime fp16", "fp16")]


def export_files(checkpoint: Path, folder: Path, calibration: Path | None, calibration_images: int,
                 artefacts: set[str]) -> dict[str, Path]:
    """The checkpoint and the ONNX files the candidates need, written under ``folder``."""
    files = {"checkpoint": checkpoint}
    for precision in sorted(artefacts - {"checkpoint", "int8"}):
        files[precision] = export_onnx(checkpoint, folder / f"model-{precision}.onnx", precision)
    if "int8" in artefacts:
        files["int8"] = export_onnx_int8(checkpoint, folder / "model-int8.onnx", calibration, calibration_images)
    return files


def open_all(candidates: list[Candidate], files: dict[str, Path], device: str, batch_size: int) -> dict:
    """An extractor per runnable candidate; one that fails to open is marked skipped with the reason."""
    extractors = {}
    for candidate in candidates:
        if candidate.skipped:
            continue
        try:
            extractors[candidate.name] = candidate.open(files, device, batch_size)
        except (ValueError, ImportError) as exc:
            candidate.skipped = str(exc)
    return extractors


def cosines(extractors: dict, crops: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Min and mean cosine of every extractor's features to the torch fp32 reference's."""
    reference = extractors[REFERENCE].extract(crops)
    result = {}
    for name, extractor in extractors.items():
        cosine = np.sum(reference * extractor.extract(crops), axis=1)
        result[name] = {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}
    return result


def time_round_robin(extractors: dict, batch_sizes: list[int], crop_size: tuple[int, int], rounds: int,
                     seconds: float) -> list[dict]:
    """crops/s and median batch latency of every (extractor, batch size), timed in interleaved rounds."""
    rng = np.random.default_rng(0)
    crops = {size: list(rng.integers(0, 256, (size, *crop_size, 3), dtype=np.uint8)) for size in batch_sizes}
    times: dict[tuple[str, int], list[float]] = {(name, size): [] for name in extractors for size in batch_sizes}
    for (name, size) in times:  # warm-up: first calls allocate and compile
        extractors[name].extract(crops[size])
    for _ in range(rounds):
        for (name, size), samples in times.items():
            deadline = time.perf_counter() + seconds
            while True:
                begin = time.perf_counter()
                extractors[name].extract(crops[size])
                samples.append(time.perf_counter() - begin)
                if time.perf_counter() >= deadline:
                    break
    return [{"backend": name, "batch_size": size, "crops_per_s": size / statistics.median(samples),
             "median_batch_latency_ms": 1000 * statistics.median(samples), "calls": len(samples)}
            for (name, size), samples in times.items()]


def trained_model_accuracy(candidates: list[Candidate], checkpoint: Path, data: Path, data_format: str,
                           folder: Path, calibration: Path | None, calibration_images: int) -> dict[str, dict]:
    """Per backend on a trained model: cosine to torch fp32 on rendered pedestrians, and the mAP change."""
    runnable = [c for c in candidates if not c.skipped]
    files = export_files(checkpoint, folder, calibration, calibration_images, {c.artefact for c in runnable})
    extractors = open_all(runnable, files, "cpu", 64)
    query, gallery = synthetic_query_gallery(identities=16, shots=2, image_size=extractors[REFERENCE].input_size)
    result = cosines(extractors, [record.crop for record in query + gallery])
    reference_map = evaluate_model(extractors[REFERENCE], data, data_format)[0].mAP
    for name, extractor in extractors.items():
        mean_ap = reference_map if name == REFERENCE else evaluate_model(extractor, data, data_format)[0].mAP
        result[name].update(mAP=mean_ap, mAP_change_points=100 * (mean_ap - reference_map))
        print(f"{name:>24} trained model: min cos {result[name]['cosine_min']:.5f}, "
              f"mAP {100 * mean_ap:.2f} ({result[name]['mAP_change_points']:+.2f} points)", flush=True)
    return result


def target_summary(runs: list[dict], accuracy: dict[str, dict], trained: dict[str, dict] | None) -> dict:
    """Best accurate backend vs ONNX Runtime fp32: batch-16 speed-up and batch-1 latency ratio."""
    def accurate(name: str) -> bool:
        ok = accuracy[name]["cosine_min"] >= 0.99
        if trained is not None and name in trained:
            ok = ok and trained[name]["cosine_min"] >= 0.99 and trained[name]["mAP_change_points"] >= -1.0
        return ok

    def best(size: int, key: str, pick) -> dict:
        rows = [r for r in runs if r["batch_size"] == size and accurate(r["backend"])]
        return pick(rows, key=lambda r: r[key]) if rows else {}

    summary: dict[str, Any] = {}
    baseline = {r["batch_size"]: r for r in runs if r["backend"] == BASELINE}
    if 16 in baseline and (fastest := best(16, "crops_per_s", max)):
        summary["batch16"] = {"best": fastest["backend"], "crops_per_s": fastest["crops_per_s"],
                              "onnxruntime_fp32_crops_per_s": baseline[16]["crops_per_s"],
                              "speedup": fastest["crops_per_s"] / baseline[16]["crops_per_s"]}
    if 1 in baseline and (quickest := best(1, "median_batch_latency_ms", min)):
        latency, base = quickest["median_batch_latency_ms"], baseline[1]["median_batch_latency_ms"]
        summary["batch1"] = {"best": quickest["backend"], "latency_ms": latency,
                             "onnxruntime_fp32_latency_ms": base, "latency_ratio": latency / base}
    return summary


def light_backbone_targets(runs: list[dict], trained: dict[str, dict] | None) -> dict[str, Any]:
    """OpenVINO INT8's best batch-16 crops/s and batch-1 latency (either mode), its mAP change on the trained
    model, and the design's light-backbone targets met or not (a number not measured fails its target)."""
    int8 = [run for run in runs if run["backend"].startswith("openvino int8")]
    rate = max((run["crops_per_s"] for run in int8 if run["batch_size"] == 16), default=0.0)
    latency = min((run["median_batch_latency_ms"] for run in int8 if run["batch_size"] == 1), default=float("inf"))
    changes = [row["mAP_change_points"] for name, row in (trained or {}).items() if name.startswith("openvino int8")]
    lost = -min(changes) if changes else None
    return {"openvino_int8_batch16_crops_per_s": rate, "openvino_int8_batch1_ms": latency,
            "mAP_points_lost": lost, "targets": LIGHT_TARGETS,
            "targets_met": {"batch16_>=_1000": rate >= LIGHT_TARGETS["openvino_int8_batch16_crops_per_s"],
                            "batch1_<=_2ms": latency <= LIGHT_TARGETS["openvino_int8_batch1_ms"],
                            "mAP_lost_<=_1": lost is not None and lost <= LIGHT_TARGETS["mAP_points_lost"]}}


def checkpoints_by_backbone(paths: list[Path]) -> dict[str, Path]:
    """Each trained checkpoint under the backbone it holds; ValueError when two hold the same one."""
    found: dict[str, Path] = {}
    for path in paths:
        backbone = read_checkpoint(path)["model_config"]["backbone"]
        if backbone in found:
            raise ValueError(f"{found[backbone]} and {path} both hold a {backbone}: give one per backbone")
        found[backbone] = path
    return found


def result_name(device: str, backbone: str) -> str:
    """The JSON's name: NL-ResNet-50 keeps the historical name, other backbones add theirs."""
    name = f"extract_throughput_{device.split(':')[0]}"
    return name if backbone == "resnet50" else f"{name}_{backbone}"


def run_backbone(backbone: str, args: argparse.Namespace, trained_checkpoint: Path | None) -> Path:
    """Time and compare every backend on one backbone; write its JSON and return the path."""
    on_cuda = args.device.startswith("cuda")
    candidates = (cuda_candidates(args.precisions, [False, *[True if m == "default" else m for m in args.compile]])
                  if on_cuda else cpu_candidates())
    load_at_start = os.getloadavg()
    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(backbone=backbone, pretrained=None)).eval()
    with tempfile.TemporaryDirectory(prefix="reid-bench-") as scratch:
        folder = Path(scratch)
        checkpoint = save_checkpoint(model, folder / "model.pt")
        files = export_files(checkpoint, folder, args.calibration, args.calibration_images,
                             {c.artefact for c in candidates if not c.skipped})
        extractors = open_all(candidates, files, args.device, max(args.batch_sizes))
        accuracy = cosines(extractors, sample_crops(32, seed=3, image_size=model.input_size))
        runs = time_round_robin(extractors, args.batch_sizes, tuple(args.crop_size), args.rounds, args.seconds)
        for run in runs:
            run.update(accuracy[run["backend"]])
            print(f"{backbone} {run['backend']:>24} batch {run['batch_size']:>3}: {run['crops_per_s']:8.1f} crops/s, "
                  f"{run['median_batch_latency_ms']:8.1f} ms per batch, min cos {run['cosine_min']:.5f}", flush=True)
        del extractors
        trained = None
        if trained_checkpoint is not None:
            trained = trained_model_accuracy(candidates, trained_checkpoint, args.accuracy_data,
                                             args.accuracy_format, folder / "trained", args.calibration,
                                             args.calibration_images)
    summary = target_summary(runs, accuracy, trained)
    if backbone == LIGHT_BACKBONE and not on_cuda:
        summary["light_backbone"] = light_backbone_targets(runs, trained)
    print(f"{backbone} target:", summary)
    return write_results(result_name(args.device, backbone), {
        "model": f"NL-{backbone}, mixed pooling, {model.input_size[0]}x{model.input_size[1]}, random init",
        "note": args.note, "cpu_info": cpu_description(), "crop_size": list(args.crop_size), "rounds": args.rounds,
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(),
        "thread_env": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "calibration": str(args.calibration or f"{args.calibration_images} rendered synthetic pedestrians"),
        "skipped": {c.name: c.skipped for c in candidates if c.skipped}, "runs": runs,
        "trained_model": None if trained is None else {
            "checkpoint": str(trained_checkpoint), "data": str(args.accuracy_data), "backends": trained},
        "target": summary,
    }, args.out if len(args.backbones) == 1 else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the torch / ONNX Runtime GPU set")
    parser.add_argument("--backbones", nargs="+", choices=tuple(BACKBONE_WIDTHS), default=["resnet50"],
                        help="networks measured one after the other, one JSON each")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "bf16"], help="torch precisions on CUDA")
    parser.add_argument("--compile", nargs="*", default=[], metavar="MODE",
                        help="CUDA: also torch.compile modes (e.g. default reduce-overhead max-autotune)")
    parser.add_argument("--crop-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"),
                        help="size of the input crops; other than 256 128 adds resizing to the end-to-end path")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per configuration and round")
    parser.add_argument("--calibration", type=Path, help="INT8 calibration crops (default: rendered pedestrians)")
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--accuracy-checkpoint", type=Path, nargs="+", default=[],
                        help="trained checkpoints for the mAP change, each used for the backbone it holds")
    parser.add_argument("--accuracy-data", type=Path, help="their labelled data (query / gallery splits)")
    parser.add_argument("--accuracy-format", default="market1501")
    parser.add_argument("--note", help="a line stored with the numbers, e.g. 'shared machine, load ~2'")
    parser.add_argument("--out", help="JSON path, with one backbone (default benchmarks/results/"
                                      "extract_throughput_<device>[_<backbone>].json)")
    args = parser.parse_args(argv)
    if bool(args.accuracy_checkpoint) != (args.accuracy_data is not None):
        parser.error("--accuracy-checkpoint and --accuracy-data go together")
    if args.out and len(args.backbones) > 1:
        parser.error("--out names one file: give one backbone, or leave --out to name one JSON per backbone")
    try:
        trained = checkpoints_by_backbone(args.accuracy_checkpoint)
    except (OSError, ValueError, KeyError) as error:
        parser.error(f"--accuracy-checkpoint: {error}")
    for backbone in args.backbones:
        print(f"wrote {run_backbone(backbone, args, trained.get(backbone))}")


if __name__ == "__main__":
    main()
