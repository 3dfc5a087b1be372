"""Gallery ingest throughput: the one-process path against Ray Data with 1 and 2 extraction workers, and Ray's
overhead per unit and per job.

Rendered pedestrian crops (``--images``, written as JPEGs in folders of 64) are built into a FAISS gallery by
``ingest_units`` (one process: read, extract, write in turn) and by ``reid_sdk.scale.ingest`` on a local Ray
cluster of all the cores (``workers`` actors sharing the cores left beside one reading task, ONNX Runtime
threads split between them). The model is ``--backbone`` (MobileNetV2 by default, random weights: speed depends
on the compute, not the weights) at 256 x 128, exported to ONNX fp32. Reported per configuration: wall seconds
(Ray: the job, its actors' start and model load included, not Ray's start nor its first worker processes, which a
warm-up job pays), crops/s, and the entries written, which must equal the images. Each configuration runs
``--repeats`` times; the best is reported, with every run's seconds. The overhead per unit is the extra time of
one-image units over shards of ``--shard-size`` images on the same crops (Ray, 1 worker); the per-job overhead is
a job of one image. ``--note`` records the conditions (a shared machine).

    PYTHONPATH=. python -m benchmarks.ingest_scale --images 512 --note "quiet machine"

Sizing (docs/guides/scaling.md): crops/s of a job ~ workers x crops/s of one worker while reading keeps up;
on a GPU take a worker's crops/s from the GPU suite's extraction numbers for the engine used.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2

from benchmarks.common import write_results
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.search.gallery_writer import GalleryTarget, IngestSummary, ingest_units
from reid_sdk.search.sources import folder_records
from reid_sdk.search.units import image_units
from reid_sdk.synthetic.layouts import sample_crops

FOLDER_SIZE = 64
INPUT_SIZE = (256, 128)


def write_images(root: Path, count: int) -> Path:
    """``count`` rendered crops as JPEGs, ``FOLDER_SIZE`` per folder."""
    for index, crop in enumerate(sample_crops(count, seed=3, image_size=INPUT_SIZE)):
        folder = root / f"folder{index // FOLDER_SIZE:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index // 2:04d}_c{index % 6 + 1}s1_{index:06d}_01.jpg"), crop)
    return root


def export_model(backbone: str, folder: Path) -> Path:
    model = ReIDNet(ModelConfig(backbone=backbone, input_size=INPUT_SIZE, pretrained=None)).eval()
    return export_onnx(save_checkpoint(model, folder / "model.pt"), folder / "model.onnx")


def measured(run: Callable[[GalleryTarget], IngestSummary], folder: Path, repeats: int) -> dict[str, Any]:
    """Best wall seconds (and each run's) of ``repeats`` ingests into new galleries, its crops/s, the entries."""
    seconds = []
    for repeat in range(repeats):
        start = time.perf_counter()
        summary = run(GalleryTarget(folder / str(repeat)))
        seconds.append(time.perf_counter() - start)
    return {"seconds": round(min(seconds), 3), "all_seconds": [round(value, 3) for value in seconds],
            "crops": summary.crops, "entries": summary.entries, "units": summary.units,
            "crops_per_s": round(summary.crops / min(seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="rendered crops to ingest")
    parser.add_argument("--backbone", default="mobilenet_v2", help="resnet50, mobilenet_v2, ...")
    parser.add_argument("--batch-size", type=int, default=32, help="crops per chunk and forward pass")
    parser.add_argument("--shard-size", type=int, default=FOLDER_SIZE, help="images per unit")
    parser.add_argument("--overhead-images", type=int, default=64, help="images of the per-unit overhead runs")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (the best is reported)")
    parser.add_argument("--note", default="", help="conditions of the run, recorded in the JSON")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/ingest_scale_cpu.json)")
    args = parser.parse_args()

    import ray

    from reid_sdk.scale import ingest

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="ingest-scale-"))
    records = folder_records(write_images(work / "images", args.images))
    model = export_model(args.backbone, work)
    units = image_units(records, args.shard_size)
    results: dict[str, Any] = {"images": args.images, "backbone": args.backbone, "input_size": list(INPUT_SIZE),
                               "batch_size": args.batch_size, "shard_size": args.shard_size, "cores": cores,
                               "repeats": args.repeats, "note": args.note}

    extractor = FeatureExtractor(model, batch_size=args.batch_size, backend_options={"threads": cores})
    results["one_process"] = measured(lambda target: ingest_units(units, extractor, target, args.batch_size),
                                      work / "g-local", args.repeats)
    print("one process:", results["one_process"])

    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR")
    results["ray_start_s"] = round(time.perf_counter() - start, 3)

    def on_ray(job_units: list, workers: int) -> Callable[[GalleryTarget], IngestSummary]:
        per_worker = (cores - 1) / workers  # the rest of the cores beside one reading task
        options = {"backend_options": {"threads": max(1, int(per_worker))}}
        return lambda target: ingest(job_units, str(model), target, extractor_options=options, workers=workers,
                                     cpus_per_worker=per_worker, batch_size=args.batch_size)

    try:
        on_ray(image_units(records[:1]), 2)(GalleryTarget(work / "g-warm-up"))  # Ray's worker processes start
        for workers in (1, 2):
            key = f"ray_{workers}_worker" + ("s" if workers > 1 else "")
            results[key] = measured(on_ray(units, workers), work / f"g-ray{workers}", args.repeats)
            print(f"Ray, {workers} worker(s):", results[key])
        results["ray_job_of_one_image"] = measured(on_ray(image_units(records[:1]), 1), work / "g-one", args.repeats)
        few = records[: args.overhead_images]
        shards = measured(on_ray(image_units(few, args.shard_size), 1), work / "g-shards", args.repeats)
        singles = measured(on_ray(image_units(few, 1), 1), work / "g-singles", args.repeats)
        results["per_unit_overhead"] = {
            "images": len(few), "shards": shards, "one_image_units": singles,
            "seconds_per_unit": round((singles["seconds"] - shards["seconds"]) / (singles["units"] - shards["units"]),
                                      4)}
        print("per-unit overhead:", results["per_unit_overhead"])
    finally:
        ray.shutdown()
    print("written to", write_results("ingest_scale_cpu", results, args.out))


if __name__ == "__main__":
    main()
