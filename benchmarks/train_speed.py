"""Training speed of reid-train on a synthetic Market-style set: seconds per stage by step, and a full run projected.

Each stage's time is split into train / extract / cluster / eval (from the run's metrics
rows). The projection scales the measured seconds per training epoch, and per extraction,
clustering and evaluation, to the whole schedule: on CUDA the shipped ``paper-market``
config (stage 0 for 20 epochs, every later stage 2, for all of Algorithm 1's stages: 19 on a
Market-sized set). On a GPU, the paper's network, one epoch per stage measured:

    python -m benchmarks.train_speed --size market --device cuda --stages 2 --epochs 1
    python -m benchmarks.train_speed                       # CPU: small set, ResNet-18 at 128 x 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_results
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.training.config import RunConfig, load_config
from reid_sdk.training.stage_result import StageResult
from reid_sdk.training.stage_sgd import stage_plan
from reid_sdk.training.trainer import Trainer

PAPER_CONFIG = "paper-market"  # a shipped config (reid_sdk/configs)
CPU_OVERRIDES = ["model.backbone=resnet18", "model.input_size=[128, 64]", "model.embedding_dim=256", "train.batch_size=32",
                 "train.first_stage_epochs=1", "train.later_stage_epochs=1", "data.num_workers=2"]


def projected_run(schedule: RunConfig, measured: RunConfig, rows: list[dict], stages: int,
                  video: bool = False) -> dict[str, object]:
    """Seconds of a ``stages``-stage run of ``schedule`` from the stages measured under ``measured`` (fewer epochs).

    Training scales with epochs (median seconds per epoch of the measured stages); extraction, clustering and
    evaluation happen once per stage (medians), plus one extraction before stage 0.
    """
    epochs = [stage_plan(row["stage"], measured.train, video).epochs for row in rows]
    per_epoch = statistics.median(row["train_seconds"] / count for row, count in zip(rows, epochs))
    per_stage = {step: statistics.median(row[f"{key}_seconds"] for row in rows)
                 for step, key in (("extract", "extract"), ("cluster", "merge"), ("eval", "eval"))}
    schedule_epochs = sum(stage_plan(stage, schedule.train, video).epochs for stage in range(stages))
    seconds = {"train": per_epoch * schedule_epochs, **{step: value * stages for step, value in per_stage.items()}}
    seconds["extract"] += per_stage["extract"]  # the extraction before stage 0
    return {"stages": stages, "epochs": schedule_epochs, "seconds_per_epoch": per_epoch,
            "seconds_per_stage": per_stage, "seconds": seconds, "total_minutes": sum(seconds.values()) / 60}


def run_until_stopped(trainer: Trainer) -> bool:
    """Run the trainer; a SIGTERM (the suite's time limit) ends it early with its finished stages kept. True if so."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        trainer.run()
    except KeyboardInterrupt:
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="small", help="synthetic preset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stages", type=int, default=2, help="stages to run (clustering.max_stages)")
    parser.add_argument("--epochs", type=int, help="epochs per measured stage (default: the config's schedule)")
    parser.add_argument("--paper-network", action="store_true",
                        help="the shipped paper-market config: NL-ResNet-50 at 256 x 128 (default on CUDA)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    parser.add_argument("--data", type=Path, help="reuse a rendered dataset instead of rendering one")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/train_speed_<device>.json)")
    args = parser.parse_args(argv)

    paper = args.paper_network or args.device.startswith("cuda")
    scratch = Path(tempfile.mkdtemp(prefix="train-speed-"))  # removed once the JSON is written
    data, render_seconds = args.data or scratch / "data", None
    if args.data is None:
        start = time.perf_counter()
        generate("market1501", data, SyntheticConfig(sizes=PRESETS[args.size]), workers=os.cpu_count())
        render_seconds = time.perf_counter() - start
        print(f"rendered the {args.size} set in {render_seconds:.1f} s", flush=True)
    overrides = [f"data.root={data}", "data.format=market1501", "model.pretrained=null",
                 f"train.device={args.device}"] + ([] if paper else CPU_OVERRIDES) + args.overrides
    schedule = load_config(PAPER_CONFIG if paper else None, overrides)  # the run projected
    measured = overrides + [f"clustering.max_stages={args.stages}"]
    if args.epochs:
        measured += [f"train.first_stage_epochs={args.epochs}", f"train.later_stage_epochs={args.epochs}"]
    config = load_config(PAPER_CONFIG if paper else None, measured)
    start = time.perf_counter()
    trainer = Trainer(config, scratch / "run")
    interrupted = run_until_stopped(trainer)
    total = time.perf_counter() - start

    keys = ("stage", "clusters_before", "clusters_after", "train_seconds", "extract_seconds", "merge_seconds",
            "eval_seconds", "train_samples_per_s", "mAP", "rank1")
    stages = [{key: row[key] for key in keys if key in row} for row in map(StageResult.as_dict, trainer.results)]
    for row in stages:
        print(f"stage {row['stage']}: {row['train_samples_per_s']:.1f} train images/s; train {row['train_seconds']:.1f} s,"
              f" extract {row['extract_seconds']:.1f} s, cluster {row['merge_seconds']:.2f} s, "
              f"eval {row['eval_seconds']:.1f} s")
    projection = projected_run(schedule, config, stages, trainer.schedule.num_stages, trainer.video) if stages else None
    if projection:
        print(f"projected full run: {projection['stages']} stages, {projection['epochs']} epochs, "
              f"{projection['total_minutes']:.1f} min")
    path = write_results(f"train_speed_{trainer.device.type}", {
        "dataset": f"synthetic market1501 '{args.size}' ({len(trainer.splits.train)} training images)",
        "render_seconds": render_seconds, "config": config.to_dict(), "total_seconds": total,
        "stopped_early": interrupted, "stages": stages, "projected_full_run": projection,
        "targets_met": {"projected_full_run_<=_20_min": bool(projection) and projection["total_minutes"] <= 20}
        if paper else {},
    }, args.out)
    print(f"wrote {path} ({total:.1f} s in all{', stopped early' if interrupted else ''})")
    shutil.rmtree(scratch, ignore_errors=True)

if __name__ == "__main__":
    main()
